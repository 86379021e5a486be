"""`tx env`: versions, devices and which launchers can run here (like `accelerate env`)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

PACKAGES = ("torch", "transformers", "datasets", "accelerate", "deepspeed", "evaluate", "tokenizers",
            "torch_xla", "docker", "tensorboard", "pluggy", "typer")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def collect(plugins: Any) -> dict[str, str]:
    from tx.core import __version__

    info: dict[str, str] = {
        "tx version": __version__,
        "Platform": platform.platform(),
        "Python version": sys.version.split()[0],
    }
    for name in PACKAGES:
        info[f"{name} version"] = _version(name)
    info["CPU cores"] = str(os.cpu_count())
    info["Accelerators"] = _devices()
    for launcher in plugins.launchers:
        reason = launcher.unavailable_reason()
        info[f"launcher {launcher.name}"] = "usable" if reason is None else f"not usable: {reason}"
    info["Plugins"] = ", ".join(f"{i.name} ({i.distribution} {i.version})" for i in plugins.infos.values())
    info.update(plugins.env_info())
    return info


def _devices() -> str:
    """Cheap device probe without importing torch (nvidia-smi / /dev nodes)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5).stdout
            gpus = [line for line in out.splitlines() if line.startswith("GPU")]
            if gpus:
                return f"{len(gpus)} CUDA GPU(s): " + "; ".join(g.split(" (")[0] for g in gpus)
        except (OSError, subprocess.SubprocessError):
            pass
    if os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio"):
        return "TPU device nodes present"
    return "none (CPU only)"


def render(info: dict[str, str]) -> str:
    lines = ["Copy-and-paste the text below in your GitHub issue", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines)
