"""Typed errors of the fingerprint driver. Each carries the last frames exchanged (redacted).

``last_frames`` holds one-line descriptions such as ``-> Frame(pid=0x01, ..., content=01)``; data
packets show only their size and password fields are masked, so the ring never holds a template,
an image or a password. The message itself names the port and the instruction only.
"""

from __future__ import annotations

from edge.errors import HardwareError


class FingerprintError(HardwareError):
    """A fingerprint sensor failed."""

    hint = "check the sensor's wiring, power and baud rate"

    def __init__(self, message: str, *, port: str = "", last_frames: tuple[str, ...] = (), hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.port = port
        self.last_frames = last_frames

    def frames_text(self) -> str:
        return "\n".join(self.last_frames)


class SensorTimeoutError(FingerprintError):
    """The module did not answer within the deadline."""

    hint = "check TX/RX wiring, 3.3 V power and that the baud rate matches the module (factory 57600)"


class SensorGarbledError(FingerprintError):
    """Bytes arrived but never formed a valid frame: usually a baud-rate mismatch or noise on the line."""

    hint = "the baud rate probably differs from the module's; try 57600 or the rate set during provisioning"


class SensorChecksumError(SensorGarbledError):
    """A reply frame failed its checksum."""

    hint = "line noise or a loose connection; check the wiring and keep the UART cable short"


class SensorProtocolError(FingerprintError):
    """A reply that the protocol does not allow (wrong packet kind, wrong length)."""


class SensorDisconnectedError(FingerprintError):
    """The serial port vanished or failed (adapter unplugged, device removed)."""

    hint = "reconnect the USB-UART adapter or the sensor cable; the driver reopens the port on the next call"


class SensorRefusedError(FingerprintError):
    """The module answered with a confirmation code the operation cannot accept."""

    def __init__(
        self, message: str, *, code: int, port: str = "", last_frames: tuple[str, ...] = (), hint: str = ""
    ) -> None:
        super().__init__(message, port=port, last_frames=last_frames, hint=hint)
        self.code = code


class WrongPasswordError(SensorRefusedError):
    hint = "the module's password differs from fingerprint.password in the config"


class LibraryFullError(FingerprintError):
    hint = "delete unused templates or use a module with a larger library"
