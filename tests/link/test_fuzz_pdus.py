"""PDU fuzzing: what ``test_fuzz`` cannot reach from the air.

``test_fuzz`` throws frames at every receiver; a secure receiver refuses them before their PDU
is read, so the application decoders behind the AEAD see nothing there. Here arbitrary PDUs are
fed to every decoder, and sealed in real sessions (as a buggy or compromised peer would send
them) to every secure receiver; and legacy frames of every kind go to the legacy controller and
CGM as well as the pump. Nothing may escape but a named ``PduError``, and therapy changes only
for a command that decodes.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.link.conftest import CGM, CONTROLLER, PUMP, SecureSystem, make_legacy, make_secure

from pumpguard.devices.insulin import Bolus, CommandSource, PumpState, SetTempBasal
from pumpguard.devices.sensors import CgmReading
from pumpguard.link import AppKind, LegacyFrame
from pumpguard.link.e2e import append_crc
from pumpguard.link.pdu import (
    PduError,
    decode_cgm,
    decode_command,
    decode_response,
    decode_status,
    e2e_unwrap,
    e2e_wrap,
    encode_command,
)

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_KINDS = [int(k) for k in AppKind] + [0x00, 0x7F, 0xFF]
_VALID = [
    encode_command(Bolus(Decimal("0.5"), CommandSource.REMOTE, "v")),
    encode_command(SetTempBasal(30, Decimal("0.5"), None, CommandSource.AUTOMATED, "v")),
]
pdus = st.one_of(
    st.binary(max_size=40),
    st.binary(min_size=200, max_size=400),
    st.builds(lambda v, cut: v[: len(v) - cut], st.sampled_from(_VALID), st.integers(1, 6)),
    st.builds(lambda v, tail: v + tail, st.sampled_from(_VALID), st.binary(min_size=1, max_size=8)),
)


@FUZZ
@given(pdus)
def test_every_decoder_names_what_is_wrong(data: bytes) -> None:
    for decode in (
        lambda d: decode_command(d, CommandSource.REMOTE, "x"),
        decode_response,
        decode_status,
        lambda d: decode_cgm(d, with_crc=True),
        lambda d: decode_cgm(d, with_crc=False),
        e2e_unwrap,
    ):
        try:
            decode(data)
        except PduError as exc:
            message = str(exc)
        else:
            message = "decoded"
        assert message


def _session() -> SecureSystem:
    system = make_secure(seed=33)
    system.pair_controller()
    assert system.controller.connect(PUMP)
    system.pair_cgm()
    assert system.cgm.connect(CONTROLLER)
    system.cgm.report(CgmReading(system.clock.now_ms(), 120.0, 1))
    return system


SESSION = _session()


def _therapy(system: SecureSystem) -> tuple[object, ...]:
    p = system.pump
    return (p.state, p.temp_basal, p.bolus(1), p.bolus(2), p.total_u_h)


plaintexts = st.one_of(
    st.builds(lambda k, body: bytes([k]) + body, st.sampled_from(_KINDS), st.binary(max_size=60)),
    st.builds(
        lambda k, pdu, counter: bytes([k]) + e2e_wrap(pdu, counter),
        st.sampled_from([int(AppKind.COMMAND_REMOTE), int(AppKind.COMMAND_AUTOMATED)]),
        pdus,
        st.integers(1, 255),
    ),
    st.binary(max_size=1),
)


def _is_command(plaintext: bytes) -> bool:
    if not plaintext or plaintext[0] not in (AppKind.COMMAND_REMOTE, AppKind.COMMAND_AUTOMATED):
        return False
    try:
        pdu, _ = e2e_unwrap(plaintext[1:])
        decode_command(pdu, CommandSource.REMOTE, "x")
    except PduError:
        return False
    return True


@FUZZ
@given(st.lists(plaintexts, min_size=1, max_size=4))
def test_authenticated_garbage_from_a_paired_peer_changes_nothing(batch: list[bytes]) -> None:
    """Sealed in the real sessions: the controller to the pump, the pump to the controller, the
    CGM to the controller. Only a well-formed command (right E2E counter and CRC) may act."""
    system = SESSION
    for plaintext in batch:
        before = _therapy(system)
        readings = len(system.controller.readings)
        system.controller._send_app(PUMP, plaintext)
        system.pump_ep._send_app(CONTROLLER, plaintext)
        system.cgm._send_app(CONTROLLER, plaintext)
        system.medium.settle()
        if _therapy(system) != before:
            assert _is_command(plaintext), plaintext.hex()
        if len(system.controller.readings) != readings:
            assert plaintext[:1] == bytes([AppKind.CGM_MEASUREMENT])
            decode_cgm(plaintext[1:], with_crc=True)


def test_the_devices_still_work_after_the_garbage() -> None:
    """The pump still runs and takes commands at its keypad; the CGM's readings still reach the
    controller. (Commands from the controller, and readings from the CGM, may wait: the garbage
    carried E2E counters the real devices never issued, which moved the receivers' expected
    counters on, as a paired peer may.)"""
    system = SESSION
    assert system.pump.state is PumpState.RUNNING
    local = SetTempBasal(30, Decimal("0.8"), None, CommandSource.LOCAL, "after-pdu-fuzz")
    assert system.pump.handle(local).accepted
    readings = len(system.controller.readings)
    # Garbage from the paired CGM may carry an E2E counter ahead of the real CGM's (the
    # desynchronisation the docstring names for commands); its reports then wait until the
    # CGM's own counter passes it, at most one wrap of the 8-bit counter.
    for attempt in range(300):
        system.clock.advance(1_000)
        assert system.cgm.report(CgmReading(system.clock.now_ms(), 130.0, 2 + attempt))
        if len(system.controller.readings) > readings:
            break
    assert len(system.controller.readings) == readings + 1


LEGACY = make_legacy(seed=9)


def _legacy(kind: int, dst: int, src: int, payload: bytes, crc: bool) -> bytes:
    try:
        return LegacyFrame(AppKind(kind), dst, src, payload).encode()
    except ValueError:
        body = bytes([kind]) + dst.to_bytes(3, "big") + src.to_bytes(3, "big") + payload
        return append_crc(body) if crc else body


@FUZZ
@given(
    st.builds(
        _legacy,
        st.sampled_from(_KINDS),
        st.sampled_from([PUMP, CONTROLLER, CGM, 0xFFFFFF]),
        st.sampled_from([PUMP, CONTROLLER, CGM, 0x0BAD00]),
        pdus,
        st.booleans(),
    )
)
def test_legacy_controller_and_cgm_survive_any_frame(data: bytes) -> None:
    system = LEGACY
    readings = len(system.controller.readings)
    for endpoint in (system.controller, system.cgm, system.pump_ep):
        endpoint.on_frame(data, system.medium.now_us)
    system.medium.settle()
    if len(system.controller.readings) != readings:
        # A legacy controller believes any well-formed reading with its CGM's serial: nothing else.
        assert data[0] == AppKind.CGM_MEASUREMENT and data[1:4] == CONTROLLER.to_bytes(3, "big")
        assert data[4:7] == CGM.to_bytes(3, "big")
