"""Build the plugin manager: built-ins and third-party plugins load through one path.

There is no global manager: the CLI (or the worker) calls :func:`load` once and passes the
result down.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Iterable

import pluggy

from tx.core import hookspecs
from tx.core.errors import PluginError
from tx.core.registry import LauncherRegistry, PluginInfo, TaskRegistry

ENTRY_POINT_GROUP = "tx"
BUILTIN_DISTRIBUTION = "tx-train"
AUTOLOAD_ENV = "TX_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "TX_PLUGINS"  # comma-separated modules, set for workers when -p was used


@dataclass
class Plugins:
    """The loaded plugins and what they registered; the typed front of the pluggy manager."""

    manager: pluggy.PluginManager
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    tasks: TaskRegistry = field(default_factory=TaskRegistry)
    launchers: LauncherRegistry = field(default_factory=LauncherRegistry)

    def trainer_callbacks(self, *, job: Any) -> list[Any]:
        out: list[Any] = []
        for result in self.manager.hook.tx_trainer_callbacks(job=job):
            if result:
                out.extend(result)
        return out

    def env_info(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for result in reversed(self.manager.hook.tx_env_info()):
            if result:
                out.update(result)
        return out


def _autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "?")
    return (dist.metadata["Name"] or "unknown", dist.version or "?")


def _check_unique(plugins: Plugins, info: PluginInfo) -> None:
    if info.name in plugins.infos:
        first = plugins.infos[info.name]
        raise PluginError(
            f"two plugins are named {info.name!r}: {first.describe()} and {info.describe()}",
            hint="uninstall one of them",
        )


def _register(plugins: Plugins, module: ModuleType, info: PluginInfo) -> None:
    _check_unique(plugins, info)
    try:
        plugins.manager.register(module, name=info.name)
    except ValueError as exc:  # the same module registered under two names
        raise PluginError(f"{info.describe()} cannot be registered: {exc}") from None
    plugins.infos[info.name] = info


def _import_plugin(module_name: str, describe: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # a broken plugin must be named, whatever it raised
        raise PluginError(
            f"{describe} failed to import: {type(exc).__name__}: {exc}",
            hint="fix or uninstall it, or set TX_DISABLE_PLUGIN_AUTOLOAD=1 to load built-ins only",
        ) from None


def load(extra_modules: Iterable[str] = ()) -> Plugins:
    """Load entry-point plugins (built-ins only under TX_DISABLE_PLUGIN_AUTOLOAD=1) and
    ``extra_modules`` (from ``-p``), then collect their tasks and launchers."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins(manager=manager)
    builtin_only = _autoload_disabled()

    for ep in _entry_points():
        dist_name, dist_version = _dist_of(ep)
        builtin = dist_name == BUILTIN_DISTRIBUTION
        if builtin_only and not builtin:
            continue
        info = PluginInfo(
            name=ep.name,
            distribution=dist_name,
            version=dist_version,
            module=ep.value,
            origin="built-in" if builtin else "entry point",
        )
        _check_unique(plugins, info)
        module = _import_plugin(ep.value.split(":")[0], info.describe())
        _register(plugins, module, info)

    env_extra = [m for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(",") if m.strip()]
    for module_name in [*env_extra, *extra_modules]:
        module_name = module_name.strip()
        if module_name in {i.module for i in plugins.infos.values()}:
            continue
        info = PluginInfo(
            name=module_name,
            distribution="(none)",
            version="-",
            module=module_name,
            origin="command line (-p)",
        )
        module = _import_plugin(module_name, f"plugin module {module_name!r} (given with -p)")
        _register(plugins, module, info)

    manager.check_pending()
    _collect(plugins, "tx_register_tasks", plugins.tasks)
    _collect(plugins, "tx_register_launchers", plugins.launchers)
    return plugins


def _collect(plugins: Plugins, hook_name: str, registry: TaskRegistry | LauncherRegistry) -> None:
    """Call one registry hook plugin by plugin so every name is attributed to its plugin."""
    caller = getattr(plugins.manager.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):  # registration order
        info = plugins.infos.get(impl.plugin_name) or PluginInfo(
            impl.plugin_name, "unknown", "?", impl.plugin_name, "unknown"
        )
        registry._set_current(info)
        try:
            impl.function(registry=registry)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"{info.describe()} failed in {hook_name}: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            registry._set_current(None)
