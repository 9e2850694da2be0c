"""Structured JSON logs with a redaction filter in front of every handler.

Modules log with lazy ``%s`` formatting and never pass secrets, subject ids or biometric data on
purpose; the filter is the second line of defence and it is tested. It rewrites each record before
any handler formats it:

- bytes-like arguments and array-like arguments (anything with ``shape`` and ``dtype``) become a
  size note: an image, an embedding or a sensor template never reaches a log line;
- long runs of hex or base64 (keys, templates, signatures written as text) become ``<redacted>``;
- values registered with ``Redactor.protect`` become ``<subject>`` / ``<secret>``: secrets (the
  MQTT password) wherever they appear, subject ids wherever they stand as a word (a set lookup per
  word, so a gallery of 100k subjects costs nothing per line);
- ``extra=`` fields whose names look secret (password, token, key, ...) are dropped to ``********``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, Any

from edge.config.redact import REDACTED, is_secret_key

_BLOB = re.compile(r"(?<![0-9A-Za-z+/=])(?:[0-9a-fA-F]{32,}|[A-Za-z0-9+/]{40,}={0,2})(?![0-9A-Za-z+/=])")
_TOKEN = re.compile(r"[^\s'\"(),\[\]{}<>=/|]+")
_EDGE_PUNCT = ".,;:!?`"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _describe(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes redacted>"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"<array {tuple(value.shape)} redacted>"
    if isinstance(value, (list, tuple)) and len(value) >= 16 and all(isinstance(v, float) for v in value):
        return f"<{len(value)} floats redacted>"
    return value


class Redactor(logging.Filter):
    """A logging filter; attach it to handlers (``setup_logging`` does)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        # Secrets (a handful): matched anywhere, even inside other text.
        self._secrets: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        # Subject ids (up to a whole gallery): matched as tokens through a set, O(words) per line.
        self._subjects: set[str] = set()

    def protect(self, value: str | None, label: str = "subject") -> None:
        """Never let ``value`` appear in a log line again (shorter than 3 characters is ignored)."""
        if not value or len(value) < 3:
            return
        with self._lock:
            if label == "subject":
                self._subjects.add(value)
                return
            if value in self._secrets:
                return
            self._secrets[value] = f"<{label}>"
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def protect_all(self, values: Iterable[str], label: str = "subject") -> None:
        for value in values:
            self.protect(value, label)

    def _token(self, match: re.Match[str]) -> str:
        token = match.group(0)
        if token in self._subjects:
            return "<subject>"
        core = token.strip(_EDGE_PUNCT)
        if core and core in self._subjects:
            return token.replace(core, "<subject>")
        return token

    def scrub(self, text: str) -> str:
        with self._lock:
            pattern, secrets = self._pattern, dict(self._secrets)
            if self._subjects:
                text = _TOKEN.sub(self._token, text)
        if pattern is not None:
            text = pattern.sub(lambda m: secrets[m.group(0)], text)
        return _BLOB.sub("<redacted>", text)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: _describe(v) for k, v in record.args.items()}
            else:
                record.args = tuple(_describe(a) for a in record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg!s} (unformattable arguments dropped)"
        record.msg = self.scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, scrubbed, so no handler prints raw exception text.
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key in _STANDARD:
                continue
            if is_secret_key(key) or "key" in key.lower():
                setattr(record, key, REDACTED)
            else:
                described = _describe(value)
                setattr(record, key, self.scrub(described) if isinstance(described, str) else described)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str = "info", *, json_lines: bool = True, stream: IO[str] | None = None) -> Redactor:
    """Route the root logger to ``stream`` (stderr: journald captures it) through one Redactor."""
    redactor = Redactor()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(redactor)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_gate_edge", False):
            root.removeHandler(old)
    handler._gate_edge = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    return redactor
