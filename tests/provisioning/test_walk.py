"""An installer's walk: init, trust, profile, broker, export, status, selftest, factory-reset, against a
real Mosquitto; each step is checked by what it changed on disk, permissions included."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from edge.cli.main import main as edge_main
from edge.crypto.keys import device_id, fingerprint_text, key_id
from edge.testing.mosquitto import Mosquitto
from tests.provisioning.conftest import Result, Run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (mode(p), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


class SensorLibrary:
    """Test double of the fingerprint library's erase port: holds templates until emptied."""

    def __init__(self, templates: int) -> None:
        self.templates = templates

    def erase(self) -> int:
        count, self.templates = self.templates, 0
        return count


def test_installer_walk_changes_exactly_what_each_step_says(
    provision: Run,
    state_dir: Path,
    authority_key: tuple[Path, bytes],
    mosquitto: Mosquitto,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outputs: list[str] = []

    def step(*args: str) -> Result:
        result = provision(*args)
        outputs.append(result.out + result.err)
        return result

    # init: 0700 directory, 0600 identity and gallery key, settings naming the site
    result = step("init", "--site", "site-001", "--gate", "north-1", "--json")
    assert result.code == 0, result.err
    created = result.json()
    assert mode(state_dir) == 0o700
    assert mode(state_dir / "trust") == 0o700
    identity = (state_dir / "identity.key").read_bytes()
    gallery_key = (state_dir / "gallery.key").read_bytes()
    assert len(identity) == 32
    assert len(gallery_key) == 32
    assert gallery_key != identity
    sync_key = (state_dir / "sync.key").read_bytes()
    assert len(sync_key) == 32
    assert sync_key not in (identity, gallery_key)
    for name in ("identity.key", "gallery.key", "sync.key", "edge.toml"):
        assert mode(state_dir / name) == 0o600, name
    from nacl.signing import SigningKey

    public = SigningKey(identity).verify_key
    assert created["device_id"] == device_id(public)
    assert created["fingerprint"] == fingerprint_text(public)
    settings = tomllib.loads((state_dir / "edge.toml").read_text())
    assert settings["device"] == {"site": "site-001", "gate": "north-1", "state_dir": str(state_dir)}
    assert step("status").code == 3  # trust, profile and broker are still missing

    # init again: refused, nothing changed
    before = snapshot(state_dir)
    again = step("init", "--site", "other-site")
    assert again.code == 1
    assert "already provisioned" in again.err
    assert snapshot(state_dir) == before

    # trust: one hex file named by key id, fingerprint shown for comparison by eye
    key_file, raw = authority_key
    result = step("trust", "--consent-key", str(key_file), "--json")
    assert result.code == 0, result.err
    pinned = state_dir / "trust" / f"consent-authority-{key_id(raw).hex()}.pub"
    assert pinned.read_text() == raw.hex() + "\n"
    assert mode(pinned) == 0o644
    assert result.json()["pinned"] == [
        {
            "kind": "consent-authority",
            "key_id": key_id(raw).hex(),
            "fingerprint": fingerprint_text(raw),
            "file": str(pinned),
        }
    ]

    # profile: chosen, written to the settings, and the settings file passes `edge validate`
    assert step("profile", "sim").code == 0
    settings = tomllib.loads((state_dir / "edge.toml").read_text())
    assert settings["device"]["profile"] == "sim"
    assert edge_main(["validate", str(state_dir / "edge.toml")]) == 0

    # broker: a live test against the real Mosquitto, then saved
    result = step("broker", "--url", mosquitto.url, "--json")
    assert result.code == 0, result.out + result.err
    report = result.json()
    assert report["ok"] is True
    assert report["saved"] is True
    settings = tomllib.loads((state_dir / "edge.toml").read_text())
    assert settings["mqtt"]["url"] == mosquitto.url
    assert mode(state_dir / "edge.toml") == 0o600

    # export: the registry entry matches the identity on disk, and holds nothing secret
    result = step("export", "--json")
    exported = result.json()
    assert exported["device_id"] == device_id(public)
    assert exported["public_key"] == bytes(public).hex()
    from nacl.public import PrivateKey

    assert exported["box_key"] == bytes(PrivateKey(sync_key).public_key).hex() == created["box_key"]
    assert identity.hex() not in result.out
    assert sync_key.hex() not in result.out

    # status: complete now
    result = step("status", "--json")
    assert result.code == 0, result.out
    status = result.json()
    assert status["provisioned"] is True
    assert status["consent_authority_keys"] == [key_id(raw).hex()]

    # selftest: the checks that do not need devices pass against the real broker
    result = step("selftest", "--json")
    checks = {c["name"]: c for c in result.json()["checks"]}
    for name in ("storage", "settings", "trust", "broker"):
        assert checks[name]["status"] == "pass", checks[name]
    assert checks["clock"]["status"] in ("pass", "fail", "unknown")
    # no camera source and no sensor port configured yet: each fails and says what to fix
    for name in ("camera", "fingerprint"):
        assert checks[name]["status"] == "fail", checks[name]
        assert checks[name]["fix"], checks[name]
    assert checks["models"]["status"] in ("pass", "fail")  # pass where `edge models build` ran
    assert not (state_dir / ".selftest-write").exists()

    # factory reset: sensor library emptied, keys destroyed, stores wiped, an empty 0700 directory left
    (state_dir / "gallery.sqlite3").write_bytes(b"ciphertext" * 100)
    (state_dir / "outbox.sqlite3-wal").write_bytes(b"wal")
    library = SensorLibrary(templates=12)
    monkeypatch.setattr("provisioning.hooks.sensor_eraser", lambda state: library.erase)
    result = step("factory-reset", "--yes", "--json")
    assert result.code == 0, result.out + result.err
    assert result.json()["erased"]["sensor library"] == "erased (12 templates)"
    assert library.templates == 0
    assert mode(state_dir) == 0o700
    assert sorted(p.name for p in state_dir.rglob("*")) == ["trust"]
    assert step("status").code == 3

    # No command printed a secret: neither key, in hex or raw.
    printed = "\n".join(outputs)
    for secret in (identity, gallery_key, sync_key):
        assert secret.hex() not in printed
        assert secret.hex().upper() not in printed


def test_force_replaces_the_identity_and_drops_the_unreadable_gallery(provision: Run, state_dir: Path) -> None:
    assert provision("init", "--site", "s1").code == 0
    old = (state_dir / "identity.key").read_bytes()
    (state_dir / "gallery.sqlite3").write_bytes(b"old ciphertext")
    old_sync = (state_dir / "sync.key").read_bytes()
    assert provision("init", "--site", "s1", "--force").code == 0
    assert (state_dir / "identity.key").read_bytes() != old
    assert (state_dir / "sync.key").read_bytes() != old_sync  # a new identity seals to a new key too
    assert not (state_dir / "gallery.sqlite3").exists()


def test_init_refuses_a_state_dir_open_to_others(provision: Run, state_dir: Path) -> None:
    state_dir.mkdir(mode=0o755)
    state_dir.chmod(0o755)
    result = provision("init", "--site", "s1")
    assert result.code == 1
    assert "chmod 700" in result.err
    assert list(state_dir.iterdir()) == []


def test_reset_without_yes_asks_and_a_no_keeps_everything(provision: Run, state_dir: Path) -> None:
    assert provision("init", "--site", "s1").code == 0
    before = snapshot(state_dir)
    result = provision("factory-reset", stdin="n\n")
    assert result.code == 130
    assert snapshot(state_dir) == before


def test_reset_without_a_wired_sensor_says_so_and_exits_3(provision: Run, state_dir: Path) -> None:
    assert provision("init", "--site", "s1").code == 0
    result = provision("factory-reset", "--yes")
    assert result.code == 3
    assert "not erased" in result.out  # no sensor reachable (no profile, no port): said so
    assert not (state_dir / "identity.key").exists()  # the crypto-erase still happened
    assert provision("init", "--site", "s1").code == 0
    assert provision("factory-reset", "--yes", "--skip-sensor").code == 0


def test_edge_status_reads_the_same_state(state_dir: Path, provision: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert provision("init", "--site", "s9").code == 0
    capsys.readouterr()
    assert edge_main(["status", "--state-dir", str(state_dir)]) == 3
    out = capsys.readouterr().out
    assert "device id" in out
    assert "edge-provision trust --consent-key FILE" in out
