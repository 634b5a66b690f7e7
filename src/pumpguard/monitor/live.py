"""Detection on what pumps report while they run: dosing, programming hours, telemetry loss.

No single pump event is an attack: a PCA dose, a soft-limit override, a programme entered at
night, a pump that drops off the network are all routine. What betrays a stolen credential, a
compromised programming path or a jammer is a departure from *this* pump's own habit:

* PCA doses far larger or more frequent than this patient's own history (``BolusAnomaly``,
  per device, patient and dose unit);
* more soft-limit overrides within an hour than this pump has ever had in an hour (and at
  least ``override_min_burst``): overrides are how a hard-to-reach dose gets through;
* programming at an hour of the day when this pump has not been programmed in its learning
  history (an outpatient unit at 3 a.m.); an intensive-care pump programmed around the clock
  learns that and stays quiet;
* telemetry loss bursts: a pump reports its status every few seconds, so a gap of more than
  ``loss_gap_s`` between two statuses (or a reported disconnection) is an outage; one is a
  dead zone, ``loss_min_burst`` within ``loss_window_min`` is interference or jamming.

``ActivityWatch`` turns these into ``SecurityEvent``s with the codes of ``LiveEvent``; the
rules of ``ruleset.py`` turn those into detections like any other event, so the findings are in
the security-event journal, exported as OCSF and matched by the published Sigma rules. Anomalies
are not learned as habit, so an attack does not teach the watch to accept it. Pure and
deterministic: the caller supplies every time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from pumpguard.monitor.detectors import BOLUS_FREQUENCY, BolusAnomaly, DetectorError
from pumpguard.security_events import Component, SecurityEvent, Severity

__all__ = ["ActivityWatch", "LiveEvent", "LiveSettings", "PumpActivity"]

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_MINUTE_MS = 60_000

PCA_DOSE = "pca-dose"
OVERRIDE = "soft-limit-override"
PROGRAMMING = frozenset({"programmed", "delivery-change"})
STATUS = "status"
CONNECTION = "connection"


class LiveEvent(StrEnum):
    """Codes of the findings on live pump data; a published code is never renamed."""

    BOLUS_OUTLIER = "monitor.dose.bolus_outlier"
    BOLUS_BURST = "monitor.dose.bolus_burst"
    OVERRIDE_BURST = "monitor.dose.override_burst"
    OFF_HOURS_PROGRAMMING = "monitor.programming.off_hours"
    LOSS_BURST = "monitor.telemetry.loss_burst"


@dataclass(frozen=True, slots=True)
class PumpActivity:
    """One record a pump reported, as the watch needs it.

    ``occurred_ms`` is the pump's time of the event (or of sending, for a status), by the pump's
    clock; ``received_ms`` the server's time of storing it, which findings are stamped with.
    """

    device_id: str
    kind: str
    occurred_ms: int
    received_ms: int
    source: str | None = None
    patient_id: str | None = None
    dose: Decimal | None = None
    dose_unit: str | None = None
    connected: bool | None = None


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """Thresholds of the watch; ``utc_offset_min`` places the hospital's hours of the day."""

    utc_offset_min: int = 0
    history_days: int = 14
    override_window_min: int = 60
    override_min_burst: int = 3
    programming_min_history: int = 20
    programming_min_days: int = 3
    loss_gap_s: int = 60
    loss_window_min: int = 30
    loss_min_burst: int = 3
    bolus_min_history: int = 20

    def __post_init__(self) -> None:
        if not -14 * 60 <= self.utc_offset_min <= 14 * 60:
            raise ValueError("utc_offset_min must be within -840..840")
        for name in (
            "history_days",
            "override_window_min",
            "override_min_burst",
            "programming_min_history",
            "programming_min_days",
            "loss_gap_s",
            "loss_window_min",
            "loss_min_burst",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.bolus_min_history < 3:
            raise ValueError("bolus_min_history must be at least 3")


@dataclass(slots=True)
class _Pump:
    overrides: deque[int] = field(default_factory=deque)
    most_overrides: int = 0
    programming: deque[int] = field(default_factory=deque)
    last_status_ms: int | None = None
    outages: deque[int] = field(default_factory=deque)


class ActivityWatch:
    """Per-pump habits, fed in arrival order; ``observe`` returns the findings it makes."""

    def __init__(self, settings: LiveSettings | None = None) -> None:
        self.settings = settings or LiveSettings()
        self._pumps: dict[str, _Pump] = {}
        self._boluses: dict[tuple[str, str, str], BolusAnomaly] = {}

    def observe(self, activity: PumpActivity) -> list[SecurityEvent]:
        pump = self._pumps.setdefault(activity.device_id, _Pump())
        kind = activity.kind
        if kind == PCA_DOSE and activity.dose is not None and activity.dose > 0:
            return self._bolus(activity)
        if kind == OVERRIDE:
            return self._override(pump, activity)
        if kind in PROGRAMMING:
            return self._programming(pump, activity)
        if kind == STATUS:
            return self._status(pump, activity)
        if kind == CONNECTION and activity.connected is False:
            return self._outage(pump, activity, "the pump reported losing its connection")
        return []

    def _event(
        self,
        activity: PumpActivity,
        code: LiveEvent,
        severity: Severity,
        message: str,
        **attributes: str,
    ) -> SecurityEvent:
        extra = {"kind": activity.kind, "occurred_at_ms": str(activity.occurred_ms)}
        if activity.source is not None:
            extra["source"] = activity.source
        if activity.patient_id is not None:
            extra["patient_id"] = activity.patient_id
        return SecurityEvent(
            time_ms=activity.received_ms,
            component=Component.DEVICE,
            code=str(code),
            severity=severity,
            message=message,
            device_id=activity.device_id,
            attributes={**extra, **attributes},
        )

    def _bolus(self, activity: PumpActivity) -> list[SecurityEvent]:
        assert activity.dose is not None
        unit = activity.dose_unit or "-"
        key = (activity.device_id, activity.patient_id or "-", unit)
        detector = self._boluses.get(key)
        if detector is None:
            detector = self._boluses[key] = BolusAnomaly(
                activity.device_id,
                min_history=self.settings.bolus_min_history,
                history_days=self.settings.history_days,
            )
        try:
            detections = detector.bolus(activity.occurred_ms, float(activity.dose))
        except DetectorError:
            return []  # resent out of order: already judged in its place
        whose = f"patient {activity.patient_id}" if activity.patient_id else "this pump"
        return [
            self._event(
                activity,
                LiveEvent.BOLUS_BURST
                if d.analytic_id == BOLUS_FREQUENCY
                else LiveEvent.BOLUS_OUTLIER,
                Severity.HIGH,
                f"PCA dose on {activity.device_id} unlike {whose}'s history: "
                + d.message.replace(" U", f" {unit}"),
                dose=f"{activity.dose:f}",
                dose_unit=unit,
            )
            for d in detections
        ]

    def _override(self, pump: _Pump, activity: PumpActivity) -> list[SecurityEvent]:
        s = self.settings
        t = activity.occurred_ms
        _forget(pump.overrides, t - s.history_days * _DAY_MS)
        window = s.override_window_min * _MINUTE_MS
        in_window = 1 + sum(1 for o in pump.overrides if t - window <= o <= t)
        if in_window >= max(s.override_min_burst, pump.most_overrides + 1):
            return [
                self._event(
                    activity,
                    LiveEvent.OVERRIDE_BURST,
                    Severity.MEDIUM,
                    f"{in_window} soft-limit overrides on {activity.device_id} within "
                    f"{s.override_window_min} min (its most before: {pump.most_overrides})",
                    overrides=str(in_window),
                )
            ]
        pump.most_overrides = max(pump.most_overrides, in_window)
        pump.overrides.append(t)
        return []

    def _programming(self, pump: _Pump, activity: PumpActivity) -> list[SecurityEvent]:
        s = self.settings
        t = activity.occurred_ms
        _forget(pump.programming, t - s.history_days * _DAY_MS)
        history = pump.programming
        days = {self._local(h) // _DAY_MS for h in history}
        hour = self._hour(t)
        usual = {(hour + d) % 24 for d in (-1, 0, 1)}
        learned = len(history) >= s.programming_min_history and len(days) >= s.programming_min_days
        if learned and not any(self._hour(h) in usual for h in history):
            local = self._local(t)
            # Flagged once, the hour is learnt: an analyst sees the first programming at a new
            # hour; a ward that simply starts working then does not alarm every night.
            history.append(t)
            return [
                self._event(
                    activity,
                    LiveEvent.OFF_HOURS_PROGRAMMING,
                    Severity.MEDIUM,
                    f"{activity.device_id} programmed at {hour:02d}:"
                    f"{local % _HOUR_MS // _MINUTE_MS:02d} local time, an hour at which it was "
                    f"not programmed in {len(history)} programmings over {len(days)} days",
                    hour=str(hour),
                )
            ]
        history.append(t)
        return []

    def _status(self, pump: _Pump, activity: PumpActivity) -> list[SecurityEvent]:
        last, pump.last_status_ms = pump.last_status_ms, activity.occurred_ms
        if last is None or activity.occurred_ms - last <= self.settings.loss_gap_s * 1000:
            return []
        gap_s = (activity.occurred_ms - last) // 1000
        return self._outage(pump, activity, f"no status from the pump for {gap_s} s")

    def _outage(self, pump: _Pump, activity: PumpActivity, why: str) -> list[SecurityEvent]:
        s = self.settings
        t = activity.received_ms
        _forget(pump.outages, t - s.loss_window_min * _MINUTE_MS)
        pump.outages.append(t)
        if len(pump.outages) < s.loss_min_burst:
            return []
        count = len(pump.outages)
        pump.outages.clear()
        return [
            self._event(
                activity,
                LiveEvent.LOSS_BURST,
                Severity.MEDIUM,
                f"{count} telemetry outages of {activity.device_id} within "
                f"{s.loss_window_min} min (last: {why})",
                outages=str(count),
            )
        ]

    def _local(self, time_ms: int) -> int:
        return time_ms + self.settings.utc_offset_min * _MINUTE_MS

    def _hour(self, time_ms: int) -> int:
        return self._local(time_ms) % _DAY_MS // _HOUR_MS


def _forget(times: deque[int], before: int) -> None:
    while times and times[0] < before:
        times.popleft()
