"""Measure speed levers of `tx run summarization` on the benchmark's workload (issue 9).

    python bench/levers.py [--quick] [--reps N] [VARIANT ...]

Each VARIANT is run once per repetition, interleaved (the order rotates), with its own datasets
cache; the table shows medians. Variants (default: all):

  plain          the plain HF script (bench/plain_hf.py)
  tx             `tx run summarization` as it is
  grouped        tx --group_by_length (length-grouped training batches)
  workers1       tx --dataloader_num_workers 1
  threads1       tx with OMP_NUM_THREADS=1
  passive        tx with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of spinning)

A variant can also be given as NAME=FLAGS (e.g. `lr=--learning_rate 1e-3`) or NAME=ENV=VALUE.
Results go to bench/results/levers.json (see --out).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
import workload  # noqa: E402

VARIANTS: dict[str, tuple[str, tuple[str, ...], dict[str, str]]] = {
    "plain": ("plain_hf", (), {}),
    "tx": ("tx", (), {}),
    "grouped": ("tx", ("--group_by_length",), {}),
    "workers1": ("tx", ("--dataloader_num_workers", "1"), {}),
    "threads1": ("tx", (), {"OMP_NUM_THREADS": "1"}),
    "passive": ("tx", (), {"OMP_WAIT_POLICY": "PASSIVE"}),
}
COLUMNS = ("wall_s", "first_step_s", "train_s", "eval_s", "predict_s", "eval_rougeL", "predict_rougeL", "train_loss")


def parse_variant(text: str) -> tuple[str, tuple[str, tuple[str, ...], dict[str, str]]]:
    if text in VARIANTS:
        return text, VARIANTS[text]
    name, _, spec = text.partition("=")
    if not spec:
        raise SystemExit(f"levers: error: unknown variant {text!r} (known: {', '.join(VARIANTS)}, or NAME=FLAGS)")
    if not spec.startswith("-") and "=" in spec.split()[0]:
        key, _, value = spec.partition("=")
        return name, ("tx", (), {key: value})
    return name, ("tx", tuple(shlex.split(spec)), {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="speed levers of tx on the benchmark workload")
    parser.add_argument("variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--vary-seed", action="store_true",
                        help="repetition r trains with seed 42 + r (quality over seeds, not only speed)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "levers.json")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="set for every variant (e.g. OMP_NUM_THREADS=1 to compare other levers on a busy machine)")
    args = parser.parse_args(argv)
    variants = dict(parse_variant(v) for v in args.variants)
    size = workload.QUICK if args.quick else workload.FULL
    reps = args.reps or (1 if args.quick else 3)
    work = args.work or Path(tempfile.mkdtemp(prefix="txlevers-"))
    work.mkdir(parents=True, exist_ok=True)
    command = "python bench/levers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"levers: {command}; scratch {work}; load average {bench.load_average()}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    try:
        env = bench.base_env(work)
        env.update(dict(item.split("=", 1) for item in args.env))
        data = workload.write_data(work / "data", size)
        model = workload.build_model(work / "model", data["train"])
        common = workload.hf_args(model, data, size)
        names = list(variants)
        for rep in range(reps):
            for name in names[rep % len(names):] + names[: rep % len(names)]:
                kind, extra, extra_env = variants[name]  # a variant's env wins over --env
                seed = ("--seed", str(workload.HPARAMS["seed"] + rep)) if args.vary_seed else ()
                row = bench.run_trainer(kind, rep, work, common, env, 1800, (*extra, *seed), extra_env, name=name)
                row.pop("processes", None)
                runs[name].append(row)
                print(f"  rep {rep + 1} {name:10s} " + " ".join(f"{k[:-2] if k.endswith('_s') else k} "
                      f"{row[k]:.2f}" for k in COLUMNS if isinstance(row.get(k), (int, float)))
                      + f" (load {row['load_average']})", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    table = {name: {k: statistics.median([r[k] for r in rows if isinstance(r.get(k), (int, float))])
                    for k in COLUMNS if any(isinstance(r.get(k), (int, float)) for r in rows)}
             for name, rows in runs.items()}
    print("\nmedians:")
    print(f"  {'variant':10s} " + " ".join(f"{c:>14s}" for c in COLUMNS))
    for name, row in table.items():
        print(f"  {name:10s} " + " ".join(f"{row.get(c, float('nan')):14.2f}" for c in COLUMNS))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
                                    "size": size.__dict__, "variants": {k: list(v[1]) + [f"{a}={b}" for a, b in v[2].items()]
                                                                         for k, v in variants.items()},
                                    "medians": table, "runs": runs}, indent=2) + "\n", encoding="utf-8")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
