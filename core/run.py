"""`tx run`: resolve one job spec, validate it, write it, plan, launch.

Everything before ``launch`` is fast and side-effect free apart from writing the job file, so
a typo fails in a second instead of after hours in a queue.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tx.core import argchecks, hfargs, jobspec, lifecycle, options as launcher_options, runlock
from tx.core.configfile import dump_config, launcher_values, load_config
from tx.core.deepspeed_config import check as check_deepspeed
from tx.core.defaults import check_report_to, core_defaults, with_core_values
from tx.core.errors import ConfigError
from tx.core.safety import check_remote_code
from tx.core.jobidentity import Identity
from tx.core.jobspec import JobSpec
from tx.core.launcher import Launcher, Plan, ProcessLauncher
from tx.core.modelcheck import check_hub_models
from tx.core.plugins import Plugins
from tx.core.task import RunArgs, Task

DEFAULT_LAUNCHER = "local"
# HF arguments holding local paths: made absolute so the job runs the same from anywhere.
PATH_ARGS = ("output_dir", "train_file", "validation_file", "test_file", "resume_from_checkpoint",
             "logging_dir", "cache_dir")
MAYBE_PATH_ARGS = ("model_name_or_path", "config_name", "tokenizer_name", "deepspeed")


@dataclass
class RunFlags:
    """tx's own flags of `tx run` (everything else belongs to the launcher or to HF)."""

    task: str | None = None
    launcher: str | None = None
    config: str | None = None
    from_job: str | None = None
    dry_run: bool = False
    print_config: bool = False
    help: bool = False
    help_all: bool = False
    rest: list[str] = field(default_factory=list)


_VALUE_FLAGS = {"--launcher": "launcher", "--config": "config", "--from": "from_job"}


def split_tx_flags(argv: list[str]) -> RunFlags:
    """Pure: pick tx's flags and the task name out of the raw `tx run` arguments."""
    flags = RunFlags()
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, inline = arg.partition("=")
        if key in _VALUE_FLAGS:
            if eq:
                value = inline
                i += 1
            elif i + 1 < len(argv):
                value = argv[i + 1]
                i += 2
            else:
                raise ConfigError(f"{key} needs a value")
            setattr(flags, _VALUE_FLAGS[key], value)
            continue
        if arg == "--dry-run":
            flags.dry_run = True
        elif arg == "--print-config":
            flags.print_config = True
        elif arg in ("--help", "-h"):
            flags.help = True
        elif arg == "--help-all":
            flags.help = flags.help_all = True
        elif flags.task is None and not arg.startswith("-") and not flags.rest:
            flags.task = arg
        else:
            flags.rest.append(arg)
        i += 1
    # HF scripts accept one .json file as their only argument: treat it as --config
    if flags.config is None and len(flags.rest) == 1 and flags.rest[0].endswith((".json", ".yaml", ".yml")) \
            and not flags.rest[0].startswith("-"):
        flags.config = flags.rest.pop()
    return flags


def given_keys(argv: list[str]) -> set[str]:
    """Names of the HF flags present on a command line (`--x`, `--x=1`, `--no_x`)."""
    keys = set()
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name = arg[2:].split("=", 1)[0]
            keys.add(name)
            if name.startswith("no_"):
                keys.add(name[3:])
    return keys


def absolutize(values: dict[str, Any], cwd: Path, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Pure: local paths in the HF arguments made absolute against ``cwd`` (except the ``skip``
    keys: values from a config file, already resolved against the file's folder)."""
    out = dict(values)
    for key in PATH_ARGS:
        if key not in skip and isinstance(out.get(key), str) and out[key]:
            out[key] = str((cwd / Path(out[key]).expanduser()).resolve())
    for key in MAYBE_PATH_ARGS:
        if key in skip:
            continue
        value = out.get(key)
        if isinstance(value, str) and value and not value.startswith("tx-builtin:"):
            candidate = cwd / Path(value).expanduser()
            if value.startswith((".", "/", "~")) or candidate.exists():
                out[key] = str(candidate.resolve())
    return out


@dataclass
class Resolved:
    job: JobSpec
    task: Task
    launcher: Launcher
    options: Any
    run_args: RunArgs
    secrets: dict[str, str]
    #: what the launcher changed in the HF arguments (Launcher.adjust_args), printed by `tx run`
    notes: tuple[str, ...] = ()
    #: names of the HF arguments the user set (command line, config file or rerun job)
    given: frozenset[str] = frozenset()


def resolve(plugins: Plugins, flags: RunFlags, cwd: Path | None = None) -> Resolved:
    """Task defaults < --config file (or --from job) < command line, validated."""
    cwd = cwd or Path.cwd()
    config: dict[str, Any] = {}
    saved_options: dict[str, Any] = {}
    task_name = flags.task
    launcher_name = flags.launcher
    extra_plugins: tuple[str, ...] = ()
    if flags.from_job:
        prior = jobspec.read(flags.from_job)
        if task_name and task_name != prior.task:
            raise ConfigError(f"--from {flags.from_job} is a {prior.task!r} job, not {task_name!r}")
        task_name = prior.task
        launcher_name = launcher_name or prior.launcher
        if launcher_name == prior.launcher:
            saved_options = dict(prior.launcher_options)
        config = dict(prior.args)
        extra_plugins = prior.plugins
    elif flags.config:
        config_path = Path(cwd, flags.config)
        config = load_config(config_path)
        config_dir = config_path.resolve().parent
        task_name = task_name or _config_name(config.pop("task", None), "task", flags.config)
        config.pop("task", None)
        launcher_name = launcher_name or _config_name(config.pop("launcher", None), "launcher", flags.config)
        config.pop("launcher", None)
        nested_options = config.pop("launcher_options", None)
        config.pop("plugins", None)
    if not task_name:
        raise ConfigError("no task given", hint=f"usage: tx run TASK [flags]; tasks: {', '.join(plugins.tasks.names())}")

    task = plugins.tasks.get(task_name)
    launcher = plugins.launchers.get(launcher_name or DEFAULT_LAUNCHER)
    option_values, hf_argv = launcher_options.split_options(launcher.options, flags.rest)
    check_launcher_flags(hf_argv, launcher, list(plugins.launchers))
    cli_given = given_keys(hf_argv)
    if flags.config and not flags.from_job:
        # launcher options at the top level or under launcher_options:, read by the launcher's parser;
        # paths relative to the config file's folder (flags on the command line: the current folder)
        config, saved_options = launcher_values(
            config, nested_options, launcher.options, hfargs.field_names(task),
            {other.name: other.options for other in plugins.launchers}, launcher.name)
        config = absolutize(config, config_dir)
    opts = launcher_options.build_options(launcher.options, {**saved_options, **option_values})
    opts, layout_notes = launcher.complete_options(opts, set(launcher_options.canonical(
        launcher.options, {**saved_options, **option_values})))
    from_config = set(config) - cli_given  # already absolute (config folder or the saved job)

    if flags.from_job:
        base = config
    else:
        base = {**core_defaults(), **task.default_args(cli_given | set(config)), **config}
    filled: list[str] = []  # notes on required values tx filled in (argchecks.fill_output_dir)
    with light_training_arguments():  # TrainingArguments are built here
        parsed = hfargs.parse(task, hf_argv, base=base,
                              transform=lambda values: absolutize(argchecks.fill_output_dir(values, filled), cwd,
                                                                  skip=from_config))
        secrets = dict(parsed.secrets)
        adjusted, notes = launcher.adjust_args(dict(parsed.values), opts, known=hfargs.field_names(task),
                                               given=given_keys(hf_argv) | set(config))
        if adjusted != parsed.values:  # parsed again, as the worker will parse the job
            parsed = hfargs.parse(task, [], base=adjusted)
    argchecks.check(parsed.run_args)  # numeric ranges: refused here, not by torch after loading
    validate_common(parsed.run_args)
    task.validate(parsed.run_args)

    job = JobSpec(
        task=task.name,
        launcher=launcher.name,
        args=jobspec.scrub(with_core_values(parsed.values)),
        launcher_options=launcher_options.to_dict(opts),
        plugins=tuple(extra_plugins) + tuple(plugins_from_env()),
        job_id=jobspec.new_job_id(task.name),
        created=_now(),
    )
    launcher.validate(job, opts)
    if not flags.dry_run and isinstance(launcher, ProcessLauncher):
        # the job runs on this machine: a Hub id must be cached or the Hub reachable (one quick request)
        check_hub_models(parsed.run_args.model)
    # a user DeepSpeed config must agree with the Trainer arguments (any launcher)
    check_deepspeed(parsed.run_args.training, launcher.world_size(opts))
    return Resolved(job=job, task=task, launcher=launcher, options=opts, run_args=parsed.run_args, secrets=secrets,
                    notes=tuple(filled) + tuple(layout_notes) + tuple(notes), given=frozenset(cli_given | set(config)))


def _config_name(value: Any, key: str, path: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key!r} in config file {path!r} must be a name, not {type(value).__name__}",
                          hint=f"write e.g. `{key}: {'summarization' if key == 'task' else 'torchrun'}`")
    return value


def print_config(resolved: Resolved) -> str:
    """The resolved flags as a config file that reruns the same job (`tx run --config FILE`):
    task, launcher, the launcher options that differ from their defaults, and the HF arguments
    the user set or whose value differs from the defaults tx derives (task and core defaults,
    which a rerun derives again). Paths are absolute, so the file works wherever it is saved;
    secrets are never part of it."""
    task, job = resolved.task, resolved.job
    derived = {**core_defaults(), **task.default_args(set(resolved.given))}
    args = {key: value for key, value in job.args.items()
            if key in resolved.given or key not in derived or derived[key] != value}
    return dump_config(job.task, job.launcher, job.launcher_options, args, hfargs.field_names(task))


@contextmanager
def light_training_arguments() -> Iterator[None]:
    """Build TrainingArguments without importing the model stack.

    ``TrainingArguments.__post_init__`` (transformers 5) asks ``transformers.integrations`` whether
    it runs in a Kubeflow TrainJob. That name lives in ``integration_utils``, whose import pulls
    in ``PreTrainedModel`` and with it torch._dynamo, torch.distributed, scipy and sympy: about
    as long again as importing TrainingArguments itself, for an answer that is two environment
    variables. While arguments are validated the lazy module gets the same answer from here;
    afterwards the name is removed again, so the real one loads on first use (the worker).
    """
    import sys

    module = sys.modules.get("transformers.integrations")
    if module is None:
        try:
            import transformers.integrations as module  # a lazy module: cheap until a name is used
        except ImportError:
            yield
            return
    if "is_kubeflow_available" in vars(module):  # already loaded for real: nothing to save
        yield
        return
    module.is_kubeflow_available = _is_kubeflow_available  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if vars(module).get("is_kubeflow_available") is _is_kubeflow_available:
            delattr(module, "is_kubeflow_available")


def _is_kubeflow_available() -> bool:
    """transformers.integrations.integration_utils.is_kubeflow_available, without its imports."""
    if os.getenv("DISABLE_KUBEFLOW_INTEGRATION", "FALSE").upper() == "TRUE":
        return False
    return os.getenv("KUBEFLOW_TRAINER_SERVER_URL") is not None


def check_launcher_flags(argv: list[str], launcher: Launcher, launchers: list[Launcher]) -> None:
    """Pure: a kebab-case flag still in ``argv`` after the launcher took its own is a launcher flag
    that is misspelt or belongs to another launcher (HF flags are snake_case): say which."""
    import difflib

    own = list(launcher_options.flags_of(launcher.options))
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if not flag.startswith("--"):
            continue
        # one-word flags too: --include would otherwise reach HF as a prefix of --include_for_metrics
        owners = [other.name for other in launchers
                  if other.name != launcher.name and flag in launcher_options.flags_of(other.options)]
        if owners:
            raise ConfigError(f"{flag} is an option of launcher {', '.join(owners)}, not of {launcher.name!r}",
                              hint=f"add --launcher {'torchrun' if 'torchrun' in owners else owners[0]}, or drop {flag}")
        if "-" not in flag[2:].lstrip("-"):
            continue
        close = difflib.get_close_matches(flag, own, n=1, cutoff=0.6)
        raise ConfigError(f"unknown flag {flag} for launcher {launcher.name!r}" + (f" (did you mean {close[0]}?)" if close else ""),
                          hint=f"`tx run TASK --launcher {launcher.name} --help` lists its options")


def plugins_from_env() -> list[str]:
    from tx.core.plugins import EXTRA_PLUGINS_ENV

    return [m.strip() for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(",") if m.strip()]


def _now() -> str:
    import datetime as dt

    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def validate_common(args: RunArgs) -> None:
    """Checks every task needs: something to do, output dir rules, writable, some disk space."""
    training = args.training
    if not (training.do_train or training.do_eval or training.do_predict):
        raise ConfigError("nothing to do", hint="pass --do_train, --do_eval and/or --do_predict")
    if getattr(training, "fp16", False) and getattr(training, "bf16", False):
        raise ConfigError("--fp16 and --bf16 cannot be used together", hint="pick one")
    check_report_to(getattr(training, "report_to", None))
    output_dir = Path(training.output_dir)
    runlock.check_free(output_dir)  # one job at a time: before any rule about what the dir holds
    # finished already (tx: done:, exit 0), a checkpoint of another job, the HF output-dir rules
    lifecycle.decide(output_dir, Identity.of(args), do_train=training.do_train,
                     overwrite=args.tx.overwrite_output_dir, resume_from_checkpoint=training.resume_from_checkpoint)
    check_writable(output_dir)
    check_remote_code(args.model)


def check_writable(output_dir: Path, min_free_mb: int = 50) -> None:
    existing = output_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot create output_dir {str(output_dir)!r}: {str(existing)!r} is a file",
                          hint="choose another --output_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir {str(output_dir)!r} is not writable", hint="choose another --output_dir or fix permissions")
    free_mb = shutil.disk_usage(existing).free // (1024 * 1024)
    if free_mb < min_free_mb:
        raise ConfigError(
            f"only {free_mb} MB free where output_dir {str(output_dir)!r} lives",
            hint="free some space or choose another --output_dir",
        )


def plan(resolved: Resolved) -> Plan:
    return resolved.launcher.plan(resolved.job, resolved.options, resolved.job.job_file)


def write_job(resolved: Resolved) -> dict[str, str]:
    """Write the job file; return what the workers' environment needs on top of tx's (secrets
    travel this way, never through a file)."""
    jobspec.write(resolved.job)
    token = resolved.secrets.get("token") or resolved.secrets.get("hub_token")
    return {"HF_TOKEN": token} if token else {}


def launch(resolved: Resolved, the_plan: Plan) -> int:
    """Write the job file, hand secrets to the children's environment, run the plan. A process
    launcher's run holds the output dir's lock meanwhile (runlock.py); a scheduler's job is
    locked by its worker, since this process returns once it is queued."""
    from contextlib import nullcontext

    from tx.core import runlock
    from tx.core.launcher import ProcessLauncher

    job = resolved.job
    lock = runlock.held(job.output_dir, job.job_id) if isinstance(resolved.launcher, ProcessLauncher) else nullcontext()
    with lock:
        os.environ.update(write_job(resolved))  # inherited by the workers, never written anywhere
        return resolved.launcher.launch(the_plan)


def staged_launcher(plugins: Plugins, flags: RunFlags) -> Launcher | None:
    """The launcher of this run when it is a process launcher (tx.core.stage then resolves and
    validates in a child, so this process never imports torch), found the way ``resolve`` finds
    it but without parsing HF arguments. None for schedulers and other launchers, and when
    only ``resolve`` can tell (it then reports what is wrong)."""
    from tx.core.errors import TxError
    from tx.core.launcher import ProcessLauncher

    if flags.help or not (flags.task or flags.from_job or flags.config):
        return None
    try:
        name = flags.launcher
        if not name and flags.from_job:
            name = jobspec.read(flags.from_job).launcher
        elif not name and flags.config:
            name = load_config(flags.config).get("launcher")
        if name is not None and not isinstance(name, str):
            return None
        launcher = plugins.launchers.get(name or DEFAULT_LAUNCHER)
    except TxError:
        return None
    # a flag of another launcher (or a misspelt one) is refused here, in the light `tx` process,
    # before a child imports torch to resolve the job
    check_launcher_flags(launcher_options.split_options(launcher.options, flags.rest)[1], launcher,
                         list(plugins.launchers))
    if flags.dry_run or flags.print_config:
        return None
    return launcher if isinstance(launcher, ProcessLauncher) else None
