"""FHIR R5 read API (``/fhir/R5``): Device, MedicationRequest, MedicationAdministration.

Answers are ``application/fhir+json``; a missing resource or a bad search parameter is an
OperationOutcome. Authentication is the API's bearer session, and each resource type needs the
same permission as its REST counterpart (pumps.read for devices, orders.read for the clinical
resources). The capability statement is public, as FHIR clients read it before logging in.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from pumpguard.server.api.deps import DbSession, Require, store_of
from pumpguard.server.authz import Permission
from pumpguard.server.errors import NotFound
from pumpguard.server.fhir import (
    FHIR_JSON,
    FhirReader,
    capability_statement,
    operation_outcome,
    searchset,
)
from pumpguard.server.users import Principal

__all__ = ["router"]

router = APIRouter(prefix="/fhir/R5", tags=["fhir"])

PumpsReader = Annotated[Principal, Depends(Require(Permission.PUMPS_READ))]
OrdersReader = Annotated[Principal, Depends(Require(Permission.ORDERS_READ))]
_TOKEN = re.compile(r"[A-Za-z0-9\-.|:_ ]{1,128}")
_REQUEST_STATUSES = {"active", "cancelled", "completed", "stopped", "on-hold", "draft", "unknown"}


def _fhir(resource: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(
        resource.model_dump(mode="json", exclude_none=True),
        status_code=status_code,
        media_type=FHIR_JSON,
    )


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _token(name: str, value: str | None) -> str | None:
    """A token search value; anything else is a 400 OperationOutcome, never a query."""
    if value is None:
        return None
    if not _TOKEN.fullmatch(value):
        raise _BadSearch(f"search parameter {name} has an invalid value")
    return value.rpartition("|")[2]


class _BadSearch(Exception):
    """A search value that is not a token: answered with a 400 OperationOutcome."""


def _answer(build: Any) -> JSONResponse:
    try:
        return _fhir(build())
    except NotFound as exc:
        return _fhir(operation_outcome("not-found", str(exc)), 404)
    except _BadSearch as exc:
        return _fhir(operation_outcome("invalid", str(exc)), 400)


@router.get("/metadata", response_class=JSONResponse)
def metadata(request: Request) -> JSONResponse:
    return _fhir(capability_statement(_base(request)))


@router.get("/Device", response_class=JSONResponse)
def search_devices(
    request: Request, session: DbSession, _me: PumpsReader, _id: str | None = Query(None)
) -> JSONResponse:
    def build() -> Any:
        wanted = _token("_id", _id)
        found = FhirReader(session, store_of(request).ctx).devices()
        return searchset([d for d in found if wanted is None or d.id == wanted], _base(request))

    return _answer(build)


@router.get("/Device/{device_id}", response_class=JSONResponse)
def read_device(
    device_id: str, request: Request, session: DbSession, _me: PumpsReader
) -> JSONResponse:
    return _answer(lambda: FhirReader(session, store_of(request).ctx).device(device_id))


@router.get("/MedicationRequest", response_class=JSONResponse)
def search_requests(
    request: Request,
    session: DbSession,
    _me: OrdersReader,
    patient: str | None = Query(None),
    device: str | None = Query(None),
    status: str | None = Query(None),
) -> JSONResponse:
    def build() -> Any:
        wanted_status = _token("status", status)
        if wanted_status is not None and wanted_status not in _REQUEST_STATUSES:
            raise _BadSearch(f"status must be one of {', '.join(sorted(_REQUEST_STATUSES))}")
        found = FhirReader(session, store_of(request).ctx).requests(
            patient=_token("patient", patient),
            device=_token("device", device),
            status=wanted_status,
        )
        return searchset(found, _base(request))

    return _answer(build)


@router.get("/MedicationRequest/{request_id}", response_class=JSONResponse)
def read_request(
    request_id: str, request: Request, session: DbSession, _me: OrdersReader
) -> JSONResponse:
    return _answer(lambda: FhirReader(session, store_of(request).ctx).request(request_id))


@router.get("/MedicationAdministration", response_class=JSONResponse)
def search_administrations(
    request: Request,
    session: DbSession,
    _me: OrdersReader,
    patient: str | None = Query(None),
    device: str | None = Query(None),
) -> JSONResponse:
    def build() -> Any:
        found = FhirReader(session, store_of(request).ctx).administrations(
            patient=_token("patient", patient), device=_token("device", device)
        )
        return searchset(found, _base(request))

    return _answer(build)


@router.get("/MedicationAdministration/{administration_id}", response_class=JSONResponse)
def read_administration(
    administration_id: str, request: Request, session: DbSession, _me: OrdersReader
) -> JSONResponse:
    return _answer(
        lambda: FhirReader(session, store_of(request).ctx).administration(administration_id)
    )
