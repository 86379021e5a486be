"""tx against a plain HF Trainer script and a raw PyTorch loop, side by side (issue 9).

    python bench/run.py            # full: 3000 training rows, 3 repetitions (~6 min on 2 idle cores)
    python bench/run.py --quick    # smoke test: 320 rows, 1 repetition (1-2 min)

One invocation runs, per repetition and interleaved (the order rotates), on the same tiny T5,
data, seed and hyperparameters (workload.py):

  (a) plain_hf  bench/plain_hf.py, a plain run_summarization-style Seq2SeqTrainer script
  (b) tx        `tx run summarization` with the same flags, through the real CLI
  (c) raw_loop  bench/raw_loop.py, a bare PyTorch loop over the same tokenized batches

and times the startup commands (`tx --help`, `tx list`, a slurm --dry-run, `accelerate launch
--help`, `torchrun --help`, a bare `from transformers import TrainingArguments`). Medians,
ratios, ROUGE-L, time to the first optimizer step and peak memory are written to
bench/results/latest.json and latest.png; each target of the issue is printed PASS/FAIL.
The environment of every contender is the caller's minus thread settings (OMP_NUM_THREADS,
MKL_NUM_THREADS, OMP_WAIT_POLICY), so each runs with its own defaults, offline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402

CONTENDERS = ("plain_hf", "tx", "raw_loop")
STARTUP = ("tx --help", "tx list", "tx run --launcher slurm --dry-run", "accelerate launch --help",
           "torchrun --help", "import TrainingArguments")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
#: the issue's targets
TARGETS = {"wall_ratio": 0.75, "rouge_drop": 0.5, "throughput_ratio": 0.9, "help_seconds": 0.3,
           "dry_run_over_import": 1.2}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def bin_path(name: str) -> str:
    """A console script of this Python's environment (tx, accelerate, torchrun)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"bench: error: {name!r} not found next to {sys.executable} or on PATH")
    return found


def base_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS and k not in ("TX_PLUGINS", "TXBENCH_MARKS")}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "TX_CACHE_HOME": str(work / "tx-cache")})
    return env


def timed(argv: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float) -> tuple[float, float, int]:
    """(start epoch time, wall seconds, exit code) of one command, its output in ``log``."""
    with log.open("w", encoding="utf-8") as out:
        start = time.time()
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=str(cwd), stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        seconds = time.perf_counter() - t0
    return start, seconds, proc.returncode


def read_marks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fail(what: str, log: Path) -> None:
    tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]) if log.exists() else ""
    raise SystemExit(f"bench: error: {what} failed; last lines of {log}:\n{tail}")


# -- one run of each contender ---------------------------------------------------------------
def run_trainer(kind: str, rep: int, work: Path, common: list[str], env0: dict[str, str], timeout: float,
                extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None,
                name: str | None = None) -> dict[str, Any]:
    """One run of the plain script (``kind`` plain_hf) or of `tx run` (tx); ``name`` (default
    ``kind``) names its files and its datasets cache."""
    name = name or kind
    out = work / f"{name}-{rep}"
    marks_file = work / f"{name}-{rep}.marks"
    env = dict(env0, TXBENCH_MARKS=str(marks_file), HF_HOME=str(work / f"hf-home-{name}"), **(extra_env or {}))
    if kind == "tx":
        env["TX_PLUGINS"] = "txbench_plugin"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env0.get("PYTHONPATH", "")) if p)
        argv = [bin_path("tx"), "run", "summarization", *common, *extra_args, "--output_dir", str(out)]
    else:
        argv = [sys.executable, str(HERE / "plain_hf.py"), *common, *extra_args, "--output_dir", str(out)]
    log = work / f"{name}-{rep}.log"
    start, wall, code = timed(argv, env, work, log, timeout)
    if code != 0:
        fail(f"{name} (repetition {rep + 1})", log)
    marks = read_marks(marks_file)
    results = json.loads((out / "all_results.json").read_text())
    first = next((m for m in marks if m["event"] == "first_step"), None)
    begin = next((m for m in marks if m["event"] == "train_begin"), None)
    trainer_pid = first["pid"] if first else None
    exits = {m["pid"]: m for m in marks if m["event"] == "exit"}
    row: dict[str, Any] = {
        "wall_s": wall,
        "train_begin_s": begin["t"] - start if begin else None,
        "first_step_s": first["t"] - start if first else None,
        "train_s": results.get("train_runtime"),
        "eval_s": results.get("eval_runtime"),
        "predict_s": results.get("predict_runtime"),
        "eval_rougeL": results.get("eval_rougeL"),
        "predict_rougeL": results.get("predict_rougeL"),
        "train_loss": results.get("train_loss"),
        "worker_peak_rss_mb": _mb(exits.get(trainer_pid, {}).get("peak_rss_kb")),
        "predictions_lines": _lines(out / "generated_predictions.txt"),
        "predictions_file_rougeL": file_rouge(out / "generated_predictions.txt", Path(common[common.index("--test_file") + 1])),
        "load_average": load_average(),
    }
    if kind == "tx":
        row["train_sampling_strategy"] = _tx_job_args(out).get("train_sampling_strategy", "random")
        launcher = [m for pid, m in exits.items() if m["ppid"] == os.getpid()]
        if launcher:
            row["launcher_peak_rss_mb"] = _mb(launcher[0].get("peak_rss_kb"))
            row["launcher_imported_torch"] = launcher[0]["torch_imported"]
        row["processes"] = [{"argv0": m["argv0"], "peak_rss_mb": _mb(m.get("peak_rss_kb")),
                             "torch": m["torch_imported"], "role": _role(m, trainer_pid)} for m in exits.values()]
    return row


def _tx_job_args(out: Path) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((out / "tx-job.yaml").read_text(encoding="utf-8")).get("args") or {})


def _role(mark: dict[str, Any], trainer_pid: int | None) -> str:
    if mark["pid"] == trainer_pid:
        return "worker"
    return "launching process" if mark["ppid"] == os.getpid() else "helper"


def file_rouge(predictions: Path, test_file: Path) -> float | None:
    """ROUGE-L of generated_predictions.txt read line by line against the test file's summaries:
    equal to the run's own predict_rougeL when line i is the prediction for row i, far lower
    when the lines are out of order."""
    if not predictions.exists():
        return None
    from rouge_score import rouge_scorer

    lines = predictions.read_text(encoding="utf-8").splitlines()
    refs = [json.loads(x)["summary"] for x in test_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    if len(lines) != len(refs):
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return 100 * statistics.fmean(scorer.score(r, p)["rougeL"].fmeasure for r, p in zip(refs, lines))


def _mb(kb: int | None) -> float | None:
    return round(kb / 1024, 1) if kb else None


def _lines(path: Path) -> int | None:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else None


def run_raw(rep: int, work: Path, model: Path, data: dict[str, Path], size: workload.Size, env0: dict[str, str],
            timeout: float, seed: int, order: str) -> dict[str, Any]:
    """The raw loop over the batches tx trains on: random order, or length-grouped when that is
    tx's default (``order`` grouped)."""
    log = work / f"raw_loop-{rep}.log"
    result = work / f"raw_loop-{rep}.json"
    argv = [sys.executable, str(HERE / "raw_loop.py"), "--model", str(model), "--train_file", str(data["train"]),
            "--epochs", str(size.epochs), "--out", str(result), "--seed", str(seed), "--order", order]
    _, wall, code = timed(argv, dict(env0, HF_HOME=str(work / "hf-home-raw")), work, log, timeout)
    if code != 0:
        fail(f"raw_loop (repetition {rep + 1})", log)
    row = json.loads(result.read_text())
    row.update({"wall_s": wall, "train_s": row["seconds"], "load_average": load_average()})
    return row


# -- startup commands -------------------------------------------------------------------------
def startup_commands(work: Path) -> dict[str, list[str]]:
    return {
        "tx --help": [bin_path("tx"), "--help"],
        "tx list": [bin_path("tx"), "list"],
        "tx run --launcher slurm --dry-run": [bin_path("tx"), "run", "summarization", "--launcher", "slurm",
                                              "--dry-run", "--output_dir", str(work / "slurm-dry-run")],
        "accelerate launch --help": [bin_path("accelerate"), "launch", "--help"],
        "torchrun --help": [bin_path("torchrun"), "--help"],
        "import TrainingArguments": [sys.executable, "-c", "from transformers import TrainingArguments"],
    }


def run_startup(work: Path, env: dict[str, str], reps: int) -> dict[str, Any]:
    commands = startup_commands(work)
    times: dict[str, list[float]] = {name: [] for name in commands}
    codes: dict[str, int] = {}
    for rep in range(reps):
        for name, argv in commands.items():  # interleaved, so a burst of load hits all alike
            log = work / f"startup-{name.replace(' ', '_').replace('-', '')}-{rep}.log"
            _, seconds, code = timed(argv, env, work, log, timeout=120)
            times[name].append(seconds)
            codes[name] = code
            if code != 0:
                codes[name + " (log)"] = str(log)  # type: ignore[assignment]
    return {name: {"median_s": statistics.median(v), "runs_s": v, "exit_code": codes[name]}
            for name, v in times.items()}


# -- summary ------------------------------------------------------------------------------------
def median_of(rows: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return statistics.median(values) if values else None


def summarize(runs: dict[str, list[dict[str, Any]]], tokens: int) -> dict[str, Any]:
    keys = ("wall_s", "train_begin_s", "first_step_s", "train_s", "eval_s", "predict_s", "eval_rougeL", "predict_rougeL",
            "train_loss", "worker_peak_rss_mb", "launcher_peak_rss_mb", "predictions_file_rougeL")
    out: dict[str, Any] = {}
    for kind, rows in runs.items():
        s = {k: median_of(rows, k) for k in keys if median_of(rows, k) is not None}
        if s.get("train_s"):
            s["tokens_per_s"] = tokens / s["train_s"]
        if kind == "tx":  # None when the launching process left no record (the target then fails)
            seen = [r["launcher_imported_torch"] for r in rows if "launcher_imported_torch" in r]
            s["launcher_imported_torch"] = any(seen) if seen else None
        out[kind] = s
    return out


def targets(summary: dict[str, Any], startup: dict[str, Any]) -> list[dict[str, Any]]:
    a, b, c = summary["plain_hf"], summary["tx"], summary["raw_loop"]
    wall = b["wall_s"] / a["wall_s"]
    drop = a["predict_rougeL"] - b["predict_rougeL"]
    tput = b["tokens_per_s"] / c["tokens_per_s"]
    help_s = startup["tx --help"]["median_s"]
    dry = startup["tx run --launcher slurm --dry-run"]
    dry_ratio = dry["median_s"] / startup["import TrainingArguments"]["median_s"]
    return [
        {"target": "tx end-to-end wall time <= 0.75 x plain HF script", "value": round(wall, 3),
         "limit": TARGETS["wall_ratio"], "pass": wall <= TARGETS["wall_ratio"]},
        {"target": "tx ROUGE-L (test) no worse than plain HF - 0.5", "value": round(-drop, 3),
         "limit": -TARGETS["rouge_drop"], "pass": drop <= TARGETS["rouge_drop"]},
        {"target": "tx training throughput >= 0.9 x raw loop (non-padding tokens/s)", "value": round(tput, 3),
         "limit": TARGETS["throughput_ratio"], "pass": tput >= TARGETS["throughput_ratio"]},
        {"target": "tx --help <= 0.3 s (median)", "value": round(help_s, 3), "limit": TARGETS["help_seconds"],
         "pass": help_s <= TARGETS["help_seconds"]},
        {"target": "slurm --dry-run <= 1.2 x bare import of TrainingArguments", "value": round(dry_ratio, 3),
         "limit": TARGETS["dry_run_over_import"],
         "pass": dry["exit_code"] == 0 and dry_ratio <= TARGETS["dry_run_over_import"]},
        {"target": "launching process of a local run does not import torch",
         "value": b.get("launcher_imported_torch"), "limit": False, "pass": b.get("launcher_imported_torch") is False},
    ]


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, st = result["summary"], result["startup"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    ax = axes[0]
    phases = (("start (to training)", "train_begin_s"), ("train", "train_s"), ("eval", "eval_s"),
              ("predict", "predict_s"))
    names = ["plain_hf", "tx"]
    bottoms = [0.0, 0.0]
    colors = ("#bbbbbb", "#4c72b0", "#55a868", "#c44e52")
    for (label, key), color in zip(phases, colors):
        values = [s[n].get(key) or 0.0 for n in names]
        ax.bar(names, values, bottom=bottoms, label=label, color=color)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    other = [max(0.0, s[n]["wall_s"] - b) for n, b in zip(names, bottoms)]
    ax.bar(names, other, bottom=bottoms, label="rest (saving, exit)", color="#dddddd")
    for i, n in enumerate(names):
        ax.text(i, s[n]["wall_s"], f"{s[n]['wall_s']:.1f}s\nROUGE-L {s[n].get('predict_rougeL', 0):.1f}",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("seconds (median)")
    ax.set_title(f"end to end: tx/plain = {s['tx']['wall_s'] / s['plain_hf']['wall_s']:.2f}")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_xlim(-0.6, 2.4)  # room for the legend
    ax.set_ylim(0, max(s[n]["wall_s"] for n in names) * 1.2)

    ax = axes[1]
    kinds = list(CONTENDERS)
    values = [s[k].get("tokens_per_s", 0.0) for k in kinds]
    ax.bar(kinds, values, color=("#999999", "#4c72b0", "#dd8452"))
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("non-padding tokens / s (training)")
    ax.set_title(f"training throughput: tx/raw = {s['tx'].get('tokens_per_s', 0) / s['raw_loop']['tokens_per_s']:.2f}")

    ax = axes[2]
    labels = list(st)
    values = [st[k]["median_s"] for k in labels]
    ax.barh(labels, values, color=["#4c72b0" if k.startswith("tx") else "#999999" for k in labels])
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}s", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (median)")
    ax.set_title("startup")
    ax.tick_params(axis="y", labelsize=8)
    meta = result["meta"]
    fig.suptitle(f"tx benchmark ({'quick' if meta['quick'] else 'full'}, {meta['repetitions']} rep., "
                 f"{meta['size']['train']} training rows, load avg {meta['load_average_start']}"
                 f"->{meta['load_average_end']}, {meta['started']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tx vs a plain HF Trainer script vs a raw PyTorch loop (issue 9)")
    parser.add_argument("--quick", action="store_true", help="smoke test: small data, one repetition")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of a/b/c (default 3, quick 1)")
    parser.add_argument("--startup-reps", type=int, default=None, help="repetitions of each startup command (default 5, quick 3)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where latest.json/latest.png go")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir, removed)")
    args = parser.parse_args(argv)

    size = workload.QUICK if args.quick else workload.FULL
    reps = args.reps or (1 if args.quick else 3)
    startup_reps = args.startup_reps or (3 if args.quick else 5)
    work = args.work or Path(tempfile.mkdtemp(prefix="txbench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    load_start = load_average()
    command = "python bench/run.py" + (" --quick" if args.quick else "") + (f" --reps {args.reps}" if args.reps else "")
    print(f"bench: {command}; scratch {work}; load average {load_start}", flush=True)
    try:
        env = base_env(work)
        data = workload.write_data(work / "data", size)
        model = workload.build_model(work / "model", data["train"])
        common = workload.hf_args(model, data, size)
        timeout = 600 if args.quick else 1800

        startup = run_startup(work, env, startup_reps)
        for name, row in startup.items():
            print(f"  {name:36s} {row['median_s']:6.2f} s (median of {len(row['runs_s'])})", flush=True)

        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in CONTENDERS}
        tx_order = "random"  # the training order of tx's runs (from its job file), for the raw loop
        for rep in range(reps):
            seed = workload.HPARAMS["seed"] + rep  # every contender of a repetition trains with the same seed
            order = CONTENDERS[rep % 3:] + CONTENDERS[: rep % 3]  # rep 1 runs tx before the raw loop
            for kind in order:
                if kind == "raw_loop":
                    row = run_raw(rep, work, model, data, size, env, timeout, seed, tx_order)
                else:
                    row = run_trainer(kind, rep, work, common, env, timeout, ("--seed", str(seed)))
                    if kind == "tx":
                        tx_order = "grouped" if row["train_sampling_strategy"] == "group_by_length" else "random"
                runs[kind].append(row)
                print(f"  rep {rep + 1}/{reps} {kind:9s} wall {row['wall_s']:6.1f} s, train {row['train_s']:6.1f} s"
                      + (f", ROUGE-L {row['predict_rougeL']:.2f}" if row.get("predict_rougeL") is not None else "")
                      + f" (load {row['load_average']})", flush=True)
        tokens = runs["raw_loop"][0]["tokens"]
        summary = summarize(runs, tokens)
        checks = targets(summary, startup)
        result = {
            "meta": {"command": command, "started": started, "quick": args.quick, "repetitions": reps,
                     "startup_repetitions": startup_reps, "size": size.__dict__, "hparams": workload.HPARAMS,
                     "common_args": common, "training_tokens": tokens, "cpus": os.cpu_count(),
                     "load_average_start": load_start, "load_average_end": load_average(),
                     "python": platform.python_version(), "versions": _versions()},
            "runs": runs,
            "summary": summary,
            "ratios": {"wall_tx_over_plain": summary["tx"]["wall_s"] / summary["plain_hf"]["wall_s"],
                       "throughput_tx_over_raw": summary["tx"]["tokens_per_s"] / summary["raw_loop"]["tokens_per_s"],
                       "throughput_plain_over_raw":
                           summary["plain_hf"]["tokens_per_s"] / summary["raw_loop"]["tokens_per_s"]},
            "startup": startup,
            "targets": checks,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        chart(result, args.out / "latest.png")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    s = result["summary"]
    print(f"\nplain_hf: {s['plain_hf']['wall_s']:.1f} s, ROUGE-L {s['plain_hf']['predict_rougeL']:.2f} | "
          f"tx: {s['tx']['wall_s']:.1f} s, ROUGE-L {s['tx']['predict_rougeL']:.2f} | "
          f"tokens/s plain {s['plain_hf']['tokens_per_s']:,.0f}, tx {s['tx']['tokens_per_s']:,.0f}, "
          f"raw {s['raw_loop']['tokens_per_s']:,.0f}")
    for check in checks:
        print(f"{'PASS' if check['pass'] else 'FAIL'}  {check['target']}: {check['value']} (limit {check['limit']})")
    print(f"results: {args.out / 'latest.json'}, {args.out / 'latest.png'}")
    return 0


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("tx-train", "torch", "transformers", "datasets", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


if __name__ == "__main__":
    sys.exit(main())
