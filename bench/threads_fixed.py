"""What fixing the thread count per job costs: the raw loop (bench/raw_loop.py) on the quick
workload, the count chosen once at the start (tx now) vs looked at again every 10 s (tx before),
on the machine as it is and with two busy loops arriving a few seconds into training.

    python bench/threads_fixed.py [--reps N] [--load-after SECONDS] [--epochs E] [--only WORD ...]

Runs interleaved, prints one line per run and the medians, writes bench/results/threads_fixed.json.
The machine's load average is recorded with every run: the figures mean little without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--load-after", type=float, default=3.0)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--only", nargs="*", default=None, help="run only variants whose name holds one of these words")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "threads_fixed.json")
    args = parser.parse_args(argv)

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TX_TUNE_THREADS")}
    variants = {
        "once, no extra load": [],
        "every 10 s, no extra load": ["--retune", "10"],
        "once, load arrives": ["--load-after", str(args.load_after)],
        "every 10 s, load arrives": ["--retune", "10", "--load-after", str(args.load_after)],
        # the two counts a job started on an idle machine (2 of 2 cores) keeps, or would move to
        "2 threads kept, load arrives": ["--threads", "2", "--load-after", str(args.load_after)],
        "1 thread, load arrives": ["--threads", "1", "--load-after", str(args.load_after)],
    }
    if args.only:
        variants = {name: flags for name, flags in variants.items() if any(word in name for word in args.only)}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tx-bench-threads-") as tmp:
        work = Path(tmp)
        data = workload.write_data(work / "data", workload.QUICK)
        model = workload.build_model(work / "model", data["train"])
        for rep in range(args.reps):
            names = list(variants)
            names = names[rep % len(names):] + names[:rep % len(names)]
            for name in names:
                out = work / "r.json"
                cmd = [sys.executable, str(HERE / "raw_loop.py"), "--model", str(model), "--train_file",
                       str(data["train"]), "--epochs", str(args.epochs), "--out", str(out), *variants[name]]
                load = os.getloadavg()[0]
                subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=1800)
                row = json.loads(out.read_text())
                row.update({"variant": name, "rep": rep, "load_average_before": round(load, 2)})
                rows.append(row)
                print(f"{name:30s} {row['seconds']:7.1f} s  threads at end {row['threads']}  "
                      f"looks {row['thread_looks']}  load {load:.1f}", flush=True)
    medians = {name: statistics.median(r["seconds"] for r in rows if r["variant"] == name) for name in variants}
    for name, value in medians.items():
        print(f"median {name:28s} {value:7.1f} s")
    args.out.write_text(json.dumps({"command": "python bench/threads_fixed.py " + " ".join(argv or sys.argv[1:]),
                                    "date": time.strftime("%Y-%m-%d %H:%M"), "cores": len(os.sched_getaffinity(0)),
                                    "medians_s": medians, "runs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
