"""Final validation: what the configured drivers need against what the profile offers, and the
device plan that results.

Drivers declare their needs in ``DRIVER_NEEDS``; each check reads the raw config document (so it
still runs when the schema found other problems) and the validated profile. ``device_plan`` turns a
valid config and its profile into a ``DevicePlan``: every device resolved once (the fingerprint
sensor's and the OSDP bus's serial link from an explicit port or a profile UART, the camera, the
credential reader, the door's mode and lines). The checks and the plan share the resolvers below,
so a UART is looked up in one place, and the wiring (``edge.agent.assembly``) only reads the plan.
Pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from edge.config.schema import AgentConfig, DoorMode, GpioLine, GpioOffer, Profile
from edge.config.tomlpos import KeyPath, line_of
from edge.credentials.authorise import enabled_kinds
from edge.errors import ConfigError, ConfigProblem
from edge.modality import Modality

Check = Callable[[str, dict[str, Any], Profile, dict[KeyPath, int]], list[ConfigProblem]]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SerialLink:
    """A serial device resolved once: a configured port (or pyserial URL), or a profile UART's path."""

    url: str
    baud: int


@dataclass(frozen=True)
class FingerprintPlan:
    link: SerialLink
    address: int
    family: str
    led: bool  # the R503's LED ring shows ready, scanning, success or failure; the others have none
    gpio_chip: str
    touch_gpio: GpioLine | None  # None, or a simulated GPIO: no touch line
    gpio_simulated: bool


@dataclass(frozen=True)
class CameraPlan:
    kind: str
    device: str
    width: int | None
    height: int | None
    fps: float | None
    mirrored: bool


@dataclass(frozen=True)
class CredentialPlan:
    reader: str  # "none" | "sim" | "wiegand" | "serial"
    kinds: frozenset[Modality]  # the credential kinds the gate accepts ([credentials] card, pin, qr)
    port: str | None
    baud: int
    wiegand_formats: tuple[str, ...]
    wiegand_value: str
    gpio: GpioOffer


@dataclass(frozen=True)
class DoorPlan:
    mode: DoorMode
    gpio: GpioOffer
    osdp: SerialLink | None  # mode = "osdp": the RS-485 bus
    pulse_s: float


@dataclass(frozen=True)
class DevicePlan:
    """Every device the config enables, resolved against the profile (``device_plan``)."""

    fingerprint: FingerprintPlan | None  # None: disabled
    camera: CameraPlan | None  # None: the camera is disabled
    credentials: CredentialPlan
    door: DoorPlan


class Unresolved(NamedTuple):
    """Why a device cannot be resolved: the problem's key, what was expected, what was found."""

    key: str
    expected: str
    found: str
    at: KeyPath
    suggestion: str = ""

    def problem(self, path: str, lines: dict[KeyPath, int]) -> ConfigProblem:
        return ConfigProblem(path, self.key, self.expected, self.found, line_of(lines, self.at), self.suggestion)


def fingerprint_link(profile: Profile, uart: object, port: object, *, uart_given: bool) -> SerialLink | Unresolved:
    """The sensor's serial link: ``[fingerprint] port``, else the UART ``[fingerprint] uart`` (or the
    profile's) names, fast enough for the sensor's baud rate."""
    offer = profile.fingerprint
    if offer is None:
        return Unresolved(
            "fingerprint.enabled",
            "the profile has no fingerprint sensor; set fingerprint.enabled = false",
            "true",
            ("fingerprint",),
        )
    if port:
        return SerialLink(str(port), offer.baud)  # an explicit port (e.g. a simulator pty) needs no profile UART
    wanted = uart if uart_given else offer.uart
    names = [u.name for u in profile.uarts]
    for found in profile.uarts:
        if found.name == wanted:
            if offer.baud > found.max_baud:
                return Unresolved(
                    "fingerprint.uart",
                    f"a UART that supports {offer.baud} baud",
                    f"{found.name!r} (max {found.max_baud})",
                    ("fingerprint", "uart"),
                )
            return SerialLink(found.path, offer.baud)
    close = difflib.get_close_matches(str(wanted), names, n=1)
    return Unresolved(
        "fingerprint.uart",
        f"a UART the profile offers ({', '.join(names) or 'none'})",
        repr(wanted),
        ("fingerprint", "uart") if uart_given else ("fingerprint",),
        close[0] if close else "",
    )


def osdp_link(profile: Profile, port: object, uart: object, baud: object) -> SerialLink | Unresolved:
    """The OSDP bus: ``[door] port``, else the profile UART ``[door] uart`` names, fast enough for ``baud``."""
    speed = baud if isinstance(baud, int) else 9600
    if port:
        return SerialLink(str(port), speed)
    names = [u.name for u in profile.uarts]
    if uart is None:
        return Unresolved(
            "door.port",
            "the RS-485 port for mode = 'osdp' (door.port, e.g. /dev/serial/by-id/usb-..., or door.uart "
            f"naming one of the profile's UARTs: {', '.join(names) or 'none'})",
            "nothing",
            ("door", "mode"),
        )
    for found in profile.uarts:
        if found.name == uart:
            if speed > found.max_baud:
                return Unresolved(
                    "door.baud",
                    f"a speed UART {found.name!r} supports (max {found.max_baud})",
                    str(speed),
                    ("door", "baud"),
                )
            return SerialLink(found.path, speed)
    close = difflib.get_close_matches(str(uart), names, n=1)
    return Unresolved(
        "door.uart",
        f"a UART the profile offers ({', '.join(names) or 'none'})",
        repr(uart),
        ("door", "uart"),
        close[0] if close else "",
    )


def resolved(path: str, link: SerialLink | Unresolved) -> SerialLink:
    """``link``, or the ``ConfigError`` that says why it does not resolve."""
    if isinstance(link, Unresolved):
        raise ConfigError(path, [link.problem(path, {})])
    return link


def device_plan(config: AgentConfig, profile: Profile, *, path: str = "settings") -> DevicePlan:
    """The devices ``config`` enables, resolved against ``profile``. A config that ``load_config``
    accepted always resolves; anything else is the same ``ConfigError`` final validation raises."""
    finger: FingerprintPlan | None = None
    section = config.fingerprint
    offer = profile.fingerprint
    if section.enabled:
        link = resolved(
            path, fingerprint_link(profile, section.uart, section.port, uart_given=section.uart is not None)
        )
        assert offer is not None  # fingerprint_link refuses a profile without a sensor
        finger = FingerprintPlan(
            link=link,
            address=offer.address,
            family=offer.family,
            led=offer.family == "r503",
            gpio_chip=profile.gpio.chip,
            touch_gpio=offer.touch_gpio,
            gpio_simulated=profile.gpio.simulated or profile.gpio.chip == "sim",
        )
    camera: CameraPlan | None = None
    if config.camera.enabled:
        shown = profile.camera
        if shown is None and not config.camera.source and config.face.enabled:
            raise ConfigError(
                path,
                [
                    ConfigProblem(
                        path, "camera", "the profile has no camera: set camera.source or camera.enabled = false"
                    )
                ],
            )
        camera = CameraPlan(
            kind=shown.kind if shown else "replay",
            device=config.camera.source or (shown.device if shown else ""),
            width=config.camera.width,
            height=config.camera.height,
            fps=config.camera.fps,
            mirrored=shown is not None and shown.mirrored,
        )
    cards = config.credentials
    credentials = CredentialPlan(
        reader=cards.card,
        kinds=enabled_kinds(cards.card, cards.pin, cards.qr),
        port=cards.port,
        baud=cards.baud,
        wiegand_formats=tuple(cards.wiegand_formats),
        wiegand_value=cards.wiegand_value,
        gpio=profile.gpio,
    )
    door = config.door
    osdp = resolved(path, osdp_link(profile, door.port, door.uart, door.baud)) if door.mode == "osdp" else None
    return DevicePlan(
        fingerprint=finger,
        camera=camera,
        credentials=credentials,
        door=DoorPlan(mode=door.mode, gpio=profile.gpio, osdp=osdp, pulse_s=config.policy.door_pulse_s),
    )


# --------------------------------------------------------------------------- the checks


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    return value if isinstance(value, dict) else {}


def _enabled(doc: dict[str, Any], name: str) -> bool:
    return _section(doc, name).get("enabled", True) is not False


def fingerprint_needs_uart(
    path: str, doc: dict[str, Any], profile: Profile, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    if not _enabled(doc, "fingerprint"):
        return []
    section = _section(doc, "fingerprint")
    link = fingerprint_link(profile, section.get("uart"), section.get("port"), uart_given="uart" in section)
    return [link.problem(path, lines)] if isinstance(link, Unresolved) else []


def camera_needs_source(
    path: str, doc: dict[str, Any], profile: Profile, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    if not _enabled(doc, "camera") or not _enabled(doc, "face"):
        return []
    if profile.camera is None and not _section(doc, "camera").get("source"):
        return [
            ConfigProblem(
                path,
                "camera",
                "the profile has no camera: set camera.source or camera.enabled = false",
                line=line_of(lines, ("camera",)),
            )
        ]
    return []


def gpio_lines_unique(profile: Profile) -> list[ConfigProblem]:
    claims: dict[int | str, str] = {}
    problems = []
    owners = [
        (name, getattr(profile.gpio, name))
        for name in (
            "door_relay",
            "request_to_exit",
            "door_contact",
            "status_led",
            "wiegand_d0",
            "wiegand_d1",
            "wiegand_out_d0",
            "wiegand_out_d1",
            "tamper",
        )
    ]
    if profile.fingerprint is not None:
        owners += [
            ("fingerprint.touch_gpio", profile.fingerprint.touch_gpio),
            ("fingerprint.power_gpio", profile.fingerprint.power_gpio),
        ]
    for name, line in owners:
        if line is None:
            continue
        if line in claims:
            problems.append(
                ConfigProblem(
                    f"profile {profile.board.id}",
                    f"gpio.{name}",
                    f"a GPIO line no other device uses ({claims[line]} has line {line})",
                    str(line),
                )
            )
        else:
            claims[line] = name
    return problems


def card_reader_needs_wiring(
    path: str, doc: dict[str, Any], profile: Profile, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    section = _section(doc, "credentials")
    if section.get("card") == "serial" and not section.get("port"):
        return [
            ConfigProblem(
                path,
                "credentials.port",
                "the serial card reader's device (e.g. /dev/serial/by-id/usb-...) for card = 'serial'",
                "nothing",
                line_of(lines, ("credentials", "card")),
            )
        ]
    if section.get("card") != "wiegand" or profile.gpio.simulated or profile.gpio.chip == "sim":
        return []
    missing = [name for name in ("wiegand_d0", "wiegand_d1") if getattr(profile.gpio, name) is None]
    if not missing:
        return []
    return [
        ConfigProblem(
            path,
            "credentials.card",
            f"a profile with Wiegand lines (gpio.{' and gpio.'.join(missing)} not set in profile {profile.board.id})",
            "'wiegand'",
            line_of(lines, ("credentials", "card")),
        )
    ]


def uart_names_unique(profile: Profile) -> list[ConfigProblem]:
    seen: set[str] = set()
    problems = []
    for index, uart in enumerate(profile.uarts):
        if uart.name in seen:
            problems.append(
                ConfigProblem(
                    f"profile {profile.board.id}", f"uarts[{index}].name", "a unique UART name", repr(uart.name)
                )
            )
        seen.add(uart.name)
    return problems


def door_mode_needs_wiring(
    path: str, doc: dict[str, Any], profile: Profile, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    """[door] mode against the profile: OSDP needs a port (or a profile UART fast enough for the
    baud rate), Wiegand-out needs the two output lines (issue 15; self-contained for the device plan)."""
    section = _section(doc, "door")
    mode = section.get("mode", "relay")
    where = line_of(lines, ("door", "mode"))
    if mode == "osdp":
        link = osdp_link(profile, section.get("port"), section.get("uart"), section.get("baud", 9600))
        return [link.problem(path, lines)] if isinstance(link, Unresolved) else []
    if mode == "wiegand-out" and not (profile.gpio.simulated or profile.gpio.chip == "sim"):
        missing = [name for name in ("wiegand_out_d0", "wiegand_out_d1") if getattr(profile.gpio, name) is None]
        if missing:
            return [
                ConfigProblem(
                    path,
                    "door.mode",
                    f"a profile with Wiegand output lines (gpio.{' and gpio.'.join(missing)} not set in profile "
                    f"{profile.board.id})",
                    "'wiegand-out'",
                    where,
                )
            ]
    return []


DRIVER_NEEDS: dict[str, Check] = {
    "fingerprint": fingerprint_needs_uart,
    "camera": camera_needs_source,
    "card_reader": card_reader_needs_wiring,
    "door": door_mode_needs_wiring,
}


def final_validate(
    path: str, doc: dict[str, Any], profile: Profile | None, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    if profile is None:
        return []
    problems = validate_profile(profile)
    for check in DRIVER_NEEDS.values():
        problems.extend(check(path, doc, profile, lines))
    return problems


def validate_profile(profile: Profile) -> list[ConfigProblem]:
    """Checks a profile alone (final validation runs them too, as do `edge validate --profile` and the
    shipped-profile test)."""
    return gpio_lines_unique(profile) + uart_names_unique(profile)
