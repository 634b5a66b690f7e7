"""Key rotation through new root versions: pumps follow the chain, retired keys stop working."""

from __future__ import annotations

import pytest
from tests.updates.conftest import LIBRARY_ID, Lab, installed_library, library_bytes, passphrase_for

from pumpguard.updates import (
    RepositoryStateError,
    SignatureThresholdError,
    SigningRole,
    ThresholdNotMetError,
    UpdateEvent,
    UpdateKind,
    UpdateRefused,
    UpdateRepository,
    VerifiedUpdate,
    forge_release,
)
from pumpguard.updates.repository import ms_to_datetime


def test_a_stolen_timestamp_key_is_retired_by_a_new_root(lab: Lab) -> None:
    first = lab.publish_library(2)
    assert isinstance(lab.client(lab.mirror()).fetch(first, installed_library(1)), VerifiedUpdate)
    stolen_snapshot, stolen_timestamp = lab.signer("snapshot-1"), lab.signer("timestamp-1")
    roots = [lab.signer("root-1"), lab.signer("root-2")]
    for role, retire in (
        (SigningRole.TIMESTAMP, "timestamp-1"),
        (SigningRole.SNAPSHOT, "snapshot-1"),
    ):
        new = lab.repo.rotate_key(role, retire, passphrase_for(f"{role}-2"), root_signers=roots)
        assert new == f"{role}-2"
    assert lab.repo.versions().root == 3
    second = lab.publish_library(3)
    mirror = lab.mirror()
    outcome = lab.client(mirror).fetch(second, installed_library(2))
    assert isinstance(outcome, VerifiedUpdate), outcome
    assert lab.client(mirror).trusted_root_version == 3

    forged = lab.mirror()
    path = forge_release(
        forged,
        UpdateKind.DRUG_LIBRARY,
        LIBRARY_ID,
        4,
        library_bytes(4),
        role_signers=[lab.signer("drug-libraries-1"), lab.signer("drug-libraries-2")],
        online_signers=[stolen_snapshot, stolen_timestamp],
        now=ms_to_datetime(lab.clock.now_ms()),
    )
    refused = lab.client(forged).fetch(path, installed_library(3))
    assert isinstance(refused, UpdateRefused)
    assert isinstance(refused.error, SignatureThresholdError)
    assert refused.event.attributes["role"] == "timestamp"


def test_a_rotated_repository_reopens_with_its_current_online_keys(lab: Lab) -> None:
    roots = [lab.signer("root-1"), lab.signer("root-3")]
    lab.repo.rotate_key(
        SigningRole.TIMESTAMP, "timestamp-1", b"new timestamp pass", root_signers=roots
    )
    (lab.repo.keys_dir / "timestamp-1.pem").unlink()

    def passphrases(name: str) -> bytes:
        return b"new timestamp pass" if name == "timestamp-2" else passphrase_for(name)

    reopened = UpdateRepository.open(
        lab.repo.directory, clock=lab.clock, passphrase_for=passphrases
    )
    assert reopened.refresh_timestamp() == reopened.versions().timestamp


def test_a_pump_follows_a_root_key_rotation(lab: Lab) -> None:
    roots = [lab.signer("root-1"), lab.signer("root-2")]
    assert (
        lab.repo.rotate_key(
            SigningRole.ROOT, "root-3", passphrase_for("root-4"), root_signers=roots
        )
        == "root-4"
    )
    path = lab.publish_library(2)
    client = lab.client(lab.mirror())
    assert isinstance(client.fetch(path, installed_library(1)), VerifiedUpdate)
    assert client.trusted_root_version == 2


def test_one_root_key_cannot_rotate_alone(lab: Lab) -> None:
    with pytest.raises(ThresholdNotMetError, match="threshold"):
        lab.repo.rotate_key(
            SigningRole.TIMESTAMP,
            "timestamp-1",
            passphrase_for("timestamp-2"),
            root_signers=[lab.signer("root-1")],
        )
    assert lab.repo.versions().root == 1
    assert not (lab.repo.keys_dir / "timestamp-2.pem").exists()
    assert lab.events.with_code(UpdateEvent.PUBLISH_REFUSED)


def test_rotation_refuses_what_it_does_not_do(lab: Lab) -> None:
    roots = [lab.signer("root-1"), lab.signer("root-2")]
    with pytest.raises(RepositoryStateError, match="not automated"):
        lab.repo.rotate_key(
            SigningRole.DRUG_LIBRARIES, "drug-libraries-1", b"x" * 16, root_signers=roots
        )
    with pytest.raises(RepositoryStateError, match="not a timestamp key"):
        lab.repo.rotate_key(SigningRole.TIMESTAMP, "snapshot-1", b"x" * 16, root_signers=roots)
