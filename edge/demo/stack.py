"""Building blocks of a whole site on one machine: a consent authority, a provisioned terminal,
a site registry. Used by ``edge demo``, the end-to-end tests and the soak; no simulated shortcuts:
the terminal is provisioned through the installer's own commands (``provisioning.cli``).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import EdgeError

PURPOSE = "access:main-gate"


@dataclass
class SiteAuthority:
    """The site's consent authority (``edge.consent.authority.Authority``) and its device registry."""

    root: Path
    site: str

    def __post_init__(self) -> None:
        from edge.consent.authority import Authority

        self.authority = Authority(self.root / "authority")
        if not self.authority.state_path.exists():
            self.authority.keygen(self.site)

    def public_key_files(self) -> list[Path]:
        return sorted(self.authority.root.glob("consent-authority-*.pub"))

    @property
    def credential_key_path(self) -> Path:
        return self.authority.credential_key_path

    def entry(
        self,
        subject: str,
        modalities: Iterable[str],
        *,
        granted_at: int,
        card: str | None = None,
        pin: str | None = None,
        panel: int | None = None,
        scope: Iterable[str] | None = None,
    ) -> Any:
        from edge.consent.listformat import CredentialGrant, make_entry
        from edge.credentials.hashing import credential_digest

        key = self.authority.credential_key()
        grants = []
        if card is not None:
            grants.append(CredentialGrant("card", credential_digest(key, "card", card)))
        if pin is not None:
            grants.append(CredentialGrant("pin", credential_digest(key, "pin", pin)))
        sealed = None
        if panel is not None:  # the number the site's panel knows this person by, sealed to the site's gates
            from edge.credentials.panel_number import seal_panel_number

            sealed = seal_panel_number(key, subject, panel)
        return make_entry(subject, [PURPOSE], modalities, granted_at, credentials=grants, panel=sealed, scope=scope)

    def issue(self, entries: Iterable[Any], *, now: float, valid_for_s: float = 7 * 86400.0) -> bytes:
        message, _path = self.authority.issue({e.subject: e for e in entries}, now=now, valid_for_s=valid_for_s)
        return message

    def withdraw(self, subject: str, *, now: float) -> bytes:
        message, _path = self.authority.withdraw(subject, now=now)
        return message

    def registry(self, devices: Mapping[str, bytes], path: Path) -> Path:
        """A site registry (``edge-site listen --registry``) holding the given device public keys."""
        from edge.site.registry import Registry

        registry = Registry()
        for public in devices.values():
            registry.add(self.site, public)
        registry.save(path)
        return path


def provision(*args: str) -> tuple[int, str]:
    """Run one ``edge-provision`` command in-process; return its exit code and output."""
    from provisioning.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


#: ``provision_terminal`` settings for a terminal without camera and sensor: the card path alone
CARD_ONLY: Mapping[str, Mapping[str, Any]] = {
    "camera": {"enabled": False},
    "face": {"enabled": False},
    "fingerprint": {"enabled": False},
}


def provision_terminal(
    state_root: Path,
    authority: SiteAuthority,
    *,
    broker_url: str,
    gate: str = "gate-1",
    settings: Mapping[str, Mapping[str, Any]] = {},
) -> Path:
    """init, trust (authority keys and credential key), profile sim, broker: the installer's steps.

    ``settings`` are further config sections merged into the terminal's ``edge.toml`` (camera
    source, fingerprint port, ...). Returns the path of ``edge.toml``.
    """
    from edge.state import StateDir
    from provisioning.files import read_settings, save_settings, section

    state = ["--state-dir", str(state_root)]
    steps: list[list[str]] = [
        ["init", "--site", authority.site, "--gate", gate],
        [
            "trust",
            *[a for p in authority.public_key_files() for a in ("--consent-key", str(p))],
            "--credential-key",
            str(authority.credential_key_path),
        ],
        ["profile", "sim"],
        ["broker", "--url", broker_url, "--timeout", "10"],
    ]
    for step in steps:
        code, out = provision(*step, *state)
        if code != 0:
            raise EdgeError(f"edge-provision {step[0]} failed (exit {code}): {out.strip()[-400:]}")
    sd = StateDir(state_root)
    doc = read_settings(sd)
    for name, values in settings.items():
        section(doc, name).update(values)
    save_settings(sd, doc)
    return sd.settings


def device_public_key(state_root: Path) -> bytes:
    code, out = provision("export", "--json", "--state-dir", str(state_root))
    if code != 0:
        raise EdgeError(f"edge-provision export failed: {out.strip()}")
    doc = json.loads(out)
    return bytes.fromhex(str(doc["public_key"]))
