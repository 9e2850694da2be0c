"""The agent's exception tree.

Every error carries its data as attributes and renders a one-line message written for the
installer. Messages never contain secrets, templates, images or subject identifiers: callers pass
those as attributes only where an operator tool needs them, and ``__str__`` never prints them.
"""

from __future__ import annotations

from typing import ClassVar


class EdgeError(Exception):
    """Base class of every error the agent raises on purpose."""

    #: A short hint telling the installer what to do about it.
    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def one_line(self) -> str:
        text = str(self)
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(EdgeError):
    """A configuration or profile file is invalid; ``problems`` lists every problem found."""

    def __init__(self, path: str, problems: list[ConfigProblem]) -> None:
        self.path = path
        self.problems = problems
        count = len(problems)
        super().__init__(f"{path}: {count} problem{'s' if count != 1 else ''} found")


class ConfigProblem:
    """One problem in a config file: where, what was expected, what was found, and a suggestion."""

    __slots__ = ("expected", "found", "key_path", "line", "path", "suggestion")

    def __init__(
        self,
        path: str,
        key_path: str,
        expected: str,
        found: str = "",
        line: int | None = None,
        suggestion: str = "",
    ) -> None:
        self.path = path
        self.key_path = key_path
        self.expected = expected
        self.found = found
        self.line = line
        self.suggestion = suggestion

    def render(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        text = f"{where}: {self.key_path or '(top level)'}: {self.expected}"
        if self.found:
            text += f"; found {self.found}"
        if self.suggestion:
            text += f" (did you mean {self.suggestion!r}?)"
        return text

    def __repr__(self) -> str:
        return f"ConfigProblem({self.render()!r})"


class HardwareError(EdgeError):
    """A sensor, camera or door output failed."""


class ModelError(EdgeError):
    """A model file is missing, unknown or altered."""


class IntegrityError(EdgeError):
    """Signed or encrypted data failed verification."""


class ConsentError(EdgeError):
    """An action was refused because consent does not allow it."""


class TransportError(EdgeError):
    """The broker or the network failed."""


class StorageError(EdgeError):
    """The state directory or a store on it failed."""


class StoreDamaged(StorageError):  # noqa: N818 - reads as what happened
    """A store's file cannot be opened or read (not a database, a damaged header or page).

    ``path`` is the file, ``what`` the store (``outbox``, ``audit log``, ...), ``detail`` SQLite's
    own short reason (it never holds row data), ``aside`` where the damaged file was moved, if it was.
    """

    def __init__(self, path: object, what: str, cause: BaseException | None = None, *, aside: object = None) -> None:
        self.path = path
        self.what = what
        self.detail = str(cause) if cause is not None else "unreadable"
        self.aside = aside
        moved = f"; moved aside to {aside}" if aside is not None else ""
        super().__init__(
            f"the {what} {path} is damaged ({self.detail}){moved}",
            hint="the agent sets a damaged store aside and starts a fresh one where that is safe; "
            "keep the damaged file for the vendor, check the SD card (`edge-provision selftest`)",
        )


class StorageUnavailable(StorageError):  # noqa: N818 - reads as what happened
    """A store cannot be written now: the disk is full (``cause`` ``full``), the state directory is
    read-only (``read_only``) or the device failed (``io``). Retried when the disk recovers."""

    HINTS: ClassVar[dict[str, str]] = {
        "full": "free space on the state directory's file system; the agent keeps working and writes what it holds",
        "read_only": "the state directory's file system is read-only: check the SD card and remount it read-write",
        "io": "the storage device reports I/O errors: check or replace the SD card",
    }

    def __init__(self, path: object, what: str, cause: str) -> None:
        self.path = path
        self.what = what
        self.cause = cause
        words = {"full": "the disk is full", "read_only": "the file system is read-only", "io": "an I/O error"}
        super().__init__(f"cannot write the {what} {path}: {words.get(cause, cause)}", hint=self.HINTS.get(cause, ""))
