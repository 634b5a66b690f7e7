"""AID safety: max safe basal, max IOB, predictive suspend, stale data, lost confirmations."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from pumpguard.clinical import BasalProfile, InsulinDelivery
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.controller import AidController, DirectLink, TherapySettings
from pumpguard.devices.insulin import (
    Bolus,
    Command,
    CommandResult,
    CommandSource,
    EventKind,
    HistoryQuery,
    HistoryReply,
    InsulinPump,
    SetTempBasal,
)
from pumpguard.devices.sensors import CgmReading

SETTINGS: dict[str, Any] = {
    "carb_ratio_g_per_u": 10.0,
    "isf_mgdl_per_u": 50.0,
    "basal_u_h": 1.0,
    "target_low_mgdl": 100.0,
    "target_high_mgdl": 120.0,
    "suspend_threshold_mgdl": 70.0,
    "max_bolus_u": 10.0,
    "max_basal_u_h": 4.0,
    "max_iob_u": 2.0,
}


class LossyLink(DirectLink):
    """A radio that can lose the next command, the next answer, or the history replies."""

    def __init__(self, pump: InsulinPump) -> None:
        super().__init__(pump)
        self.lose_request = 0
        self.lose_reply = 0
        self.history_down = False
        self.history_down_after_loss = False
        self.sent: list[Command] = []

    def send(self, command: Command) -> CommandResult | None:
        self.sent.append(command)
        if self.lose_request:
            self.lose_request -= 1
            return None
        result = self.pump.handle(command)
        if self.lose_reply:
            self.lose_reply -= 1
            self.history_down = self.history_down or self.history_down_after_loss
            return None
        return result

    def history(self, query: HistoryQuery) -> HistoryReply | None:
        return None if self.history_down else self.pump.history(query)


class Rig:
    def __init__(self, **overrides: Any) -> None:
        self.clock = VirtualClock(0)
        self.settings = TherapySettings(**{**SETTINGS, **overrides})
        self.pump = InsulinPump(self.clock, BasalProfile.flat(Decimal("1.0")))
        self.link = LossyLink(self.pump)
        self.aid = AidController(self.clock, self.link, self.settings, id_prefix="t")
        self.seq = 0

    def reading(self, bg: float) -> None:
        self.seq += 1
        self.aid.receive(CgmReading(self.clock.now_ms(), bg, self.seq))

    def minutes(self, count: int, bg: float | None = None) -> None:
        """``count`` minutes: a reading every 5 minutes (if ``bg``), the controller each one."""
        for _ in range(count):
            if bg is not None and self.clock.now_ms() % (5 * MS_PER_MINUTE) == 0:
                self.reading(bg)
            self.aid.step()
            self.clock.advance(MS_PER_MINUTE)

    def temp_rates(self) -> list[Decimal]:
        return [
            e.after.temp.rate_u_h
            for e in self.pump.log
            if e.kind is EventKind.TEMP_BASAL_START
            and e.after is not None
            and e.after.temp is not None
            and e.after.temp.rate_u_h is not None
        ]

    def net_iob(self) -> float:
        """Independent of the controller: pump's IOB minus what the scheduled basal leaves."""
        now = self.clock.now_ms()
        curve = self.pump.model.insulin
        basal = InsulinDelivery(0, now, Fraction(now, MS_PER_HOUR))
        return float(self.pump.iob_u - curve.iob([basal], now))


def test_high_glucose_never_exceeds_max_safe_basal() -> None:
    rig = Rig()
    rig.minutes(120, bg=350.0)
    rates = rig.temp_rates()
    assert rates, "a high glucose must raise the basal"
    assert max(rates) <= Decimal("3.0")  # min(max basal 4, 3 x 1, 4 x 1)
    assert max(rates) > Decimal("1.0")
    assert all(
        e.source is CommandSource.AUTOMATED and e.command_id
        for e in rig.pump.log
        if e.kind is EventKind.TEMP_BASAL_START
    )


def test_max_safe_basal_follows_max_basal_setting() -> None:
    rig = Rig(max_basal_u_h=1.5)
    rig.minutes(60, bg=350.0)
    assert max(rig.temp_rates()) == Decimal("1.5")


@pytest.mark.parametrize("smb", [False, True])
def test_automated_insulin_never_exceeds_max_iob(smb: bool) -> None:
    rig = Rig(max_iob_u=1.0, smb=smb)
    worst = 0.0
    for _ in range(48):
        rig.minutes(5, bg=400.0)
        worst = max(worst, rig.net_iob())
    assert worst <= 1.0 + 0.02
    assert worst > 0.8  # it did use the room it had
    if smb:
        boluses = [e for e in rig.pump.log if e.kind is EventKind.BOLUS_START]
        assert boluses
        assert all(e.source is CommandSource.AUTOMATED for e in boluses)


def test_smb_size_is_half_the_requirement_at_most_30_min_of_basal() -> None:
    rig = Rig(max_iob_u=10.0, smb=True)
    rig.minutes(1, bg=400.0)
    bolus = rig.pump.bolus(1)
    assert bolus is not None
    assert bolus.amount_u == Fraction(1, 2)  # basal 1 U/h x 30 min


def test_predicted_low_suspends_with_a_zero_temp() -> None:
    rig = Rig()
    for bg in (130.0, 115.0, 100.0, 88.0):
        rig.minutes(5, bg=bg)
    assert Decimal(0) in rig.temp_rates()
    assert rig.pump.basal_u_h == 0
    assert "suspend" in rig.aid.decisions[-1].reason


def test_steady_in_range_glucose_leaves_the_schedule_alone() -> None:
    rig = Rig()
    rig.minutes(60, bg=110.0)
    assert rig.temp_rates() == []
    assert rig.pump.basal_u_h == 1


def test_stale_glucose_falls_back_to_scheduled_basal() -> None:
    rig = Rig()
    rig.minutes(10, bg=350.0)
    assert rig.pump.basal_u_h > 1
    rig.minutes(20)  # no new reading: the last one is now 20 minutes old
    assert rig.pump.basal_u_h == 1
    assert rig.pump.temp_basal is None
    assert "no CGM reading" in rig.aid.decisions[-1].reason
    rates_before = len(rig.temp_rates())
    rig.minutes(30)
    assert len(rig.temp_rates()) == rates_before  # no dosing on stale data


def test_stale_glucose_asks_the_pump_for_limited_mode_when_enabled() -> None:
    """With ``limited_mode`` (the radio loop), stale data puts the pump in limited mode at the
    rate automation gave (here a zero temp basal on a low: 0 %), not the full schedule; fresh
    readings hand the basal back to the algorithm."""
    rig = Rig()
    rig.aid.limited_mode = True
    rig.minutes(4 * 60, bg=60.0)  # four hours of lows: the AID suspends (zero temp basal)
    assert rig.pump.basal_u_h == 0
    rig.minutes(20)  # no reading for 20 minutes
    assert rig.pump.limited_mode
    assert rig.pump.basal_u_h < 1  # the schedule is 1 U/h
    limited = [e for e in rig.pump.log if e.kind is EventKind.LIMITED_MODE]
    assert len(limited) == 1
    rig.minutes(30)
    assert len([e for e in rig.pump.log if e.kind is EventKind.LIMITED_MODE]) == 1, "asked once"
    rig.minutes(15, bg=120.0)
    assert not rig.pump.limited_mode


def test_reading_16_minutes_old_is_not_used() -> None:
    rig = Rig()
    rig.reading(400.0)
    rig.clock.advance(16 * MS_PER_MINUTE)
    rig.aid.step()
    assert rig.temp_rates() == []
    assert rig.aid.glucose() is None


def _bolus_starts(pump: InsulinPump) -> list[int | None]:
    return [e.bolus_id for e in pump.log if e.kind is EventKind.BOLUS_START]


def test_lost_reply_to_a_bolus_is_reconciled_not_repeated() -> None:
    rig = Rig()
    rig.minutes(5, bg=150.0)
    rig.link.lose_reply = 1
    rec, result = rig.aid.announce_meal(50.0)
    assert result is None  # the answer was lost
    rig.minutes(10, bg=150.0)
    boluses = [e for e in rig.pump.log if e.kind is EventKind.BOLUS_REQUESTED]
    assert len(boluses) == 1
    assert rig.pump.bolus(2) is None
    view = rig.pump.bolus(1)
    assert view is not None
    assert view.amount_u == Fraction(rec.amount_u)
    assert not rig.aid.client.uncertain
    sent_boluses = [c for c in rig.link.sent if isinstance(c, Bolus)]
    assert len(sent_boluses) == 1


def test_lost_bolus_request_is_resent_with_the_same_id_once() -> None:
    rig = Rig()
    rig.minutes(5, bg=150.0)
    rig.link.lose_request = 1
    _, result = rig.aid.announce_meal(40.0)
    assert result is None
    sent = [c for c in rig.link.sent if isinstance(c, Bolus)]
    assert len(sent) == 2
    assert sent[0] == sent[1]  # same command, same id
    rig.minutes(5, bg=150.0)
    assert rig.pump.bolus(1) is not None
    assert rig.pump.bolus(2) is None


def test_nothing_new_is_sent_while_a_command_is_uncertain() -> None:
    rig = Rig()
    rig.minutes(5, bg=110.0)
    rig.link.lose_reply = 1
    rig.link.history_down_after_loss = True
    rig.minutes(5, bg=300.0)  # next cycle: its temp basal's answer is lost, history too
    assert rig.aid.client.uncertain
    count = len(rig.link.sent)
    rig.minutes(30, bg=400.0)
    assert len(rig.link.sent) == count
    assert len(rig.temp_rates()) == 1  # the lost one was applied once, nothing since
    rig.link.history_down = False
    rig.minutes(10, bg=400.0)
    assert not rig.aid.client.uncertain
    assert [e.command_id for e in rig.pump.log if e.kind is EventKind.COMMAND_REPLAYED] == []
    ids = [getattr(c, "command_id", None) for c in rig.link.sent if isinstance(c, SetTempBasal)]
    assert len(ids) == len(set(ids))  # every new temp basal got a new id; none reused


def _meal_bolus(rig: Rig, carbs: float, bg: float) -> Decimal:
    """A meal announced with a fresh reading (the AID not stepped: no temp basal in play)."""
    rig.reading(bg)
    rec, result = rig.aid.announce_meal(carbs)
    assert result is None or result.accepted
    return rec.amount_u


def test_no_correction_within_the_wait_after_a_bolus() -> None:
    rig = Rig(correction_wait_min=180.0)
    assert _meal_bolus(rig, 30, 220.0) == Decimal("5.00")  # 3 + (220-120)/50
    rig.clock.advance(120 * MS_PER_MINUTE)
    rig.aid.client.sync()
    assert rig.aid.client.iob_u() > 1.0
    # within 3 h: carbs only (1 U), less the insulin still on board
    assert _meal_bolus(rig, 10, 220.0) == Decimal("0")
    rig.clock.advance(180 * MS_PER_MINUTE)
    rig.aid.client.sync()
    later = rig.aid.client.iob_u()
    # after 3 h the correction is back: 1 + 2 - IOB
    assert _meal_bolus(rig, 10, 220.0) == Decimal(int((3.0 - later) / 0.05 + 1e-9)) * Decimal(
        "0.05"
    )


def test_a_cgm_reading_at_the_top_of_its_range_is_not_corrected_from() -> None:
    assert _meal_bolus(Rig(), 30, 400.0) == Decimal("3.00")  # carbs only: 400 means "HIGH"
    assert _meal_bolus(Rig(), 30, 390.0) == Decimal("8.40")  # 3 + (390-120)/50
