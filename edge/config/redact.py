"""Redaction by construction: a config rendered for a log or a terminal never shows a secret."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr

REDACTED = "********"
SECRET_WORDS = ("password", "secret", "token", "private", "passphrase")


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def redacted(value: Any, key: str = "") -> Any:
    """A plain, JSON-ready copy of ``value`` with every secret replaced."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, dict):
        return {
            k: (REDACTED if is_secret_key(str(k)) and v is not None else redacted(v, str(k))) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redacted(v, key) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
