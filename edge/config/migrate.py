"""Pure migration steps that upgrade an older config document to the current version.

Each step takes the raw TOML mapping of version N and returns one of version N+1. Steps never touch
files; the loader applies them in memory and ``edge validate --upgrade`` can print the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.config.schema import CONFIG_VERSION

Doc = dict[str, Any]


def _v0_to_v1(doc: Doc) -> Doc:
    """Pre-release configs (no ``version`` key) called the MQTT section ``[broker]``."""
    out = dict(doc)
    if "broker" in out and "mqtt" not in out:
        out["mqtt"] = out.pop("broker")
    out["version"] = 1
    return out


STEPS: dict[int, Callable[[Doc], Doc]] = {0: _v0_to_v1}


class MigrationError(ValueError):
    pass


def migrate(doc: Doc) -> tuple[Doc, list[int]]:
    """Upgrade ``doc`` to the current version; return it and the versions it passed through."""
    version = doc.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise MigrationError(f"version must be an integer, found {version!r}")
    if version > CONFIG_VERSION:
        raise MigrationError(
            f"config version {version} is newer than this agent understands ({CONFIG_VERSION}); upgrade the agent"
        )
    passed: list[int] = []
    while version < CONFIG_VERSION:
        step = STEPS.get(version)
        if step is None:
            raise MigrationError(f"no migration from config version {version}")
        doc = step(doc)
        passed.append(version)
        version = doc["version"]
    return doc, passed
