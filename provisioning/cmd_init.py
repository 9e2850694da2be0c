"""``edge-provision init``: state directory, device identity, gallery key, settings file.

gallery.key holds 32 random bytes (``nacl.utils.random``): the secret from which the gallery
derives its encryption key and its template-protection transform. Destroying it (factory reset)
erases every template cryptographically.

``--force`` replaces the identity. The audit log's hash chain is bound to the identity key, so the
old log is archived first (``audit-archive/audit-<old kid>-<head seq>.cbor``, an export file the
old public key verifies) and a new chain starts whose first record, ``audit_chain_started``, names
the old key, head and archive: ``edge-site audit verify NEW --previous ARCHIVE --previous-key OLD``
checks the hand-over.
"""

from __future__ import annotations

from pathlib import Path

import click

from edge.crypto.keys import device_id, fingerprint_text, generate_box_key, generate_signing_key, write_secret
from edge.errors import StorageError
from provisioning.common import EXIT_OK, json_option, mode_of, print_json, state_of, state_option, table
from provisioning.files import save_settings

GALLERY_KEY_BYTES = 32
AUDIT_ARCHIVE_DIR = "audit-archive"


@click.command("init")
@click.option("--site", required=True, help="Site id issued by the site's consent authority.")
@click.option("--gate", default="gate-1", show_default=True, help="This terminal's gate name.")
@click.option("--force", is_flag=True, help="Replace an existing identity and gallery key (erases the gallery).")
@state_option
@json_option
def init_cmd(site: str, gate: str, force: bool, state_dir: Path, as_json: bool) -> int:
    """Create the state directory (0700), the Ed25519 identity and the gallery key (0600)."""
    import nacl.utils

    state = state_of(state_dir)
    if state.root.exists() and state.root.stat().st_mode & 0o077:
        # Refuse before creating anything inside a directory others can read.
        raise StorageError(
            f"{state.root} is open to other users (mode {state.root.stat().st_mode & 0o777:o})",
            hint=f"chmod 700 {state.root}",
        )
    state.ensure()
    existing = [p for p in (state.identity_key, state.gallery_key) if p.exists()]
    if existing and not force:
        raise StorageError(
            f"{state.root} is already provisioned ({', '.join(p.name for p in existing)} exist)",
            hint="pass --force to create a new identity; this erases the gallery and changes the device id",
        )
    if force:
        # A new gallery key makes the old gallery unreadable; remove it rather than leave ciphertext behind.
        for store in (state.gallery_db,):
            for path in (store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
                path.unlink(missing_ok=True)
    handover = None
    if force:
        from edge.audit.log import archive_for_new_identity

        handover = archive_for_new_identity(state.audit_db, state.root / AUDIT_ARCHIVE_DIR)
    key = generate_signing_key(state.identity_key, overwrite=force)
    if handover is not None:
        from edge.audit.log import CHAIN_START, AuditLog

        audit = AuditLog.open(state.audit_db, key)
        try:
            audit.append(CHAIN_START, handover.details())
        finally:
            audit.close()
    write_secret(state.gallery_key, nacl.utils.random(GALLERY_KEY_BYTES), overwrite=force)
    box = generate_box_key(state.sync_key, overwrite=force)
    save_settings(state, {"version": 1, "device": {"site": site, "gate": gate, "state_dir": str(state.root)}})
    public = key.verify_key
    result = {
        "device_id": device_id(public),
        "public_key": bytes(public).hex(),
        "fingerprint": fingerprint_text(public),
        "box_key": bytes(box.public_key).hex(),
        "state_dir": str(state.root),
        "files": {
            str(p): mode_of(p)
            for p in (
                state.root,
                state.trust_dir,
                state.identity_key,
                state.gallery_key,
                state.sync_key,
                state.settings,
            )
        },
    }
    if handover is not None:
        result["audit_archive"] = str(handover.archive)
    if as_json:
        print_json(result)
        return EXIT_OK
    click.echo(f"Device id    {result['device_id']}")
    click.echo(f"Fingerprint  {result['fingerprint']}")
    table("Created", ["file", "mode"], sorted(result["files"].items()))  # type: ignore[attr-defined]
    if handover is not None:
        click.echo(f"Audit log    the old chain is archived in {handover.archive}; a new chain starts")
    click.echo("Next: edge-provision trust --consent-key FILE --broker-ca FILE")
    return EXIT_OK
