"""Drug library authoring: drafts a pharmacist edits, and the two-person rule that approves them.

A library reaches pumps only through an approved version, and a version is approved only by a
pharmacy approver who neither drafted, edited nor submitted it. The rule holds on the account,
not the role: the contributors of a version are recorded by user id, so a drafter whose role
is later changed to approver is still the same person and is still refused.

Every edit is validated by the clinical drug-library validator on the whole draft (only an
empty care area, or a draft with no care area yet, is tolerated until submission), inside a
savepoint, so a refused edit leaves nothing behind while its refusal is still recorded. A
submitted version is frozen until it is approved or rejected; approved and rejected versions
never change again. Version numbers come from one increasing sequence, and a version older
than the newest approved one can no longer be approved: pumps would treat it as a rollback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pumpguard.clinical import (
    FORMAT,
    DrugEntry,
    DrugLibrary,
    LibraryError,
    LibraryIssue,
    Source,
    parse_library,
)
from pumpguard.security_events import Severity
from pumpguard.server.audit import AuditAction
from pumpguard.server.authz import Permission
from pumpguard.server.context import ServerContext
from pumpguard.server.errors import Forbidden, InvalidInput, NotFound, ServerError, ServerEventCode
from pumpguard.server.library_csv import library_to_csv, number_text, read_library_csv
from pumpguard.server.models import (
    LibraryCareAreaRow,
    LibraryContributionRow,
    LibraryEntryRow,
    LibraryVersionRow,
)
from pumpguard.server.users import Principal

__all__ = [
    "ApprovedLibrary",
    "CareAreaInfo",
    "ChangeKind",
    "EntryInfo",
    "FieldChange",
    "InvalidLibrary",
    "ItemChange",
    "LibraryApprovalHook",
    "LibraryAuthoring",
    "LibraryDiff",
    "LibraryVersionInfo",
    "VersionState",
    "canonical_library_bytes",
    "diff_documents",
]

_MAX_NOTE = 2000
_LIMIT_BOUNDS = ("hard_min", "soft_min", "soft_max", "hard_max")
_EMPTY_LIST = "List should have at least 1 item"


class VersionState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


class InvalidLibrary(InvalidInput):
    """A change the drug-library validator refused; ``issues`` name the place of each problem."""

    def __init__(self, summary: str, issues: Sequence[str]) -> None:
        self.issues = tuple(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"{summary}\n{lines}" if lines else summary)


@dataclass(frozen=True, slots=True)
class LibraryVersionInfo:
    version: int
    library_id: str
    name: str
    institution: str | None
    state: VersionState
    base_version: int | None
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
    contributors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EntryInfo:
    id: int
    care_area: str
    entry: DrugEntry


@dataclass(frozen=True, slots=True)
class CareAreaInfo:
    id: int
    name: str
    max_rate_ml_h: Decimal | None
    entries: tuple[EntryInfo, ...]


@dataclass(frozen=True, slots=True)
class ApprovedLibrary:
    """What distribution signs and ships: the validated library and its exact bytes."""

    version: int
    library: DrugLibrary
    canonical: bytes
    sha256: str
    approved_by: str
    approved_at_ms: int
    contributors: tuple[str, ...]


LibraryApprovalHook = Callable[[Session, ApprovedLibrary], None]
"""Called inside the approval's transaction, after the version is marked approved. Raising a
``ServerError`` undoes the approval (the version stays submitted) and is recorded as a refused
approval; any other exception rolls the whole transaction back."""


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """``old`` -> ``new`` as text; for a limit, whether the change lets more through."""

    field: str
    old: str | None
    new: str | None
    limit: bool
    loosened: bool | None

    def __str__(self) -> str:
        text = f"{self.field}: {self.old or '(none)'} -> {self.new or '(none)'}"
        if self.limit:
            text += "   [LIMIT " + ("loosened]" if self.loosened else "tightened]")
        return text


@dataclass(frozen=True, slots=True)
class ItemChange:
    kind: ChangeKind
    care_area: str
    item: str
    changes: tuple[FieldChange, ...]

    @property
    def where(self) -> str:
        return f"{self.care_area} / {self.item}" if self.item else f"care area {self.care_area}"


@dataclass(frozen=True, slots=True)
class LibraryDiff:
    from_version: int
    to_version: int
    library: tuple[FieldChange, ...]
    care_areas: tuple[ItemChange, ...]
    entries: tuple[ItemChange, ...]

    @property
    def empty(self) -> bool:
        return not (self.library or self.care_areas or self.entries)

    @property
    def loosened_limits(self) -> int:
        items = (*self.care_areas, *self.entries)
        fields = [
            *self.library,
            *(c for i in items if i.kind is ChangeKind.CHANGED for c in i.changes),
        ]
        return sum(1 for c in fields if c.limit and c.loosened)

    def lines(self) -> list[str]:
        out = [f"drug library v{self.from_version} -> v{self.to_version}"]
        if self.empty:
            return [*out, "  no differences"]
        out += [f"~ library {change}" for change in self.library]
        marks = {ChangeKind.ADDED: "+", ChangeKind.REMOVED: "-", ChangeKind.CHANGED: "~"}
        for item in (*self.care_areas, *self.entries):
            out.append(f"{marks[item.kind]} {item.where}")
            if item.kind is ChangeKind.CHANGED:
                out += [f"    {change}" for change in item.changes]
            else:
                out += [
                    f"    {change.field}: {change.new if change.new is not None else change.old}"
                    for change in item.changes
                ]
        out.append(f"{self.loosened_limits} limit(s) loosened")
        return out


def _canonical_json(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_library_bytes(library: DrugLibrary) -> bytes:
    """The one byte form of a library: sorted keys, no whitespace, absent fields left out."""
    return _canonical_json(library.model_dump(mode="json", exclude_none=True)).encode("utf-8")


def _loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def _key(name: str) -> str:
    return name.strip().casefold()


def _issues_of(exc: LibraryError, *, allow_empty: bool) -> list[LibraryIssue]:
    return [
        issue
        for issue in exc.issues
        if not (
            allow_empty
            and issue.field in ("care_areas", "entries")
            and issue.message.startswith(_EMPTY_LIST)
        )
    ]


def _info(
    row: LibraryVersionRow, areas: int, entries: int, who: Sequence[str]
) -> LibraryVersionInfo:
    return LibraryVersionInfo(
        version=row.version,
        library_id=row.library_id,
        name=row.name,
        institution=row.institution,
        state=VersionState(row.state),
        base_version=row.base_version,
        created_by=row.created_by,
        created_at_ms=row.created_at_ms,
        updated_by=row.updated_by,
        updated_at_ms=row.updated_at_ms,
        submitted_by=row.submitted_by,
        submitted_at_ms=row.submitted_at_ms,
        decided_by=row.decided_by,
        decided_at_ms=row.decided_at_ms,
        decision_note=row.decision_note,
        content_sha256=row.content_sha256,
        care_areas=areas,
        entries=entries,
        contributors=tuple(who),
    )


def _note(note: str, *, required: bool) -> str:
    note = note.strip()
    if required and not note:
        raise InvalidInput("a note is required: say what must change before approval")
    if len(note) > _MAX_NOTE or not all(c.isprintable() or c in "\n\t" for c in note):
        raise InvalidInput(f"the note must be at most {_MAX_NOTE} printable characters")
    return note


class LibraryAuthoring:
    """Versions of the drug library, their edits and their approval, for one transaction."""

    def __init__(
        self, session: Session, ctx: ServerContext, hooks: Sequence[LibraryApprovalHook] = ()
    ) -> None:
        self._session = session
        self._ctx = ctx
        self._hooks = tuple(hooks)

    # ------------------------------------------------------------------ reading

    def versions(self) -> list[LibraryVersionInfo]:
        rows = self._session.scalars(select(LibraryVersionRow).order_by(LibraryVersionRow.version))
        return [self._describe(row) for row in rows]

    def get(self, version: int) -> LibraryVersionInfo:
        return self._describe(self._row(version))

    def care_areas(self, version: int) -> list[CareAreaInfo]:
        row = self._row(version)
        result = []
        for area in self._areas(row):
            entries = tuple(
                EntryInfo(e.id, area.name, DrugEntry.model_validate(_loads(e.body)))
                for e in self._entries(area)
            )
            rate = None if area.max_rate_ml_h is None else Decimal(area.max_rate_ml_h)
            result.append(CareAreaInfo(area.id, area.name, rate, entries))
        return result

    def document(self, version: int) -> dict[str, Any]:
        """The version in the published JSON shape (a draft's may still be incomplete)."""
        return self._document(self._row(version))

    def export_json(self, version: int) -> bytes:
        """Indented JSON in the published schema; for an approved version, the approved bytes
        re-indented (same content)."""
        row = self._row(version)
        data = _loads(row.canonical) if row.canonical is not None else self._document(row)
        return (
            json.dumps(data, indent=2, ensure_ascii=False, default=_json_number) + "\n"
        ).encode()

    def export_csv(self, version: int) -> str:
        return library_to_csv(self._document(self._row(version))["care_areas"])

    def library(self, version: int) -> DrugLibrary:
        """The version as a validated library (drafts too, if they are complete)."""
        row = self._row(version)
        try:
            return parse_library(self._document(row), f"drug library v{version}")
        except LibraryError as exc:
            raise InvalidLibrary(
                f"drug library v{version} is not complete", [str(i) for i in exc.issues]
            ) from None

    def latest_approved(self) -> ApprovedLibrary | None:
        """The library pumps should run: the newest approved version, with its exact bytes."""
        row = self._session.scalars(
            select(LibraryVersionRow)
            .where(LibraryVersionRow.state == str(VersionState.APPROVED))
            .order_by(LibraryVersionRow.version.desc())
            .limit(1)
        ).first()
        return None if row is None else self._approved(row)

    def approved(self, version: int) -> ApprovedLibrary:
        row = self._row(version)
        if row.state != VersionState.APPROVED:
            raise InvalidInput(f"drug library v{version} is {row.state}, not approved")
        return self._approved(row)

    def diff(self, old: int, new: int) -> LibraryDiff:
        return diff_documents(self._document(self._row(old)), self._document(self._row(new)))

    # ------------------------------------------------------------------ drafting

    def create_draft(
        self,
        actor: Principal,
        *,
        base_version: int | None = None,
        from_latest_approved: bool = False,
        library_id: str | None = None,
        name: str | None = None,
        institution: str | None = None,
    ) -> LibraryVersionInfo:
        """A new draft: a copy of ``base_version`` (or of the newest approved version), or an
        empty one named ``library_id``/``name``."""
        self._require(actor, Permission.LIBRARY_DRAFT, "create a drug library draft")
        if from_latest_approved and base_version is None:
            latest = self.latest_approved()
            if latest is None:
                raise NotFound("there is no approved drug library version to start from")
            base_version = latest.version
        if base_version is not None:
            base = self._document(self._row(base_version))
            if library_id is not None and library_id != base["library_id"]:
                raise InvalidInput("library_id cannot change when copying a version")
            if name is not None:
                base["name"] = name
            if institution is not None:
                base["institution"] = institution
            return self._new_version(actor, base, base_version, "copy")
        existing = self._library_id()
        chosen_id = library_id or existing
        if chosen_id is None or not (name or existing):
            raise InvalidInput(
                "the first draft needs a library_id and a name (later drafts copy them)"
            )
        document: dict[str, Any] = {
            "format": FORMAT,
            "library_id": chosen_id,
            "name": name or self._latest_name(),
            "sources": [],
            "care_areas": [],
        }
        if institution is not None:
            document["institution"] = institution
        return self._new_version(actor, document, None, "empty")

    def import_json(self, actor: Principal, data: Any) -> LibraryVersionInfo:
        """A draft holding an imported library file (already decoded JSON). The file's own
        version number is replaced by the next free one."""
        self._require(actor, Permission.LIBRARY_DRAFT, "import a drug library")
        if not isinstance(data, dict):
            raise InvalidInput("a drug library file must be a JSON object")
        document = dict(data)
        stated = document.get("version")
        document["version"] = 1
        try:
            parse_library(document, "imported drug library")
        except LibraryError as exc:
            raise InvalidLibrary(
                "the imported drug library is invalid", [str(i) for i in exc.issues]
            ) from None
        return self._new_version(
            actor, document, None, "import-json", {"stated_version": str(stated)}
        )

    def import_csv(
        self,
        actor: Principal,
        text: str,
        *,
        base_version: int | None = None,
        library_id: str | None = None,
        name: str | None = None,
    ) -> LibraryVersionInfo:
        """A draft whose care areas and entries come from CSV, and whose name, institution and
        sources come from ``base_version`` (default: the newest approved version)."""
        self._require(actor, Permission.LIBRARY_DRAFT, "import a drug library")
        rows, csv_issues = read_library_csv(text)
        if csv_issues:
            raise InvalidLibrary("the CSV file is invalid", [str(i) for i in csv_issues])
        if base_version is None:
            latest = self.latest_approved()
            base_version = None if latest is None else latest.version
        if base_version is not None:
            document = self._document(self._row(base_version))
        elif library_id and name:
            document = {"format": FORMAT, "library_id": library_id, "name": name, "sources": []}
        else:
            raise InvalidInput(
                "no approved version to take the library's name and sources from: give a "
                "library_id and a name"
            )
        document["care_areas"] = [dict(area) for area in rows.care_areas]
        document["version"] = 1
        try:
            parse_library(document, "CSV")
        except LibraryError as exc:
            raise InvalidLibrary(
                "the CSV file is invalid",
                [_with_lines(issue, rows.lines) for issue in exc.issues],
            ) from None
        return self._new_version(actor, document, base_version, "import-csv")

    def update_details(
        self,
        version: int,
        actor: Principal,
        *,
        name: str | None = None,
        institution: str | None = None,
        sources: Sequence[Mapping[str, str]] | None = None,
    ) -> LibraryVersionInfo:
        """Change the library's name, institution or list of sources (entries cite sources)."""
        row = self._editable(version, actor, "details")
        document = self._document(row)
        if name is not None:
            document["name"] = name
        if institution is not None:
            document["institution"] = institution
        if sources is not None:
            document["sources"] = [dict(s) for s in sources]
        self._check(document, f"draft v{version}")
        if name is not None:
            row.name = name.strip()
        if institution is not None:
            row.institution = institution.strip() or None
        if sources is not None:
            row.sources = _canonical_json(
                [Source.model_validate(dict(s)).model_dump(mode="json") for s in sources]
            )
        self._edited(
            row,
            actor,
            {"change": "details", "name": row.name, "institution": row.institution},
        )
        return self.get(version)

    def add_care_area(
        self, version: int, actor: Principal, name: str, max_rate_ml_h: Decimal | None = None
    ) -> CareAreaInfo:
        row = self._editable(version, actor, "care area")
        document = self._document(row)
        raw: dict[str, Any] = {"name": name, "entries": []}
        if max_rate_ml_h is not None:
            raw["max_rate_ml_h"] = max_rate_ml_h
        document["care_areas"].append(raw)
        self._check(document, f"draft v{version}")
        position = 1 + max((a.position for a in self._areas(row)), default=0)
        area = self._store_area(row, position, name.strip(), max_rate_ml_h)
        self._edited(row, actor, {"change": "care_area.added", "care_area": area.name})
        return self._area_info(area)

    def update_care_area(
        self,
        version: int,
        actor: Principal,
        area_id: int,
        *,
        name: str | None = None,
        max_rate_ml_h: Decimal | None = None,
        clear_max_rate: bool = False,
    ) -> CareAreaInfo:
        row = self._editable(version, actor, "care area")
        area, index = self._area(row, area_id)
        document = self._document(row)
        raw = document["care_areas"][index]
        if name is not None:
            raw["name"] = name
        if clear_max_rate:
            raw.pop("max_rate_ml_h", None)
        elif max_rate_ml_h is not None:
            raw["max_rate_ml_h"] = max_rate_ml_h
        self._check(document, f"draft v{version}")
        old = area.name
        area.name = str(raw["name"]).strip()
        area.name_key = _key(area.name)
        rate = raw.get("max_rate_ml_h")
        area.max_rate_ml_h = None if rate is None else number_text(rate)
        self._session.flush()
        self._edited(
            row,
            actor,
            {
                "change": "care_area.updated",
                "care_area": area.name,
                "was": old,
                "max_rate_ml_h": area.max_rate_ml_h,
            },
        )
        return self._area_info(area)

    def remove_care_area(self, version: int, actor: Principal, area_id: int) -> None:
        row = self._editable(version, actor, "care area")
        area, _ = self._area(row, area_id)
        self._session.execute(
            delete(LibraryEntryRow).where(LibraryEntryRow.care_area_id == area.id)
        )
        self._session.delete(area)
        self._session.flush()
        self._edited(row, actor, {"change": "care_area.removed", "care_area": area.name})

    def find_care_area(self, version: int, name: str) -> CareAreaInfo:
        """A care area of a version by name (any case), for callers that only know names."""
        row = self._row(version)
        area = self._area_by_name(row, name)
        if area is None:
            known = ", ".join(a.name for a in self._areas(row)) or "none yet"
            raise NotFound(f"drug library v{version} has no care area {name!r} (it has: {known})")
        return self._area_info(area)

    def add_entry(
        self, version: int, actor: Principal, area_id: int, entry: Mapping[str, Any]
    ) -> EntryInfo:
        row = self._editable(version, actor, "entry")
        area, index = self._area(row, area_id)
        document = self._document(row)
        entries = document["care_areas"][index]["entries"]
        entries.append(_raw_entry(entry))
        self._check(document, f"draft v{version}")
        checked = DrugEntry.model_validate(entries[-1])
        position = 1 + max((e.position for e in self._entries(area)), default=0)
        stored = self._store_entry(area, position, checked)
        self._edited(
            row,
            actor,
            {
                "change": "entry.added",
                "care_area": area.name,
                "code": stored.code,
                "entry_id": stored.id,
            },
        )
        return self._entry_info(stored, area)

    def update_entry(
        self, version: int, actor: Principal, entry_id: int, entry: Mapping[str, Any]
    ) -> EntryInfo:
        row = self._editable(version, actor, "entry")
        old, area, a_index, e_index = self._entry(row, entry_id)
        document = self._document(row)
        document["care_areas"][a_index]["entries"][e_index] = _raw_entry(entry)
        self._check(document, f"draft v{version}")
        checked = DrugEntry.model_validate(document["care_areas"][a_index]["entries"][e_index])
        old.code, old.name, old.body = checked.code, checked.name, _entry_body(checked)
        self._edited(
            row,
            actor,
            {
                "change": "entry.updated",
                "care_area": area.name,
                "code": old.code,
                "entry_id": old.id,
            },
        )
        return self._entry_info(old, area)

    def remove_entry(self, version: int, actor: Principal, entry_id: int) -> None:
        row = self._editable(version, actor, "entry")
        old, area, _, _ = self._entry(row, entry_id)
        code = old.code
        self._session.delete(old)
        self._session.flush()
        self._edited(
            row,
            actor,
            {"change": "entry.removed", "care_area": area.name, "code": code, "entry_id": entry_id},
        )

    # ------------------------------------------------------------------ approval

    def submit(self, version: int, actor: Principal) -> LibraryVersionInfo:
        """Freeze a complete, valid draft for a second person's decision."""
        self._require(actor, Permission.LIBRARY_DRAFT, "submit a drug library")
        row = self._row(version, lock=True)
        self._refuse_unless(row, actor, VersionState.DRAFT, "submit")
        try:
            library = parse_library(self._document(row), f"draft v{version}")
        except LibraryError as exc:
            raise InvalidLibrary(
                f"draft v{version} cannot be submitted", [str(i) for i in exc.issues]
            ) from None
        now = self._ctx.clock.now_ms()
        row.state = str(VersionState.SUBMITTED)
        row.submitted_by = actor.username
        row.submitted_at_ms = now
        self._contribute(row, actor, "submitted")
        entries = sum(1 for _ in library.entries())
        self._ctx.audit(self._session).append(
            AuditAction.LIBRARY_SUBMITTED,
            actor.username,
            _subject(row),
            {"care_areas": len(library.care_areas), "entries": entries},
        )
        return self.get(version)

    def approve(self, version: int, actor: Principal, note: str = "") -> ApprovedLibrary:
        """The second person's approval: never by a contributor, never of a superseded version."""
        self._require(actor, Permission.LIBRARY_APPROVE, "approve a drug library")
        note = _note(note, required=False)
        row = self._row(version, lock=True)
        self._refuse_unless(row, actor, VersionState.SUBMITTED, "approve")
        contributors = self._contributors(row)
        if actor.user_id in {user_id for user_id, _ in contributors} or actor.username in {
            row.created_by,
            row.updated_by,
            row.submitted_by,
        }:
            self._refuse_approval(
                row,
                actor,
                ServerEventCode.LIBRARY_SELF_APPROVAL,
                Severity.HIGH,
                "self-approval",
                f"{actor.username} contributed to drug library v{version} and cannot approve "
                "it: the two-person rule needs a pharmacy approver who did not draft, edit or "
                "submit it",
            )
        newest = self._session.scalar(
            select(func.max(LibraryVersionRow.version)).where(
                LibraryVersionRow.state == str(VersionState.APPROVED)
            )
        )
        if newest is not None and newest >= row.version:
            self._refuse_approval(
                row,
                actor,
                ServerEventCode.LIBRARY_STALE_APPROVAL,
                Severity.MEDIUM,
                "superseded",
                f"drug library v{version} is older than the approved v{newest}: approving it "
                f"would roll pumps back; start a new draft from v{newest} instead",
            )
        library = parse_library(self._document(row), f"drug library v{version}")
        canonical = canonical_library_bytes(library)
        digest = hashlib.sha256(canonical).hexdigest()
        now = self._ctx.clock.now_ms()
        approved = ApprovedLibrary(
            version=row.version,
            library=library,
            canonical=canonical,
            sha256=digest,
            approved_by=actor.username,
            approved_at_ms=now,
            contributors=tuple(sorted({name for _, name in contributors})),
        )
        try:
            with self._session.begin_nested():
                row.state = str(VersionState.APPROVED)
                row.decided_by = actor.username
                row.decided_at_ms = now
                row.decision_note = note
                row.canonical = canonical.decode("utf-8")
                row.content_sha256 = digest
                self._ctx.audit(self._session).append(
                    AuditAction.LIBRARY_APPROVED,
                    actor.username,
                    _subject(row),
                    {
                        "sha256": digest,
                        "library_id": row.library_id,
                        "drafted_by": row.created_by,
                        "submitted_by": row.submitted_by,
                        "note": note,
                    },
                )
                for hook in (*self._ctx.on_library_approved, *self._hooks):
                    hook(self._session, approved)
        except ServerError as exc:
            self._session.refresh(row)
            self._ctx.audit(self._session).append(
                AuditAction.LIBRARY_APPROVAL_REFUSED,
                actor.username,
                _subject(row),
                {"reason": "publication failed", "detail": str(exc)[:500]},
            )
            raise
        return approved

    def reject(self, version: int, actor: Principal, note: str) -> LibraryVersionInfo:
        """Send a submitted version back; it stays as it was, and a new draft can copy it."""
        self._require(actor, Permission.LIBRARY_APPROVE, "reject a drug library")
        note = _note(note, required=True)
        row = self._row(version, lock=True)
        self._refuse_unless(row, actor, VersionState.SUBMITTED, "reject")
        row.state = str(VersionState.REJECTED)
        row.decided_by = actor.username
        row.decided_at_ms = self._ctx.clock.now_ms()
        row.decision_note = note
        self._ctx.audit(self._session).append(
            AuditAction.LIBRARY_REJECTED, actor.username, _subject(row), {"note": note}
        )
        return self.get(version)

    # ------------------------------------------------------------------ internals

    def _require(self, actor: Principal, permission: Permission, what: str) -> None:
        if permission in actor.permissions:
            return
        self._ctx.emit(
            ServerEventCode.FORBIDDEN,
            Severity.MEDIUM,
            f"{actor.username} ({actor.role}) may not {what}",
            attributes={
                "username": actor.username,
                "role": str(actor.role),
                "permission": str(permission),
            },
        )
        raise Forbidden(f"role {actor.role} lacks the permission {permission} needed to {what}")

    def _row(self, version: int, *, lock: bool = False) -> LibraryVersionRow:
        query = select(LibraryVersionRow).where(LibraryVersionRow.version == version)
        if lock:
            query = query.with_for_update()
        row = self._session.scalars(query).first()
        if row is None:
            raise NotFound(f"there is no drug library v{version}")
        return row

    def _library_id(self) -> str | None:
        return self._session.scalars(
            select(LibraryVersionRow.library_id).order_by(LibraryVersionRow.version).limit(1)
        ).first()

    def _latest_name(self) -> str:
        return (
            self._session.scalars(
                select(LibraryVersionRow.name).order_by(LibraryVersionRow.version.desc()).limit(1)
            ).first()
            or ""
        )

    def _areas(self, row: LibraryVersionRow) -> list[LibraryCareAreaRow]:
        return list(
            self._session.scalars(
                select(LibraryCareAreaRow)
                .where(LibraryCareAreaRow.version_id == row.id)
                .order_by(LibraryCareAreaRow.position, LibraryCareAreaRow.id)
            )
        )

    def _entries(self, area: LibraryCareAreaRow) -> list[LibraryEntryRow]:
        return list(
            self._session.scalars(
                select(LibraryEntryRow)
                .where(LibraryEntryRow.care_area_id == area.id)
                .order_by(LibraryEntryRow.position, LibraryEntryRow.id)
            )
        )

    def _area(self, row: LibraryVersionRow, area_id: int) -> tuple[LibraryCareAreaRow, int]:
        """The care area and its index in the version's document."""
        for index, area in enumerate(self._areas(row)):
            if area.id == area_id:
                return area, index
        raise NotFound(f"drug library v{row.version} has no care area with id {area_id}")

    def _area_by_name(self, row: LibraryVersionRow, name: str) -> LibraryCareAreaRow | None:
        if "\x00" in name:
            return None  # cannot exist, and PostgreSQL refuses the string outright
        return self._session.scalars(
            select(LibraryCareAreaRow).where(
                LibraryCareAreaRow.version_id == row.id,
                LibraryCareAreaRow.name_key == _key(name),
            )
        ).first()

    def _entry(
        self, row: LibraryVersionRow, entry_id: int
    ) -> tuple[LibraryEntryRow, LibraryCareAreaRow, int, int]:
        """The entry, its care area and their indexes in the version's document."""
        for a_index, area in enumerate(self._areas(row)):
            for e_index, entry in enumerate(self._entries(area)):
                if entry.id == entry_id:
                    return entry, area, a_index, e_index
        raise NotFound(f"drug library v{row.version} has no entry with id {entry_id}")

    def _area_info(self, area: LibraryCareAreaRow) -> CareAreaInfo:
        entries = tuple(self._entry_info(e, area) for e in self._entries(area))
        rate = None if area.max_rate_ml_h is None else Decimal(area.max_rate_ml_h)
        return CareAreaInfo(area.id, area.name, rate, entries)

    def _entry_info(self, entry: LibraryEntryRow, area: LibraryCareAreaRow) -> EntryInfo:
        return EntryInfo(entry.id, area.name, DrugEntry.model_validate(_loads(entry.body)))

    def _approved(self, row: LibraryVersionRow) -> ApprovedLibrary:
        canonical = (row.canonical or "").encode("utf-8")
        if hashlib.sha256(canonical).hexdigest() != row.content_sha256:
            raise ServerError(
                f"approved drug library v{row.version} no longer matches the digest recorded at "
                "its approval: the database was altered; do not distribute it"
            )
        library = parse_library(_loads(row.canonical or "{}"), f"drug library v{row.version}")
        return ApprovedLibrary(
            version=row.version,
            library=library,
            canonical=canonical,
            sha256=row.content_sha256 or "",
            approved_by=row.decided_by or "",
            approved_at_ms=row.decided_at_ms or 0,
            contributors=tuple(sorted({name for _, name in self._contributors(row)})),
        )

    def _contributors(self, row: LibraryVersionRow) -> list[tuple[int, str]]:
        return [
            (user_id, username)
            for user_id, username in self._session.execute(
                select(LibraryContributionRow.user_id, LibraryContributionRow.username)
                .where(LibraryContributionRow.version_id == row.id)
                .distinct()
            )
        ]

    def _describe(self, row: LibraryVersionRow) -> LibraryVersionInfo:
        areas = self._areas(row)
        entries = sum(len(self._entries(a)) for a in areas)
        who = sorted({name for _, name in self._contributors(row)})
        return _info(row, len(areas), entries, who)

    def _document(self, row: LibraryVersionRow) -> dict[str, Any]:
        if row.canonical is not None:
            stored: dict[str, Any] = _loads(row.canonical)
            return stored
        document: dict[str, Any] = {
            "format": FORMAT,
            "library_id": row.library_id,
            "version": row.version,
            "name": row.name,
        }
        if row.institution is not None:
            document["institution"] = row.institution
        document["sources"] = _loads(row.sources)
        areas = []
        for area in self._areas(row):
            raw: dict[str, Any] = {"name": area.name}
            if area.max_rate_ml_h is not None:
                raw["max_rate_ml_h"] = Decimal(area.max_rate_ml_h)
            raw["entries"] = [_loads(e.body) for e in self._entries(area)]
            areas.append(raw)
        document["care_areas"] = areas
        return document

    def _check(self, document: Mapping[str, Any], source: str) -> None:
        """The whole draft through the library validator; only emptiness is tolerated."""
        where = _nul_at(document)
        if where is not None:
            raise InvalidLibrary(
                f"{source}: change refused", [f"{where}: text must not contain NUL characters"]
            )
        try:
            parse_library(document, source)
        except LibraryError as exc:
            issues = _issues_of(exc, allow_empty=True)
            if issues:
                raise InvalidLibrary(
                    f"{source}: change refused", [str(i) for i in issues]
                ) from None

    def _refuse_unless(
        self, row: LibraryVersionRow, actor: Principal, state: VersionState, what: str
    ) -> None:
        if row.state == state:
            return
        current = VersionState(row.state)
        if current in (VersionState.APPROVED, VersionState.REJECTED) or what not in (
            "approve",
            "reject",
            "submit",
        ):
            self._ctx.emit(
                ServerEventCode.LIBRARY_NOT_EDITABLE,
                Severity.MEDIUM if current is VersionState.APPROVED else Severity.LOW,
                f"{actor.username} tried to {what} drug library v{row.version}, which is {current}",
                attributes={
                    "username": actor.username,
                    "version": str(row.version),
                    "state": str(current),
                    "action": what,
                },
            )
        hint = {
            VersionState.APPROVED: "an approved version never changes; start a new draft from it",
            VersionState.REJECTED: "a rejected version stays as it was; start a new draft from it",
            VersionState.SUBMITTED: "it waits for approval; a pharmacy approver can reject it",
            VersionState.DRAFT: "it has not been submitted yet",
        }[current]
        raise InvalidInput(f"cannot {what} drug library v{row.version}: it is {current} ({hint})")

    def _refuse_approval(
        self,
        row: LibraryVersionRow,
        actor: Principal,
        code: ServerEventCode,
        severity: Severity,
        reason: str,
        message: str,
    ) -> None:
        self._ctx.emit(
            code,
            severity,
            message,
            attributes={
                "username": actor.username,
                "version": str(row.version),
                "reason": reason,
            },
        )
        self._ctx.audit(self._session).append(
            AuditAction.LIBRARY_APPROVAL_REFUSED,
            actor.username,
            _subject(row),
            {"reason": reason},
        )
        raise Forbidden(message)

    def _editable(self, version: int, actor: Principal, what: str) -> LibraryVersionRow:
        self._require(actor, Permission.LIBRARY_DRAFT, f"edit a drug library {what}")
        row = self._row(version, lock=True)
        self._refuse_unless(row, actor, VersionState.DRAFT, f"edit ({what})")
        return row

    def _edited(
        self,
        row: LibraryVersionRow,
        actor: Principal,
        details: Mapping[str, str | int | bool | None],
    ) -> None:
        row.updated_by = actor.username
        row.updated_at_ms = self._ctx.clock.now_ms()
        self._contribute(row, actor, "edited")
        self._ctx.audit(self._session).append(
            AuditAction.LIBRARY_DRAFT_EDITED, actor.username, _subject(row), details
        )

    def _contribute(self, row: LibraryVersionRow, actor: Principal, action: str) -> None:
        self._session.add(
            LibraryContributionRow(
                version_id=row.id,
                user_id=actor.user_id,
                username=actor.username,
                action=action,
                at_ms=self._ctx.clock.now_ms(),
            )
        )

    def _store_area(
        self, row: LibraryVersionRow, position: int, name: str, rate: Decimal | int | None
    ) -> LibraryCareAreaRow:
        area = LibraryCareAreaRow(
            version_id=row.id,
            position=position,
            name=name,
            name_key=_key(name),
            max_rate_ml_h=None if rate is None else number_text(rate),
        )
        self._session.add(area)
        self._session.flush()
        return area

    def _store_entry(
        self, area: LibraryCareAreaRow, position: int, entry: DrugEntry
    ) -> LibraryEntryRow:
        row = LibraryEntryRow(
            care_area_id=area.id,
            position=position,
            code=entry.code,
            name=entry.name,
            body=_entry_body(entry),
        )
        self._session.add(row)
        self._session.flush()
        return row

    def _new_version(
        self,
        actor: Principal,
        document: Mapping[str, Any],
        base_version: int | None,
        how: str,
        extra: Mapping[str, str] | None = None,
    ) -> LibraryVersionInfo:
        existing = self._library_id()
        library_id = str(document.get("library_id", ""))
        if existing is not None and library_id != existing:
            raise InvalidInput(
                f"this server authors drug library {existing!r}; the draft names "
                f"{library_id!r} (pumps track one library id)"
            )
        self._check({**document, "version": 1}, "new draft")
        now = self._ctx.clock.now_ms()
        areas = [
            (
                str(area["name"]).strip(),
                area.get("max_rate_ml_h"),
                [DrugEntry.model_validate(e) for e in area.get("entries", [])],
            )
            for area in document.get("care_areas", [])
        ]
        sources = [Source.model_validate(s).model_dump(mode="json") for s in document["sources"]]
        institution = document.get("institution")
        for _attempt in range(5):
            number = 1 + (self._session.scalar(select(func.max(LibraryVersionRow.version))) or 0)
            try:
                with self._session.begin_nested():
                    row = LibraryVersionRow(
                        version=number,
                        library_id=library_id,
                        name=str(document["name"]).strip(),
                        institution=institution.strip() or None
                        if isinstance(institution, str)
                        else None,
                        sources=_canonical_json(sources),
                        state=str(VersionState.DRAFT),
                        base_version=base_version,
                        created_by=actor.username,
                        created_at_ms=now,
                        updated_by=actor.username,
                        updated_at_ms=now,
                        decision_note="",
                    )
                    self._session.add(row)
                    self._session.flush()
                    for a_index, (name, rate, entries) in enumerate(areas, start=1):
                        area_row = self._store_area(row, a_index, name, rate)
                        for e_index, entry in enumerate(entries, start=1):
                            self._store_entry(area_row, e_index, entry)
            except IntegrityError:
                continue
            break
        else:
            raise InvalidInput("could not allocate a version number; try again")
        self._contribute(row, actor, "drafted")
        details: dict[str, str | int | bool | None] = {"from": how, "base_version": base_version}
        details.update(extra or {})
        self._ctx.audit(self._session).append(
            AuditAction.LIBRARY_DRAFT_CREATED, actor.username, _subject(row), details
        )
        return self.get(number)


def _nul_at(node: Any, path: str = "") -> str | None:
    """The path of the first text holding a NUL (which PostgreSQL cannot store), if any."""
    if isinstance(node, str):
        return (path or "(document)") if "\x00" in node else None
    if isinstance(node, Mapping):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in node.items()]
        for key, value in items:
            if "\x00" in key:
                return path or "(document)"
            found = _nul_at(value, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found = _nul_at(value, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _raw_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise InvalidInput("a drug entry must be a JSON object")
    return dict(entry)


def _entry_body(entry: DrugEntry) -> str:
    return _canonical_json(entry.model_dump(mode="json", exclude_none=True))


def _json_number(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _subject(row: LibraryVersionRow) -> str:
    return f"library:{row.library_id[:100]}:v{row.version}"


def _with_lines(issue: LibraryIssue, lines: Mapping[tuple[str, str], tuple[int, ...]]) -> str:
    """Prefix a validator issue with the CSV lines of the entry it names."""
    area, drug = _names(issue.where)
    found: tuple[int, ...] = ()
    if area is not None and drug is not None:
        found = lines.get((area.casefold(), drug.casefold()), ())
    elif area is not None:
        found = tuple(
            sorted(n for (a, _), ns in lines.items() if a == area.casefold() for n in ns)
        )[:1]
    if not found:
        return str(issue)
    label = "line" if len(found) == 1 else "lines"
    return f"{label} {', '.join(map(str, found))}: {issue}"


def _names(where: str) -> tuple[str | None, str | None]:
    area = drug = None
    for part in where.split(" > "):
        if part.startswith("care area '") and part.endswith("'"):
            area = part[len("care area '") : -1]
        elif part.startswith("drug '") and part.endswith("'"):
            drug = part[len("drug '") : -1]
    return area, drug


# ---------------------------------------------------------------------- diff

_MAX_NAMES = ("max_rate_ml_h", "max_duration_min", "max_kg")
_MIN_NAMES = ("min_kg",)


def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    if isinstance(node, Mapping):
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(node, list):
        if all(not isinstance(v, Mapping | list) for v in node):
            flat[prefix] = "; ".join(str(v) for v in node)
        else:
            for index, value in enumerate(node):
                flat.update(_flatten(value, f"{prefix}[{index}]"))
    elif isinstance(node, bool) or node is None:
        if node is not None:
            flat[prefix] = str(node).lower()
    elif isinstance(node, int | float | Decimal):
        flat[prefix] = number_text(node)
    else:
        flat[prefix] = str(node)
    return flat


def _limit_direction(field: str, old: str | None, new: str | None) -> tuple[bool, bool | None]:
    last = field.rsplit(".", 1)[-1]
    is_max = last.endswith("_max") or last in _MAX_NAMES
    is_min = (last.endswith("_min") and last in _LIMIT_BOUNDS) or last in _MIN_NAMES
    if not (is_max or is_min):
        return False, None
    if old is None:
        return True, False
    if new is None:
        return True, True
    grew = Decimal(new) > Decimal(old)
    return True, grew if is_max else not grew


def _changes(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[FieldChange, ...]:
    result = []
    for field in sorted(set(old) | set(new)):
        before, after = old.get(field), new.get(field)
        if before == after:
            continue
        limit, loosened = _limit_direction(field, before, after)
        result.append(FieldChange(field, before, after, limit, loosened))
    return tuple(result)


def _entry_key(entry: Mapping[str, Any]) -> tuple[str, ...]:
    conc = entry.get("concentration") or {}
    return (
        str(entry.get("code", "")).casefold(),
        *(_flatten(conc).get(k, "") for k in ("amount", "unit", "volume_ml")),
    )


def _entry_label(entry: Mapping[str, Any]) -> str:
    conc = entry.get("concentration")
    name = str(entry.get("name", "?"))
    if isinstance(conc, Mapping):
        flat = _flatten(conc)
        name += (
            f" {flat.get('amount', '?')} {flat.get('unit', '?')} in {flat.get('volume_ml', '?')} mL"
        )
    return f"{name} ({entry.get('code', '?')})"


def _indexed(items: Any, key: Callable[[Any], Any]) -> dict[Any, Any]:
    return {key(item): item for item in (items or []) if isinstance(item, Mapping)}


def diff_documents(old: Mapping[str, Any], new: Mapping[str, Any]) -> LibraryDiff:
    """What changed from ``old`` to ``new`` (library documents in the published shape).

    Care areas match by name (any case), entries by code and container within their care area:
    a new concentration is a new entry, as it is on the pump.
    """
    meta_old = {k: v for k, v in old.items() if k not in ("care_areas", "version", "sources")}
    meta_new = {k: v for k, v in new.items() if k not in ("care_areas", "version", "sources")}
    sources_old = {str(s.get("id")): s.get("citation") for s in old.get("sources", [])}
    sources_new = {str(s.get("id")): s.get("citation") for s in new.get("sources", [])}
    library = _changes(
        {**_flatten(meta_old), **{f"sources[{k}]": str(v) for k, v in sources_old.items()}},
        {**_flatten(meta_new), **{f"sources[{k}]": str(v) for k, v in sources_new.items()}},
    )
    areas_old = _indexed(old.get("care_areas"), lambda a: _key(str(a.get("name", ""))))
    areas_new = _indexed(new.get("care_areas"), lambda a: _key(str(a.get("name", ""))))
    area_changes: list[ItemChange] = []
    entry_changes: list[ItemChange] = []
    for key in [*areas_old, *(k for k in areas_new if k not in areas_old)]:
        a_old, a_new = areas_old.get(key), areas_new.get(key)
        shown = str((a_new or a_old or {}).get("name", key))
        head_old = (
            {} if a_old is None else _flatten({k: v for k, v in a_old.items() if k != "entries"})
        )
        head_new = (
            {} if a_new is None else _flatten({k: v for k, v in a_new.items() if k != "entries"})
        )
        if a_old is None:
            area_changes.append(ItemChange(ChangeKind.ADDED, shown, "", _changes({}, head_new)))
        elif a_new is None:
            area_changes.append(ItemChange(ChangeKind.REMOVED, shown, "", _changes(head_old, {})))
        elif head_old != head_new:
            area_changes.append(
                ItemChange(ChangeKind.CHANGED, shown, "", _changes(head_old, head_new))
            )
        e_old = _indexed((a_old or {}).get("entries"), _entry_key)
        e_new = _indexed((a_new or {}).get("entries"), _entry_key)
        for e_key in [*e_old, *(k for k in e_new if k not in e_old)]:
            before, after = e_old.get(e_key), e_new.get(e_key)
            label = _entry_label(after or before or {})
            flat_old = {} if before is None else _flatten(before)
            flat_new = {} if after is None else _flatten(after)
            if before is None:
                kind = ChangeKind.ADDED
            elif after is None:
                kind = ChangeKind.REMOVED
            elif flat_old != flat_new:
                kind = ChangeKind.CHANGED
            else:
                continue
            entry_changes.append(ItemChange(kind, shown, label, _changes(flat_old, flat_new)))
    return LibraryDiff(
        from_version=int(old.get("version", 0)),
        to_version=int(new.get("version", 0)),
        library=library,
        care_areas=tuple(area_changes),
        entries=tuple(entry_changes),
    )
