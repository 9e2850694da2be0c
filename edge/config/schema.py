"""The typed schemas of the agent's config file and of a device profile.

Pure: no I/O, no environment reads. ``load.py`` reads files and maps errors to lines;
``migrate.py`` upgrades older versions; ``final.py`` checks what drivers need against what the
profile offers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

CONFIG_VERSION = 1
PROFILE_VERSION = 1


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt key must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- device profile


class Board(Strict):
    id: str = Field(description="Short board id, e.g. rpi4")
    name: str = Field(description="Human-readable board name")
    arch: Literal["aarch64", "x86_64", "armv7l"] = "aarch64"
    inference_threads: int = Field(2, ge=1, le=16, description="Threads for TFLite inference")
    notes: str = ""


class Uart(Strict):
    name: str = Field(description="Name drivers refer to, e.g. 'primary' or 'usb0'")
    path: str = Field(description="Device path or pyserial URL, e.g. /dev/serial0 or sim://")
    kind: Literal["soc", "usb", "sim"] = "soc"
    max_baud: int = Field(921600, ge=1200)
    notes: str = ""


CameraKind = Literal["v4l2", "picamera2", "gstreamer", "replay"]


class CameraMode(Strict):
    width: int = Field(ge=16)
    height: int = Field(ge=16)
    fps: float = Field(gt=0)


class CameraOffer(Strict):
    kind: CameraKind
    device: str = Field("", description="/dev/video0, a GStreamer pipeline, or a replay folder")
    sensor: str = ""
    modes: list[CameraMode] = Field(default_factory=list)
    mirrored: bool = Field(False, description="The camera delivers a mirror image; the agent flips frames back")


GpioLine = int | str  # a line offset, or a line name that libgpiod looks up (Jetson: "PQ.05")

SensorFamily = Literal["r307", "r503", "as608", "zfm20"]


class FingerprintOffer(Strict):
    family: SensorFamily
    uart: str = Field(description="Name of a UART in [[uarts]]")
    baud: int = 57600
    address: int = Field(0xFFFFFFFF, ge=0, le=0xFFFFFFFF)
    touch_gpio: GpioLine | None = Field(None, description="GPIO line of the module's touch/wake output")
    power_gpio: GpioLine | None = None


class GpioOffer(Strict):
    chip: str = "/dev/gpiochip0"
    door_relay: GpioLine | None = None
    request_to_exit: GpioLine | None = None
    door_contact: GpioLine | None = None
    status_led: GpioLine | None = None
    wiegand_d0: GpioLine | None = Field(None, description="Wiegand reader D0 (through a 5 V -> 3.3 V level shifter)")
    wiegand_d1: GpioLine | None = Field(None, description="Wiegand reader D1")
    wiegand_out_d0: GpioLine | None = Field(
        None, description="[door] mode = 'wiegand-out': the line to the panel's D0 input (through a level shifter)"
    )
    wiegand_out_d1: GpioLine | None = Field(None, description="[door] mode = 'wiegand-out': the panel's D1 input")
    wiegand_out_inverted: bool = Field(
        False,
        description="Wiegand-out lines drive an inverting stage (an NPN or open-collector transistor per line): "
        "the GPIO goes high to pull the panel's line low",
    )
    tamper: GpioLine | None = Field(None, description="The case (tamper) switch")
    tamper_open_level: Literal["high", "low"] = Field(
        "high",
        description="The tamper line's level while the case is open: 'high' for a normally closed switch to "
        "ground (the internal pull-up lifts the line when the case opens), 'low' for a normally open one",
    )
    relay_active_high: bool = True
    simulated: bool = False


class Profile(Strict):
    version: int = PROFILE_VERSION
    board: Board
    uarts: list[Uart] = Field(default_factory=list)
    camera: CameraOffer | None = None
    fingerprint: FingerprintOffer | None = None
    gpio: GpioOffer = Field(default_factory=GpioOffer)


# --------------------------------------------------------------------------- agent config


class DeviceSection(Strict):
    site: str = Field(min_length=1, description="Site id issued by the consent authority")
    gate: str = Field("gate-1", min_length=1)
    profile: str = Field("sim", description="A shipped profile name or a path to a profile TOML")
    state_dir: Path = Path("/var/lib/gate-edge")


class CameraSection(Strict):
    enabled: bool = True
    source: str = Field("", description="Override the profile's camera: device, pipeline or replay dir")
    width: int | None = None
    height: int | None = None
    fps: float | None = None


class FaceSection(Strict):
    enabled: bool = True
    models_dir: Path = Path("models")
    variant: Literal["float32", "int8"] = "float32"
    threshold: float | None = Field(None, description="Override the manifest's calibrated threshold")
    fast_probe: bool = Field(
        True,
        description="Judge each frame on the fast embedding and re-embed accurately only when its best score is "
        "near the threshold (false: the accurate embedding for every frame, about twice the time)",
    )
    min_face_px: int = 80
    enrol_frames: int = Field(5, ge=1, le=20)
    liveness: Literal["off", "passive", "challenge"] = Field(
        "passive",
        description="Presentation-attack detection (docs/liveness.md): passive = every face is checked by the "
        "on-device liveness models and across the frames it stands in view; challenge = also a random blink or "
        "head turn before every face decision (high-security doors); off = no check (a photo of an enrolled "
        "person opens the door)",
    )
    liveness_model: Literal["float32", "int8"] = "int8"
    attack_alarm: int = Field(3, ge=1, description="This many refused attacks within attack_window_s raise one alarm")
    attack_window_s: float = Field(300.0, gt=0)


class FingerprintSection(Strict):
    enabled: bool = True
    uart: str | None = Field(None, description="Override the profile's UART name")
    port: str | None = Field(None, description="Override the UART path, e.g. a simulator pty")
    password: SecretStr = SecretStr("00000000")
    capture_timeout_s: float = Field(10.0, gt=0)
    enrol_captures: int = Field(2, ge=1, le=6)


class GallerySection(Strict):
    backend: Literal["numpy", "faiss", "faiss-sq8"] = "numpy"
    templates_per_subject: int = Field(5, ge=1, le=50)


class PolicySection(Strict):
    mode: Literal["face_or_finger", "face_and_card", "finger_and_card", "any"] = "face_or_finger"
    margin: float = Field(0.0, ge=0.0, description="Required distance margin to the next subject")
    failures_before_backoff: int = Field(5, ge=1)
    backoff_s: float = Field(30.0, ge=0)
    backoff_growth: float = Field(2.0, ge=1.0)
    door_pulse_s: float = Field(3.0, gt=0, le=60)


class ConsentSection(Strict):
    purpose: str = "access:main-gate"
    grace_period_s: float = Field(86400.0, ge=0)


class MqttSection(Strict):
    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt:// or mqtts://host:port")
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = Field(30, ge=5)
    outbox_max_events: int = Field(100_000, ge=100)
    outbox_max_age_s: float = Field(30 * 86400.0, gt=0)


WiegandFormatName = Literal["H10301", "W34", "H10304", "H10302"]


def _default_wiegand_formats() -> list[WiegandFormatName]:
    return ["H10301", "W34"]


class CredentialsSection(Strict):
    card: Literal["none", "sim", "wiegand", "serial"] = "sim"
    pin: bool = True
    qr: bool = False
    port: str | None = Field(
        None, description="card = 'serial': the reader's device (prefer /dev/serial/by-id/...) or a pyserial URL"
    )
    baud: int = Field(9600, ge=300, le=921600, description="card = 'serial': the reader's baud rate")
    wiegand_formats: list[WiegandFormatName] = Field(
        default_factory=_default_wiegand_formats,
        min_length=1,
        description="Wiegand card formats accepted, tried in order (H10304 and H10302 are both 37 bits: list one)",
    )
    wiegand_value: Literal["number", "facility-card", "card"] = Field(
        "number", description="what a Wiegand card presents: data bits as one number, facility+card, or card only"
    )


DoorMode = Literal["relay", "osdp", "wiegand-out"]
CardFormat = Literal["H10301", "W34", "H10304", "H10302", "raw"]
OSDP_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400)


class DoorSection(Strict):
    mode: DoorMode = Field(
        "relay",
        description="relay: the terminal releases the lock itself; osdp: it is an OSDP reader under the site's "
        "panel; wiegand-out: it sends the panel a Wiegand frame. In the last two the panel decides",
    )
    port: str | None = Field(
        None, description="mode = 'osdp': the RS-485 adapter's device (prefer /dev/serial/by-id/...) or a pyserial URL"
    )
    uart: str | None = Field(None, description="mode = 'osdp': a UART of the profile's [[uarts]] (when no port)")
    baud: int = Field(9600, description="mode = 'osdp': the bus speed the panel polls at (9600 is usual)")
    address: int = Field(0, ge=0, le=126, description="mode = 'osdp': this reader's address on the bus (0-126)")
    secure: bool = Field(
        True,
        description="mode = 'osdp': require the Secure Channel (the key from `edge-provision osdp-key`); false is "
        "plain mode, card numbers in clear on the bus, and flagged by selftest",
    )
    rs485_rts: bool = Field(
        False,
        description="mode = 'osdp': drive the transceiver's DE/RE from RTS (a UART with a MAX485-style chip); "
        "false for USB-RS485 adapters, which switch direction themselves",
    )
    card_format: CardFormat = Field(
        "H10301",
        description="The card format the panel expects for a person's panel number: H10301 (26 bits), W34, "
        "H10304 or H10302 (37 bits), or raw (card_bits bits, no parity); OSDP and Wiegand-out alike",
    )
    card_bits: int = Field(32, ge=1, le=64, description="card_format = 'raw': how many bits")

    @field_validator("baud")
    @classmethod
    def _baud(cls, value: int) -> int:
        if value not in OSDP_BAUDS:
            raise ValueError(f"one of {', '.join(map(str, OSDP_BAUDS))}")
        return value


class MetricsSection(Strict):
    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = Field(9108, ge=1, le=65535)


class SecuritySection(Strict):
    erase_on_tamper: bool = Field(
        False,
        description="Opening the terminal's case (gpio.tamper) crypto-erases the gallery key at once and empties "
        "the fingerprint sensor's library; card, PIN and QR keep working; re-enrol after service",
    )


class AgentConfig(Strict):
    version: int = CONFIG_VERSION
    device: DeviceSection
    camera: CameraSection = Field(default_factory=CameraSection)
    face: FaceSection = Field(default_factory=FaceSection)
    fingerprint: FingerprintSection = Field(default_factory=FingerprintSection)
    gallery: GallerySection = Field(default_factory=GallerySection)
    policy: PolicySection = Field(default_factory=PolicySection)
    consent: ConsentSection = Field(default_factory=ConsentSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    credentials: CredentialsSection = Field(default_factory=CredentialsSection)
    door: DoorSection = Field(default_factory=DoorSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    security: SecuritySection = Field(default_factory=SecuritySection)
