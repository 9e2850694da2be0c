"""Run a real Mosquitto broker on a free loopback port, from its own config file.

Used by the tests (one broker per test session, killed and restarted by fault tests) and by
``edge demo``. The broker is Debian's ``mosquitto`` binary; no system service is involved.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from edge.errors import TransportError


def give_to_broker_user(*paths: Path) -> None:
    """Mosquitto started as root drops to the ``mosquitto`` user: let that user read its files."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for top in paths:
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        for parent in top.resolve().parents:  # pytest's 0700 temp dirs: let it pass through (x only)
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod((mode & 0o7777) | 0o001)


def free_port() -> int:
    """A loopback port free at this moment. Nothing holds it afterwards: another process (a broker
    of a test suite running beside this one, the source port of any outgoing connection) may take
    it before it is used. For a port where nothing may listen, use :func:`closed_port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port where nothing listens for as long as the block runs: a connection to it is
    refused. The port is held bound (not listening, without SO_REUSEADDR), so no other process can
    listen on it meanwhile and no outgoing connection gets it as its source port (a TCP socket
    connecting from a port to the same port connects to itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise TransportError(
        "mosquitto is not installed", hint="sudo apt-get install mosquitto (scripts/setup.sh does this)"
    )


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on 127.0.0.1:``port`` (Linux /proc); where
    /proc cannot tell, whether anything accepts a connection there."""
    try:
        want = f"0100007F:{port:04X}"
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":  # 0A: TCP_LISTEN
                inodes.add(f"socket:[{fields[9]}]")
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except (OSError, IndexError):
        fds = None
    if fds is not None:
        for fd in fds if inodes else []:
            try:
                if str(fd.readlink()) in inodes:
                    return True
            except OSError:  # closed meanwhile
                continue
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A Mosquitto process serving ``port`` on 127.0.0.1 with the given extra config lines.

    ``extra`` is appended after the listener line, so a test can add TLS (``cafile``, ``certfile``,
    ``keyfile``, ``require_certificate``), ``password_file`` or ``acl_file`` settings. Without a
    password file or certificate requirement, anonymous clients are allowed.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        extra: str = "",
        anonymous: bool = True,
        config_text: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        #: the port was picked here, so start() may pick another if it is taken before the broker binds it
        self._port_chosen = port is None and config_text is None
        self.extra = extra
        self.anonymous = anonymous
        #: A whole config (e.g. ``production_config(...)``) used instead of the generated one; its
        #: first listener must be ``port``. Log lines to ``mosquitto.log`` are appended.
        self.config_text = config_text
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config_text is not None:
            logging = [f"log_dest file {self.log}", "log_type error", "log_type warning", "log_type notice"]
            self.conf.write_text(self.config_text + "\n" + "\n".join(logging) + "\n")
            give_to_broker_user(self.workdir)
            return self.conf
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence false",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_inflight_messages 20",
            "max_queued_messages 100000",
            self.extra,
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        return self.conf

    def start(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        # free_port() holds nothing: a port picked here can be taken (by a broker of a test suite
        # running beside this one) before Mosquitto binds it; then, at the first start only, pick
        # another
        for _attempt in range(5):
            if self._launch(timeout_s):
                self._port_chosen = False  # a restart keeps the port its clients reconnect to
                return
            self.port = free_port()
        raise TransportError("mosquitto found every port it was given taken by another process")

    def _launch(self, timeout_s: float) -> bool:
        """Start the broker; True once it listens on every port, False if a picked port was taken."""
        log_start = self.log.stat().st_size if self.log.exists() else 0
        self.write_config()
        # what it says before its log file is open (or when it cannot open it) goes to stderr
        stderr = self.workdir / "mosquitto.stderr"
        with stderr.open("wb") as err:
            proc = self.proc = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                said = stderr.read_bytes() + (self.log.read_bytes()[log_start:] if self.log.exists() else b"")
                log = said.decode(errors="replace")
                self.proc = None
                if self._port_chosen and "Address already in use" in log:
                    return False
                raise TransportError(f"mosquitto exited at start (code {proc.returncode}): {log[-400:]}")
            # listening means this process's own listening sockets, not whoever answers on the port
            if all(_listens(proc.pid, port) for port in self.ports):
                return True
            time.sleep(0.02)
        self.stop()
        raise TransportError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def ports(self) -> list[int]:
        """Every listener port of the config (``port`` first)."""
        ports = [self.port]
        for line in (self.config_text or "").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "listener" and parts[1].isdigit() and int(parts[1]) not in ports:
                ports.append(int(parts[1]))
        return ports

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- production config, PKI

#: The production broker config and ACL shipped in docs/ (tests run them as they are).
DOCS_MOSQUITTO = Path(__file__).resolve().parents[2] / "docs" / "mosquitto"
PRODUCTION_ETC = "/etc/mosquitto/gate-edge/"
PRODUCTION_DATA = "/var/lib/mosquitto/"


def production_config(mtls_port: int, password_port: int, etc_dir: Path, data_dir: Path) -> str:
    """docs/mosquitto/gate-edge.conf with only its ports and directories moved to a test location.

    ``etc_dir`` must hold what /etc/mosquitto/gate-edge/ holds in production: ca.pem, server.pem,
    server.key, passwd and acl (copy docs/mosquitto/acl there unchanged).
    """
    text = (DOCS_MOSQUITTO / "gate-edge.conf").read_text()
    for token, count in (("listener 8883\n", 1), ("listener 8884\n", 1), (PRODUCTION_ETC, 11), (PRODUCTION_DATA, 1)):
        if text.count(token) != count:
            raise TransportError(f"docs/mosquitto/gate-edge.conf changed shape: {token.strip()!r} x{text.count(token)}")
    data_dir.mkdir(parents=True, exist_ok=True)
    give_to_broker_user(etc_dir, data_dir)
    return (
        text.replace("listener 8883\n", f"listener {mtls_port} 127.0.0.1\n")
        .replace("listener 8884\n", f"listener {password_port} 127.0.0.1\n")
        .replace(PRODUCTION_ETC, f"{etc_dir}/")
        .replace(PRODUCTION_DATA, f"{data_dir}/")
    )


def write_passwords(path: Path, users: dict[str, str]) -> None:
    """A Mosquitto password file made by Debian's ``mosquitto_passwd``."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path.write_text("")
    for user, password in users.items():
        subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)


def make_pki(directory: Path, clients: list[str], *, server_ip: str = "127.0.0.1") -> dict[str, Path]:
    """A throw-away CA, a broker certificate for ``server_ip`` and one client certificate per CN.

    Returns paths: ``ca``, ``server_cert``, ``server_key`` and ``<cn>.cert`` / ``<cn>.key``.
    Needs the ``cryptography`` package (test extra).
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    paths: dict[str, Path] = {}

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def save_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("gate-edge test CA"))
        .issuer_name(name("gate-edge test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths["ca"] = directory / "ca.pem"
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(cn: str, *, server: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(server_ip)), x509.DNSName("localhost")]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        stem = "server" if server else cn
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        save_key(key, key_path)
        return cert_path, key_path

    paths["server_cert"], paths["server_key"] = issue("localhost", server=True)
    for cn in clients:
        paths[f"{cn}.cert"], paths[f"{cn}.key"] = issue(cn, server=False)
    return paths
