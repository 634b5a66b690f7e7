"""Accounts, two-factor logins, lockout, TOTP replay protection and sessions."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.server.conftest import Account, make_account

from pumpguard.clock import VirtualClock
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import (
    AlreadyExists,
    AuditAction,
    AuthenticationFailed,
    InvalidInput,
    Role,
    ServerEventCode,
    SessionToken,
    Store,
    UserService,
)
from pumpguard.server.models import UserRow, UserSessionRow


def login(store: Store, account: Account, clock: VirtualClock, **override: str) -> SessionToken:
    fields = {"password": account.password, "code": account.code(clock)}
    fields.update(override)
    with store.transaction() as session:
        return UserService(session, store.ctx).login(
            account.username, fields["password"], fields["code"], peer="10.0.0.9"
        )


def actions(store: Store) -> list[str]:
    with store.transaction() as session:
        return [e.action for e in store.ctx.audit(session).entries(limit=1000)]


def test_created_accounts_store_no_secret_in_clear(store: Store) -> None:
    account = make_account(store, "alice", Role.ADMIN)
    assert account.credentials.totp_uri.startswith("otpauth://totp/pumpguard:alice?secret=")
    assert len(account.password) >= 20
    with store.transaction() as session:
        row = session.scalars(select(UserRow)).one()
    assert row.password_hash.startswith("$argon2id$")
    assert account.password not in row.password_hash
    assert actions(store) == [AuditAction.USER_CREATED]


def test_duplicate_and_malformed_usernames_are_refused(store: Store) -> None:
    make_account(store, "alice", Role.ADMIN)
    with pytest.raises(AlreadyExists):
        make_account(store, "alice", Role.NURSE)
    for bad in ("A", "Alice", "-x", "a b", "x" * 65, ""):
        with pytest.raises(InvalidInput):
            make_account(store, bad, Role.NURSE)


def test_login_needs_both_factors(store: Store, clock: VirtualClock) -> None:
    account = make_account(store, "nina", Role.NURSE)
    token = login(store, account, clock)
    with store.transaction() as session:
        principal = UserService(session, store.ctx).authenticate(token.token)
    assert (principal.username, principal.role) == ("nina", Role.NURSE)
    with store.transaction() as session:
        stored = session.scalars(select(UserSessionRow.token_hash)).one()
    assert token.token not in stored
    clock.advance(30_000)
    with pytest.raises(AuthenticationFailed) as wrong_password:
        login(store, account, clock, password="not the password")
    clock.advance(30_000)
    with pytest.raises(AuthenticationFailed) as wrong_code:
        login(store, account, clock, code="000000" if account.code(clock) != "000000" else "111111")
    with pytest.raises(AuthenticationFailed) as unknown, store.transaction() as session:
        UserService(session, store.ctx).login("nobody", "x", "123456")
    assert str(wrong_password.value) == str(wrong_code.value) == str(unknown.value)


def test_a_totp_code_is_accepted_once(
    store: Store, clock: VirtualClock, events: SecurityEventLog
) -> None:
    account = make_account(store, "nina", Role.NURSE)
    code = account.code(clock)
    login(store, account, clock, code=code)
    clock.advance(5_000)
    with pytest.raises(AuthenticationFailed):
        login(store, account, clock, code=code)
    assert events.with_code(ServerEventCode.TOTP_REPLAY)
    clock.advance(30_000)
    login(store, account, clock)


def test_codes_from_the_neighbouring_step_are_accepted_but_not_older(
    store: Store, clock: VirtualClock
) -> None:
    account = make_account(store, "nina", Role.NURSE)
    login(store, account, clock, code=account.code(clock, offset_steps=-1))
    clock.advance(60_000)
    with pytest.raises(AuthenticationFailed):
        login(store, account, clock, code=account.code(clock, offset_steps=-2))


def test_repeated_failures_lock_the_account_with_backoff(
    store: Store, clock: VirtualClock, events: SecurityEventLog
) -> None:
    account = make_account(store, "nina", Role.NURSE)
    threshold = store.ctx.settings.lockout_threshold
    for _ in range(threshold):
        with pytest.raises(AuthenticationFailed):
            login(store, account, clock, password="wrong")
    assert len(events.with_code(ServerEventCode.ACCOUNT_LOCKED)) == 1
    with pytest.raises(AuthenticationFailed):
        login(store, account, clock)
    assert events.with_code(ServerEventCode.LOGIN_WHILE_LOCKED)
    clock.advance(store.ctx.settings.lockout_base_ms + 1)
    with pytest.raises(AuthenticationFailed):
        login(store, account, clock, password="wrong")
    with store.transaction() as session:
        row = session.scalars(select(UserRow)).one()
    assert row.locked_until_ms - clock.now_ms() == 2 * store.ctx.settings.lockout_base_ms
    clock.advance(2 * store.ctx.settings.lockout_base_ms + 1)
    login(store, account, clock)
    with store.transaction() as session:
        assert session.scalars(select(UserRow)).one().failed_logins == 0
    recorded = actions(store)
    assert recorded.count(AuditAction.LOGIN_FAILED) == threshold + 2
    assert recorded.count(AuditAction.ACCOUNT_LOCKED) == 2
    assert recorded[-1] == AuditAction.LOGIN_SUCCEEDED


def test_sessions_expire_when_idle_and_at_end_of_life(store: Store, clock: VirtualClock) -> None:
    settings = store.ctx.settings
    account = make_account(store, "nina", Role.NURSE)
    token = login(store, account, clock)
    clock.advance(settings.session_idle_ms + 1)
    with pytest.raises(AuthenticationFailed), store.transaction() as session:
        UserService(session, store.ctx).authenticate(token.token)
    clock.advance(30_000)
    token = login(store, account, clock)
    for _ in range(settings.session_lifetime_ms // settings.session_idle_ms + 1):
        clock.advance(settings.session_idle_ms - 1)
        try:
            with store.transaction() as session:
                UserService(session, store.ctx).authenticate(token.token)
        except AuthenticationFailed:
            break
    else:
        pytest.fail("a session kept alive by activity outlived its lifetime")
    assert clock.now_ms() >= token.expires_at_ms


def test_logout_and_disable_end_sessions(store: Store, clock: VirtualClock) -> None:
    account = make_account(store, "nina", Role.NURSE)
    token = login(store, account, clock)
    with store.transaction() as session:
        users = UserService(session, store.ctx)
        users.logout(users.authenticate(token.token))
    with pytest.raises(AuthenticationFailed), store.transaction() as session:
        UserService(session, store.ctx).authenticate(token.token)
    clock.advance(30_000)
    token = login(store, account, clock)
    with store.transaction() as session:
        UserService(session, store.ctx).disable_user("nina", "admin")
    with pytest.raises(AuthenticationFailed), store.transaction() as session:
        UserService(session, store.ctx).authenticate(token.token)
    clock.advance(30_000)
    with pytest.raises(AuthenticationFailed):
        login(store, account, clock)


def test_password_change_checks_the_old_one(store: Store, clock: VirtualClock) -> None:
    account = make_account(store, "nina", Role.NURSE)
    token = login(store, account, clock)
    with store.transaction() as session:
        users = UserService(session, store.ctx)
        me = users.authenticate(token.token)
        with pytest.raises(InvalidInput):
            users.change_password(me, "wrong", "a much longer new password")
        with pytest.raises(InvalidInput):
            users.change_password(me, account.password, "short")
        users.change_password(me, account.password, "a much longer new password")
    clock.advance(30_000)
    login(store, account, clock, password="a much longer new password")


def test_totp_seeds_are_sealed_and_bound_to_their_row(
    store: Store, clock: VirtualClock, events: SecurityEventLog
) -> None:
    alice = make_account(store, "alice", Role.NURSE)
    make_account(store, "mallory", Role.NURSE)
    with store.transaction() as session:
        rows = {r.username: r for r in session.scalars(select(UserRow))}
        assert alice.credentials.totp_secret not in rows["alice"].totp_secret
        assert rows["alice"].totp_secret.startswith("v1.")
        rows["mallory"].totp_secret = rows["alice"].totp_secret
    with pytest.raises(AuthenticationFailed), store.transaction() as session:
        UserService(session, store.ctx).login("mallory", "irrelevant", alice.code(clock))
    assert events.with_code(ServerEventCode.SEALED_SECRET_BROKEN)
    login(store, alice, clock)
