"""The monitor as one object: events through the rules, telemetry through the detectors.

Whoever feeds it (the server's ingest, or the lab replaying a simulated fleet) hands it the same
two streams, security events and what devices measure, and gets the same alerts: the lab's
detection figures are only worth something if they come from the code path the server runs.
Detectors are kept per device, because what is plausible is judged against that device's own
history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pumpguard.monitor.alerts import AlertBook
from pumpguard.monitor.detections import Detection
from pumpguard.monitor.detectors import BolusAnomaly, CgmPlausibility
from pumpguard.monitor.rules import Rule, RuleEngine
from pumpguard.monitor.ruleset import DEFAULT_RULES
from pumpguard.security_events import SecurityEvent

__all__ = ["Monitor"]

DetectionListener = Callable[[Detection], None]


class Monitor:
    """Rules, per-device anomaly detectors and the alert book, fed in time order.

    ``on_detection`` (optional) sees every detection before the book de-duplicates it, for
    whoever measures detection delay.
    """

    def __init__(
        self,
        rules: Iterable[Rule] = DEFAULT_RULES,
        *,
        book: AlertBook | None = None,
        on_detection: DetectionListener | None = None,
    ) -> None:
        self.book = book if book is not None else AlertBook()
        self._listener = on_detection
        self._engine = RuleEngine(rules, self._detected)
        self._cgm: dict[str, CgmPlausibility] = {}
        self._bolus: dict[str, BolusAnomaly] = {}

    def emit(self, event: SecurityEvent) -> None:
        """A security event from any component (the monitor is a ``SecurityEventSink``)."""
        self._engine.emit(event)

    def cgm(self, device_id: str, time_ms: int, mgdl: float) -> None:
        """A CGM reading as the device that used it reported it."""
        detector = self._cgm.get(device_id)
        if detector is None:
            detector = self._cgm[device_id] = CgmPlausibility(device_id)
        self._all(detector.reading(time_ms, mgdl))

    def meter(self, device_id: str, time_ms: int, mgdl: float) -> None:
        """A fingerstick reported by the device whose CGM readings it should agree with."""
        detector = self._cgm.get(device_id)
        if detector is not None:
            self._all(detector.meter(time_ms, mgdl))

    def bolus(self, device_id: str, time_ms: int, units: float) -> None:
        """A bolus the pump accepted, whoever asked for it."""
        detector = self._bolus.get(device_id)
        if detector is None:
            detector = self._bolus[device_id] = BolusAnomaly(device_id)
        self._all(detector.bolus(time_ms, units))

    def _all(self, detections: list[Detection]) -> None:
        for detection in detections:
            self._detected(detection)

    def _detected(self, detection: Detection) -> None:
        if self._listener is not None:
            self._listener(detection)
        self.book.record(detection)
