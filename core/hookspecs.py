"""The hooks a tx plugin can implement.

Every hook is named ``tx_<verb>_<noun>`` and takes keyword arguments only. Plugins mark their
implementations with :data:`hookimpl`::

    from tx.core.hookspecs import hookimpl

    @hookimpl
    def tx_register_tasks(registry):
        registry.add(MyTask())

Loading a plugin module must stay cheap: import torch, transformers or datasets inside the
methods that need them, never at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

import pluggy

if TYPE_CHECKING:
    from tx.core.jobspec import JobSpec
    from tx.core.registry import LauncherRegistry, TaskRegistry

PROJECT = "tx"

hookspec = pluggy.HookspecMarker(PROJECT)

_F = TypeVar("_F", bound=Callable[..., Any])


def hookimpl(function: _F | None = None, **kwargs: Any) -> Any:
    """Mark a function as an implementation of a tx hook (typed wrapper of pluggy's marker)."""
    marker = pluggy.HookimplMarker(PROJECT)
    if function is None:
        return marker(**kwargs)
    return marker(function, **kwargs)


@hookspec
def tx_register_tasks(registry: TaskRegistry) -> None:
    """Add task plugins to tx.

    :param registry: the task registry; call ``registry.add(task)`` with an instance of a
        :class:`tx.core.task.Task` subclass for each task the plugin provides. A name that is
        already registered is an error naming both plugins.

    The return value is ignored.
    """


@hookspec
def tx_register_launchers(registry: LauncherRegistry) -> None:
    """Add launcher plugins to tx.

    :param registry: the launcher registry; call ``registry.add(launcher)`` with an instance of
        a :class:`tx.core.launcher.Launcher` subclass for each launcher the plugin provides.

    The return value is ignored.
    """


@hookspec
def tx_trainer_callbacks(job: JobSpec) -> list[Any] | None:
    """Add ``transformers.TrainerCallback`` objects to the Trainer of a run.

    Called in every worker process, after the model and data are ready and before the Trainer
    is built.

    :param job: the validated job spec of the run (task name, launcher, HF arguments).

    Return a list of callbacks (instances or classes), or ``None`` for none. The lists of all
    plugins are concatenated.
    """


@hookspec
def tx_env_info() -> dict[str, str] | None:
    """Add lines to ``tx env`` (the block users paste into bug reports).

    Return a mapping of label to value (for example a plugin's own dependency versions), or
    ``None``. Keep it cheap: ``tx env`` calls every plugin.
    """
