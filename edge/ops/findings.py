"""What is damaged or degraded in a state directory, and the fix: read-only, no key needed.

``edge status`` lists these findings and ``edge-provision selftest`` runs them as its ``stores``
check. Each names the damage and what the installer does about it:

* gallery rows in quarantine (a row that failed authentication): re-enrol the person the audit
  record names (the subject is in the audit log only, never printed here);
* a store file set aside as damaged (``<name>.damaged-<time>``): keep it for the vendor;
* safe mode, or start-ups that failed the same way (``edge.ops.safemode``);
* deletions whose receipt still waits for the disk, ``consent_applied`` records owed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass

from edge.errors import StorageError
from edge.state import StateDir


@dataclass(frozen=True)
class Finding:
    what: str
    fix: str
    severity: str = "warn"  # "warn" | "fail"

    def as_dict(self) -> dict[str, str]:
        return {"what": self.what, "fix": self.fix, "severity": self.severity}


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def gallery_findings(state: StateDir) -> list[Finding]:
    from edge.gallery.db import quarantine_summary

    try:
        rows = quarantine_summary(state.gallery_db)
    except StorageError as exc:
        return [Finding(f"gallery: {exc}", exc.hint, "fail")]
    if not rows:
        return []
    kinds = Counter(f"{q.modality} {q.item}" for q in rows)
    listed = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in sorted(kinds.items()))
    seqs = sorted({q.audit_seq for q in rows if q.audit_seq is not None})
    unreported = sum(1 for q in rows if q.audit_seq is None)
    what = f"gallery: {len(rows)} damaged row(s) quarantined since {_when(rows[0].at)} ({listed}); never used"
    if seqs:
        where = ", ".join(str(s) for s in seqs[:10]) + (" ..." if len(seqs) > 10 else "")
        fix = (
            f"re-enrol the person each gallery_quarantine audit record names (records {where}: "
            "`edge consent export-audit FILE`, then `edge-site audit verify FILE --device-key KEY --show`)"
        )
    else:
        fix = "re-enrol the person each row belongs to: the agent names them in the audit log at its next start"
    if unreported and seqs:
        fix += f"; {unreported} row(s) are reported at the agent's next start"
    return [Finding(what, fix, "warn")]


def set_aside_findings(state: StateDir) -> list[Finding]:
    from edge.state_recovery import set_aside_files

    out = []
    for info in set_aside_files(state.root):
        fresh = "a fresh one was started" if info.fresh else "no fresh one was started"
        salvaged = f", {info.salvaged} row(s) salvaged" if info.salvaged else ""
        lost = (
            f", events {info.first_lost_seq}..{info.last_lost_seq} may be lost (announced)"
            if info.first_lost_seq is not None
            else ""
        )
        out.append(
            Finding(
                f"{info.name} was damaged ({info.detail}) and set aside as {info.aside} at {_when(info.at)}; "
                f"{fresh}{salvaged}{lost}",
                "keep the damaged file for the vendor, check the SD card (replace it if this repeats), "
                "then remove the file",
            )
        )
    return out


def safe_mode_findings(state: StateDir) -> list[Finding]:
    from edge.ops.safemode import describe

    found = describe(state)
    if found is None:
        return []
    what, fix = found
    return [Finding(what, fix, "fail" if what.startswith("SAFE MODE") else "warn")]


def pending_findings(state: StateDir) -> list[Finding]:
    out = []
    try:
        pending = json.loads(state.pending_deletions.read_bytes()).get("pending", [])
    except (OSError, ValueError, AttributeError):
        pending = []
    if pending:
        out.append(
            Finding(
                f"{len(pending)} deletion(s) wait for the disk to complete their audit record and receipt",
                "free space on the state directory (or remount it read-write); the agent completes them itself",
            )
        )
    if state.consent_db.exists():
        try:
            conn = sqlite3.connect(f"file:{state.consent_db}?mode=ro", uri=True)
            try:
                count = int(conn.execute("SELECT count(*) FROM pending_audit").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            count = 0
        if count:
            out.append(
                Finding(
                    f"{count} consent list(s) in force wait for their consent_applied audit record",
                    "free space on the state directory; the agent writes them within a second "
                    "(or run `edge consent apply` with the same file again)",
                )
            )
    return out


def storage_findings(state: StateDir) -> list[Finding]:
    """Every finding, the most serious first."""
    found = safe_mode_findings(state) + set_aside_findings(state) + gallery_findings(state) + pending_findings(state)
    return sorted(found, key=lambda f: f.severity != "fail")
