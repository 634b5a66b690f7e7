"""Spoofed CGM readings: false highs make the AID controller and the bolus calculator dose."""

from __future__ import annotations

import random
from typing import ClassVar

from pumpguard.clock import MS_PER_MINUTE
from pumpguard.lab.attacks._tools import forged_data, next_counter, radio
from pumpguard.lab.attacks.base import ATTACK_MINUTE, Attack, Twin, Verdict
from pumpguard.lab.linked_loop import LinkedLoop
from pumpguard.link import (
    PASS,
    Adversary,
    Capture,
    InterceptPass,
    LegacyFrame,
    LinkProfile,
    Transmission,
)
from pumpguard.link.pdu import AppKind, CgmMeasurement, decode_cgm, encode_cgm

__all__ = ["SensorSpoof", "SpoofedCgm", "SpoofedCgmLow"]

SPOOF_MINUTES = 6 * 60
FALSE_RISE_MGDL = 120
FALSE_DROP_MGDL = -80


class SpoofedCgm(Attack):
    name = "spoofed-cgm"
    references = ("Paul, Kohno, Klonoff 2011 (spoofed glucose values)",)
    description = (
        f"For {SPOOF_MINUTES // 60} hours the attacker makes the controller see glucose "
        f"{FALSE_RISE_MGDL} mg/dL above the truth (a false high), so the AID raises the basal "
        "and meal boluses add corrections. Legacy: each CGM frame is taken off the air and "
        "re-sent modified (relay-and-modify). Secure: the attacker cannot make an "
        "authenticated reading; it sends legacy-format and forged readings as the CGM and "
        "replays the CGM's last frame."
    )
    goal = "more insulin dosed on false highs the sensor never measured"
    control = "aead"
    shift_mgdl: ClassVar[int] = FALSE_RISE_MGDL

    def __init__(self) -> None:
        self._adversary: Adversary | None = None

    def prepare(self, loop: LinkedLoop) -> None:
        self._adversary = radio(loop)

    def launch(self, loop: LinkedLoop) -> None:
        adversary = self._adversary
        assert adversary is not None
        a = loop.link.addresses
        start = loop.minute
        if loop.profile is LinkProfile.LEGACY:

            def modify(tx: Transmission) -> bytes | InterceptPass | None:
                if not start <= loop.minute < start + SPOOF_MINUTES:
                    return PASS
                frame = decode_or_none(tx.data)
                if frame is None or frame.kind is not AppKind.CGM_MEASUREMENT:
                    return PASS
                m = decode_cgm(frame.payload, with_crc=False)
                false = CgmMeasurement(
                    min(max(m.glucose_mgdl + self.shift_mgdl, 40), 400), m.time_offset_min
                )
                payload = encode_cgm(false, with_crc=False)
                return LegacyFrame(frame.kind, frame.dst, frame.src, payload).encode()

            adversary.intercept(modify)
            return
        rng = random.Random(loop.config.seed)

        def spoof(loop: LinkedLoop, minute: int) -> None:
            if not start <= minute < start + SPOOF_MINUTES or minute % 5:
                return
            offset = minute
            pdu = encode_cgm(CgmMeasurement(250, offset), with_crc=False)
            frame = LegacyFrame(AppKind.CGM_MEASUREMENT, a.controller, a.cgm, pdu).encode()
            adversary.inject(frame)
            adversary.inject(forged_data(a.controller, a.cgm, rng, next_counter(adversary, a.cgm)))
            from_cgm = [
                c for c in adversary.captures if (f := c.secure()) is not None and f.src == a.cgm
            ]
            if from_cgm:
                adversary.replay(from_cgm[-1])

        loop.hooks.append(spoof)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        sent = {r.time_ms // MS_PER_MINUTE: round(r.glucose_mgdl) for r in loop.sent_readings}
        false = [
            r
            for r in loop.taken_readings
            if sent.get(r.time_ms // MS_PER_MINUTE) != round(r.glucose_mgdl)
        ]
        extra = spoof_window_extra_u(loop, twin)
        lo, hi = ATTACK_MINUTE, ATTACK_MINUTE + SPOOF_MINUTES
        rise = float(loop.bg[lo:hi].mean() - twin.bg[lo:hi].mean())
        reached = extra > 0 if self.shift_mgdl > 0 else rise > 0
        return Verdict(
            bool(false) and reached,
            f"controller took {len(false)} readings the sensor did not send; while they came, "
            f"{extra:+.2f} U insulin and mean glucose {rise:+.1f} mg/dL against the twin",
        )


def spoof_window_extra_u(loop: LinkedLoop, twin: Twin) -> float:
    """Insulin delivered while the false readings came, minus the twin's: the controller's
    response to them (what it does afterwards reacts to the real glucose they caused)."""
    lo, hi = ATTACK_MINUTE, ATTACK_MINUTE + SPOOF_MINUTES
    return float(loop.insulin_u[lo:hi].sum() - twin.insulin_u[lo:hi].sum())


class SpoofedCgmLow(SpoofedCgm):
    name = "spoofed-cgm-low"
    description = (
        f"For {SPOOF_MINUTES // 60} hours the attacker makes the controller see glucose "
        f"{-FALSE_DROP_MGDL} mg/dL below the truth (a false low, at least 40), so the AID "
        "suspends and meal boluses shrink or are withheld. Same means as spoofed-cgm."
    )
    goal = "glucose driven up by the controller withholding insulin on false lows"
    shift_mgdl = FALSE_DROP_MGDL


def decode_or_none(data: bytes) -> LegacyFrame | None:
    return Capture(0, data).legacy()


_FALSE_BY_MGDL = 60


class SensorSpoof(Attack):
    name = "spoofed-cgm-sensor"
    references = ("Paul, Kohno, Klonoff 2011 (spoofed glucose values, at the sensor)",)
    description = (
        f"For {SPOOF_MINUTES // 60} hours the attacker makes the sensor itself measure "
        f"{FALSE_RISE_MGDL} mg/dL more than the blood holds (tampering with the sensor, not the "
        "radio): the readings are authentic to the link, so no cryptography can refuse them. "
        "The jump is abrupt."
    )
    goal = "the controller doses on glucose the body does not have"
    control = "cgm-plausibility"
    detection_only = True

    _start: int | None = None

    def launch(self, loop: LinkedLoop) -> None:
        start = self._start = loop.minute

        def tamper(loop: LinkedLoop, minute: int) -> None:
            spoofing = start <= minute + 1 < start + SPOOF_MINUTES
            loop.sensor_offset_mgdl = float(FALSE_RISE_MGDL) if spoofing else 0.0

        tamper(loop, start - 1)
        loop.hooks.append(tamper)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        # Only readings made while the sensor was tampered with are the attacker's: outside
        # that window a reading far above the blood is the sensor's own error, which the twin
        # has too (child#008 seed 5: 195 mg/dL against 134 at 05:55 the next day).
        start = ATTACK_MINUTE if self._start is None else self._start
        lo, hi = (start - 1) * MS_PER_MINUTE, (start + SPOOF_MINUTES) * MS_PER_MINUTE
        false = [
            r
            for r in loop.used_readings
            if lo <= r.time_ms < hi and r.glucose_mgdl - _true_bg(loop, r.time_ms) > _FALSE_BY_MGDL
        ]
        extra = spoof_window_extra_u(loop, twin)
        return Verdict(
            bool(false) and extra > 0,
            f"the algorithm used {len(false)} readings over {_FALSE_BY_MGDL} mg/dL above the "
            f"blood; {extra:+.2f} U insulin against the twin while the sensor was tampered with",
        )


def _true_bg(loop: LinkedLoop, time_ms: int) -> float:
    minute = time_ms // MS_PER_MINUTE
    return float(loop.bg[max(minute - 1, 0)])
