"""The secure profile blocks what the legacy one lets through, and says so with an event."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from tests.link.conftest import (
    CGM,
    CONTROLLER,
    PUMP,
    START_MS,
    SecureSystem,
    make_secure,
    seeded,
)

from pumpguard.clinical import BasalProfile
from pumpguard.clock import VirtualClock
from pumpguard.devices.insulin import (
    Bolus,
    CommandSource,
    IdsResponseCode,
    InsulinPump,
    PumpState,
    Resume,
    SetTempBasal,
    Suspend,
)
from pumpguard.devices.sensors import CgmReading
from pumpguard.link import (
    PASS,
    Adversary,
    AppKind,
    FrameKind,
    InterceptPass,
    InterceptRule,
    LegacyFrame,
    LinkAddresses,
    LinkEventCode,
    LinkPolicy,
    LinkProfile,
    PairingError,
    PairingMitm,
    RadioMedium,
    Role,
    SecureFrame,
    Transmission,
    build_link,
    decode_secure,
)
from pumpguard.link.pdu import CgmMeasurement, e2e_wrap, encode_cgm, encode_command
from pumpguard.security_events import Component, SecurityEventLog

SUSPEND = Suspend(CommandSource.REMOTE, "s-1")


def therapy(system: SecureSystem) -> tuple[object, ...]:
    p = system.pump
    return (p.state, p.temp_basal, p.bolus(1), p.bolus(2), p.total_u_h)


def data_frames(system: SecureSystem, src: int) -> list[bytes]:
    found = []
    for capture in system.adversary.captures:
        frame = capture.secure()
        if frame is not None and frame.kind is FrameKind.DATA and frame.src == src:
            found.append(capture.data)
    return found


def test_pairing_shows_the_same_number_and_commands_then_work(secure: SecureSystem) -> None:
    reply = secure.controller.send(Bolus(Decimal("1.5"), CommandSource.REMOTE, "c-1"))
    assert reply is not None and reply.accepted and reply.bolus_id == 1
    assert secure.pump.bolus(1) is not None
    status = secure.controller.read_status()
    assert status is not None and status.reservoir_u == Decimal(300)
    completed = secure.log.with_code(LinkEventCode.PAIRING_COMPLETED)
    assert {e.device_id for e in completed} == {"PUMP-1", "controller"}
    assert all(e.component is Component.LINK for e in secure.log)


def test_nothing_sensitive_is_in_clear_on_the_air(secure: SecureSystem) -> None:
    secure.controller.send(Bolus(Decimal("2.35"), CommandSource.REMOTE, "c-1"))
    pdu = encode_command(Bolus(Decimal("2.35"), CommandSource.REMOTE))
    assert secure.adversary.captures
    assert all(pdu[2:] not in c.data for c in secure.adversary.captures)


def test_a_retry_with_the_same_command_id_does_not_dose_twice(secure: SecureSystem) -> None:
    bolus = Bolus(Decimal("1.0"), CommandSource.REMOTE, "c-7")
    first, second = secure.controller.send(bolus), secure.controller.send(bolus)
    assert first is not None and second is not None
    assert first.bolus_id == second.bolus_id == 1
    assert secure.pump.bolus(2) is None


def test_pairing_needs_a_window_opened_at_the_pump() -> None:
    system = make_secure()
    system.controller.pair_with_pump()
    assert system.pump_ep.peers == {}
    assert system.controller.pairing_code is None
    assert len(system.log.with_code(LinkEventCode.PAIRING_OUTSIDE_WINDOW)) == 1


def test_the_window_closes_after_two_minutes() -> None:
    system = make_secure()
    system.pump_ep.open_pairing_window()
    system.clock.advance(2 * 60_000 + 1)
    system.controller.pair_with_pump()
    assert system.pump_ep.peers == {}
    assert system.log.with_code(LinkEventCode.PAIRING_OUTSIDE_WINDOW)


def test_unsolicited_pairing_messages_are_refused() -> None:
    system = make_secure()
    forged = SecureFrame(FrameKind.PAIR_NONCE_I, PUMP, CONTROLLER, bytes(16))
    system.adversary.inject(forged.encode())
    answer = SecureFrame(FrameKind.PAIR_RESPONSE, CONTROLLER, PUMP, bytes(48))
    system.adversary.inject(answer.encode())
    events = system.log.with_code(LinkEventCode.PAIRING_UNSOLICITED)
    assert {e.device_id for e in events} == {"PUMP-1", "controller"}


def test_a_user_rejecting_the_number_leaves_nothing_paired() -> None:
    system = make_secure()
    system.pump_ep.open_pairing_window()
    system.controller.pair_with_pump()
    assert system.pump_ep.confirm_pairing(False)
    assert not system.controller.confirm_pairing(True)  # the pump already said no
    assert system.pump_ep.peers == {} and system.controller.peers == {}
    assert system.log.with_code(LinkEventCode.PAIRING_REJECTED)


def test_a_man_in_the_middle_changes_the_numbers_and_is_caught() -> None:
    system = make_secure()
    mitm = PairingMitm(
        system.adversary, initiator=CONTROLLER, responder=PUMP, random_bytes=seeded(99)
    )
    system.pump_ep.open_pairing_window()
    system.controller.pair_with_pump()
    pump_code, phone_code = system.pump_ep.pairing_code, system.controller.pairing_code
    assert pump_code is not None and phone_code is not None
    assert pump_code != phone_code
    # The user compares the two screens, as the pump's instructions say.
    system.pump_ep.confirm_pairing(pump_code == phone_code)
    system.controller.confirm_pairing(pump_code == phone_code)
    assert system.pump_ep.peers == {} and system.controller.peers == {}
    assert mitm.ltk_with_responder is None
    assert system.log.with_code(LinkEventCode.PAIRING_REJECTED)


def test_a_user_who_accepts_blindly_pairs_with_the_attacker() -> None:
    """Why the comparison matters: the check values alone cannot catch the MITM."""
    system = make_secure()
    mitm = PairingMitm(system.adversary, initiator=CONTROLLER, responder=PUMP)
    system.pump_ep.open_pairing_window()
    system.controller.pair_with_pump()
    system.pump_ep.confirm_pairing(True)
    system.controller.confirm_pairing(True)
    assert mitm.ltk_with_responder == system.pump_ep.peers[CONTROLLER].ltk
    assert mitm.ltk_with_initiator == system.controller.peers[PUMP].ltk


def test_a_replayed_command_is_refused(secure: SecureSystem) -> None:
    secure.controller.send(Bolus(Decimal("1.0"), CommandSource.REMOTE, "c-1"))
    recorded = data_frames(secure, CONTROLLER)[-1]
    secure.clock.advance(10 * 60_000)
    before = therapy(secure)
    secure.adversary.replay(recorded)
    assert therapy(secure) == before
    assert secure.pump.bolus(2) is None
    assert secure.log.with_code(LinkEventCode.REPLAY)


def _swallow_first_command(captured: list[bytes]) -> InterceptRule:
    """Keep the controller's next data frame from the pump (selective jamming) and record it."""

    def rule(tx: Transmission) -> bytes | InterceptPass | None:
        frame = decode_secure(tx.data)
        if frame.kind is FrameKind.DATA and frame.src == CONTROLLER and not captured:
            captured.append(tx.data)
            return None
        return PASS

    return rule


def test_bit_flips_in_a_fresh_frame_are_caught_by_the_tag(secure: SecureSystem) -> None:
    captured: list[bytes] = []

    secure.adversary.intercept(_swallow_first_command(captured))
    reply = secure.controller.send(Suspend(CommandSource.REMOTE, "s-9"))
    secure.adversary.stop_intercepting()
    assert reply is None and captured
    for position in (len(captured[0]) - 1, 10, 4):
        tampered = bytearray(captured[0])
        tampered[position] ^= 0x20
        secure.adversary.inject(bytes(tampered))
    assert secure.pump.state is PumpState.RUNNING
    assert len(secure.log.with_code(LinkEventCode.BAD_MAC)) == 2  # tag, ciphertext
    # byte 4 is in the source address: the pump does not know that sender
    assert secure.log.with_code(LinkEventCode.UNKNOWN_SENDER)


def test_a_forged_truncated_counter_is_a_counter_jump(secure: SecureSystem) -> None:
    captured: list[bytes] = []

    secure.adversary.intercept(_swallow_first_command(captured))
    secure.controller.send(Suspend(CommandSource.REMOTE, "s-1"))
    secure.adversary.stop_intercepting()
    frame = bytearray(captured[0])
    frame[7:9] = (0x4000).to_bytes(2, "little")
    secure.adversary.inject(bytes(frame))
    assert secure.pump.state is PumpState.RUNNING
    assert secure.log.with_code(LinkEventCode.COUNTER_JUMP)


def test_the_pumps_own_frames_reflected_are_refused(secure: SecureSystem) -> None:
    secure.controller.send(SUSPEND)
    secure.pump.handle(Resume(CommandSource.LOCAL))
    from_pump = data_frames(secure, PUMP)[-1]
    before = therapy(secure)
    secure.adversary.inject(from_pump)
    frame = decode_secure(from_pump)
    swapped = SecureFrame(frame.kind, frame.dst, CONTROLLER, frame.body).encode()
    secure.adversary.inject(swapped)
    assert therapy(secure) == before
    reflections = [
        e for e in secure.log.with_code(LinkEventCode.REFLECTION) if e.device_id == "PUMP-1"
    ]
    assert len(reflections) == 2


def test_a_legacy_frame_is_refused_by_a_secure_pump(secure: SecureSystem) -> None:
    downgrade = LegacyFrame(
        AppKind.COMMAND_REMOTE, PUMP, CONTROLLER, encode_command(SUSPEND)
    ).encode()
    secure.adversary.inject(downgrade)
    assert secure.pump.state is PumpState.RUNNING
    assert secure.log.with_code(LinkEventCode.FRAME_WRONG_PROFILE)


def test_a_cgm_can_report_but_never_command(secure: SecureSystem) -> None:
    secure.pair_cgm()
    assert secure.cgm.report(CgmReading(secure.clock.now_ms(), 155.0, 1))
    assert [r.glucose_mgdl for r in secure.controller.readings] == [155.0]
    # The pump also accepts a CGM (sensor-augmented pumps take readings directly) ...
    secure.pump_ep.open_pairing_window()
    secure.cgm.start_pairing(PUMP, Role.PUMP)
    secure.pump_ep.confirm_pairing(True)
    secure.cgm.confirm_pairing(True)
    assert secure.cgm.connect(PUMP)
    # ... but a CGM (compromised firmware) sending a command is refused by role.
    plaintext = bytes([AppKind.COMMAND_REMOTE]) + e2e_wrap(encode_command(SUSPEND), 1)
    assert secure.cgm._send_app(PUMP, plaintext)
    secure.medium.settle()
    assert secure.pump.state is PumpState.RUNNING
    assert secure.log.with_code(LinkEventCode.ROLE_DENIED)


def test_spoofed_cgm_readings_are_refused(secure: SecureSystem) -> None:
    secure.pair_cgm()
    secure.cgm.report(CgmReading(secure.clock.now_ms(), 120.0, 1))
    forged = SecureFrame(FrameKind.DATA, 0x123456, CGM, bytes(2) + bytes(17)).encode()
    recorded = data_frames(secure, CGM)[-1]
    secure.adversary.inject(forged)
    secure.adversary.replay(recorded)
    assert [r.glucose_mgdl for r in secure.controller.readings] == [120.0]
    assert secure.log.with_code(LinkEventCode.REPLAY)


def test_e2e_crc_and_counter_are_checked_even_inside_the_session(secure: SecureSystem) -> None:
    controller = secure.controller
    good = e2e_wrap(encode_command(SUSPEND), 1)
    bad_crc = good[:-1] + bytes([good[-1] ^ 0xFF])
    controller._send_app(PUMP, bytes([AppKind.COMMAND_REMOTE]) + bad_crc)
    secure.medium.settle()
    jumped = e2e_wrap(encode_command(Suspend(CommandSource.REMOTE, "x")), 100)
    controller._send_app(PUMP, bytes([AppKind.COMMAND_REMOTE]) + jumped)
    secure.medium.settle()
    assert secure.pump.state is PumpState.RUNNING
    assert secure.log.with_code(LinkEventCode.E2E_CRC)
    assert secure.log.with_code(LinkEventCode.E2E_COUNTER)


def test_commands_are_rate_limited(secure: SecureSystem) -> None:
    replies = [
        secure.controller.send(
            SetTempBasal(30, Decimal("0.5"), None, CommandSource.AUTOMATED, f"t-{i}")
        )
        for i in range(12)
    ]
    codes = [r.code for r in replies if r is not None]
    assert codes[:10] == [IdsResponseCode.SUCCESS] * 10
    assert codes[10:] == [IdsResponseCode.PROCEDURE_NOT_COMPLETED] * 2
    assert len(secure.log.with_code(LinkEventCode.RATE_LIMITED)) == 2
    secure.clock.advance(60_000)
    again = secure.controller.send(
        SetTempBasal(30, Decimal("0.6"), None, CommandSource.AUTOMATED, "t-x")
    )
    assert again is not None and again.accepted


def test_a_replayed_session_request_is_refused(secure: SecureSystem) -> None:
    init = next(
        c.data
        for c in secure.adversary.captures
        if (f := c.secure()) is not None and f.kind is FrameKind.SESSION_INIT
    )
    secure.adversary.replay(init)
    assert secure.log.with_code(LinkEventCode.REPLAY)
    reply = secure.controller.send(Suspend(CommandSource.REMOTE, "s-2"))
    assert reply is not None and reply.accepted


def test_the_wakeup_budget_stops_a_flood_and_keeps_the_controller() -> None:
    system = make_secure(LinkPolicy(wakeup_budget_ms_per_hour=100))
    system.pair_controller()
    assert system.controller.connect(PUMP)
    junk = SecureFrame(FrameKind.SESSION_INIT, PUMP, CONTROLLER, bytes(16)).encode()
    system.adversary.flood([junk] * 400, interval_us=2_000)
    system.medium.settle(until_us=system.medium.now_us + 10**6)
    assert system.pump_ep.restricted
    exhausted = system.log.with_code(LinkEventCode.WAKEUP_BUDGET_EXHAUSTED)
    assert len(exhausted) == 1
    woken = system.pump_ep.meter.wakes
    assert woken < 400
    system.adversary.flood([junk] * 100, interval_us=2_000)
    system.medium.settle(until_us=system.medium.now_us + 10**6)
    assert system.pump_ep.meter.wakes == woken
    reply = system.controller.send(Suspend(CommandSource.REMOTE, "s-1"))
    assert reply is not None and reply.accepted
    system.clock.advance(3_600_000)
    system.adversary.inject(junk)
    assert not system.pump_ep.restricted


def test_link_loss_drops_automation_and_keeps_the_scheduled_basal(secure: SecureSystem) -> None:
    reply = secure.controller.send(
        SetTempBasal(120, Decimal("2.0"), None, CommandSource.AUTOMATED, "t-1")
    )
    assert reply is not None and reply.accepted
    secure.clock.advance(19 * 60_000)
    secure.pump_ep.tick()
    assert not secure.pump_ep.link_alarm and secure.pump.temp_basal is not None
    secure.clock.advance(2 * 60_000)
    secure.pump_ep.tick()
    assert secure.pump_ep.link_alarm
    # The 2 U/h automated temp basal is replaced by the pump's limited mode, capped at the
    # schedule (1 U/h here): the adaptive rate never exceeds it.
    temp = secure.pump.temp_basal
    assert temp is not None and temp.command_id == "link-loss-1" and temp.percent == 100
    assert secure.pump.limited_mode
    assert secure.pump.state is PumpState.RUNNING
    assert secure.pump.basal_u_h == 1
    assert len(secure.log.with_code(LinkEventCode.LINK_LOST)) == 1


def test_link_loss_runs_limited_mode_at_the_rate_automation_gave(secure: SecureSystem) -> None:
    """Four hours of automation at 0.5 U/h against a 1 U/h schedule: on link loss the pump
    runs 50 % of the schedule, not the full schedule (the child#008 finding)."""
    for n in range(8):
        reply = secure.controller.send(
            SetTempBasal(30, Decimal("0.5"), None, CommandSource.AUTOMATED, f"t-{n}")
        )
        assert reply is not None and reply.accepted
        secure.clock.advance(30 * 60_000)
    secure.clock.advance(21 * 60_000)
    secure.pump_ep.tick()
    assert secure.pump_ep.link_alarm and secure.pump.limited_mode
    assert secure.pump.basal_u_h == Fraction(1, 2)


def test_jamming_loses_commands_without_changing_therapy(secure: SecureSystem) -> None:
    before = therapy(secure)
    secure.adversary.jam(period_ms=1, on_ms=1, end_ms=secure.clock.now_ms() + 60_000)
    assert secure.controller.send(Suspend(CommandSource.REMOTE, "s-1")) is None
    assert therapy(secure) == before
    secure.clock.advance(61_000)
    reply = secure.controller.send(Suspend(CommandSource.REMOTE, "s-1"))
    assert reply is not None and reply.accepted


def test_the_cgm_going_silent_raises_link_loss_at_the_controller(secure: SecureSystem) -> None:
    secure.pair_cgm()
    secure.cgm.report(CgmReading(secure.clock.now_ms(), 120.0, 1))
    assert not secure.controller.cgm_stale()
    secure.clock.advance(15 * 60_000 + 1_000)
    secure.controller.tick()
    assert secure.controller.cgm_stale() and secure.controller.cgm_link_lost
    assert secure.log.with_code(LinkEventCode.LINK_LOST)


@pytest.mark.parametrize("kind", [FrameKind.PAIR_REQUEST, FrameKind.SESSION_INIT])
def test_unknown_devices_cannot_start_anything(secure: SecureSystem, kind: FrameKind) -> None:
    body = bytes([0x01]) + bytes(32) if kind is FrameKind.PAIR_REQUEST else bytes(16)
    secure.adversary.inject(SecureFrame(kind, PUMP, 0x0BAD00, body).encode())
    assert set(secure.pump_ep.peers) == {CONTROLLER}
    codes = secure.log.codes()
    assert LinkEventCode.PAIRING_OUTSIDE_WINDOW in codes or LinkEventCode.UNKNOWN_SENDER in codes


@pytest.mark.parametrize("profile", list(LinkProfile))
def test_build_link_gives_a_working_system_for_either_profile(profile: LinkProfile) -> None:
    clock = VirtualClock(START_MS)
    medium = RadioMedium(clock, seed=3)
    log = SecurityEventLog()
    pump = InsulinPump(clock, BasalProfile.flat("0.9"))
    system = build_link(profile, medium, pump, sink=log, random_bytes=seeded(5))
    assert system.profile is profile
    reply = system.controller.send(Bolus(Decimal("0.5"), CommandSource.REMOTE, "b-1"))
    assert reply is not None and reply.accepted
    system.cgm.report(CgmReading(clock.now_ms(), 101.0, 1))
    assert [r.glucose_mgdl for r in system.controller.readings] == [101.0]
    expected = set() if profile is LinkProfile.LEGACY else {LinkEventCode.PAIRING_COMPLETED}
    assert log.codes() == expected


def test_a_frame_from_an_earlier_session_does_nothing_in_the_next(secure: SecureSystem) -> None:
    secure.controller.send(Bolus(Decimal("1.0"), CommandSource.REMOTE, "c-1"))
    old = data_frames(secure, CONTROLLER)[-1]
    assert secure.controller.connect(PUMP)
    secure.controller.send(Suspend(CommandSource.REMOTE, "s-1"))  # the new session is in use
    secure.clock.advance(10 * 60_000)
    wakes, before = secure.pump_ep.meter.wakes, therapy(secure)
    secure.adversary.replay(old)
    # Its wake-up address belongs to the old session's keys: the radio never even wakes for it.
    assert secure.pump_ep.meter.wakes == wakes
    assert therapy(secure) == before


def test_a_relay_extends_range_but_cannot_change_anything() -> None:
    system = make_secure(seed=13)
    system.controller.move_to((18.0, 0.0))  # out of the pump's 10 m range
    system.adversary.move_to((9.0, 0.0))  # within 10 m of both
    system.pump_ep.open_pairing_window()
    system.controller.pair_with_pump()
    assert system.controller.pairing_code is None  # nothing gets through on its own
    system.adversary.intercept(lambda tx: tx.data)  # forward everything it hears, unchanged
    system.pump_ep.open_pairing_window()
    system.pair_controller()
    assert system.controller.connect(PUMP)
    reply = system.controller.send(Suspend(CommandSource.REMOTE, "s-1"))
    assert reply is not None and reply.accepted
    # Relaying is what a relay may do; a modified relay is not.
    system.adversary.stop_intercepting()
    system.adversary.intercept(
        lambda tx: (
            tx.data[:-1] + bytes([tx.data[-1] ^ 1]) if tx.data[0] == FrameKind.DATA else tx.data
        )
    )
    assert system.controller.send(Resume(CommandSource.REMOTE, "r-1")) is None
    assert system.pump.state is PumpState.SUSPENDED
    assert system.log.with_code(LinkEventCode.BAD_MAC)


def test_build_link_refuses_to_pair_through_a_man_in_the_middle() -> None:
    clock = VirtualClock(START_MS)
    medium = RadioMedium(clock, seed=3)
    log = SecurityEventLog()
    pump = InsulinPump(clock, BasalProfile.flat("0.9"))
    adversary = Adversary(medium, position_m=(2.0, 2.0))
    PairingMitm(adversary, initiator=LinkAddresses().controller, responder=LinkAddresses().pump)
    with pytest.raises(PairingError, match="numbers did not match"):
        build_link(LinkProfile.SECURE, medium, pump, sink=log)
    assert log.with_code(LinkEventCode.PAIRING_REJECTED)


def test_a_cgm_reading_with_a_bad_e2e_crc_is_refused(secure: SecureSystem) -> None:
    secure.pair_cgm()
    assert secure.cgm.connect(CONTROLLER)
    good = encode_cgm(CgmMeasurement(133, 4), with_crc=True)
    bad = good[:-1] + bytes([good[-1] ^ 0x10])
    assert secure.cgm._send_app(CONTROLLER, bytes([AppKind.CGM_MEASUREMENT]) + bad)
    secure.medium.settle()
    assert secure.controller.readings == []
    assert secure.log.with_code(LinkEventCode.E2E_CRC)


def test_after_a_long_jam_the_link_recovers_and_a_retry_never_doses_twice(
    secure: SecureSystem,
) -> None:
    bolus = Bolus(Decimal("1.0"), CommandSource.REMOTE, "b-1")
    # The bolus reaches the pump, its answer does not (the adversary swallows the pump's frames).
    secure.adversary.intercept(
        lambda tx: None if tx.sender == "pump" else PASS  # type: ignore[arg-type,return-value]
    )
    assert secure.controller.send(bolus) is None
    assert secure.pump.bolus(1) is not None
    secure.adversary.stop_intercepting()
    # Then a long jam: a dozen requests lost, far past the pump's 8 wake-up addresses ahead.
    secure.adversary.jam(period_ms=1, on_ms=1, end_ms=secure.clock.now_ms() + 5_000)
    for _ in range(12):
        assert secure.controller.read_status() is None
    secure.clock.advance(10_000)
    # The controller retries the uncertain bolus, same id: new session, same E2E counter.
    reply = secure.controller.send(bolus)
    assert reply is not None and reply.accepted and reply.bolus_id == 1
    assert secure.pump.bolus(2) is None
    assert len(secure.log.with_code(LinkEventCode.PAIRING_COMPLETED)) == 2  # no re-pairing
