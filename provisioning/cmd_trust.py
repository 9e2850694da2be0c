"""``edge-provision trust``: pin the consent authority's key(s) and the broker CA.

Consent-authority keys are files ``trust/consent-authority-<kid hex>.pub`` holding the 64 hex
characters of the Ed25519 public key (rotation keeps several). The broker CA is
``trust/broker-ca.pem``. Each is shown with its fingerprint for the installer to compare by eye
against the one the site gave them.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

import click

from edge.crypto.keys import fingerprint_text, key_id, load_verify_key
from edge.errors import IntegrityError, StorageError
from edge.state import StateDir, atomic_write
from provisioning.common import EXIT_OK, json_option, print_json, state_of, state_option, table
from provisioning.files import read_settings, save_settings, section

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def read_public_key(value: str) -> bytes:
    """A consent-authority key: a file holding 64 hex characters, or the 64 hex characters themselves."""
    path = Path(value)
    text = path.read_text(encoding="ascii", errors="replace").strip() if path.is_file() else value.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        where = str(path) if path.is_file() else "the value given"
        raise StorageError(
            f"{where} is not an Ed25519 public key (expected 64 hex characters, found {len(text)} characters)",
            hint="pass the authority's public key file from `edge-site consent keygen`",
        )
    return bytes(load_verify_key(text))


def read_credential_key(value: str) -> bytes:
    """32 raw bytes from a key file (raw or hex text), or 64 hex characters given inline."""
    from edge.credentials.hashing import KEY_SIZE

    path = Path(value)
    raw: bytes
    if path.is_file():
        data = path.read_bytes()
        if len(data) == KEY_SIZE:
            raw = data
        else:
            try:
                raw = bytes.fromhex(data.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                raw = b""
    else:
        try:
            raw = bytes.fromhex(value.strip())
        except ValueError:
            raw = b""
    if len(raw) != KEY_SIZE:
        raise StorageError(
            f"--credential-key: expected a file holding the {KEY_SIZE}-byte site credential key or 64 hex characters",
            hint="copy credential.key from the consent authority's directory (edge-site consent keygen made it)",
        )
    return raw


def pem_certificates(path: Path) -> list[bytes]:
    """DER of each certificate in a PEM file; refuse files with none or that OpenSSL cannot load."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
    blocks = _PEM.findall(data)
    if not blocks:
        raise IntegrityError(f"{path} holds no PEM certificate", hint="give the broker's CA certificate (PEM)")
    try:
        ssl.create_default_context(cafile=str(path))
        return [ssl.PEM_cert_to_DER_cert(block.decode("ascii")) for block in blocks]
    except (ssl.SSLError, ValueError) as exc:
        raise IntegrityError(f"{path} is not a valid CA certificate ({exc.__class__.__name__})") from None


def pinned(state: StateDir) -> list[dict[str, str]]:
    rows = []
    for path in state.consent_authority_keys():
        try:
            raw = bytes(load_verify_key(path.read_text()))
            rows.append(
                {
                    "kind": "consent-authority",
                    "key_id": key_id(raw).hex(),
                    "fingerprint": fingerprint_text(raw),
                    "file": str(path),
                }
            )
        except (StorageError, ValueError):
            rows.append({"kind": "consent-authority", "key_id": "?", "fingerprint": "UNREADABLE", "file": str(path)})
    if state.broker_ca.exists():
        try:
            ders = pem_certificates(state.broker_ca)
            for der in ders:
                rows.append(
                    {
                        "kind": "broker-ca",
                        "key_id": hashlib.sha256(der).hexdigest()[:16],
                        "fingerprint": fingerprint_text(der),
                        "file": str(state.broker_ca),
                    }
                )
        except (StorageError, IntegrityError):
            rows.append({"kind": "broker-ca", "key_id": "?", "fingerprint": "UNREADABLE", "file": str(state.broker_ca)})
    return rows


@click.command("trust")
@click.option(
    "--consent-key", "consent_keys", multiple=True, help="Consent-authority public key: file or 64 hex chars."
)
@click.option("--broker-ca", type=click.Path(path_type=Path, dir_okay=False), help="The broker's CA certificate (PEM).")
@click.option(
    "--credential-key",
    "credential_key",
    help="The site's credential key (the authority's credential.key): file of 32 bytes or 64 hex chars.",
)
@click.option("--remove", "remove_kids", multiple=True, help="Unpin a consent-authority key by its key id (hex).")
@state_option
@json_option
def trust_cmd(
    consent_keys: tuple[str, ...],
    broker_ca: Path | None,
    credential_key: str | None,
    remove_kids: tuple[str, ...],
    state_dir: Path,
    as_json: bool,
) -> int:
    """Pin trust anchors and show their fingerprints. With no option, list what is pinned."""
    state = state_of(state_dir)
    state.ensure()
    doc = read_settings(state)
    # Read and check everything before writing anything: a bad argument changes nothing.
    keys = [read_public_key(value) for value in consent_keys]
    ders = pem_certificates(broker_ca) if broker_ca is not None else []
    cred_key = read_credential_key(credential_key) if credential_key is not None else None
    for kid in remove_kids:
        target = state.trust_dir / f"consent-authority-{kid.lower()}.pub"
        if not target.exists():
            raise StorageError(
                f"no pinned consent-authority key with id {kid}", hint="`edge-provision trust` lists them"
            )
    changed: list[str] = []
    for raw in keys:
        path = state.trust_dir / f"consent-authority-{key_id(raw).hex()}.pub"
        if not path.exists():
            atomic_write(path, (raw.hex() + "\n").encode(), 0o644)
            changed.append(f"pinned consent-authority key {key_id(raw).hex()}")
    if broker_ca is not None:
        atomic_write(state.broker_ca, broker_ca.read_bytes(), 0o644)
        section(doc, "mqtt")["ca_file"] = str(state.broker_ca)
        save_settings(state, doc)
        changed.append(f"pinned broker CA ({len(ders)} certificate{'s' if len(ders) != 1 else ''})")
    if cred_key is not None:
        from edge.consent.trust import install_credential_key

        install_credential_key(state, cred_key)
        changed.append("installed the site credential key (card/PIN/QR digests)")
    for kid in remove_kids:
        (state.trust_dir / f"consent-authority-{kid.lower()}.pub").unlink()
        changed.append(f"unpinned consent-authority key {kid.lower()}")
    rows = pinned(state)
    if as_json:
        print_json({"changed": changed, "pinned": rows})
        return EXIT_OK
    for line in changed:
        click.echo(line)
    table(
        "Pinned trust anchors (compare each fingerprint with the one the site gave you)",
        ["kind", "key id", "fingerprint", "file"],
        [(r["kind"], r["key_id"], r["fingerprint"], r["file"]) for r in rows],
    )
    if not any(r["kind"] == "consent-authority" for r in rows):
        click.echo("No consent-authority key is pinned: the agent will refuse every consent list.")
    return EXIT_OK
