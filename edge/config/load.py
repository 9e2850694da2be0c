"""Read config and profile files, report every problem at once with its line.

I/O lives here; the schemas and migrations it calls are pure.
"""

from __future__ import annotations

import difflib
import sys
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from edge.config.migrate import MigrationError, migrate
from edge.config.schema import AgentConfig, Profile
from edge.config.tomlpos import KeyPath, key_lines, line_of
from edge.errors import ConfigError, ConfigProblem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 on JetPack 6
    import tomli as tomllib

M = TypeVar("M", bound=BaseModel)

_EXPECTED = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the (sub)model that ``loc`` points into, for "did you mean"."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = _model_in(annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _render_found(value: Any, key: str) -> str:
    if any(word in key.lower() for word in ("password", "secret", "token", "key")):
        return "(redacted)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problems_from_validation(
    path: str, model: type[BaseModel], error: ValidationError, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        key_path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        kind = item["type"]
        expected = _EXPECTED.get(kind, item["msg"])
        found = "" if kind in ("missing", "extra_forbidden") else _render_found(item.get("input"), key_path)
        suggestion = ""
        if kind == "extra_forbidden" and loc:
            candidates = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), candidates, n=1, cutoff=0.6)
            suggestion = close[0] if close else ""
        problems.append(ConfigProblem(path, key_path, expected, found, line_of(lines, loc), suggestion))
    return problems


def parse_toml(path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [ConfigProblem(str(path), "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        problem = ConfigProblem(str(path), "", f"cannot read file: {exc.__class__.__name__}")
        raise ConfigError(str(path), [problem]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, _, where = str(exc).partition(" (at line ")
        line = int(where.split(",")[0]) if where[:1].isdigit() else None
        raise ConfigError(str(path), [ConfigProblem(str(path), "", f"not valid TOML: {message}", line=line)]) from None
    return doc, key_lines(text)


def validate_doc(path: str, model: type[M], doc: dict[str, Any], lines: dict[KeyPath, int]) -> M:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(path, problems_from_validation(path, model, exc, lines)) from None


def shipped_profiles() -> dict[str, Path]:
    """Profiles shipped in the ``device_profiles`` package, by name (file stem)."""
    root = resources.files("device_profiles")
    return {Path(entry.name).stem: Path(str(entry)) for entry in root.iterdir() if entry.name.endswith(".toml")}


def resolve_profile_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    shipped = shipped_profiles()
    if name_or_path in shipped:
        return shipped[name_or_path]
    candidate = Path(name_or_path)
    if not candidate.is_absolute() and relative_to is not None:
        candidate = relative_to / candidate
    return candidate


def load_profile(path: Path) -> Profile:
    try:
        doc, lines = parse_toml(path)
        return validate_doc(str(path), Profile, doc, lines)
    except ConfigError:
        raise
    except Exception as exc:
        problem = ConfigProblem(str(path), "", f"a value cannot be checked ({exc.__class__.__name__})")
        raise ConfigError(str(path), [problem]) from None


def load_config(path: Path) -> tuple[AgentConfig, Profile]:
    """Load, migrate and validate a config and its profile; raise one ConfigError with every problem.

    Total: whatever the file holds, the result is a config or a ``ConfigError`` (a value no check
    foresaw, e.g. a NUL byte in a profile path, is reported as the file's problem, not raised).
    """
    try:
        return _load_config(path)
    except ConfigError:
        raise
    except Exception as exc:
        problem = ConfigProblem(str(path), "", f"a value cannot be checked ({exc.__class__.__name__})")
        raise ConfigError(str(path), [problem]) from None


def _load_config(path: Path) -> tuple[AgentConfig, Profile]:
    from edge.config.final import final_validate

    doc, lines = parse_toml(path)
    try:
        doc, _ = migrate(doc)
    except MigrationError as exc:
        raise ConfigError(
            str(path), [ConfigProblem(str(path), "version", str(exc), line=line_of(lines, ("version",)))]
        ) from None
    problems: list[ConfigProblem] = []
    config: AgentConfig | None = None
    try:
        config = validate_doc(str(path), AgentConfig, doc, lines)
    except ConfigError as exc:
        problems.extend(exc.problems)
    # Even with schema errors, check the parts we can so the installer sees everything at once.
    profile_name = str(doc.get("device", {}).get("profile", "sim")) if isinstance(doc.get("device"), dict) else "sim"
    profile_path = resolve_profile_path(profile_name, path.parent)
    profile: Profile | None = None
    if not profile_path.exists():
        suggestion = difflib.get_close_matches(profile_name, list(shipped_profiles()), n=1)
        problems.append(
            ConfigProblem(
                str(path),
                "device.profile",
                f"a shipped profile ({', '.join(sorted(shipped_profiles()))}) or a profile file",
                repr(profile_name),
                line_of(lines, ("device", "profile")),
                suggestion[0] if suggestion else "",
            )
        )
    else:
        try:
            profile = load_profile(profile_path)
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(final_validate(str(path), doc, profile, lines))
    if problems or config is None or profile is None:
        problems.sort(key=lambda p: (p.path != str(path), p.line or 0))
        raise ConfigError(str(path), problems)
    return config, profile
