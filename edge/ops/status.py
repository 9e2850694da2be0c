"""What is provisioned in a state directory, and what is missing: read-only, never prints a secret.

Used by ``edge-provision status`` and ``edge status``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from edge.config.load import load_config
from edge.config.redact import redacted
from edge.crypto.keys import device_id, fingerprint_text, key_id, load_signing_key, load_verify_key
from edge.errors import ConfigError, EdgeError
from edge.state import StateDir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _mode(path: Path) -> str | None:
    try:
        return f"{path.stat().st_mode & 0o777:04o}"
    except FileNotFoundError:
        return None


def collect(state: StateDir) -> dict[str, Any]:
    """One status document. ``missing`` lists what provisioning still has to do, as commands."""
    doc: dict[str, Any] = {"state_dir": str(state.root), "state_dir_mode": _mode(state.root), "missing": []}
    missing: list[str] = doc["missing"]
    if doc["state_dir_mode"] is None:
        missing.append("edge-provision init")
        return doc
    try:
        public = load_signing_key(state.identity_key).verify_key
        doc["device_id"] = device_id(public)
        doc["fingerprint"] = fingerprint_text(public)
    except EdgeError as exc:
        doc["identity_problem"] = exc.one_line()
        missing.append("edge-provision init")
    doc["identity_key_mode"] = _mode(state.identity_key)
    doc["gallery_key_mode"] = _mode(state.gallery_key)
    if state.gallery_key.exists():
        doc["gallery_key_bytes"] = state.gallery_key.stat().st_size
    elif "edge-provision init" not in missing:
        missing.append("edge-provision init")
    authorities = []
    for path in state.consent_authority_keys():
        try:
            authorities.append(key_id(load_verify_key(path.read_text())).hex())
        except (EdgeError, ValueError):
            authorities.append("unreadable:" + path.name)
    doc["consent_authority_keys"] = authorities
    if not authorities:
        missing.append("edge-provision trust --consent-key FILE")
    doc["broker_ca"] = (
        hashlib.sha256(state.broker_ca.read_bytes()).hexdigest()[:16] if state.broker_ca.exists() else None
    )
    doc["settings_mode"] = _mode(state.settings)
    if state.settings.exists():
        try:
            config, profile = load_config(state.settings)
            doc["settings_valid"] = True
            doc["site"] = config.device.site
            doc["gate"] = config.device.gate
            doc["profile"] = config.device.profile
            doc["board"] = profile.board.id
            mqtt = redacted(config.mqtt)
            doc["broker"] = {
                k: v for k, v in mqtt.items() if k in ("url", "username", "password", "ca_file", "cert_file")
            }
        except ConfigError as exc:
            doc["settings_valid"] = False
            doc["settings_problems"] = [p.render() for p in exc.problems]
            missing.append("fix the settings file (edge validate " + str(state.settings) + ")")
        try:
            raw = tomllib.loads(state.settings.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            raw = {}
        # Defaults exist for both, but an installer must choose them explicitly.
        if "profile" not in raw.get("device", {}):
            missing.append("edge-provision profile NAME")
        if "url" not in raw.get("mqtt", {}):
            missing.append("edge-provision broker --url URL")
    else:
        doc["settings_valid"] = False
    doc["stores"] = {
        p.name: p.stat().st_size
        for p in (state.gallery_db, state.consent_db, state.audit_db, state.outbox_db)
        if p.exists()
    }
    from edge.ops.findings import storage_findings

    doc["damage"] = [f.as_dict() for f in storage_findings(state)]
    doc["provisioned"] = not missing
    return doc


def rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Label/value rows for a table."""
    out = [("state dir", f"{doc['state_dir']} ({doc.get('state_dir_mode') or 'missing'})")]
    if "device_id" in doc:
        out.append(("device id", doc["device_id"]))
        out.append(("fingerprint", doc["fingerprint"]))
    if "identity_problem" in doc:
        out.append(("identity", doc["identity_problem"]))
    if doc.get("gallery_key_mode"):
        out.append(("gallery key", f"{doc.get('gallery_key_bytes')} bytes ({doc['gallery_key_mode']})"))
    out.append(("consent authority", ", ".join(doc.get("consent_authority_keys", [])) or "none pinned"))
    out.append(("broker CA", doc.get("broker_ca") or "none pinned"))
    if doc.get("settings_valid"):
        out.append(("site / gate", f"{doc['site']} / {doc['gate']}"))
        out.append(("profile", f"{doc['profile']} ({doc['board']})"))
        out.append(("broker", str(doc["broker"].get("url"))))
    for problem in doc.get("settings_problems", []):
        out.append(("settings problem", problem))
    for name, size in doc.get("stores", {}).items():
        out.append((name, f"{size} bytes"))
    for finding in doc.get("damage", []):
        out.append(("DAMAGE" if finding["severity"] == "fail" else "damage", finding["what"]))
        out.append(("  fix", finding["fix"]))
    for step in doc["missing"]:
        out.append(("to do", step))
    return out
