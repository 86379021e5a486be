"""Errors a user can act on.

Only the CLI turns these into a message and an exit code; everything below it raises.
Each message should say what is wrong and what to do, in one line.
"""

from __future__ import annotations


class TxError(Exception):
    """A problem the user can fix; shown as one line, never as a traceback."""

    exit_code = 2
    #: the word after ``tx:`` in the one line the CLI prints
    label = "error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message.rstrip(".")
        if self.hint:
            text += f". {self.hint.rstrip('.')}."
        elif not text.endswith((".", "?", "!")):
            text += "."
        return " ".join(text.split())


class ConfigError(TxError):
    """Bad flags, values, config files or job specs."""


class DataError(TxError):
    """Data files or datasets that cannot be used as given."""


class PluginError(TxError):
    """A plugin failed to load or registered something invalid."""


class LaunchError(TxError):
    """A launcher cannot start (missing tool, bad environment) or the job failed to start."""

    exit_code = 3


class Interrupted(TxError):
    """The run was stopped by a signal; the exit code follows the shell convention 128 + signal
    (130 for SIGINT, 143 for SIGTERM), the same a killed process would give."""

    exit_code = 130

    def __init__(self, message: str, hint: str | None = None, signum: int | None = None) -> None:
        super().__init__(message, hint)
        if signum:
            self.exit_code = 128 + int(signum)


class AlreadyFinished(TxError):
    """Nothing to do: the output dir holds this very job, finished. Not a failure (exit 0); the
    CLI prints the one line with ``tx: done:``."""

    exit_code = 0
    label = "done"
