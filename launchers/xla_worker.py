"""`python -m tx.launchers.xla_worker <job file>`: what `--launcher xla` runs.

It calls ``torch_xla.launch(run_device, args=(job_file,))``; ``run_device`` runs the normal worker
path (tx.core.worker) on its device. Imported only by the worker, never by `tx` itself.

Everything the worker imports lazily is imported here first, at module import. With several
devices torch_xla runs ``run_device`` in one thread per device, and transformers' lazy module is
not thread-safe: two threads resolving ``from transformers import Trainer`` at the same moment can
make one of them fail with ImportError (docs/xla-notes.md). The spawned process imports this
module in its main thread (to unpickle ``run_device``), before the device threads start.
"""

from __future__ import annotations

import sys
import traceback

_IMPORT_ERROR: BaseException | None = None



def say(line: str) -> None:
    """One line to stderr in a single write: device threads print at once, and print() writes
    the text and its newline separately, so their lines would run into each other."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()

def _preload() -> None:
    import datasets  # noqa: F401
    import evaluate  # noqa: F401
    import torch  # noqa: F401
    import torch_xla  # noqa: F401
    import torch_xla.runtime  # noqa: F401
    import transformers.trainer  # noqa: F401
    from transformers import (  # noqa: F401  (resolved once, here)
        AutoConfig,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        DataCollatorWithPadding,
        HfArgumentParser,
        PreTrainedTokenizerFast,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from tx.core import plugins, trainer, worker  # noqa: F401

    plugins.load()  # task plugins (third-party ones too) import their modules here


from tx.core.process import watch_parent  # noqa: E402

watch_parent()  # before the long imports: this process dies with the `tx` that launched it

try:
    _preload()
except ImportError as exc:  # reported by main() as one line
    _IMPORT_ERROR = exc


class WorkerExit(Exception):
    """A device's worker ended with a non-zero exit code (picklable: it crosses processes)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def run_device(index: int, job_file: str, num_cores: int | None) -> None:
    """One device's worker; raises WorkerExit when it fails (its message is already printed)."""
    from tx.core import worker
    from tx.core.errors import TxError
    from tx.launchers.xla import check_devices

    try:
        import torch_xla
        import torch_xla.debug.metrics as met
        import torch_xla.runtime as xr

        check_devices(num_cores, xr.world_size())
        first = xr.global_ordinal() == 0
        if first:
            print(f"tx: xla: training on {torch_xla.device()}, {xr.world_size()} device(s) of type "
                  f"{xr.device_type()}", flush=True)
        code = worker.main([job_file])
        if first and not code:
            compiles = met.metric_data("CompileTime")
            count, total_ns = (compiles[0], compiles[1]) if compiles else (0, 0)
            print(f"tx: xla: {count} XLA graph compilations took {total_ns / 1e9:.1f}s", flush=True)
    except TxError as exc:
        say(f"tx: error: {exc.one_line()}")
        code = exc.exit_code
    except BaseException:
        # in a device thread an exception only surfaces when every thread is done: show it now
        say(f"tx: worker on XLA device {index} failed:\n{traceback.format_exc()}")
        raise
    sys.stdout.flush()
    if code:
        raise WorkerExit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m tx.launchers.xla_worker <tx-job.yaml>", file=sys.stderr)
        return 2
    if _IMPORT_ERROR is not None:
        print(f"tx: error: the xla worker cannot import {getattr(_IMPORT_ERROR, 'name', None) or _IMPORT_ERROR}. "
              f"Install torch_xla (matching torch) and tx for {sys.executable}.", file=sys.stderr, flush=True)
        return 3
    import torch_xla

    from tx.core import jobspec, options
    from tx.core.errors import TxError
    from tx.launchers.xla import XlaOptions, single_process

    try:
        opts = options.build_options(XlaOptions, dict(jobspec.read(argv[0]).launcher_options))
    except TxError as exc:
        print(f"tx: error: {exc.one_line()}", file=sys.stderr, flush=True)
        return exc.exit_code
    expected = None if single_process(opts) else opts.nproc_per_node
    try:
        # run_device is this module's function under its importable name, so the spawned process
        # (start method spawn) imports this module, and with it _preload, in its main thread.
        torch_xla.launch(run_device, args=(argv[0], expected), debug_single_process=single_process(opts))
    except WorkerExit as exc:
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the device process died (XLA abort, out of memory...)
        print(f"tx: error: the XLA worker process failed ({type(exc).__name__}: {exc}). See the messages above.",
              file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    from tx.launchers import xla_worker  # this module under its importable name (see main)

    sys.exit(xla_worker.main())
