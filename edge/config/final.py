"""Final validation: what the configured drivers need against what the profile offers.

Drivers declare their needs in ``DRIVER_NEEDS``; each check reads the raw config document (so it
still runs when the schema found other problems) and the validated profile. Pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from edge.config.schema import Profile
from edge.config.tomlpos import KeyPath, line_of
from edge.errors import ConfigProblem

Check = Callable[[str, dict[str, Any], Profile, dict[KeyPath, int]], list[ConfigProblem]]


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
    if profile.fingerprint is None:
        return [
            ConfigProblem(
                path,
                "fingerprint.enabled",
                "the profile has no fingerprint sensor; set fingerprint.enabled = false",
                "true",
                line_of(lines, ("fingerprint",)),
            )
        ]
    if section.get("port"):
        return []  # an explicit port (e.g. a simulator pty) needs no profile UART
    wanted = section.get("uart", profile.fingerprint.uart)
    names = [u.name for u in profile.uarts]
    if wanted in names:
        uart = next(u for u in profile.uarts if u.name == wanted)
        if profile.fingerprint.baud > uart.max_baud:
            return [
                ConfigProblem(
                    path,
                    "fingerprint.uart",
                    f"a UART that supports {profile.fingerprint.baud} baud",
                    f"{uart.name!r} (max {uart.max_baud})",
                    line_of(lines, ("fingerprint", "uart")),
                )
            ]
        return []
    close = difflib.get_close_matches(str(wanted), names, n=1)
    key = ("fingerprint", "uart") if "uart" in section else ("fingerprint",)
    return [
        ConfigProblem(
            path,
            "fingerprint.uart",
            f"a UART the profile offers ({', '.join(names) or 'none'})",
            repr(wanted),
            line_of(lines, key),
            close[0] if close else "",
        )
    ]


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


def gpio_lines_unique(
    path: str, doc: dict[str, Any], profile: Profile, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
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


def uart_names_unique(
    path: str, doc: dict[str, Any], profile: Profile, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
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
        if section.get("port"):
            return []
        wanted = section.get("uart")
        names = [u.name for u in profile.uarts]
        if wanted is None:
            return [
                ConfigProblem(
                    path,
                    "door.port",
                    "the RS-485 port for mode = 'osdp' (door.port, e.g. /dev/serial/by-id/usb-..., or door.uart "
                    f"naming one of the profile's UARTs: {', '.join(names) or 'none'})",
                    "nothing",
                    where,
                )
            ]
        if wanted not in names:
            close = difflib.get_close_matches(str(wanted), names, n=1)
            return [
                ConfigProblem(
                    path,
                    "door.uart",
                    f"a UART the profile offers ({', '.join(names) or 'none'})",
                    repr(wanted),
                    line_of(lines, ("door", "uart")),
                    close[0] if close else "",
                )
            ]
        uart = next(u for u in profile.uarts if u.name == wanted)
        baud = section.get("baud", 9600)
        if isinstance(baud, int) and baud > uart.max_baud:
            return [
                ConfigProblem(
                    path,
                    "door.baud",
                    f"a speed UART {uart.name!r} supports (max {uart.max_baud})",
                    str(baud),
                    line_of(lines, ("door", "baud")),
                )
            ]
        return []
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
    "gpio": gpio_lines_unique,
    "card_reader": card_reader_needs_wiring,
    "uarts": uart_names_unique,
    "door": door_mode_needs_wiring,
}


def final_validate(
    path: str, doc: dict[str, Any], profile: Profile | None, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    if profile is None:
        return []
    problems: list[ConfigProblem] = []
    for check in DRIVER_NEEDS.values():
        problems.extend(check(path, doc, profile, lines))
    return problems


def validate_profile(profile: Profile) -> list[ConfigProblem]:
    """Checks a profile alone (as `edge validate --profile` and the shipped-profile test do)."""
    return gpio_lines_unique("", {}, profile, {}) + uart_names_unique("", {}, profile, {})
