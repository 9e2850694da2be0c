"""Fixtures for provisioning tests: a CLI runner, a consent-authority key, brokers with auth and TLS."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from edge.testing.mosquitto import Mosquitto
from provisioning.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Result]

# Started as root (some CI containers), Mosquitto drops to the `mosquitto` user, which cannot read
# files under pytest's 0700 temp dirs; `user root` keeps it as is. As any other user it is ignored.
STAY = "user root"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def provision(state_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run ``edge-provision ARGS --state-dir STATE`` in-process; return exit code, stdout, stderr."""

    def run(*args: str, stdin: str | None = None) -> Result:
        if stdin is not None:
            import io

            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main([*args, "--state-dir", str(state_dir)])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def authority_key(tmp_path: Path) -> tuple[Path, bytes]:
    key = SigningKey.generate()
    path = tmp_path / "authority.pub"
    path.write_text(bytes(key.verify_key).hex() + "\n")
    return path, bytes(key.verify_key)


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto with a password file and an ACL: `gate` may write gate topics, `intruder` may only read them."""
    work = tmp_path / "auth-broker"
    work.mkdir()
    passwords = work / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "gate", "correct-horse"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "intruder", "battery-staple"], check=True)
    acl = work / "acl"
    acl.write_text(
        "user gate\ntopic readwrite sites/+/gates/#\n\nuser intruder\ntopic read sites/#\ntopic write elsewhere/#\n"
    )
    broker = Mosquitto(work, extra=f"{STAY}\npassword_file {passwords}\nacl_file {acl}", anonymous=False)
    broker.start()
    yield broker
    broker.stop()


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a server certificate for 127.0.0.1 made with the openssl CLI, plus an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    for name in ("ca", "other"):
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=test {name} CA",
            cwd=d,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=d,
    )  # fmt: skip
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=gate-device",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "2",
        cwd=d,
    )  # fmt: skip
    return Pki(d / "ca.pem", d / "other.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    work = tmp_path / "tls-broker"
    broker = Mosquitto(work, extra=f"{STAY}\ncafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mtls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    """TLS that requires a client certificate signed by the test CA (mTLS)."""
    work = tmp_path / "mtls-broker"
    broker = Mosquitto(
        work,
        extra=f"{STAY}\ncafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        "require_certificate true\nuse_identity_as_username true",
    )
    broker.start()
    yield broker
    broker.stop()
