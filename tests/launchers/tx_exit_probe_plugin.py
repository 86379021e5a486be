"""Test-only tx plugin (``tx -p tx_exit_probe_plugin run ...``): each worker records, when Python
runs its exit handlers, whether its torch.distributed process group is still up, in
``TX_EXIT_PROBE_DIR/rank-<RANK>`` ("up" or "down"). A finished worker must have shut it down by
then: left to interpreter finalization, gloo's threads can abort a process whose work is done.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

from tx.core.hookspecs import hookimpl


def _record(path: Path) -> None:
    import torch.distributed as dist

    path.write_text("up" if dist.is_available() and dist.is_initialized() else "down")


@hookimpl
def tx_trainer_callbacks(job: Any) -> list[Any]:
    out = Path(os.environ["TX_EXIT_PROBE_DIR"]) / f"rank-{os.environ.get('RANK', '0')}"
    atexit.register(_record, out)
    return []
