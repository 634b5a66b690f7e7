"""From the pump firmware's own records to IHE PCD reports: the event log to IPEC events, the
screen to DEC observations, alarms to ACM alerts.

The firmware already names its delivery events and alarms with IEEE 11073 codes
(``devices.infusion.log`` and ``alarms``); this module only reads them, so a code is defined
once, where the event happens.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pumpguard.devices.infusion import Alarm, Display, LogEntry, PumpState
from pumpguard.interop.codes import Mdc
from pumpguard.interop.models import (
    Alert,
    AlertPhase,
    CodedValue,
    Observation,
    PumpEvent,
    PumpEventKind,
)

__all__ = ["PUMP_STATUS", "alert_from_alarm", "event_from_log", "observations_from_display"]

PUMP_STATUS = {
    PumpState.INFUSING: "pump-status-infusing",
    PumpState.KVO: "pump-status-kvo",
    PumpState.IDLE: "pump-status-ready",
    PumpState.PROGRAMMING: "pump-status-ready",
    PumpState.PAUSED: "pump-status-paused",
    PumpState.OFF: "pump-status-standby",
    PumpState.FAILED: "pump-status-standby",
}
"""MDC_PUMP_STAT (184508) values as REFERENCE section 4 lists them."""

_ML = CodedValue(str(int(Mdc.DIM_ML)), "MDC_DIM_MILLI_L", "MDC")
_ML_H = CodedValue(str(int(Mdc.DIM_ML_PER_H)), "MDC_DIM_MILLI_L_PER_HR", "MDC")


def event_from_log(
    entry: LogEntry,
    *,
    pump_id: str,
    patient_id: str,
    occurred_at: datetime,
    placer_order_number: str | None = None,
    control_id: str = "",
) -> PumpEvent | None:
    """The IPEC event for one log entry, or None when the entry is not an IPEC event."""
    if entry.mdc_code is None:
        return None
    kind = PumpEventKind.from_code(str(entry.mdc_code))
    if kind is None:
        return None
    snapshot = entry.after or entry.before
    drug = None
    if snapshot is not None and snapshot.drug:
        drug = CodedValue(snapshot.drug, "", "")
    return PumpEvent(
        kind=kind,
        pump_id=pump_id,
        patient_id=patient_id,
        occurred_at=occurred_at,
        placer_order_number=placer_order_number,
        drug=drug,
        rate_ml_h=None if snapshot is None else snapshot.rate_ml_h,
        volume_delivered_ml=None if snapshot is None else snapshot.volume_infused_ml,
        vtbi_remaining_ml=None if snapshot is None else snapshot.vtbi_remaining_ml,
        control_id=control_id,
    )


def observations_from_display(display: Display, observed_at: datetime) -> tuple[Observation, ...]:
    """DEC metrics of one pump: channel metrics at ``1.1.1.n``, device attributes (care area,
    library version) at the MDS level ``1.0.0.n``."""

    def obs(
        code: Mdc, ref: str, value: Decimal | str, unit: CodedValue | None, path: str
    ) -> Observation:
        return Observation(int(code), ref, value, unit, path, observed_at)

    out = [
        obs(Mdc.PUMP_STAT, "MDC_PUMP_STAT", PUMP_STATUS[display.state], None, "1.1.1.1"),
        obs(Mdc.FLOW_FLUID_PUMP, "MDC_FLOW_FLUID_PUMP", display.rate_ml_h, _ML_H, "1.1.1.2"),
        obs(
            Mdc.VOL_FLUID_DELIV_TOTAL,
            "MDC_VOL_FLUID_DELIV_TOTAL",
            display.volume_infused_ml,
            _ML,
            "1.1.1.3",
        ),
    ]
    if display.vtbi_remaining_ml is not None:
        out.append(
            obs(
                Mdc.VOL_FLUID_TBI_REMAIN,
                "MDC_VOL_FLUID_TBI_REMAIN",
                display.vtbi_remaining_ml,
                _ML,
                "1.1.1.4",
            )
        )
    if display.drug is not None:
        out.append(obs(Mdc.DRUG_LABEL, "", display.drug, None, "1.1.1.5"))
    if display.dose is not None and display.dose_unit:
        unit = CodedValue(display.dose_unit, "", "UCUM")
        out.append(obs(Mdc.RATE_DOSE, "MDC_RATE_DOSE", display.dose, unit, "1.1.1.6"))
    if display.care_area is not None:
        out.append(obs(Mdc.LIBRARY_CARE_AREA, "", display.care_area, None, "1.0.0.1"))
    if display.library_version is not None:
        version = str(display.library_version)
        out.append(obs(Mdc.LIBRARY_VERSION, "", version, None, "1.0.0.2"))
    return tuple(out)


def alert_from_alarm(
    alarm: Alarm,
    *,
    alert_id: str,
    pump_id: str,
    patient_id: str,
    phase: AlertPhase,
    occurred_at: datetime,
    control_id: str = "",
) -> Alert | None:
    """The ACM alert for a firmware alarm; None for reminders that have no IEEE 11073 term
    (the firmware deliberately gives them no borrowed code)."""
    kind = alarm.kind
    if kind.mdc_code is None:
        return None
    return Alert(
        alert_id=alert_id,
        pump_id=pump_id,
        patient_id=patient_id,
        code=kind.mdc_code,
        ref=kind.mdc_ref,
        text=kind.text,
        phase=phase,
        occurred_at=occurred_at,
        priority=kind.priority.name.lower(),
        state="inactive" if phase is AlertPhase.END else "active",
        control_id=control_id,
    )
