"""The FHIR R5 read API, checked by parsing every answer back into the R5 models."""

from __future__ import annotations

from decimal import Decimal

from fastapi.testclient import TestClient
from fhir.resources.bundle import Bundle
from fhir.resources.capabilitystatement import CapabilityStatement
from fhir.resources.device import Device
from fhir.resources.medicationadministration import MedicationAdministration
from fhir.resources.medicationrequest import MedicationRequest
from fhir.resources.operationoutcome import OperationOutcome
from tests.interop.messages import order, piv
from tests.server.test_http_api import as_role

from pumpguard.clock import VirtualClock
from pumpguard.server import (
    AssetKind,
    AssetService,
    AssetState,
    EventRecord,
    IngestService,
    Role,
    Store,
)
from pumpguard.server.orders import OrderService, OrderStatus, OrderStep

FHIR = "/fhir/R5"


def _event(seq: int, kind: str, at: int, **attributes: str) -> EventRecord:
    body = {"log_seq": seq, "occurred_at_ms": at, "summary": kind, "attributes": attributes}
    return EventRecord("PUMP-0001", seq, at, kind, body)


def _fleet(server: Store) -> None:
    with server.transaction() as session:
        assets = AssetService(session, server.ctx)
        assets.register("PUMP-0001", AssetKind.LVP, "Acme", "LVP-9", "SN-77", "ICU bed 3")
        assets.transition("PUMP-0001", AssetState.ONBOARDED, "t")
        IngestService(session, server.ctx).ingest(
            [
                EventRecord(
                    "PUMP-0001",
                    1,
                    1_000,
                    "status",
                    {"state": "infusing", "battery_pct": 80, "firmware_version": "2.1.0"},
                ),
                _event(
                    2,
                    "delivery-start",
                    2_000,
                    drug="Heparin",
                    rate_ml_h="18",
                    patient_id="MRN-4711",
                    order_id="ORD-1001",
                ),
                _event(3, "delivery-stop", 3_000, volume_infused_ml="4.5"),
                _event(
                    4,
                    "delivery-start",
                    4_000,
                    drug="Heparin",
                    rate_ml_h="12",
                    patient_id="MRN-4711",
                ),
            ]
        )
        orders = OrderService(session, server.ctx)
        accepted = orders.record(order(), piv(), "ehr.example")
        orders.finish(accepted.order_id, OrderStatus.CONFIRMED, OrderStep.CONFIRMED, "nurse")
        refused = orders.record(
            order(placer_order_number="ORD-1002", patient_id="MRN-9"), piv(), "ehr.example"
        )
        orders.finish(
            refused.order_id,
            OrderStatus.REJECTED,
            OrderStep.REJECTED,
            "wrong bag",
            app_error=9023,
        )


def test_devices_orders_and_infusions_are_valid_r5(
    server: Store, client: TestClient, clock: VirtualClock
) -> None:
    _fleet(server)
    nurse = as_role(server, client, clock, Role.NURSE)

    answer = client.get(f"{FHIR}/Device", headers=nurse)
    assert answer.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(answer.json())
    assert bundle.type == "searchset" and bundle.total == 1
    device = Device.model_validate(client.get(f"{FHIR}/Device/PUMP-0001", headers=nurse).json())
    assert (device.serialNumber, device.modelNumber, device.status) == (
        "SN-77",
        "LVP-9",
        "inactive",
    )
    assert [v.value for v in device.version or []] == ["2.1.0"]
    assert device.type[0].coding[0].code == "69985"

    requests = Bundle.model_validate(client.get(f"{FHIR}/MedicationRequest", headers=nurse).json())
    parsed = [MedicationRequest.model_validate(e.resource.model_dump()) for e in requests.entry]
    assert [(r.status, r.subject.identifier.value) for r in parsed] == [
        ("active", "MRN-4711"),
        ("cancelled", "MRN-9"),
    ]
    assert parsed[0].device[0].reference.reference == "Device/PUMP-0001"
    assert parsed[0].dispenseRequest.quantity.value == Decimal(250)
    only = client.get(f"{FHIR}/MedicationRequest?patient=MRN-9&status=cancelled", headers=nurse)
    assert Bundle.model_validate(only.json()).total == 1

    given = client.get(f"{FHIR}/MedicationAdministration?patient=MRN-4711", headers=nurse).json()
    administrations = [
        MedicationAdministration.model_validate(e["resource"]) for e in given["entry"]
    ]
    assert [(a.id, a.status) for a in administrations] == [
        ("PUMP-0001-2", "stopped"),
        ("PUMP-0001-4", "in-progress"),
    ]
    assert administrations[0].dosage.rateQuantity.value == Decimal(18)
    assert administrations[0].request.identifier.value == "ORD-1001"


def test_missing_resources_and_bad_searches_are_operation_outcomes(
    server: Store, client: TestClient, clock: VirtualClock
) -> None:
    nurse = as_role(server, client, clock, Role.NURSE)
    for path in (
        "Device/PUMP-9",
        "MedicationRequest/99",
        "MedicationRequest/x",
        "MedicationAdministration/PUMP-9-1",
        "MedicationAdministration/nope",
    ):
        answer = client.get(f"{FHIR}/{path}", headers=nurse)
        assert answer.status_code == 404, path
        assert OperationOutcome.model_validate(answer.json()).issue[0].code == "not-found"
    bad = client.get(f"{FHIR}/MedicationRequest?status=bogus", headers=nurse)
    assert bad.status_code == 400
    assert OperationOutcome.model_validate(bad.json()).issue[0].code == "invalid"
    assert client.get(f"{FHIR}/Device?_id=%00", headers=nurse).status_code == 400


def test_clinical_resources_need_orders_read_and_metadata_is_public(
    server: Store, client: TestClient, clock: VirtualClock
) -> None:
    biomed = as_role(server, client, clock, Role.BIOMED)
    assert client.get(f"{FHIR}/Device", headers=biomed).status_code == 200
    assert client.get(f"{FHIR}/MedicationRequest", headers=biomed).status_code == 403
    assert client.get(f"{FHIR}/MedicationAdministration").status_code == 401
    statement = CapabilityStatement.model_validate(client.get(f"{FHIR}/metadata").json())
    assert statement.fhirVersion == "5.0.0"
    assert {r.type for r in statement.rest[0].resource} == {
        "Device",
        "MedicationRequest",
        "MedicationAdministration",
    }
