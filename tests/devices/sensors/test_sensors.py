"""CGM transmitter and fingerstick meter devices."""

from __future__ import annotations

import pytest

from pumpguard.clock import MS_PER_MINUTE, VirtualClock
from pumpguard.devices.sensors import (
    CgmSessionState,
    CgmTransmitter,
    FingerstickMeter,
    MeterError,
)
from pumpguard.physiology import CgmModel


def _run(seed: int, minutes: int, warmup: int = 0, bg: float = 120.0) -> list[tuple[int, float]]:
    clock = VirtualClock(0)
    cgm = CgmTransmitter(clock, seed=seed, warmup_min=warmup)
    out = []
    for _ in range(minutes):
        reading = cgm.sense(bg)
        if reading is not None:
            out.append((reading.time_ms // MS_PER_MINUTE, reading.glucose_mgdl))
        clock.advance(MS_PER_MINUTE)
    return out


def test_cgm_reads_every_five_minutes() -> None:
    readings = _run(1, 61)
    assert [m for m, _ in readings] == list(range(0, 61, 5))


def test_cgm_warmup_publishes_nothing_then_becomes_active() -> None:
    clock = VirtualClock(0)
    cgm = CgmTransmitter(clock, seed=3, warmup_min=120)
    published = []
    for _ in range(130):
        assert cgm.state is (
            CgmSessionState.WARMUP
            if clock.now_ms() < 120 * MS_PER_MINUTE
            else CgmSessionState.ACTIVE
        )
        reading = cgm.sense(110.0)
        if reading is not None:
            published.append(reading.time_ms // MS_PER_MINUTE)
        clock.advance(MS_PER_MINUTE)
    assert published == [120, 125]


def test_cgm_expires_after_its_lifetime() -> None:
    clock = VirtualClock(0)
    cgm = CgmTransmitter(clock, seed=3, warmup_min=0, lifetime_days=1)
    clock.advance(1440 * MS_PER_MINUTE - 5 * MS_PER_MINUTE)
    assert cgm.sense(100.0) is not None
    clock.advance(5 * MS_PER_MINUTE)
    assert cgm.state is CgmSessionState.EXPIRED
    assert cgm.sense(100.0) is None


def test_cgm_is_seeded() -> None:
    assert _run(7, 120) == _run(7, 120)
    assert _run(7, 120) != _run(8, 120)


def test_cgm_noise_is_bounded_and_ideal_model_is_exact() -> None:
    values = [v for _, v in _run(2, 600)]
    assert all(40 <= v <= 400 for v in values)
    assert max(abs(v - 120.0) for v in values) > 0  # there is noise
    clock = VirtualClock(0)
    ideal = CgmTransmitter(clock, seed=1, model=CgmModel.ideal(), warmup_min=0)
    reading = ideal.sense(123.4)
    assert reading is not None
    assert reading.glucose_mgdl == pytest.approx(123.4)


def test_cgm_refuses_non_finite_glucose() -> None:
    with pytest.raises(ValueError, match="finite"):
        CgmTransmitter(VirtualClock(0), seed=1).sense(float("nan"))


def test_meter_uses_strips_and_is_seeded() -> None:
    def readings(seed: int) -> list[float]:
        meter = FingerstickMeter(VirtualClock(5), seed=seed, strips=3)
        return [meter.measure(150.0).glucose_mgdl for _ in range(3)]

    assert readings(1) == readings(1)
    meter = FingerstickMeter(VirtualClock(5), seed=1, strips=1)
    first = meter.measure(150.0)
    assert first.time_ms == 5
    assert abs(first.glucose_mgdl - 150.0) < 40
    assert meter.strips == 0
    with pytest.raises(MeterError, match="strips"):
        meter.measure(150.0)
    with pytest.raises(MeterError, match="finite"):
        FingerstickMeter(VirtualClock(0), seed=1).measure(float("inf"))
