"""Drug library authoring as a service: drafts, validation, CSV, diff, the two-person rule."""

from __future__ import annotations

import copy
import hashlib
import json
from decimal import Decimal
from importlib.resources import files
from typing import Any

import pytest
from sqlalchemy import update
from tests.server.conftest import make_account

from pumpguard.clinical import parse_library
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import (
    CSV_COLUMNS,
    ApprovedLibrary,
    ChangeKind,
    Forbidden,
    InvalidInput,
    InvalidLibrary,
    LibraryAuthoring,
    NotFound,
    Principal,
    Role,
    ServerContext,
    ServerError,
    ServerEventCode,
    Store,
    UserService,
    VersionState,
    canonical_library_bytes,
    verify_audit_log,
)
from pumpguard.server.models import UserRow

EXAMPLE = files("pumpguard.data") / "example-drug-library.json"


def example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"), parse_float=Decimal)
    return data


def principal(store: Store, username: str, role: Role) -> Principal:
    make_account(store, username, role)
    with store.transaction() as session:
        user = UserService(session, store.ctx).get_user(username)
    return Principal(user.id, user.username, user.role, session_id=0)


@pytest.fixture
def people(store: Store) -> dict[str, Principal]:
    return {
        "phil": principal(store, "phil", Role.PHARMACIST),
        "pia": principal(store, "pia", Role.PHARMACIST),
        "anna": principal(store, "anna", Role.PHARMACY_APPROVER),
        "nina": principal(store, "nina", Role.NURSE),
    }


def run(store: Store, action: Any) -> Any:
    with store.transaction() as session:
        return action(LibraryAuthoring(session, store.ctx))


HEPARIN: dict[str, Any] = {
    "name": "Test heparin",
    "code": "HEP-TEST",
    "concentration": {"amount": 25000, "unit": "units", "volume_ml": 250},
    "dose_unit": "units/kg/h",
    "continuous": {"hard_min": 0, "soft_max": 25, "hard_max": 40},
    "weight_kg": {"min_kg": 30, "max_kg": 200},
}


def test_the_full_flow_from_empty_draft_to_approved(
    store: Store, people: dict[str, Principal], events: SecurityEventLog
) -> None:
    phil, anna = people["phil"], people["anna"]
    draft = run(store, lambda s: s.create_draft(phil, library_id="test-lib", name="Test library"))
    assert (draft.version, draft.state, draft.entries) == (1, VersionState.DRAFT, 0)
    area = run(store, lambda s: s.add_care_area(1, phil, "ICU", Decimal("500")))
    entry = run(store, lambda s: s.add_entry(1, phil, area.id, HEPARIN))
    assert entry.entry.code == "HEP-TEST" and entry.care_area == "ICU"
    changed = {**HEPARIN, "continuous": {"hard_min": 0, "soft_max": 20, "hard_max": 35}}
    run(store, lambda s: s.update_entry(1, phil, entry.id, changed))
    submitted = run(store, lambda s: s.submit(1, phil))
    assert submitted.state is VersionState.SUBMITTED and submitted.submitted_by == "phil"
    approved = run(store, lambda s: s.approve(1, anna, "checked against the formulary"))
    assert approved.library.version == 1
    assert approved.canonical == canonical_library_bytes(approved.library)
    assert approved.sha256 == hashlib.sha256(approved.canonical).hexdigest()
    assert approved.contributors == ("phil",)
    latest = run(store, lambda s: s.latest_approved())
    assert latest is not None and latest.canonical == approved.canonical
    hard_max = latest.library.care_areas[0].entries[0].continuous.hard_max
    assert hard_max == Decimal(35)
    with store.transaction() as session:
        actions = [e.action for e in store.ctx.audit(session).entries(limit=1000)]
        assert store.ctx.audit_key is not None
        assert verify_audit_log(session, store.ctx.audit_key.public_key).ok
    assert actions.count("library.draft.edited") == 3
    for action in ("library.draft.created", "library.submitted", "library.approved"):
        assert action in actions
    assert not events.with_code(ServerEventCode.LIBRARY_SELF_APPROVAL)


def submitted_example(store: Store, drafter: Principal) -> int:
    created = run(store, lambda s: s.import_json(drafter, example()))
    run(store, lambda s: s.submit(created.version, drafter))
    return int(created.version)


def test_the_drafter_cannot_approve_even_after_becoming_an_approver(
    store: Store, people: dict[str, Principal], events: SecurityEventLog
) -> None:
    phil = people["phil"]
    version = submitted_example(store, phil)
    with pytest.raises(Forbidden, match=r"lacks the permission library\.approve"):
        run(store, lambda s: s.approve(version, phil))
    # No role-change feature exists yet: change the row as an administrator with database
    # access would, and as a future role-change command will.
    with store.transaction() as session:
        session.execute(
            update(UserRow).where(UserRow.username == "phil").values(role="pharmacy_approver")
        )
    promoted = Principal(phil.user_id, "phil", Role.PHARMACY_APPROVER, 0)
    with pytest.raises(Forbidden, match="two-person rule"):
        run(store, lambda s: s.approve(version, promoted))
    assert run(store, lambda s: s.get(version)).state is VersionState.SUBMITTED
    (event,) = events.with_code(ServerEventCode.LIBRARY_SELF_APPROVAL)
    assert event.attributes["username"] == "phil"
    with store.transaction() as session:
        refused = [
            e
            for e in store.ctx.audit(session).entries(limit=1000)
            if e.action == "library.approval.refused"
        ]
    assert [e.details_dict()["reason"] for e in refused] == ["self-approval"]


def test_an_editor_who_did_not_draft_is_excluded_too(
    store: Store, people: dict[str, Principal], events: SecurityEventLog
) -> None:
    phil, pia = people["phil"], people["pia"]
    created = run(store, lambda s: s.import_json(phil, example()))
    icu = run(store, lambda s: s.find_care_area(created.version, "icu"))
    run(store, lambda s: s.add_entry(created.version, pia, icu.id, HEPARIN))
    run(store, lambda s: s.submit(created.version, phil))
    with store.transaction() as session:
        session.execute(
            update(UserRow).where(UserRow.username == "pia").values(role="pharmacy_approver")
        )
    with pytest.raises(Forbidden, match="two-person rule"):
        run(
            store,
            lambda s: s.approve(
                created.version, Principal(pia.user_id, "pia", Role.PHARMACY_APPROVER, 0)
            ),
        )
    info = run(store, lambda s: s.get(created.version))
    assert info.contributors == ("phil", "pia")


def test_an_approved_version_is_immutable(
    store: Store, people: dict[str, Principal], events: SecurityEventLog
) -> None:
    phil, anna = people["phil"], people["anna"]
    version = submitted_example(store, phil)
    run(store, lambda s: s.approve(version, anna))
    icu = run(store, lambda s: s.find_care_area(version, "ICU"))
    for attempt in (
        lambda s: s.add_entry(version, phil, icu.id, HEPARIN),
        lambda s: s.remove_entry(version, phil, icu.entries[0].id),
        lambda s: s.update_care_area(version, phil, icu.id, name="Intensive care"),
        lambda s: s.update_details(version, phil, name="renamed"),
        lambda s: s.submit(version, phil),
    ):
        with pytest.raises(InvalidInput, match="approved version never changes"):
            run(store, attempt)
    with pytest.raises(InvalidInput, match="it is approved"):
        run(store, lambda s: s.reject(version, anna, "too late"))
    assert len(events.with_code(ServerEventCode.LIBRARY_NOT_EDITABLE)) == 6
    approved = run(store, lambda s: s.approved(version))
    assert approved.library == parse_library(example())


def test_version_numbers_are_monotonic_and_a_superseded_version_cannot_be_approved(
    store: Store, people: dict[str, Principal], events: SecurityEventLog
) -> None:
    phil, anna = people["phil"], people["anna"]
    first = submitted_example(store, phil)
    second = run(store, lambda s: s.create_draft(phil, base_version=first))
    run(store, lambda s: s.submit(second.version, phil))
    assert (first, second.version) == (1, 2)
    run(store, lambda s: s.approve(2, anna))
    with pytest.raises(Forbidden, match="older than the approved v2"):
        run(store, lambda s: s.approve(1, anna))
    assert events.with_code(ServerEventCode.LIBRARY_STALE_APPROVAL)
    third = run(store, lambda s: s.create_draft(phil, from_latest_approved=True))
    assert third.version == 3 and third.base_version == 2


def test_reject_needs_a_note_and_keeps_the_version_as_reviewed(
    store: Store, people: dict[str, Principal]
) -> None:
    phil, anna = people["phil"], people["anna"]
    version = submitted_example(store, phil)
    with pytest.raises(InvalidInput, match="a note is required"):
        run(store, lambda s: s.reject(version, anna, "  "))
    rejected = run(store, lambda s: s.reject(version, anna, "heparin ICU hard max too high"))
    assert rejected.state is VersionState.REJECTED
    assert rejected.decision_note == "heparin ICU hard max too high"
    retry = run(store, lambda s: s.create_draft(phil, base_version=version))
    assert run(store, lambda s: s.diff(version, retry.version)).empty


def test_invalid_changes_are_refused_with_the_place_named_and_leave_nothing(
    store: Store, people: dict[str, Principal]
) -> None:
    phil = people["phil"]
    run(store, lambda s: s.create_draft(phil, library_id="test-lib", name="Test"))
    area = run(store, lambda s: s.add_care_area(1, phil, "ICU"))
    bad_limits = {**HEPARIN, "continuous": {"soft_max": 50, "hard_max": 40}}
    with pytest.raises(InvalidLibrary) as caught:
        run(store, lambda s: s.add_entry(1, phil, area.id, bad_limits))
    assert caught.value.issues == (
        "care area 'ICU' > drug 'Test heparin' > continuous: hard_max (40) is below soft_max (50)",
    )
    with pytest.raises(InvalidLibrary, match=r"dose_unit.*not a rate"):
        run(store, lambda s: s.add_entry(1, phil, area.id, {**HEPARIN, "dose_unit": "units"}))
    with pytest.raises(InvalidLibrary, match="source 'NOPE' is not listed"):
        run(store, lambda s: s.add_entry(1, phil, area.id, {**HEPARIN, "sources": ["NOPE"]}))
    with pytest.raises(InvalidLibrary, match="unknown field"):
        run(store, lambda s: s.add_entry(1, phil, area.id, {**HEPARIN, "colour": "red"}))
    with pytest.raises(NotFound, match="no care area with id 999"):
        run(store, lambda s: s.add_entry(1, phil, 999, HEPARIN))
    with pytest.raises(NotFound, match="no care area 'NICU'"):
        run(store, lambda s: s.find_care_area(1, "NICU"))
    with pytest.raises(InvalidLibrary, match="duplicate care area"):
        run(store, lambda s: s.add_care_area(1, phil, "icu"))
    with pytest.raises(InvalidLibrary, match="max_rate_ml_h"):
        run(store, lambda s: s.add_care_area(1, phil, "Ward", Decimal(-1)))
    run(store, lambda s: s.add_entry(1, phil, area.id, HEPARIN))
    with pytest.raises(InvalidLibrary, match="duplicate drug"):
        run(store, lambda s: s.add_entry(1, phil, area.id, HEPARIN))
    info = run(store, lambda s: s.get(1))
    assert (info.care_areas, info.entries) == (1, 1)
    run(store, lambda s: s.add_care_area(1, phil, "Empty ward"))
    with pytest.raises(InvalidLibrary, match="cannot be submitted") as caught:
        run(store, lambda s: s.submit(1, phil))
    assert any("Empty ward" in issue for issue in caught.value.issues)


def test_only_pharmacists_draft(
    store: Store, people: dict[str, Principal], events: SecurityEventLog
) -> None:
    with pytest.raises(Forbidden, match=r"library\.draft"):
        run(store, lambda s: s.create_draft(people["anna"], library_id="x", name="x"))
    with pytest.raises(Forbidden, match=r"library\.draft"):
        run(store, lambda s: s.import_json(people["nina"], example()))
    assert len(events.with_code(ServerEventCode.FORBIDDEN)) == 2


def test_import_json_checks_everything_and_keeps_one_library_id(
    store: Store, people: dict[str, Principal]
) -> None:
    phil = people["phil"]
    broken = example()
    broken["care_areas"][0]["entries"][0]["continuous"]["hard_max"] = -1
    with pytest.raises(InvalidLibrary, match=r"continuous\.hard_max"):
        run(store, lambda s: s.import_json(phil, broken))
    assert run(store, lambda s: s.versions()) == []
    created = run(store, lambda s: s.import_json(phil, {**example(), "version": 42}))
    assert created.version == 1
    with pytest.raises(InvalidInput, match="one library id"):
        run(store, lambda s: s.import_json(phil, {**example(), "library_id": "other"}))


def test_csv_round_trip_is_lossless(store: Store, people: dict[str, Principal]) -> None:
    phil = people["phil"]
    created = run(store, lambda s: s.import_json(phil, example()))
    text = run(store, lambda s: s.export_csv(created.version))
    assert text.splitlines()[0].split(",") == list(CSV_COLUMNS)
    assert len(text.splitlines()) == 1 + sum(len(a["entries"]) for a in example()["care_areas"])
    again = run(store, lambda s: s.import_csv(phil, text, base_version=created.version))
    assert run(store, lambda s: s.diff(created.version, again.version)).empty
    assert run(store, lambda s: s.export_csv(again.version)) == text
    first = run(store, lambda s: s.library(created.version))
    second = run(store, lambda s: s.library(again.version))
    assert second == first.model_copy(update={"version": again.version})


def test_bad_csv_gets_line_numbered_errors(store: Store, people: dict[str, Principal]) -> None:
    phil = people["phil"]
    created = run(store, lambda s: s.import_json(phil, example()))
    lines = run(store, lambda s: s.export_csv(created.version)).splitlines()
    header = lines[0].split(",")
    column = header.index("continuous_hard_max")
    row3 = next(__import__("csv").reader([lines[2]]))
    row3[column] = "ten"
    row5 = next(__import__("csv").reader([lines[4]]))
    row5[header.index("care_area_max_rate_ml_h")] = "12345"
    import csv as csv_module
    import io

    buffer = io.StringIO()
    writer = csv_module.writer(buffer)
    writer.writerow(header)
    for index, line in enumerate(lines[1:], start=2):
        cells = row3 if index == 3 else row5 if index == 5 else next(csv_module.reader([line]))
        writer.writerow(cells)
    with pytest.raises(InvalidLibrary) as caught:
        run(store, lambda s: s.import_csv(phil, buffer.getvalue(), base_version=1))
    issues = caught.value.issues
    assert "line 3, column continuous_hard_max: 'ten' is not a number" in issues
    assert any(
        i.startswith("line 5, column care_area_max_rate_ml_h: 12345 differs") for i in issues
    )
    unknown = "care_area,name,code,dose_unit,colour\nICU,X,X,mL/h,red\n"
    with pytest.raises(InvalidLibrary, match="line 1, column colour: unknown column"):
        run(store, lambda s: s.import_csv(phil, unknown))
    missing_limit = "care_area,name,code,dose_unit\nICU,Saline,NS,mL/h\n"
    with pytest.raises(InvalidLibrary) as caught:
        run(store, lambda s: s.import_csv(phil, missing_limit, base_version=1))
    assert caught.value.issues == (
        "line 2: care area 'ICU' > drug 'Saline' > continuous: required field is missing",
    )


def test_diff_names_entries_and_fields_and_flags_loosened_limits(
    store: Store, people: dict[str, Principal]
) -> None:
    phil = people["phil"]
    base = example()
    run(store, lambda s: s.import_json(phil, base))
    changed = copy.deepcopy(base)
    icu = changed["care_areas"][0]
    first = icu["entries"][0]
    old_max = first["continuous"]["hard_max"]
    first["continuous"]["hard_max"] = old_max * 2
    removed = icu["entries"].pop(1)
    icu["entries"].append({**HEPARIN, "code": "HEP-NEW"})
    changed["name"] = "renamed"
    run(store, lambda s: s.import_json(phil, changed))
    diff = run(store, lambda s: s.diff(1, 2))
    assert [c.field for c in diff.library] == ["name"]
    kinds = {(e.kind, e.item.split(" (")[-1].rstrip(")")) for e in diff.entries}
    assert kinds == {
        (ChangeKind.CHANGED, first["code"]),
        (ChangeKind.REMOVED, removed["code"]),
        (ChangeKind.ADDED, "HEP-NEW"),
    }
    (changed_entry,) = [e for e in diff.entries if e.kind is ChangeKind.CHANGED]
    (field,) = changed_entry.changes
    assert field.field == "continuous.hard_max" and field.limit and field.loosened
    assert field.old == f"{Decimal(str(old_max)).normalize():f}"
    assert diff.loosened_limits == 1
    text = "\n".join(diff.lines())
    assert "[LIMIT loosened]" in text and f"~ {icu['name']} / " in text
    back = run(store, lambda s: s.diff(2, 1))
    (reverse,) = [e for e in back.entries if e.kind is ChangeKind.CHANGED]
    assert reverse.changes[0].loosened is False


def test_a_failing_approval_hook_undoes_the_approval(
    store: Store, people: dict[str, Principal], ctx: ServerContext
) -> None:
    phil, anna = people["phil"], people["anna"]
    version = submitted_example(store, phil)
    seen: list[ApprovedLibrary] = []

    def failing(_session: Any, approved: ApprovedLibrary) -> None:
        seen.append(approved)
        raise ServerError("signing service unavailable")

    with pytest.raises(ServerError, match="signing service"), store.transaction() as session:
        LibraryAuthoring(session, store.ctx, hooks=[failing]).approve(version, anna)
    assert seen and seen[0].version == version
    assert run(store, lambda s: s.get(version)).state is VersionState.SUBMITTED
    assert run(store, lambda s: s.latest_approved()) is None
    published: list[int] = []
    with store.transaction() as session:
        LibraryAuthoring(
            session, store.ctx, hooks=[lambda _s, a: published.append(a.version)]
        ).approve(version, anna)
    assert published == [version]
    with store.transaction() as session:
        actions = [e.action for e in store.ctx.audit(session).entries(limit=1000)]
        assert store.ctx.audit_key is not None
        assert verify_audit_log(session, store.ctx.audit_key.public_key).ok
    assert actions.count("library.approved") == 1
    assert actions.count("library.approval.refused") == 1
