"""The EF01 codec, tested with bytes alone: captured frames, round trips, and a resyncing parser."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.fingerprint import protocol as p

# Real frames quoted in docs/fingerprint-protocol.md (brianrho/FPM #25, ZFM-70 manual).
VFY_PWD = bytes.fromhex("EF01FFFFFFFF010007130000000000 1B".replace(" ", ""))
VFY_OK = bytes.fromhex("EF01FFFFFFFF07000300000A")
GEN_IMG = bytes.fromhex("EF01FFFFFFFF0100030100 05".replace(" ", ""))
NO_FINGER = bytes.fromhex("EF01FFFFFFFF070003020 00C".replace(" ", ""))
R503_SYSPARA = bytes.fromhex("EF01FFFFFFFF0700130000040000 00C80003FFFFFFFF00020006 04ED".replace(" ", ""))
SEARCH_FOUND = bytes.fromhex("EF01FFFFFFFF07000700 0001 0060 006F".replace(" ", ""))
SEARCH_NOT_FOUND = bytes.fromhex("EF01FFFFFFFF07000709 01EE 0000 0106".replace(" ", ""))


def test_encoder_reproduces_captured_commands() -> None:
    assert p.command(p.Ins.VFY_PWD, bytes(4)) == VFY_PWD
    assert p.command(p.Ins.GEN_IMG) == GEN_IMG
    assert p.ack(0) == VFY_OK
    assert p.ack(p.Code.NO_FINGER) == NO_FINGER


def test_decoder_reads_captured_replies() -> None:
    frame = p.decode_frame(R503_SYSPARA)
    assert frame.pid == p.Pid.ACK
    assert frame.code == 0
    params = p.SystemParameters.decode(frame.content[1:])
    assert params == p.SystemParameters(
        status=4, system_id=0, capacity=200, security_level=3, address=0xFFFFFFFF, packet_size_code=2, baud_n=6
    )
    assert params.packet_size == 128
    assert params.baud == 57600
    found = p.decode_frame(SEARCH_FOUND)
    assert found.content == bytes.fromhex("0000010060")
    # The real R503 answers "not found" with a non-zero page id: the parser must not care.
    assert p.decode_frame(SEARCH_NOT_FOUND).code == p.Code.NOT_FOUND


def test_decode_rejects_a_flipped_checksum_and_trailing_bytes() -> None:
    broken = VFY_OK[:-1] + bytes([VFY_OK[-1] ^ 1])
    with pytest.raises(p.CodecError, match="bad checksum"):
        p.decode_frame(broken)
    with pytest.raises(p.CodecError, match="spare bytes"):
        p.decode_frame(VFY_OK + b"\xef")


def test_encoder_refuses_oversized_content_and_bad_fields() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        p.encode_frame(p.Pid.DATA, bytes(257))
    with pytest.raises(ValueError, match="address"):
        p.encode_frame(p.Pid.ACK, b"\x00", address=1 << 32)


def test_a_256_byte_data_packet_has_len_0x0102_and_parses() -> None:
    frame = p.encode_frame(p.Pid.END, bytes(range(256)))
    assert frame[7:9] == b"\x01\x02"
    assert p.decode_frame(frame).content == bytes(range(256))


def test_a_512_byte_template_at_128_is_four_packets_568_bytes() -> None:
    packets = p.chunk_data(bytes(512), 128)
    assert [pk[6] for pk in packets] == [p.Pid.DATA] * 3 + [p.Pid.END]
    assert 12 + sum(len(pk) for pk in packets) == 568
    assert p.wire_bytes(512, 128) == 556


def test_index_page_bit_order_is_lsb_first() -> None:
    table = bytes([0b0000_0101]) + bytes(30) + bytes([0x80])
    assert p.decode_index_page(1, table) == [256, 258, 511]
    assert p.encode_index_page(1, {256, 258, 511, 3, 600}) == table


def test_packet_size_codes() -> None:
    assert [p.packet_size_bytes(c) for c in range(4)] == [32, 64, 128, 256]
    with pytest.raises(ValueError, match=r"0\.\.3"):
        p.packet_size_bytes(4)
    with pytest.raises(ValueError, match="one of"):
        p.packet_size_code(100)


# -- properties ------------------------------------------------------------------------------------

pids = st.sampled_from([p.Pid.COMMAND, p.Pid.DATA, p.Pid.ACK, p.Pid.END])
contents = st.binary(min_size=0, max_size=p.MAX_CONTENT)
addresses = st.integers(0, 0xFFFFFFFF)


@given(pids, contents, addresses)
def test_encode_decode_round_trip(pid: int, content: bytes, address: int) -> None:
    frame = p.decode_frame(p.encode_frame(pid, content, address))
    assert (frame.pid, frame.content, frame.address) == (pid, content, address)


@given(st.binary(max_size=3000), st.sampled_from(p.PACKET_SIZES))
def test_chunking_reassembles_and_marks_only_the_last_packet_end(data: bytes, size: int) -> None:
    packets = p.chunk_data(data, size)
    frames = [p.decode_frame(pk) for pk in packets]
    assert b"".join(f.content for f in frames) == data
    assert [f.pid for f in frames[:-1]] == [p.Pid.DATA] * (len(frames) - 1)
    assert frames[-1].pid == p.Pid.END
    assert all(len(f.content) == size for f in frames[:-1])


@given(
    st.builds(
        p.SystemParameters,
        status=st.integers(0, 0xFFFF),
        system_id=st.integers(0, 0xFFFF),
        capacity=st.integers(0, 0xFFFF),
        security_level=st.integers(1, 5),
        address=addresses,
        packet_size_code=st.integers(0, 3),
        baud_n=st.integers(1, 12),
    )
)
def test_system_parameters_round_trip(params: p.SystemParameters) -> None:
    assert p.SystemParameters.decode(params.encode()) == params


@given(st.sets(st.integers(0, 1023)))
def test_index_table_round_trip(occupied: set[int]) -> None:
    got = [pos for page in range(4) for pos in p.decode_index_page(page, p.encode_index_page(page, occupied))]
    assert got == sorted(occupied)


@given(
    st.lists(st.tuples(pids, contents), min_size=1, max_size=6), st.lists(st.binary(max_size=40), max_size=6), st.data()
)
def test_parser_finds_every_frame_among_garbage_fed_in_any_pieces(
    frames: list[tuple[int, bytes]], junk: list[bytes], data: st.DataObject
) -> None:
    # Garbage without the header byte pair cannot forge a frame, so every frame must come out.
    junk = [j.replace(b"\xef", b"\x00") for j in junk]
    stream = b""
    for i, (pid, content) in enumerate(frames):
        stream += (junk[i] if i < len(junk) else b"") + p.encode_frame(pid, content)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = p.StreamParser()
    out = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out += [e for e in parser.feed(stream[prev:cut]) if isinstance(e, p.Frame)]
        prev = cut
    assert [(f.pid, f.content) for f in out] == frames


def test_parser_resyncs_after_a_corrupt_frame_and_reports_it() -> None:
    bad = bytearray(p.ack(0, b"\x01\x02"))
    bad[-1] ^= 0xFF
    parser = p.StreamParser()
    events = list(parser.feed(b"\x00\xff" + bytes(bad) + p.ack(0x09, bytes(4))))
    assert isinstance(events[0], p.Garbage)
    assert any(isinstance(e, p.BadChecksum) for e in events)
    frames = [e for e in events if isinstance(e, p.Frame)]
    assert [f.code for f in frames] == [0x09]


def test_parser_reports_foreign_addresses_and_impossible_lengths() -> None:
    parser = p.StreamParser(address=0xFFFFFFFF)
    events = list(parser.feed(p.ack(0, address=0x12345678) + b"\xef\x01\xff\xff\xff\xff\x07\xff\xff"))
    assert isinstance(events[0], p.ForeignAddress)
    assert events[0].frame.address == 0x12345678
    assert any(isinstance(e, p.BadLength) for e in events)


@settings(max_examples=400)
@given(st.binary(max_size=2000))
def test_fuzz_parser_never_raises_and_never_hoards(data: bytes) -> None:
    parser = p.StreamParser(address=0xFFFFFFFF)
    for i in range(0, len(data), 37):
        for event in parser.feed(data[i : i + 37]):
            assert isinstance(event, p.Frame | p.BadChecksum | p.ForeignAddress | p.Garbage | p.BadLength)
        # It never holds more than one maximal frame waiting for its tail.
        assert parser.buffered <= 9 + p.MAX_CONTENT + 2


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_decode_frame_raises_only_codec_error(data: bytes) -> None:
    with contextlib.suppress(p.CodecError):
        p.decode_frame(data)
