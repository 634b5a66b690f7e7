"""Drug library authoring and approval endpoints (``/api/v1/library``).

Reading needs ``library.read``, drafting ``library.draft``, deciding ``library.approve``; the
two-person rule itself is enforced by ``LibraryAuthoring`` on the caller's account, so it holds
whatever role the account has. Drug entries travel in the published drug-library JSON shape.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pumpguard.clinical import Source
from pumpguard.server.api.deps import DbSession, Require, store_of
from pumpguard.server.authz import Permission
from pumpguard.server.library_authoring import (
    CareAreaInfo,
    ChangeKind,
    EntryInfo,
    FieldChange,
    ItemChange,
    LibraryAuthoring,
    LibraryVersionInfo,
    VersionState,
)
from pumpguard.server.users import Principal

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, Depends(Require(Permission.LIBRARY_READ))]
Drafter = Annotated[Principal, Depends(Require(Permission.LIBRARY_DRAFT))]
Approver = Annotated[Principal, Depends(Require(Permission.LIBRARY_APPROVE))]

_TAG = "library"
_VERSION = Annotated[int, Field(ge=1, le=2**31 - 1)]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]
AreaId = Annotated[int, Path(ge=1, le=2**31 - 1)]
EntryId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DraftCreate(_In):
    """Copy ``base_version`` (or, with ``from_latest_approved``, the newest approved version),
    or start empty (the first draft names ``library_id`` and ``name``)."""

    base_version: _VERSION | None = None
    from_latest_approved: bool = False
    library_id: str | None = Field(default=None, min_length=1, max_length=80, strict=True)
    name: str | None = Field(default=None, min_length=1, max_length=80, strict=True)
    institution: str | None = Field(default=None, max_length=200, strict=True)


class CsvImport(_In):
    csv: str = Field(min_length=1, max_length=5_000_000, strict=True)
    base_version: _VERSION | None = None
    library_id: str | None = Field(default=None, min_length=1, max_length=80, strict=True)
    name: str | None = Field(default=None, min_length=1, max_length=80, strict=True)


class DetailsPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=80, strict=True)
    institution: str | None = Field(default=None, max_length=200, strict=True)
    sources: list[Source] | None = Field(default=None, max_length=500)


class CareAreaCreate(_In):
    name: str = Field(min_length=1, max_length=80, strict=True)
    max_rate_ml_h: Decimal | None = Field(default=None, gt=0, le=10_000)


class CareAreaPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=80, strict=True)
    max_rate_ml_h: Decimal | None = Field(default=None, gt=0, le=10_000)
    clear_max_rate: bool = False


class DecisionIn(_In):
    note: str = Field(default="", max_length=2000, strict=True)


class VersionOut(BaseModel):
    version: int
    library_id: str
    name: str
    institution: str | None
    state: VersionState
    base_version: Version | None
    created_by: str
    created_at_ms: int
    updated_by: str
    updated_at_ms: int
    submitted_by: str | None
    submitted_at_ms: int | None
    decided_by: str | None
    decided_at_ms: int | None
    decision_note: str
    content_sha256: str | None
    care_areas: int
    entries: int
    contributors: list[str]


class EntryOut(BaseModel):
    id: int
    care_area: str
    label: str
    entry: dict[str, Any]


class CareAreaOut(BaseModel):
    id: int
    name: str
    max_rate_ml_h: Decimal | None
    entries: list[EntryOut]


class VersionDetailOut(VersionOut):
    care_area_list: list[CareAreaOut]


class ApprovedOut(BaseModel):
    version: int
    library_id: str
    sha256: str
    approved_by: str
    approved_at_ms: int
    contributors: list[str]


class FieldChangeOut(BaseModel):
    field: str
    old: str | None
    new: str | None
    limit: bool
    loosened: bool | None


class ItemChangeOut(BaseModel):
    kind: ChangeKind
    care_area: str
    item: str
    changes: list[FieldChangeOut]


class DiffOut(BaseModel):
    from_version: int
    to_version: int
    loosened_limits: int
    library: list[FieldChangeOut]
    care_areas: list[ItemChangeOut]
    entries: list[ItemChangeOut]
    text: str


def _service(request: Request, session: DbSession) -> LibraryAuthoring:
    return LibraryAuthoring(session, store_of(request).ctx)


Service = Annotated[LibraryAuthoring, Depends(_service)]


def _version(info: LibraryVersionInfo) -> VersionOut:
    fields = {
        name: getattr(info, name) for name in VersionOut.model_fields if name != "contributors"
    }
    return VersionOut(**fields, contributors=list(info.contributors))


def _entry(info: EntryInfo) -> EntryOut:
    return EntryOut(
        id=info.id,
        care_area=info.care_area,
        label=info.entry.label(),
        entry=info.entry.model_dump(mode="json", exclude_none=True),
    )


def _area(info: CareAreaInfo) -> CareAreaOut:
    return CareAreaOut(
        id=info.id,
        name=info.name,
        max_rate_ml_h=info.max_rate_ml_h,
        entries=[_entry(e) for e in info.entries],
    )


def _field(change: FieldChange) -> FieldChangeOut:
    return FieldChangeOut(
        field=change.field,
        old=change.old,
        new=change.new,
        limit=change.limit,
        loosened=change.loosened,
    )


def _item(change: ItemChange) -> ItemChangeOut:
    return ItemChangeOut(
        kind=change.kind,
        care_area=change.care_area,
        item=change.item,
        changes=[_field(c) for c in change.changes],
    )


@router.get("/library/versions", tags=[_TAG])
def list_versions(service: Service, _me: Reader) -> list[VersionOut]:
    return [_version(v) for v in service.versions()]


@router.get("/library/versions/{version}", tags=[_TAG])
def get_version(version: Version, service: Service, _me: Reader) -> VersionDetailOut:
    """A version with its care areas and entries (entry ids are what edits address)."""
    info = _version(service.get(version))
    areas = [_area(a) for a in service.care_areas(version)]
    return VersionDetailOut(**info.model_dump(), care_area_list=areas)


@router.get("/library/versions/{version}/json", tags=[_TAG])
def export_json(version: Version, service: Service, _me: Reader) -> Response:
    """The version as a drug library file in the published schema."""
    return Response(service.export_json(version), media_type="application/json")


@router.get("/library/versions/{version}/csv", tags=[_TAG])
def export_csv(version: Version, service: Service, _me: Reader) -> Response:
    """One row per drug entry in a care area; columns in docs/drug-library.md."""
    return Response(
        service.export_csv(version),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="drug-library-v{version}.csv"'},
    )


@router.get("/library/diff", tags=[_TAG])
def diff_versions(
    service: Service,
    _me: Reader,
    old: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
    new: Annotated[int, Query(alias="to", ge=1, le=2**31 - 1)],
) -> DiffOut:
    """What changed between two versions, field by field; limits say whether they loosened."""
    diff = service.diff(old, new)
    return DiffOut(
        from_version=diff.from_version,
        to_version=diff.to_version,
        loosened_limits=diff.loosened_limits,
        library=[_field(c) for c in diff.library],
        care_areas=[_item(c) for c in diff.care_areas],
        entries=[_item(c) for c in diff.entries],
        text="\n".join(diff.lines()),
    )


@router.post("/library/versions", tags=[_TAG], status_code=status.HTTP_201_CREATED)
def create_draft(body: DraftCreate, service: Service, me: Drafter) -> VersionOut:
    return _version(
        service.create_draft(
            me,
            base_version=body.base_version,
            from_latest_approved=body.from_latest_approved,
            library_id=body.library_id,
            name=body.name,
            institution=body.institution,
        )
    )


@router.post("/library/versions/import-json", tags=[_TAG], status_code=status.HTTP_201_CREATED)
def import_json(body: dict[str, Any], service: Service, me: Drafter) -> VersionOut:
    """A new draft holding the posted drug library file (its version number is replaced)."""
    return _version(service.import_json(me, body))


@router.post("/library/versions/import-csv", tags=[_TAG], status_code=status.HTTP_201_CREATED)
def import_csv(body: CsvImport, service: Service, me: Drafter) -> VersionOut:
    """A new draft whose care areas and entries come from CSV; problems name their line."""
    return _version(
        service.import_csv(
            me,
            body.csv,
            base_version=body.base_version,
            library_id=body.library_id,
            name=body.name,
        )
    )


@router.patch("/library/versions/{version}", tags=[_TAG])
def patch_details(
    version: Version, body: DetailsPatch, service: Service, me: Drafter
) -> VersionOut:
    sources = None if body.sources is None else [s.model_dump() for s in body.sources]
    return _version(
        service.update_details(
            version, me, name=body.name, institution=body.institution, sources=sources
        )
    )


@router.post(
    "/library/versions/{version}/care-areas", tags=[_TAG], status_code=status.HTTP_201_CREATED
)
def add_care_area(
    version: Version, body: CareAreaCreate, service: Service, me: Drafter
) -> CareAreaOut:
    return _area(service.add_care_area(version, me, body.name, body.max_rate_ml_h))


@router.patch("/library/versions/{version}/care-areas/{area_id}", tags=[_TAG])
def patch_care_area(
    version: Version, area_id: AreaId, body: CareAreaPatch, service: Service, me: Drafter
) -> CareAreaOut:
    return _area(
        service.update_care_area(
            version,
            me,
            area_id,
            name=body.name,
            max_rate_ml_h=body.max_rate_ml_h,
            clear_max_rate=body.clear_max_rate,
        )
    )


@router.delete(
    "/library/versions/{version}/care-areas/{area_id}",
    tags=[_TAG],
    status_code=status.HTTP_204_NO_CONTENT,
)
def remove_care_area(version: Version, area_id: AreaId, service: Service, me: Drafter) -> Response:
    service.remove_care_area(version, me, area_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/library/versions/{version}/care-areas/{area_id}/entries",
    tags=[_TAG],
    status_code=status.HTTP_201_CREATED,
)
def add_entry(
    version: Version, area_id: AreaId, body: dict[str, Any], service: Service, me: Drafter
) -> EntryOut:
    """Add a drug entry (published schema); refusals name the care area, drug and field."""
    return _entry(service.add_entry(version, me, area_id, body))


@router.put("/library/versions/{version}/entries/{entry_id}", tags=[_TAG])
def replace_entry(
    version: Version, entry_id: EntryId, body: dict[str, Any], service: Service, me: Drafter
) -> EntryOut:
    return _entry(service.update_entry(version, me, entry_id, body))


@router.delete(
    "/library/versions/{version}/entries/{entry_id}",
    tags=[_TAG],
    status_code=status.HTTP_204_NO_CONTENT,
)
def remove_entry(version: Version, entry_id: EntryId, service: Service, me: Drafter) -> Response:
    service.remove_entry(version, me, entry_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/library/versions/{version}/submit", tags=[_TAG])
def submit(version: Version, service: Service, me: Drafter) -> VersionOut:
    """Freeze a complete draft for approval by a different person."""
    return _version(service.submit(version, me))


@router.post("/library/versions/{version}/approve", tags=[_TAG])
def approve(version: Version, body: DecisionIn, service: Service, me: Approver) -> ApprovedOut:
    """Approve: refused (403, logged) for anyone who drafted, edited or submitted it."""
    approved = service.approve(version, me, body.note)
    return ApprovedOut(
        version=approved.version,
        library_id=approved.library.library_id,
        sha256=approved.sha256,
        approved_by=approved.approved_by,
        approved_at_ms=approved.approved_at_ms,
        contributors=list(approved.contributors),
    )


@router.post("/library/versions/{version}/reject", tags=[_TAG])
def reject(version: Version, body: DecisionIn, service: Service, me: Approver) -> VersionOut:
    return _version(service.reject(version, me, body.note))
