"""The frame gate: libosdp gets whole frames however the bytes arrive, and noise passes on."""

from __future__ import annotations

import serial
from hypothesis import given
from hypothesis import strategies as st

from edge.osdp.channel import FrameGate, SerialChannel

POLL = bytes.fromhex("ff5303090004610020a8")  # a CP's ID request to address 3, as libosdp sends it
REPLY = bytes.fromhex("53831400044500000001010000000000010026e5")


def test_a_frame_split_anywhere_is_released_whole() -> None:
    for cut in range(1, len(REPLY)):
        gate = FrameGate()
        gate.feed(REPLY[:cut], 0.0)
        assert gate.take(64, 0.001) == b"", f"released part of a frame cut at byte {cut}"
        gate.feed(REPLY[cut:], 0.002)
        assert gate.take(64, 0.002) == REPLY


def test_the_mark_byte_stays_with_its_frame_and_noise_before_it_is_released() -> None:
    gate = FrameGate()
    gate.feed(b"\x00\x17" + POLL[:4], 0.0)
    assert gate.take(64, 0.0) == b"\x00\x17"
    gate.feed(POLL[4:], 0.001)
    assert gate.take(64, 0.001) == POLL


def test_an_unfinished_frame_is_released_after_the_line_goes_quiet() -> None:
    gate = FrameGate(stale_s=0.05)
    gate.feed(REPLY[:7], 0.0)
    assert gate.take(64, 0.049) == b""
    assert gate.take(64, 0.05) == REPLY[:7]  # libosdp sees the broken frame and drops it


def test_a_start_byte_with_an_impossible_length_does_not_hold_the_line() -> None:
    gate = FrameGate()
    gate.feed(b"\x53\x01\xff\xff" + REPLY, 0.0)  # declares 65535 bytes
    assert gate.take(512, 0.0) == b"\x53\x01\xff\xff" + REPLY


@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=30), st.integers(1, 70))
def test_every_byte_comes_out_once_in_order_however_it_is_cut(data: bytes, cuts: list[int], ask: int) -> None:
    gate = FrameGate(stale_s=0.05)
    out = bytearray()
    pos, now = 0, 0.0
    for cut in cuts:
        gate.feed(data[pos : pos + cut], now)
        pos += cut
        now += 0.001
        out += gate.take(ask, now)
    gate.feed(data[pos:], now)
    now += 1.0  # silence: whatever is held goes out
    while chunk := gate.take(ask, now):
        assert len(chunk) <= ask
        out += chunk
    assert bytes(out) == data


def test_the_serial_channel_never_raises_into_libosdp() -> None:
    port = serial.serial_for_url("loop://", timeout=0)
    channel = SerialChannel(port, name="loop://")
    assert channel.write(REPLY) == len(REPLY)
    assert channel.read(64) == REPLY
    port.close()  # reads and writes on a closed port fail inside pyserial
    assert channel.read(64) == b""
    assert channel.write(b"x") == 0
    channel.flush()
    assert channel.errors >= 2
    assert channel.error is not None
    assert "failed" in channel.error
