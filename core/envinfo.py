"""`tx env`: versions, devices and which launchers can run here (like `accelerate env`).

Versions come from package metadata (no import); only the PyTorch lines import torch, since
only torch can say what it sees (CUDA, MPS, threads). `tx list` and `tx --help` never get here."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

#: seconds the Hub probe and each launcher's engine probe may take
HUB_TIMEOUT = 2.0
LAUNCHER_TIMEOUT = 3.0
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")

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
        "tx location": str(Path(__file__).resolve().parent.parent),
        "Platform": platform.platform(),
        "Python version": sys.version.split()[0],
        "Python executable": sys.executable,
    }
    for name in PACKAGES:
        info[f"{name} version"] = _version(name)
    info["CPU cores"] = str(os.cpu_count())
    info["System RAM"] = _ram()
    info["Accelerators"] = _devices()
    # the probes (Hub, each launcher's engine) wait on the network or a daemon: they run in
    # parallel with each other and with the torch import, each bounded by its own timeout
    probes: dict[str, Callable[[], str]] = {"Hub access": hub_access}
    for launcher in plugins.launchers:
        probes[f"launcher {launcher.name}"] = partial(launcher_state, launcher)
    running = start(probes)
    info.update(torch_info())
    info.update(settings_info())
    info.update(finish(running, deadline=max(HUB_TIMEOUT, LAUNCHER_TIMEOUT) + 2))
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


def _ram() -> str:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return "unknown"
    return f"{pages * size / 1024 ** 3:.1f} GiB"


def torch_info() -> dict[str, str]:
    """What torch itself sees: this imports torch (a second or two), which only `tx env` does."""
    try:
        import torch
    except Exception as exc:  # not installed, or a broken install: say so, do not fail
        return {"PyTorch": f"cannot import torch ({type(exc).__name__}: {exc})"}
    mps = getattr(getattr(torch.backends, "mps", None), "is_available", lambda: False)()
    cuda = torch.cuda.is_available()
    out = {
        "PyTorch CUDA available": f"{cuda}" + (
            f" ({torch.cuda.device_count()} device(s), CUDA {torch.version.cuda})" if cuda
            else " (CPU-only build)" if torch.version.cuda is None else f" (built for CUDA {torch.version.cuda})"),
        "PyTorch MPS available": str(bool(mps)),
        "PyTorch threads": f"{torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
    }
    return out


def settings_info() -> dict[str, str]:
    """tx's defaults and where it keeps things (config and cache paths)."""
    from tx.core.defaults import default_report_to
    from tx.core.paths import cache_home, jobs_dir
    from tx.core.plugins import AUTOLOAD_ENV

    report_to = default_report_to()
    why = "tensorboard is installed" if report_to == "tensorboard" else "tensorboard is not installed"
    hf_home = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface")
    accelerate_config = Path(os.environ.get("HF_HOME") or hf_home) / "accelerate" / "default_config.yaml"
    autoload_off = os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")
    return {
        "Default report_to": f"{report_to} ({why}; override with --report_to)",
        "tx cache": f"{cache_home()}" + (" (TX_CACHE_HOME)" if os.environ.get("TX_CACHE_HOME") else ""),
        "tx job records": str(jobs_dir()),
        "HF home": hf_home + (" (HF_HOME)" if os.environ.get("HF_HOME") else ""),
        "accelerate config": str(accelerate_config) if accelerate_config.is_file() else "none",
        "Hub access": "",  # measured by hub_access(), in parallel; keeps its place in the block
        "Plugin autoload": f"off ({AUTOLOAD_ENV} is set)" if autoload_off else "on",
    }


def launcher_state(launcher: Any, timeout: float = LAUNCHER_TIMEOUT) -> str:
    """`usable` only when the launcher's engine answers (Launcher.check_usable), else why not."""
    reason = launcher.check_usable(timeout=timeout)
    return "usable" if reason is None else f"not usable: {reason}"


def hub_access(timeout: float = HUB_TIMEOUT) -> str:
    """Whether the Hugging Face Hub answers from here, measured, not inferred: "offline (VAR=1)"
    when an offline variable is set (nothing will try the Hub), else a HEAD request to the
    endpoint (HF_ENDPOINT or huggingface.co) that gives up after ``timeout`` seconds."""
    offline = [f"{k}={os.environ[k]}" for k in OFFLINE_VARIABLES
               if os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")]
    if offline:
        return "offline (" + ", ".join(offline) + ")"
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    return probe_url(endpoint, timeout)


def probe_url(url: str, timeout: float) -> str:
    """"online (...)" when ``url`` answers HTTP (any status but a proxy's or server's error),
    else "unreachable (reason)"."""
    import socket
    import urllib.error
    import urllib.request

    start_time = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # an HTTP answer: the server is there
        status = exc.code
    except (TimeoutError, socket.timeout):
        return f"unreachable (no answer from {url} within {timeout:g} s)"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"unreachable (no answer from {url} within {timeout:g} s)"
        text = getattr(reason, "strerror", None) or str(reason)
        return f"unreachable ({url}: {text})"
    except (OSError, ValueError) as exc:
        return f"unreachable ({url}: {exc})"
    took = time.monotonic() - start_time
    if status >= 500 or status == 407:
        return f"unreachable ({url} answered HTTP {status})"
    return f"online ({url} answered HTTP {status} in {took:.1f} s)"


def start(probes: dict[str, Callable[[], str]]) -> tuple[dict[str, str], list[tuple[str, threading.Thread]]]:
    """Run each probe in a daemon thread (one stuck in DNS cannot keep `tx env` from exiting)."""
    results: dict[str, str] = {}

    def target(key: str, probe: Callable[[], str]) -> None:
        try:
            results[key] = probe()
        except Exception as exc:  # a plugin's probe failing is a line of the report, not a crash
            results[key] = f"unknown ({type(exc).__name__}: {exc})"

    threads = [(key, threading.Thread(target=target, args=(key, probe), daemon=True)) for key, probe in probes.items()]
    for _, thread in threads:
        thread.start()
    return results, threads


def finish(running: tuple[dict[str, str], list[tuple[str, threading.Thread]]], deadline: float) -> dict[str, str]:
    """The probes' answers, waiting at most ``deadline`` seconds in all; "unknown" for the rest."""
    results, threads = running
    end = time.monotonic() + deadline
    for _, thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return {key: results.get(key, f"unknown (no answer within {deadline:g} s)") for key, _ in threads}


def render(info: dict[str, str]) -> str:
    lines = ["Copy-and-paste the text below in your GitHub issue", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines)
