"""Frame fuzzing: malformed, mutated and oversized frames never crash a device or change therapy."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.link.conftest import (
    CONTROLLER,
    PUMP,
    LegacySystem,
    SecureSystem,
    make_legacy,
    make_secure,
)

from pumpguard.devices.insulin import Bolus, CommandSource, PumpState, SetTempBasal
from pumpguard.devices.sensors import CgmReading
from pumpguard.link import AppKind, FrameKind, LegacyFrame, LinkEventCode
from pumpguard.link.pdu import PduError, decode_command

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _secure_with_traffic() -> tuple[SecureSystem, list[bytes]]:
    system = make_secure(seed=21)
    system.pair_controller()
    assert system.controller.connect(PUMP)
    system.pair_cgm()
    system.controller.send(SetTempBasal(60, Decimal("0.7"), None, CommandSource.AUTOMATED, "t-1"))
    system.controller.send(Bolus(Decimal("0.5"), CommandSource.REMOTE, "b-1"))
    system.controller.read_status()
    system.cgm.report(CgmReading(system.clock.now_ms(), 140.0, 1))
    return system, [c.data for c in system.adversary.captures]


SECURE, SECURE_FRAMES = _secure_with_traffic()


def _snapshot(system: SecureSystem | LegacySystem) -> tuple[object, ...]:
    p = system.pump
    return (p.state, p.temp_basal, p.bolus(1), p.bolus(2), p.bolus(3), p.total_u_h, len(p.log))


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int, extra: bytes) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    return bytes(out[: max(0, len(out) - cut)]) + extra


frames = st.one_of(
    st.binary(min_size=0, max_size=90),
    st.builds(
        _mutate,
        st.sampled_from(SECURE_FRAMES),
        st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), max_size=4),
        st.integers(0, 4),
        st.binary(max_size=8),
    ),
    st.builds(
        lambda kind, body: (
            bytes([kind]) + PUMP.to_bytes(3, "big") + CONTROLLER.to_bytes(3, "big") + body
        ),
        st.sampled_from([int(k) for k in FrameKind] + [int(k) for k in AppKind]),
        st.binary(max_size=60),
    ),
)


@FUZZ
@given(st.lists(frames, min_size=1, max_size=5))
def test_secure_devices_survive_any_frame_and_keep_therapy(batch: list[bytes]) -> None:
    system = SECURE
    before = _snapshot(system)
    readings = len(system.controller.readings)
    for data in batch:
        at = system.medium.now_us
        for endpoint in (system.pump_ep, system.controller, system.cgm):
            endpoint.on_frame(data, at)
        system.medium.settle()
    assert _snapshot(system) == before
    assert len(system.controller.readings) == readings


@FUZZ
@given(st.lists(frames, min_size=1, max_size=5))
def test_fuzzing_over_the_air_is_no_different(batch: list[bytes]) -> None:
    system = SECURE
    before = _snapshot(system)
    for data in batch:
        system.adversary.inject(data)
    assert _snapshot(system) == before


def test_the_secure_pump_still_works_after_fuzzing() -> None:
    system = SECURE
    for data in (bytes(100), b"", b"\x5d", bytes([0x5D]) + bytes(70)):
        system.adversary.inject(data)
    assert system.pump.state is PumpState.RUNNING
    reply = system.controller.send(
        SetTempBasal(30, Decimal("0.9"), None, CommandSource.AUTOMATED, "after-fuzz")
    )
    assert reply is not None and reply.accepted
    assert system.log.with_code(LinkEventCode.FRAME_MALFORMED)


LEGACY = make_legacy(seed=5)


def _legacy_frame(kind: int, src: int, payload: bytes) -> bytes:
    try:
        return LegacyFrame(AppKind(kind), PUMP, src, payload).encode()
    except ValueError:
        return bytes([kind]) + payload


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=90),
        st.builds(
            _legacy_frame,
            st.sampled_from([int(k) for k in AppKind]),
            st.sampled_from([CONTROLLER, 0x0BAD00]),
            st.binary(max_size=50),
        ),
    )
)
def test_legacy_devices_survive_any_frame_and_only_valid_commands_act(data: bytes) -> None:
    system = LEGACY
    before = _snapshot(system)
    system.adversary.inject(data)
    if _snapshot(system) != before:
        # A legacy pump obeys any well-formed command with a paired serial; nothing else.
        frame = LegacyFrame(AppKind(data[0]), PUMP, CONTROLLER, data[7:-2])
        assert frame.encode() == data
        assert data[0] in (AppKind.COMMAND_REMOTE, AppKind.COMMAND_AUTOMATED)
        try:
            decode_command(data[7:-2], CommandSource.REMOTE, "x")
        except PduError as exc:  # pragma: no cover - this would be the bug
            raise AssertionError(f"therapy changed on an invalid command: {exc}") from None
