"""Files provisioning writes: atomic, with an explicit mode, and the agent's settings TOML.

The settings file (``StateDir.settings``, ``edge.toml``) is an ``AgentConfig`` document: every
command validates the whole document with ``edge.config.load_config`` before it replaces the file,
so a bad choice is refused with the config's own line-accurate errors and nothing changes.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from edge.config.load import load_config
from edge.errors import ConfigError, ConfigProblem, StorageError
from edge.state import StateDir, atomic_write

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_STATE_DIR = Path("/var/lib/gate-edge")
SECTION_ORDER = (
    "device",
    "camera",
    "face",
    "fingerprint",
    "gallery",
    "policy",
    "consent",
    "mqtt",
    "credentials",
    "door",
    "metrics",
)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("settings hold only finite numbers")
        return repr(value)
    if isinstance(value, (str, Path)):
        text = str(value)
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} to the settings file")


def dump_toml(doc: dict[str, Any]) -> str:
    """TOML for a settings document: top-level scalars, then one table per section."""
    lines = ["# Written by edge-provision; check with `edge validate` before editing by hand.", ""]
    for key, value in doc.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_value(value)}")
    sections = sorted((k for k, v in doc.items() if isinstance(v, dict)), key=_section_rank)
    for name in sections:
        lines += ["", f"[{name}]"]
        for key, value in doc[name].items():
            if value is None:
                continue
            if isinstance(value, dict):
                raise TypeError(f"nested table {name}.{key} is not supported in the settings file")
            lines.append(f"{key} = {_value(value)}")
    return "\n".join(lines) + "\n"


def _section_rank(name: str) -> int:
    return SECTION_ORDER.index(name) if name in SECTION_ORDER else len(SECTION_ORDER)


def read_settings(state: StateDir) -> dict[str, Any]:
    """The settings document, or a StorageError telling the installer to run init first."""
    try:
        text = state.settings.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StorageError(f"{state.settings} is missing", hint="run `edge-provision init` first") from None
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            str(state.settings), [ConfigProblem(str(state.settings), "", f"not valid TOML: {exc}")]
        ) from None
    return doc


def save_settings(state: StateDir, doc: dict[str, Any]) -> None:
    """Validate ``doc`` as a whole config (profile included), then replace the settings file 0600."""
    text = dump_toml(doc)
    candidate = state.settings.with_name(f".{state.settings.name}.candidate")
    atomic_write(candidate, text.encode(), 0o600)
    try:
        load_config(candidate)
    except ConfigError as exc:
        for problem in exc.problems:
            if problem.path == str(candidate):
                problem.path = str(state.settings)
        raise ConfigError(str(state.settings), exc.problems) from None
    finally:
        candidate.unlink(missing_ok=True)
    atomic_write(state.settings, text.encode(), 0o600)


def section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.setdefault(name, {})
    if not isinstance(value, dict):
        raise ConfigError("settings", [ConfigProblem("settings", name, "a table", repr(value))])
    return value
