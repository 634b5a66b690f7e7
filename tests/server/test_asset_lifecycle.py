"""Asset life cycle: the transition table, certificates through the real CA, the wipe."""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from tests.server.conftest import PASSPHRASE

from pumpguard.pki import CertificateAuthority
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import (
    DEVICE_KEY_SECRET,
    TRANSITIONS,
    AssetKind,
    AssetService,
    AssetState,
    EventRecord,
    IllegalTransition,
    IngestService,
    InvalidInput,
    NotFound,
    PkiDeviceCertificates,
    ServerEventCode,
    Store,
    StoredSecretBroken,
)
from pumpguard.server.models import AssetSecretRow

S = AssetState
ONBOARDING_SECRETS = sorted(["ca_pem", "device_cert_pem", DEVICE_KEY_SECRET])


def reachable(start: AssetState) -> set[AssetState]:
    seen, queue = {start}, deque([start])
    while queue:
        for nxt in TRANSITIONS[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def test_every_state_is_reachable_and_every_pump_can_be_retired() -> None:
    assert reachable(S.PROCURED) == set(S)
    for state in S:
        assert S.DECOMMISSIONED in reachable(state)
    assert TRANSITIONS[S.DECOMMISSIONED] == frozenset()
    assert S.DECOMMISSIONED not in TRANSITIONS[S.IN_SERVICE], "decontaminate before retiring"
    assert all(state not in TRANSITIONS[state] for state in S)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "pki", PASSPHRASE)


@pytest.fixture
def fleet(store: Store, ca: CertificateAuthority) -> Store:
    ctx = dataclasses.replace(store.ctx, certificates=PkiDeviceCertificates(ca))
    return Store(store.engine, ctx)


def register(store: Store, ident: str = "PUMP-0001") -> None:
    with store.transaction() as session:
        AssetService(session, store.ctx).register(
            ident, AssetKind.LVP, "Acme", "Volumat", f"SN-{ident}", "biomed1", location="ICU"
        )


def move(store: Store, target: AssetState, ident: str = "PUMP-0001") -> None:
    with store.transaction() as session:
        AssetService(session, store.ctx).transition(ident, target, "biomed1", f"to {target}")


def test_onboarding_issues_and_decommissioning_revokes_and_wipes(
    fleet: Store, ca: CertificateAuthority
) -> None:
    register(fleet)
    move(fleet, S.ONBOARDED)
    with fleet.transaction() as session:
        assets = AssetService(session, fleet.ctx)
        asset = assets.get("PUMP-0001")
        assert asset.cert_serial is not None
        assert assets.secret_names("PUMP-0001") == ONBOARDING_SECRETS
    record = ca.certificate(int(asset.cert_serial))
    assert (record.ident, record.revoked) == ("PUMP-0001", False)
    for target in (S.IN_SERVICE, S.DECONTAMINATION):
        move(fleet, target)
    with fleet.transaction() as session:
        IngestService(session, fleet.ctx).ingest([EventRecord("PUMP-0001", 1, 1, "alarm", {})])
    move(fleet, S.DECOMMISSIONED)
    assert ca.certificate(int(asset.cert_serial)).revoked
    crl = x509.load_pem_x509_crl((ca.directory / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(asset.cert_serial)) is not None
    with fleet.transaction() as session:
        assets = AssetService(session, fleet.ctx)
        assert assets.secret_names("PUMP-0001") == []
        assert [h.to_state for h in assets.history("PUMP-0001")] == [
            S.ONBOARDED,
            S.IN_SERVICE,
            S.DECONTAMINATION,
            S.DECOMMISSIONED,
        ]
        assert assets.get("PUMP-0001").state is S.DECOMMISSIONED
        assert len(IngestService(session, fleet.ctx).events(device_id="PUMP-0001")) == 1
        actions = [e.action for e in fleet.ctx.audit(session).entries(limit=100)]
    assert "asset.certificate.issued" in actions
    assert actions[-3:] == [
        "asset.certificate.revoked",
        "asset.secrets.wiped",
        "asset.transitioned",
    ]


def test_illegal_moves_are_refused_by_name(fleet: Store, events: SecurityEventLog) -> None:
    register(fleet)
    with pytest.raises(IllegalTransition) as refused:
        move(fleet, S.IN_SERVICE)
    assert "procured to in_service" in str(refused.value)
    assert "decommissioned, onboarded" in str(refused.value)
    assert events.with_code(ServerEventCode.ILLEGAL_TRANSITION)
    move(fleet, S.DECOMMISSIONED)
    with pytest.raises(IllegalTransition, match="the state is final"):
        move(fleet, S.ONBOARDED)


def test_onboarding_without_a_ca_changes_nothing(store: Store) -> None:
    register(store)
    with pytest.raises(InvalidInput, match="no certificate authority"):
        move(store, S.ONBOARDED)
    with store.transaction() as session:
        assert AssetService(session, store.ctx).get("PUMP-0001").state is S.PROCURED


def test_registration_validates_its_fields(store: Store) -> None:
    register(store)
    with store.transaction() as session:
        assets = AssetService(session, store.ctx)
        for ident in ("pump-1", "P", "PUMP-", "PUMP 1"):
            with pytest.raises(InvalidInput):
                assets.register(ident, AssetKind.PCA, "Acme", "M", "S", "b")
        with pytest.raises(InvalidInput):
            assets.register("PUMP-2", AssetKind.PCA, "Acme", "M\x00", "S", "b")


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.lists(st.sampled_from(list(S)), max_size=12))
def test_the_service_follows_the_table_for_any_requested_path(
    fleet: Store, ca: CertificateAuthority, path: list[AssetState]
) -> None:
    with fleet.transaction() as session:
        count = len(AssetService(session, fleet.ctx).list_assets())
    ident = f"PUMP-{count + 1:04d}"
    register(fleet, ident)
    state, moves = S.PROCURED, 0
    for target in path:
        if target in TRANSITIONS[state]:
            move(fleet, target, ident)
            state, moves = target, moves + 1
        else:
            with pytest.raises(IllegalTransition):
                move(fleet, target, ident)
    with fleet.transaction() as session:
        assets = AssetService(session, fleet.ctx)
        assert assets.get(ident).state is state
        assert len(assets.history(ident)) == moves
        asset = assets.get(ident)
        secrets = assets.secret_names(ident)
    if state is S.DECOMMISSIONED:
        assert secrets == []
    elif state is S.PROCURED:
        assert (secrets, asset.cert_serial) == ([], None)
    else:
        assert secrets == ONBOARDING_SECRETS and asset.cert_serial is not None
    if asset.cert_serial is not None:
        assert ca.certificate(int(asset.cert_serial)).revoked == (state is S.DECOMMISSIONED)


def test_the_credential_is_handed_over_once(fleet: Store, ca: CertificateAuthority) -> None:
    register(fleet)
    with fleet.transaction() as session, pytest.raises(InvalidInput, match="procured"):
        AssetService(session, fleet.ctx).collect_credential("PUMP-0001", "biomed1")
    move(fleet, S.ONBOARDED)
    with fleet.transaction() as session:
        credential = AssetService(session, fleet.ctx).collect_credential("PUMP-0001", "biomed1")
    cert = x509.load_pem_x509_certificate(credential.cert_pem.encode())
    assert cert.serial_number == credential.serial
    assert "BEGIN PRIVATE KEY" in credential.key_pem or "BEGIN EC PRIVATE KEY" in credential.key_pem
    assert credential.ca_pem.encode() == ca.ca_pem
    with fleet.transaction() as session:
        assets = AssetService(session, fleet.ctx)
        assert assets.secret_names("PUMP-0001") == []
        with pytest.raises(NotFound, match="already collected"):
            assets.collect_credential("PUMP-0001", "biomed1")


def test_a_stored_key_is_sealed_and_a_moved_one_does_not_open(
    fleet: Store, events: SecurityEventLog
) -> None:
    register(fleet, "PUMP-0001")
    register(fleet, "PUMP-0002")
    move(fleet, S.ONBOARDED, "PUMP-0001")
    move(fleet, S.ONBOARDED, "PUMP-0002")
    with fleet.transaction() as session:
        keys = {
            row.asset_id: row
            for row in session.scalars(
                select(AssetSecretRow).where(AssetSecretRow.name == DEVICE_KEY_SECRET)
            )
        }
        assert all("PRIVATE KEY" not in row.value for row in keys.values())
        first, second = sorted(keys)
        keys[second].value = keys[first].value
    with fleet.transaction() as session, pytest.raises(StoredSecretBroken):
        AssetService(session, fleet.ctx).collect_credential("PUMP-0002", "biomed1")
    assert events.with_code(ServerEventCode.SEALED_SECRET_BROKEN)
    with fleet.transaction() as session:
        assert (
            "PRIVATE KEY"
            in AssetService(session, fleet.ctx).collect_credential("PUMP-0001", "biomed1").key_pem
        )
