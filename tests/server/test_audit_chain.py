"""The audit log's hash chain and signed checkpoints against direct database tampering."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session
from tests.server.conftest import PASSPHRASE

from pumpguard.server import (
    AuditAction,
    AuditKeyError,
    AuditLog,
    AuditProblemKind,
    AuditVerification,
    CheckpointKey,
    Store,
    verify_audit_log,
)
from pumpguard.server.audit import entry_hash

ENTRIES = 10  # checkpoints every 4 entries: at 4 and 8; 9 and 10 are unanchored


def fill(store: Store, count: int = ENTRIES) -> None:
    with store.transaction() as session:
        log = store.ctx.audit(session)
        for i in range(count):
            log.append(
                AuditAction.ASSET_UPDATED, f"user{i % 3}", f"asset:P-{i}", {"n": i, "ok": True}
            )


def verify(store: Store) -> AuditVerification:
    assert store.ctx.audit_key is not None
    with store.transaction() as session:
        return verify_audit_log(session, store.ctx.audit_key.public_key)


@contextmanager
def tampered(store: Store, *statements: str) -> Iterator[AuditVerification]:
    """Apply raw SQL, verify, and roll the tampering back."""
    assert store.ctx.audit_key is not None
    with store.engine.connect() as conn:
        transaction = conn.begin()
        for statement in statements:
            conn.execute(text(statement))
        with Session(bind=conn) as session:
            yield verify_audit_log(session, store.ctx.audit_key.public_key)
        transaction.rollback()


def test_an_untouched_log_verifies(store: Store) -> None:
    fill(store)
    result = verify(store)
    assert result.ok, result.problems
    assert (result.entries, result.last_seq, result.checkpoints) == (ENTRIES, ENTRIES, 2)
    assert result.last_checkpoint_seq == 8
    assert result.unanchored == 2


def test_entries_chain_each_to_the_previous(store: Store) -> None:
    fill(store, 3)
    with store.transaction() as session:
        entries = store.ctx.audit(session).entries()
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == "0" * 64
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.entry_hash
    first = entries[0]
    assert first.entry_hash == entry_hash(
        first.prev_hash, 1, first.at_ms, first.actor, first.action, first.subject, first.details
    )


def test_actions_roll_back_with_their_transaction(store: Store) -> None:
    fill(store, 2)

    def failing_action() -> None:
        with store.transaction() as session:
            store.ctx.audit(session).append(AuditAction.USER_CREATED, "x", "user:y")
            raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        failing_action()
    fill(store, 1)
    result = verify(store)
    assert result.ok and result.last_seq == 3


@pytest.mark.parametrize(
    ("statements", "first_seq", "kind"),
    [
        (["UPDATE audit_entries SET actor = 'mallory' WHERE seq = 3"], 3, AuditProblemKind.EDITED),
        (
            ["UPDATE audit_entries SET details = '{\"n\": 2}' WHERE seq = 3"],
            3,
            AuditProblemKind.EDITED,
        ),
        (["UPDATE audit_entries SET at_ms = at_ms + 1 WHERE seq = 9"], 9, AuditProblemKind.EDITED),
        (["DELETE FROM audit_entries WHERE seq = 5"], 6, AuditProblemKind.GAP),
        (
            ["DELETE FROM audit_entries WHERE seq = 10"],
            10,
            AuditProblemKind.HEAD_MISMATCH,
        ),
        (["DELETE FROM audit_entries WHERE seq >= 7"], 7, AuditProblemKind.HEAD_MISMATCH),
        (
            [
                "DELETE FROM audit_entries WHERE seq >= 7",
                "UPDATE audit_head SET last_seq = 6, last_hash = "
                "(SELECT entry_hash FROM audit_entries WHERE seq = 6)",
            ],
            8,
            AuditProblemKind.TRUNCATED,
        ),
        (
            [
                "INSERT INTO audit_entries (seq, at_ms, actor, action, subject, details, prev_hash,"
                " entry_hash) SELECT 11, at_ms, 'mallory', 'user.created', 'user:mallory', '{}',"
                " entry_hash, entry_hash FROM audit_entries WHERE seq = 10",
            ],
            11,
            AuditProblemKind.EDITED,
        ),
        (
            [
                "UPDATE audit_entries SET seq = 100 WHERE seq = 3",
                "UPDATE audit_entries SET seq = 3 WHERE seq = 2",
                "UPDATE audit_entries SET seq = 2 WHERE seq = 100",
            ],
            2,
            AuditProblemKind.BROKEN_LINK,
        ),
        (
            ["UPDATE audit_checkpoints SET signature = signature || '00' WHERE seq = 4"],
            4,
            AuditProblemKind.CHECKPOINT_BAD_SIGNATURE,
        ),
    ],
    ids=[
        "edit-actor",
        "edit-details",
        "edit-unanchored-time",
        "delete-middle",
        "delete-last",
        "truncate-tail",
        "truncate-tail-and-head",
        "insert-at-end",
        "reorder",
        "forge-signature",
    ],
)
def test_direct_tampering_is_detected_at_the_first_bad_entry(
    store: Store, statements: list[str], first_seq: int, kind: AuditProblemKind
) -> None:
    fill(store)
    with tampered(store, *statements) as result:
        assert not result.ok
        first = result.first_problem
        assert first is not None
        assert (first.seq, first.kind) == (first_seq, kind), result.problems


def _rewrite_chain(store: Store, from_seq: int, actor: str) -> list[str]:
    """What an attacker who knows the algorithm (but not the key) does: edit and re-hash."""
    with store.transaction() as session:
        entries = store.ctx.audit(session).entries(limit=1000)
    statements = []
    prev = entries[from_seq - 2].entry_hash if from_seq > 1 else "0" * 64
    for e in entries[from_seq - 1 :]:
        who = actor if e.seq == from_seq else e.actor
        digest = entry_hash(prev, e.seq, e.at_ms, who, e.action, e.subject, e.details)
        statements.append(
            f"UPDATE audit_entries SET actor = '{who}', prev_hash = '{prev}', "
            f"entry_hash = '{digest}' WHERE seq = {e.seq}"
        )
        prev = digest
    statements.append(f"UPDATE audit_head SET last_hash = '{prev}'")
    return statements


def test_a_rehashed_rewrite_is_caught_by_the_signed_checkpoint(store: Store) -> None:
    fill(store)
    with tampered(store, *_rewrite_chain(store, 2, "mallory")) as result:
        first = result.first_problem
        assert first is not None
        assert (first.seq, first.kind) == (4, AuditProblemKind.CHECKPOINT_MISMATCH)


def test_a_rehashed_rewrite_after_the_last_checkpoint_is_not_detectable(store: Store) -> None:
    """The documented limit: entries not yet under a signature can be rewritten by someone
    who can write the database. ``unanchored`` says how many entries are in that state."""
    fill(store)
    with tampered(store, *_rewrite_chain(store, 9, "mallory")) as result:
        assert result.ok
        assert result.unanchored == 2


def test_checkpoint_now_anchors_the_tail(store: Store) -> None:
    fill(store)
    with store.transaction() as session:
        signed = store.ctx.audit(session).checkpoint()
        assert signed is not None and signed.seq == ENTRIES
        assert store.ctx.audit(session).checkpoint() is None
    assert verify(store).unanchored == 0
    with tampered(store, *_rewrite_chain(store, 9, "mallory")) as result:
        assert not result.ok


def test_a_checkpoint_from_another_key_is_refused(
    store: Store, tmp_path_factory: pytest.TempPathFactory
) -> None:
    fill(store, 4)
    other = CheckpointKey.create(tmp_path_factory.mktemp("other"), PASSPHRASE)
    with store.transaction() as session:
        result = verify_audit_log(session, other.public_key)
    assert [p.kind for p in result.problems] == [AuditProblemKind.CHECKPOINT_BAD_SIGNATURE]


def test_no_key_no_checkpoint(store: Store) -> None:
    with store.transaction() as session:
        log = AuditLog(session, store.ctx.clock, None, 1)
        log.append(AuditAction.LOGOUT, "a", "user:a")
        with pytest.raises(AuditKeyError):
            log.checkpoint()


_COLUMNS = ["at_ms", "actor", "action", "subject", "details", "prev_hash", "entry_hash"]


@st.composite
def tampering(draw: st.DrawFn) -> tuple[list[str], int]:
    """A random naive tampering and the first sequence number it can be blamed on."""
    op = draw(st.sampled_from(["edit", "delete", "insert", "swap"]))
    seq = draw(st.integers(1, ENTRIES))
    if op == "edit":
        column = draw(st.sampled_from(_COLUMNS))
        if column == "at_ms":
            return [f"UPDATE audit_entries SET at_ms = at_ms + 1 WHERE seq = {seq}"], seq
        value = draw(st.sampled_from(["x", "0" * 64, "{}", "f" * 64]))
        assume(not (column == "prev_hash" and seq == 1 and value == "0" * 64))  # no change
        return [f"UPDATE audit_entries SET {column} = '{value}' WHERE seq = {seq}"], seq
    if op == "delete":
        return [f"DELETE FROM audit_entries WHERE seq = {seq}"], seq
    if op == "insert":
        shift = [
            f"UPDATE audit_entries SET seq = seq + 1000 WHERE seq >= {seq}",
            "UPDATE audit_entries SET seq = seq - 999 WHERE seq >= 1000",
        ]
        copy = (
            "INSERT INTO audit_entries (seq, at_ms, actor, action, subject, details, prev_hash, "
            f"entry_hash) SELECT {seq}, at_ms, 'mallory', action, subject, details, prev_hash, "
            f"entry_hash FROM audit_entries WHERE seq = {seq + 1}"
        )
        return [*shift, copy], seq
    other = draw(st.integers(1, ENTRIES).filter(lambda s: s != seq))
    low, high = sorted((seq, other))
    return [
        f"UPDATE audit_entries SET seq = 999 WHERE seq = {low}",
        f"UPDATE audit_entries SET seq = {low} WHERE seq = {high}",
        f"UPDATE audit_entries SET seq = {high} WHERE seq = 999",
    ], low


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=tampering())
def test_any_naive_tampering_is_detected_near_where_it_happened(
    store: Store, case: tuple[list[str], int]
) -> None:
    statements, seq = case
    with store.transaction() as session:
        empty = store.ctx.audit(session).entries(limit=1) == []
    if empty:
        fill(store)
    with tampered(store, *statements) as result:
        assert not result.ok, statements
        first = result.first_problem
        assert first is not None
        assert seq <= first.seq <= seq + 1, (statements, result.problems)
