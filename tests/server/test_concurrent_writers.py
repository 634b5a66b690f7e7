"""Several writers at once (ingest workers, API threads) neither fork the audit chain nor
store an event twice."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import update
from tests.server.conftest import make_account

from pumpguard.clock import VirtualClock
from pumpguard.server import (
    AssetKind,
    AssetService,
    AssetState,
    AuditAction,
    AuthenticationFailed,
    EventRecord,
    IngestService,
    Role,
    Store,
    UserService,
    verify_audit_log,
)
from pumpguard.server.models import AssetRow, PumpEventRow

WORKERS = 4
ROUNDS = 8


def test_parallel_appends_and_resends_stay_consistent(store: Store) -> None:
    with store.transaction() as session:
        AssetService(session, store.ctx).register("PUMP-1", AssetKind.LVP, "A", "B", "C", "t")
        session.execute(update(AssetRow).values(state=str(AssetState.IN_SERVICE)))

    def worker(n: int) -> int:
        accepted = 0
        for round_ in range(ROUNDS):
            with store.transaction() as session:
                store.ctx.audit(session).append(AuditAction.ASSET_UPDATED, f"w{n}", f"r{round_}")
                records = [
                    EventRecord("PUMP-1", s, s, "alarm", {})
                    for s in range(round_ * 5, round_ * 5 + 10)
                ]
                accepted += IngestService(session, store.ctx).ingest(records).accepted
        return accepted

    with ThreadPoolExecutor(WORKERS) as pool:
        accepted = sum(pool.map(worker, range(WORKERS)))
    assert store.ctx.audit_key is not None
    with store.transaction() as session:
        result = verify_audit_log(session, store.ctx.audit_key.public_key)
        stored = session.query(PumpEventRow).count()
    assert result.ok, result.problems
    assert result.entries == 1 + WORKERS * ROUNDS
    assert stored == accepted == ROUNDS * 5 + 5


def test_one_totp_code_opens_one_session_even_when_raced(store: Store, clock: VirtualClock) -> None:
    account = make_account(store, "nina", Role.NURSE)
    code = account.code(clock)
    start = threading.Barrier(WORKERS)

    def attempt(_: int) -> bool:
        start.wait()
        try:
            with store.transaction() as session:
                UserService(session, store.ctx).login("nina", account.password, code)
        except AuthenticationFailed:
            return False
        return True

    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(attempt, range(WORKERS)))
    assert outcomes.count(True) == 1
