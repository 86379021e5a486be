"""Registries that plugins fill through ``tx_register_tasks`` / ``tx_register_launchers``."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from tx.core.errors import ConfigError, PluginError

T = TypeVar("T")


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from, for `tx list` and error messages."""

    name: str
    distribution: str
    version: str
    module: str
    origin: str  # "entry point", "built-in" or "command line (-p)"

    def describe(self) -> str:
        return f"plugin {self.name!r} (distribution {self.distribution} {self.version})"


class Registry(Generic[T]):
    """Name -> object, remembering which plugin registered each name."""

    kind = "item"

    def __init__(self) -> None:
        self._items: dict[str, T] = {}
        self._owners: dict[str, PluginInfo] = {}
        self._current: PluginInfo | None = None

    def _set_current(self, plugin: PluginInfo | None) -> None:
        self._current = plugin

    def add(self, item: T) -> None:
        """Register ``item`` under ``item.name``; a duplicate name is a PluginError."""
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            who = self._current.describe() if self._current else "a plugin"
            raise PluginError(f"{who} registered a {self.kind} without a name ({item!r})")
        if name in self._items:
            first = self._owners.get(name)
            second = self._current
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by "
                f"{first.describe() if first else 'unknown plugin'} and by "
                f"{second.describe() if second else 'unknown plugin'}",
                hint="uninstall one of the two distributions or set TX_DISABLE_PLUGIN_AUTOLOAD=1",
            )
        self._items[name] = item
        if self._current is not None:
            self._owners[name] = self._current

    def get(self, name: str) -> T:
        """Return the item called ``name`` or raise a ConfigError with a did-you-mean."""
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(unknown_name_message(self.kind, name, self.names())) from None

    def owner(self, name: str) -> PluginInfo | None:
        return self._owners.get(name)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._items)


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """`unknown task 'sumarization' (did you mean 'summarization'?); known: ...`."""
    close = difflib.get_close_matches(name, known, n=1)
    text = f"unknown {kind} {name!r}"
    if close:
        text += f" (did you mean {close[0]!r}?)"
    text += f"; available: {', '.join(known) if known else 'none'}"
    return text


class TaskRegistry(Registry["Task"]):  # type: ignore[name-defined]
    kind = "task"


class LauncherRegistry(Registry["Launcher"]):  # type: ignore[name-defined]
    kind = "launcher"
