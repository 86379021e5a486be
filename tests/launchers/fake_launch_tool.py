"""A stand-in for a launch tool (torchrun, deepspeed), for tests of tx.core.process.run_group.

    python fake_launch_tool.py TOOL_MODE WORKER_MODE DIR

Starts two workers in sessions of their own (as torchrun does), each writing ``DIR/worker-<pid>``
with one line per signal it receives. TOOL_MODE: ``forward`` passes SIGINT/SIGTERM on to the
workers and waits for them (torchrun's behaviour); ``die`` exits at once and leaves the workers
behind; ``exit:N`` exits with N once the workers are up. WORKER_MODE: ``obedient`` exits 130 on
SIGINT/SIGTERM, ``stubborn`` ignores them. Both log SIGUSR1 and go on. The tool and the workers
watch `tx` as tx.core.launchtool and tx.core.worker do (tx.core.process.watch_parent).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

WORKER = r"""
import os, signal, sys, time
from tx.core.process import watch_parent
watch_parent()  # as tx.core.worker does
log = os.path.join(sys.argv[2], f"worker-{os.getpid()}")
def note(signum, _frame):
    with open(log, "a") as fh:
        fh.write(f"{signum}\n")
    if sys.argv[1] == "obedient" and signum != signal.SIGUSR1:
        sys.exit(130)
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
    signal.signal(sig, note)
open(log, "a").close()
while True:
    time.sleep(0.05)
"""


def main() -> int:
    tool_mode, worker_mode, out = sys.argv[1:4]
    from tx.core.process import watch_parent

    watch_parent()  # as tx.core.launchtool does
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, worker_mode, out], start_new_session=True)
               for _ in range(2)]
    while len([n for n in os.listdir(out) if n.startswith("worker-")]) < 2:
        time.sleep(0.05)
    open(os.path.join(out, "ready"), "w").close()
    if tool_mode.startswith("exit:"):
        return int(tool_mode.split(":")[1])
    stop: list[int] = []
    if tool_mode == "forward":
        def forward(signum: int, _frame: object) -> None:
            stop.append(signum)
            for w in workers:
                os.killpg(w.pid, signum)
        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
    else:  # die: the default action of SIGTERM, and SIGINT ends the tool too
        signal.signal(signal.SIGINT, lambda *_: os._exit(1))
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    while any(w.poll() is None for w in workers):
        time.sleep(0.05)
    return 1 if stop else 0


if __name__ == "__main__":
    sys.exit(main())
