"""`edge-site registry`: gates join the site registry from their own exports, sync keys included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.cli.site import main as site_main
from edge.site.registry import Registry
from provisioning.cli import main as provision_main


def _gate(tmp_path: Path, name: str, site: str, capsys: pytest.CaptureFixture[str]) -> Path:
    state = tmp_path / name
    assert provision_main(["init", "--state-dir", str(state), "--site", site, "--json"]) == 0
    capsys.readouterr()
    assert provision_main(["export", "--state-dir", str(state), "--json"]) == 0
    export = tmp_path / f"{name}.json"
    export.write_text(capsys.readouterr().out)
    return export


def test_exports_join_the_registry_with_their_sync_keys_and_the_verifier_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _gate(tmp_path, "a", "hq", capsys), _gate(tmp_path, "b", "hq", capsys)
    c = _gate(tmp_path, "c", "annex", capsys)
    registry = tmp_path / "site" / "devices.json"
    assert site_main(["registry", "add", "--registry", str(registry), str(a), str(b), str(c)]) == 0
    assert "wrote" in capsys.readouterr().out
    loaded = Registry.load(registry)
    docs = [json.loads(p.read_text()) for p in (a, b, c)]
    for doc in docs:
        device = loaded.devices[doc["device_id"]]
        assert device.site == doc["site"]
        assert device.box_key is not None
        assert bytes(device.box_key).hex() == doc["box_key"]
    assert set(loaded.site_gates("hq")) == {docs[0]["device_id"], docs[1]["device_id"]}
    # adding the same export again updates in place; removing takes it out
    assert site_main(["registry", "add", "--registry", str(registry), str(a)]) == 0
    assert len(Registry.load(registry).devices) == 3
    assert site_main(["registry", "remove", "--registry", str(registry), docs[2]["device_id"]]) == 0
    assert set(Registry.load(registry).devices) == {docs[0]["device_id"], docs[1]["device_id"]}
    capsys.readouterr()
    assert site_main(["registry", "list", "--registry", str(registry)]) == 0
    assert capsys.readouterr().out.count("sync yes") == 2


def test_an_export_whose_id_does_not_match_its_key_is_refused_and_the_registry_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # an installer "fixes" the id by hand, or pastes another gate's key under this id
    a = _gate(tmp_path, "a", "hq", capsys)
    registry = tmp_path / "devices.json"
    assert site_main(["registry", "add", "--registry", str(registry), str(a)]) == 0
    before = registry.read_text()
    doc = json.loads(a.read_text())
    doc["device_id"] = "gw-0000000000000000"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    assert site_main(["registry", "add", "--registry", str(registry), str(forged)]) == 1
    assert "does not belong to its public key" in capsys.readouterr().err
    assert registry.read_text() == before
    doc = json.loads(a.read_text())
    doc["box_key"] = "zz"
    forged.write_text(json.dumps(doc))
    assert site_main(["registry", "add", "--registry", str(registry), str(forged)]) == 1
    assert registry.read_text() == before


def test_a_registry_entry_with_a_bad_or_unknown_field_is_named(tmp_path: Path) -> None:
    good = '{"site": "hq", "public_key": "' + "11" * 32 + '"}'
    from edge.errors import StorageError

    for bad, what in (
        (good.replace("}", ', "box_key": "abc"}'), "box_key is not hex"),
        (good.replace("}", ', "box_key": "' + "22" * 31 + '"}'), "box_key must be 32 bytes"),
        (good.replace("}", ', "extra": 1}'), "unknown key"),
    ):
        doc = '{"version": 1, "devices": {"gw-x": ' + bad + "}}"
        with pytest.raises(StorageError, match=what):
            Registry.loads(doc)
