"""Each provisioning step refuses bad input with a clear error and changes nothing; brokers are real."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from edge.testing.mosquitto import Mosquitto, closed_port
from tests.provisioning.conftest import Pki, Run
from tests.provisioning.test_walk import snapshot

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture
def initialised(provision: Run, state_dir: Path) -> Path:
    assert provision("init", "--site", "site-001").code == 0
    assert provision("profile", "sim").code == 0
    return state_dir


def settings(state_dir: Path) -> dict[str, Any]:
    """The settings file edge-provision wrote, as TOML reads it."""
    doc: dict[str, Any] = tomllib.loads((state_dir / "edge.toml").read_text())
    return doc


# ----------------------------------------------------------------------------- trust


def test_trust_refuses_a_key_that_is_not_ed25519_and_writes_nothing(
    provision: Run, initialised: Path, tmp_path: Path
) -> None:
    before = snapshot(initialised)
    short = tmp_path / "short.pub"
    short.write_text("abcd" * 8)  # 32 hex characters: 16 bytes, not a key
    result = provision("trust", "--consent-key", str(short))
    assert result.code == 1
    assert "not an Ed25519 public key" in result.err
    assert provision("trust", "--consent-key", "zz" * 32).code == 1
    assert snapshot(initialised) == before


def test_trust_keeps_several_keys_for_rotation_and_removes_by_id(
    provision: Run, initialised: Path, authority_key: tuple[Path, bytes]
) -> None:
    from nacl.signing import SigningKey

    from edge.crypto.keys import key_id

    path, raw = authority_key
    second = bytes(SigningKey.generate().verify_key)
    assert provision("trust", "--consent-key", str(path), "--consent-key", second.hex()).code == 0
    names = sorted(p.name for p in (initialised / "trust").iterdir())
    assert names == sorted(f"consent-authority-{key_id(k).hex()}.pub" for k in (raw, second))
    assert provision("trust", "--remove", key_id(raw).hex()).code == 0
    assert [p.name for p in (initialised / "trust").iterdir()] == [f"consent-authority-{key_id(second).hex()}.pub"]
    assert provision("trust", "--remove", "0011223344556677").code == 1


def test_trust_refuses_a_file_that_is_not_a_certificate(provision: Run, initialised: Path, tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    before = snapshot(initialised)
    result = provision("trust", "--broker-ca", str(junk))
    assert result.code == 1
    assert "not a valid CA certificate" in result.err
    empty = tmp_path / "empty.pem"
    empty.write_text("hello")
    assert "no PEM certificate" in provision("trust", "--broker-ca", str(empty)).err
    assert snapshot(initialised) == before


# ----------------------------------------------------------------------------- profile


def test_profile_from_a_file_that_contradicts_the_settings_changes_nothing(
    provision: Run, initialised: Path, tmp_path: Path
) -> None:
    no_sensor = tmp_path / "kiosk.toml"
    no_sensor.write_text('version = 1\n[board]\nid = "kiosk"\nname = "Kiosk"\n[gpio]\nchip = "sim"\nsimulated = true\n')
    before = snapshot(initialised)
    result = provision("profile", str(no_sensor))
    assert result.code == 1
    assert "fingerprint.enabled" in result.err  # the settings still enable a sensor this profile lacks
    assert snapshot(initialised) == before


def test_profile_from_a_valid_file_is_copied_into_the_state_dir(
    provision: Run, initialised: Path, tmp_path: Path
) -> None:
    source = Path(__file__).parents[2] / "device_profiles" / "rpi5-r503-usbcam.toml"
    custom = tmp_path / "site-profile.toml"
    custom.write_bytes(source.read_bytes())
    assert provision("profile", str(custom)).code == 0
    assert (initialised / "profile.toml").read_bytes() == source.read_bytes()
    assert settings(initialised)["device"]["profile"] == "profile.toml"


def test_profile_with_a_misspelt_name_suggests_the_shipped_one(provision: Run, initialised: Path) -> None:
    result = provision("profile", "rpi5-r503-usbcm")
    assert result.code == 2
    assert "did you mean 'rpi5-r503-usbcam'" in result.err


# ----------------------------------------------------------------------------- broker


def test_broker_credentials_are_tested_before_they_are_saved(
    provision: Run, initialised: Path, auth_broker: Mosquitto
) -> None:
    before = snapshot(initialised)
    bad = provision(
        "broker", "--url", auth_broker.url, "--username", "gate", "--password-stdin", "--json", stdin="wrong\n"
    )
    assert bad.code == 3
    assert bad.json()["problem"] == "auth"
    assert "wrong" not in bad.out
    assert snapshot(initialised) == before

    good = provision(
        "broker", "--url", auth_broker.url, "--username", "gate", "--password-stdin", "--json", stdin="correct-horse\n"
    )
    assert good.code == 0, good.out
    assert good.json()["delivery_verified"] is True
    mqtt = settings(initialised)["mqtt"]
    assert mqtt == {"url": auth_broker.url, "username": "gate", "password": "correct-horse"}
    assert (initialised / "edge.toml").stat().st_mode & 0o077 == 0
    assert "correct-horse" not in good.out

    status = provision("status", "--json").json()
    assert status["broker"]["password"] == "********"


def test_broker_acl_that_denies_the_device_topic_is_reported(
    provision: Run, initialised: Path, auth_broker: Mosquitto
) -> None:
    result = provision(
        "broker",
        "--url",
        auth_broker.url,
        "--username",
        "intruder",
        "--password-stdin",
        "--json",
        stdin="battery-staple\n",
    )
    assert result.code == 3
    report = result.json()
    assert report["problem"] == "acl"
    assert "0x87" in str(report["reason"])  # Mosquitto answers a v5 publish its ACL denies with Not authorized
    assert "ACL" in str(report["fix"])


def test_broker_that_is_not_running_is_refused_with_the_fix(provision: Run, initialised: Path) -> None:
    # a port held closed for the whole probe: a port that was merely free a moment before may be a
    # broker of a test suite running beside this one by the time the probe connects
    with closed_port() as port:
        result = provision("broker", "--url", f"mqtt://127.0.0.1:{port}", "--json", "--timeout", "3")
    assert result.code == 3, result.out
    assert result.json()["problem"] == "refused"


def test_broker_url_with_a_bad_scheme_is_a_config_error(provision: Run, initialised: Path) -> None:
    result = provision("broker", "--url", "http://broker:1883")
    assert result.code == 1
    assert "mqtt.url" in result.err


def test_tls_broker_needs_the_pinned_ca(provision: Run, initialised: Path, tls_broker: Mosquitto, pki: Pki) -> None:
    url = f"mqtts://127.0.0.1:{tls_broker.port}"
    assert provision("trust", "--broker-ca", str(pki.other_ca)).code == 0
    wrong = provision("broker", "--url", url, "--json", "--timeout", "5")
    assert wrong.code == 3
    assert wrong.json()["problem"] == "tls"
    assert provision("trust", "--broker-ca", str(pki.ca)).code == 0
    pinned_ca = initialised / "trust" / "broker-ca.pem"
    assert pinned_ca.read_bytes() == pki.ca.read_bytes()
    assert pinned_ca.stat().st_mode & 0o777 == 0o644
    right = provision("broker", "--url", url, "--json", "--timeout", "5")
    assert right.code == 0, right.out
    assert settings(initialised)["mqtt"]["ca_file"] == str(initialised / "trust" / "broker-ca.pem")


def test_mtls_broker_with_a_client_certificate(
    provision: Run, initialised: Path, mtls_broker: Mosquitto, pki: Pki
) -> None:
    url = f"mqtts://127.0.0.1:{mtls_broker.port}"
    assert provision("trust", "--broker-ca", str(pki.ca)).code == 0
    before = snapshot(initialised)
    without = provision("broker", "--url", url, "--json", "--timeout", "5")
    assert without.code == 3, without.out  # the broker requires a certificate
    assert without.json()["problem"] == "closed"
    assert snapshot(initialised) == before
    result = provision(
        "broker", "--url", url, "--cert", str(pki.client_cert), "--key", str(pki.client_key), "--json", "--timeout", "5"
    )
    assert result.code == 0, result.out
    mqtt = settings(initialised)["mqtt"]
    cert, key = initialised / "trust" / "client-cert.pem", initialised / "client.key"
    assert mqtt["cert_file"] == str(cert)
    assert mqtt["key_file"] == str(key)
    assert cert.read_bytes() == pki.client_cert.read_bytes()
    assert key.read_bytes() == pki.client_key.read_bytes()
    assert cert.stat().st_mode & 0o777 == 0o644
    assert key.stat().st_mode & 0o777 == 0o600
    again = provision("selftest", "--only", "broker", "--json")  # the saved copies work on their own
    assert again.json()["checks"][0]["status"] == "pass"
