"""FHIR R5 views of what the server knows: pumps as Device, EHR orders as MedicationRequest,
infusions reported by the pumps as MedicationAdministration.

The resources are built with ``fhir.resources`` (R5 models, validated on construction), from
the same services the REST API uses, so FHIR never shows something the API would not. It is a
read API: the EHR's write path stays IHE PCD PIV over MLLP, which carries the safety checks.

Sources: HL7 FHIR R5 (5.0.0) resource definitions for Device, MedicationRequest,
MedicationAdministration, Bundle, OperationOutcome and CapabilityStatement; device type codes
from IEEE 11073-10101 (MDC_DEV_PUMP_INFUS_MDS 69985, REFERENCE section 4); UCUM for mL/h.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir.resources.bundle import Bundle
from fhir.resources.capabilitystatement import CapabilityStatement
from fhir.resources.device import Device
from fhir.resources.medicationadministration import MedicationAdministration
from fhir.resources.medicationrequest import MedicationRequest
from fhir.resources.operationoutcome import OperationOutcome
from sqlalchemy import select
from sqlalchemy.orm import Session

from pumpguard import __version__
from pumpguard.devices.infusion import EventKind
from pumpguard.server.assets import AssetInfo, AssetKind, AssetService
from pumpguard.server.context import ServerContext
from pumpguard.server.errors import NotFound
from pumpguard.server.ingest import IngestService, PumpStatusView
from pumpguard.server.lifecycle import AssetState
from pumpguard.server.models import PumpEventRow
from pumpguard.server.orders import OrderService, OrderStatus, OrderView

__all__ = [
    "FHIR_JSON",
    "FhirReader",
    "capability_statement",
    "device_resource",
    "medication_request",
    "operation_outcome",
    "searchset",
]

FHIR_JSON = "application/fhir+json"
_MDC = "urn:iso:std:iso:11073:10101"
_UCUM = "http://unitsofmeasure.org"
_PUMP_SYSTEM = "urn:pumpguard:device"
_PATIENT_SYSTEM = "urn:pumpguard:patient-id"
_DRUG_SYSTEM = "urn:pumpguard:drug-library"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_INFUSION_EVENTS = (
    EventKind.DELIVERY_START.value,
    EventKind.DELIVERY_STOP.value,
    EventKind.DELIVERY_COMPLETE.value,
)

_REQUEST_STATUS = {
    OrderStatus.RECEIVED: "active",
    OrderStatus.PREFILLING: "active",
    OrderStatus.PREFILLED: "active",
    OrderStatus.CONFIRMED: "active",
    OrderStatus.EDITED: "active",
    OrderStatus.REFUSED: "cancelled",
    OrderStatus.REJECTED: "cancelled",
    OrderStatus.FAILED: "cancelled",
}
"""An order is active once accepted (the infusion it asks for runs or will run) and cancelled
when it was refused by the server, rejected at the pump or failed before any administration."""


def _instant(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return float(value) if value.is_finite() else None


def _patient(patient_id: str | None, name: str | None = None) -> dict[str, Any]:
    if not patient_id:
        return {"display": "patient not identified at the pump"}
    reference: dict[str, Any] = {"identifier": {"system": _PATIENT_SYSTEM, "value": patient_id}}
    if name:
        reference["display"] = name
    return reference


def _device_reference(device_id: str) -> dict[str, Any]:
    return {"reference": {"reference": f"Device/{device_id}"}}


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> OperationOutcome:
    return OperationOutcome.model_validate(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
        }
    )


def device_resource(asset: AssetInfo | None, status: PumpStatusView | None) -> Device:
    """A pump as Device; either source may be missing (not yet enrolled, or never reported)."""
    ident = asset.ident if asset is not None else status.device_id if status else None
    if ident is None:
        raise ValueError("a device needs an asset or a status")
    data: dict[str, Any] = {
        "resourceType": "Device",
        "id": ident,
        "identifier": [{"system": _PUMP_SYSTEM, "value": ident}],
        "type": [
            {
                "coding": [{"system": _MDC, "code": "69985", "display": "MDC_DEV_PUMP_INFUS_MDS"}],
                "text": "infusion pump",
            }
        ],
    }
    if asset is not None:
        data["status"] = "active" if asset.state is AssetState.IN_SERVICE else "inactive"
        data["manufacturer"] = asset.manufacturer
        data["modelNumber"] = asset.model
        data["serialNumber"] = asset.serial_number
        if asset.location:
            data["location"] = {"display": asset.location}
    versions = []
    if status is not None:
        if status.firmware_version:
            versions.append({"type": {"text": "firmware"}, "value": status.firmware_version})
        if status.library_version:
            versions.append({"type": {"text": "drug library"}, "value": status.library_version})
        availability = "available" if status.online else "lost"
        data["availabilityStatus"] = {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/device-availability-status",
                    "code": availability,
                }
            ],
            "text": f"{'online' if status.online else 'offline'}, {status.state}",
        }
    if versions:
        data["version"] = versions
    return Device.model_validate(data)


def medication_request(order: OrderView) -> MedicationRequest:
    dose_and_rate: dict[str, Any] = {}
    dose = _number(order.dose)
    if dose is not None:
        dose_and_rate["doseQuantity"] = {"value": dose, "unit": order.dose_unit or ""}
    rate = _number(order.rate_ml_h)
    if rate is not None:
        dose_and_rate["rateQuantity"] = {
            "value": rate,
            "unit": "mL/h",
            "system": _UCUM,
            "code": "mL/h",
        }
    dosage: dict[str, Any] = {"route": {"text": "intravenous"}}
    if dose_and_rate:
        dosage["doseAndRate"] = [dose_and_rate]
    data: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": str(order.id),
        "identifier": [
            {
                "system": f"urn:pumpguard:placer:{order.placer_namespace or 'unknown'}",
                "value": order.placer_order_number or str(order.id),
            }
        ],
        "status": _REQUEST_STATUS[order.status],
        "intent": "order",
        "medication": {
            "concept": {
                "coding": [{"system": _DRUG_SYSTEM, "code": order.drug_code or "unknown"}],
                "text": order.drug_name or order.drug_code,
            }
        },
        "subject": _patient(order.patient_id, order.patient_name),
        "authoredOn": _instant(order.order_time_ms),
        "dosageInstruction": [dosage],
    }
    if order.pump_id and _FHIR_ID.fullmatch(order.pump_id):
        data["device"] = [_device_reference(order.pump_id)]
    if order.reason and data["status"] == "cancelled":
        data["statusReason"] = {"text": order.reason[:500]}
    volume = _number(order.vtbi_ml)
    if volume is not None:
        data["dispenseRequest"] = {
            "quantity": {"value": volume, "unit": "mL", "system": _UCUM, "code": "mL"}
        }
    return MedicationRequest.model_validate(data)


@dataclass(frozen=True, slots=True)
class _Infusion:
    device_id: str
    start: PumpEventRow
    end: PumpEventRow | None
    superseded: bool = False
    """Another start came with no stop between: how this one ended is not known."""


@dataclass(frozen=True, slots=True)
class _Reported:
    """What a delivery event's body says: when it happened (the pump's time) and its details."""

    occurred_ms: int
    attributes: dict[str, str]

    @classmethod
    def of(cls, row: PumpEventRow) -> _Reported:
        try:
            body = json.loads(row.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return cls(row.sent_at_ms, {})
        occurred = body.get("occurred_at_ms")
        attributes = body.get("attributes")
        return cls(
            occurred if isinstance(occurred, int) else row.sent_at_ms,
            {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {},
        )


def _administration(infusion: _Infusion) -> MedicationAdministration:
    reported = _Reported.of(infusion.start)
    start, began = reported.attributes, reported.occurred_ms
    ended: _Reported | None = None
    if infusion.end is None:
        status = "unknown" if infusion.superseded else "in-progress"
        period = {"start": _instant(began)}
    else:
        status = "completed" if infusion.end.kind == EventKind.DELIVERY_COMPLETE else "stopped"
        ended = _Reported.of(infusion.end)
        period = {"start": _instant(began), "end": _instant(ended.occurred_ms)}
    data: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": f"{infusion.device_id}-{infusion.start.seq}",
        "status": status,
        "medication": {"concept": {"text": start.get("drug", "unknown drug")}},
        "subject": _patient(start.get("patient_id")),
        "occurencePeriod": period,
        "device": [_device_reference(infusion.device_id)],
    }
    rate = _number(start.get("rate_ml_h"))
    if rate is not None:
        data["dosage"] = {
            "rateQuantity": {"value": rate, "unit": "mL/h", "system": _UCUM, "code": "mL/h"}
        }
    if start.get("order_id"):
        data["request"] = {
            "identifier": {"system": "urn:pumpguard:pump-order-id", "value": start["order_id"]}
        }
    if ended is not None:
        delivered = _number(ended.attributes.get("volume_infused_ml"))
        if delivered is not None:
            data["note"] = [{"text": f"volume infused {delivered:g} mL"}]
    return MedicationAdministration.model_validate(data)


def searchset(resources: Sequence[Any], base: str) -> Bundle:
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(resources),
            "entry": [
                {
                    "fullUrl": f"{base}/{r.__resource_type__}/{r.id}",
                    "resource": r.model_dump(mode="json", exclude_none=True),
                    "search": {"mode": "match"},
                }
                for r in resources
            ],
        }
    )


def capability_statement(base: str) -> CapabilityStatement:
    def read_search(kind: str, params: Sequence[str]) -> dict[str, Any]:
        return {
            "type": kind,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": p, "type": "token"} for p in params],
        }

    return CapabilityStatement.model_validate(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-21",
            "kind": "instance",
            "software": {"name": "pumpguard", "version": __version__},
            "implementation": {"description": "pumpguard pump server (read-only)", "url": base},
            "fhirVersion": "5.0.0",
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {"description": "Bearer session token of the pumpguard API"},
                    "resource": [
                        read_search("Device", ["_id"]),
                        read_search("MedicationRequest", ["_id", "patient", "device", "status"]),
                        read_search("MedicationAdministration", ["_id", "patient", "device"]),
                    ],
                }
            ],
        }
    )


class FhirReader:
    """Queries behind the FHIR endpoints, one database session per request."""

    def __init__(self, session: Session, ctx: ServerContext) -> None:
        self._session = session
        self._ctx = ctx

    def devices(self) -> list[Device]:
        assets = {
            a.ident: a
            for a in AssetService(self._session, self._ctx).list_assets()
            if a.kind is not AssetKind.INSULIN
        }
        statuses = {s.device_id: s for s in IngestService(self._session, self._ctx).statuses()}
        return [
            device_resource(assets.get(i), statuses.get(i))
            for i in sorted(set(assets) | set(statuses))
        ]

    def device(self, device_id: str) -> Device:
        asset: AssetInfo | None
        status: PumpStatusView | None
        try:
            asset = AssetService(self._session, self._ctx).get(device_id)
        except NotFound:
            asset = None
        if asset is not None and asset.kind is AssetKind.INSULIN:
            asset = None
        try:
            status = IngestService(self._session, self._ctx).status(device_id)
        except NotFound:
            status = None
        if asset is None and status is None:
            raise NotFound(f"no Device/{device_id}")
        return device_resource(asset, status)

    def requests(
        self, *, patient: str | None = None, device: str | None = None, status: str | None = None
    ) -> list[MedicationRequest]:
        service = OrderService(self._session, self._ctx)
        orders: list[OrderView] = []
        after = 0
        while True:
            page = service.list_orders(pump_id=device, after_id=after, limit=500)
            orders += page
            if len(page) < 500:
                break
            after = page[-1].id
        chosen = [o for o in orders if patient is None or o.patient_id == patient]
        resources = [medication_request(o) for o in chosen]
        return [r for r in resources if status is None or r.status == status]

    def request(self, request_id: str) -> MedicationRequest:
        if not request_id.isdigit() or int(request_id) > 2**31 - 1:
            raise NotFound(f"no MedicationRequest/{request_id}")
        return medication_request(OrderService(self._session, self._ctx).get(int(request_id)))

    def administrations(
        self, *, patient: str | None = None, device: str | None = None
    ) -> list[MedicationAdministration]:
        query = select(PumpEventRow).where(PumpEventRow.kind.in_(_INFUSION_EVENTS))
        if device is not None:
            query = query.where(PumpEventRow.device_id == device)
        query = query.order_by(PumpEventRow.device_id, PumpEventRow.seq)
        infusions: list[_Infusion] = []
        open_start: dict[str, PumpEventRow] = {}
        for row in self._session.scalars(query):
            if row.kind == EventKind.DELIVERY_START:
                if row.device_id in open_start:
                    superseded = _Infusion(row.device_id, open_start[row.device_id], None, True)
                    infusions.append(superseded)
                open_start[row.device_id] = row
            elif row.device_id in open_start:
                infusions.append(_Infusion(row.device_id, open_start.pop(row.device_id), row))
        infusions += [_Infusion(d, start, None) for d, start in open_start.items()]
        resources = [_administration(i) for i in infusions]
        if patient is not None:
            resources = [
                r
                for r in resources
                if r.subject.identifier is not None and r.subject.identifier.value == patient
            ]
        return sorted(resources, key=lambda r: str(r.id))

    def administration(self, administration_id: str) -> MedicationAdministration:
        device, _, seq = administration_id.rpartition("-")
        if not device or not seq.isdigit():
            raise NotFound(f"no MedicationAdministration/{administration_id}")
        found = [a for a in self.administrations(device=device) if a.id == administration_id]
        if not found:
            raise NotFound(f"no MedicationAdministration/{administration_id}")
        return found[0]
