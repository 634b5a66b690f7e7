"""The server side: roles, thresholds, keys at rest, and what publishing refuses."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from tests.updates.conftest import START_MS, Lab, library_bytes, library_path, passphrase_for
from tuf.api.metadata import Metadata

from pumpguard.clock import VirtualClock
from pumpguard.updates import (
    DuplicateSignatureError,
    KeyFileError,
    NothingPendingError,
    RepositoryPolicy,
    RepositoryStateError,
    RolePolicy,
    ThresholdNotMetError,
    UnauthorisedSignerError,
    UpdateEvent,
    UpdateKind,
    UpdateRepository,
    WrongKeyPassphraseError,
    load_signer,
)


def _metadata(lab: Lab, name: str) -> Metadata[Any]:
    return Metadata.from_file(str(lab.repo.metadata_dir / name))


def test_roles_thresholds_and_delegations(lab: Lab) -> None:
    root = _metadata(lab, "root.json").signed
    assert root.consistent_snapshot
    assert {name: role.threshold for name, role in root.roles.items()} == {
        "root": 2,
        "targets": 2,
        "snapshot": 1,
        "timestamp": 1,
    }
    targets = _metadata(lab, "1.targets.json").signed
    roles = targets.delegations.roles
    assert roles["drug-libraries"].threshold == 2
    assert len(roles["drug-libraries"].keyids) == 3
    assert roles["drug-libraries"].paths == ["drug-libraries/*"]
    assert roles["drug-libraries"].terminating
    assert roles["firmware"].threshold == 2
    assert roles["firmware"].paths == ["firmware/*"]
    assert not targets.targets, "the top-level targets role only delegates"


def test_expiries_follow_the_policy(lab: Lab) -> None:
    start = _metadata(lab, "timestamp.json").signed.expires
    snapshot = _metadata(lab, "1.snapshot.json").signed.expires
    assert snapshot - start == timedelta(days=6)
    lab.clock.advance(12 * 3_600_000)
    assert lab.repo.refresh_timestamp() == 2
    assert _metadata(lab, "timestamp.json").signed.expires - start == timedelta(hours=12)


def test_every_key_is_its_own_encrypted_file(lab: Lab) -> None:
    names = sorted(p.stem for p in lab.repo.keys_dir.glob("*.pem"))
    assert len(names) == 12
    for path in lab.repo.keys_dir.glob("*.pem"):
        assert b"BEGIN ENCRYPTED PRIVATE KEY" in path.read_bytes()
        assert path.stat().st_mode & 0o077 == 0
    published = {p.name for p in lab.repo.published_dir.rglob("*")}
    assert not any(name.endswith(".pem") for name in published)


def test_wrong_passphrase_and_clear_keys_are_refused(lab: Lab) -> None:
    with pytest.raises(WrongKeyPassphraseError, match="drug-libraries-1"):
        load_signer(lab.repo.keys_dir, "drug-libraries-1", passphrase_for("drug-libraries-2"))
    path = lab.repo.keys_dir / "drug-libraries-3.pem"
    key = load_pem_private_key(path.read_bytes(), passphrase_for("drug-libraries-3"))
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(KeyFileError, match="not encrypted"):
        load_signer(lab.repo.keys_dir, "drug-libraries-3", b"whatever passphrase")
    with pytest.raises(KeyFileError, match="cannot read"):
        load_signer(lab.repo.keys_dir, "drug-libraries-9", b"whatever passphrase")


def test_publishing_needs_two_distinct_pharmacists(lab: Lab) -> None:
    pending = lab.repo.propose_drug_library(library_bytes(2))
    assert pending.target.path == library_path(2)
    assert (pending.threshold, pending.missing) == (2, 2)
    first = lab.signer("drug-libraries-1")
    assert lab.repo.approve(UpdateKind.DRUG_LIBRARY, first).missing == 1
    with pytest.raises(DuplicateSignatureError):
        lab.repo.approve(UpdateKind.DRUG_LIBRARY, lab.signer("drug-libraries-1"))
    with pytest.raises(ThresholdNotMetError, match="1 of the 2"):
        lab.repo.publish(UpdateKind.DRUG_LIBRARY)
    assert lab.repo.versions().drug_libraries == 1
    assert lab.repo.approve(UpdateKind.DRUG_LIBRARY, lab.signer("drug-libraries-3")).missing == 0
    published = lab.repo.publish(UpdateKind.DRUG_LIBRARY)
    assert published.version == 2
    versions = lab.repo.versions()
    assert (versions.drug_libraries, versions.snapshot, versions.timestamp) == (2, 2, 2)
    assert lab.repo.pending(UpdateKind.DRUG_LIBRARY) is None
    stored = (
        lab.repo.targets_dir
        / "drug-libraries"
        / f"{published.sha256}.{library_path(2).rpartition('/')[2]}"
    )
    assert stored.read_bytes() == library_bytes(2)
    codes = [e.code for e in lab.events]
    assert codes == [
        UpdateEvent.SIGNATURE_REFUSED,
        UpdateEvent.PUBLISH_REFUSED,
        UpdateEvent.PUBLISHED,
    ]


def test_other_roles_keys_cannot_approve(lab: Lab) -> None:
    lab.repo.propose_drug_library(library_bytes(2))
    for key in ("firmware-1", "snapshot-1", "timestamp-1", "targets-1", "root-1"):
        with pytest.raises(UnauthorisedSignerError):
            lab.repo.approve(UpdateKind.DRUG_LIBRARY, lab.signer(key))
    pending = lab.repo.pending(UpdateKind.DRUG_LIBRARY)
    assert pending is not None and pending.signed_by == ()


def test_proposals_must_validate_and_be_newer(lab: Lab) -> None:
    with pytest.raises(RepositoryStateError, match="not JSON"):
        lab.repo.propose_drug_library(b"\x00 not a library")
    broken = json.loads(library_bytes(2))
    broken["care_areas"][0]["entries"][0]["continuous"]["hard_max"] = 1
    with pytest.raises(RepositoryStateError, match="Heparin"):
        lab.repo.propose_drug_library(json.dumps(broken).encode())
    lab.publish_library(3)
    with pytest.raises(RepositoryStateError, match="not newer than published v3"):
        lab.repo.propose_drug_library(library_bytes(3))
    lab.repo.propose_drug_library(library_bytes(4))
    with pytest.raises(RepositoryStateError, match="waiting for signatures"):
        lab.repo.propose_drug_library(library_bytes(5))
    lab.repo.withdraw(UpdateKind.DRUG_LIBRARY)
    with pytest.raises(NothingPendingError):
        lab.repo.publish(UpdateKind.DRUG_LIBRARY)


def test_firmware_is_its_own_role(lab: Lab) -> None:
    lab.repo.propose_firmware("lvp-main", 5, b"firmware image v5")
    with pytest.raises(UnauthorisedSignerError):
        lab.repo.approve(UpdateKind.FIRMWARE, lab.signer("drug-libraries-1"))
    lab.repo.approve(UpdateKind.FIRMWARE, lab.signer("firmware-1"))
    lab.repo.approve(UpdateKind.FIRMWARE, lab.signer("firmware-2"))
    assert lab.repo.publish(UpdateKind.FIRMWARE).path == "firmware/lvp-main-5.bin"
    assert lab.repo.versions().firmware == 2
    assert lab.repo.versions().drug_libraries == 1


def test_policy_refuses_a_single_signer_drug_library_role() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        RepositoryPolicy(drug_libraries=RolePolicy(3, 1, timedelta(days=90)))
    with pytest.raises(ValueError, match="threshold"):
        RolePolicy(1, 2, timedelta(days=1))


def test_create_refuses_an_existing_repository_and_open_needs_one(lab: Lab, tmp_path: Path) -> None:
    clock = VirtualClock(START_MS)
    with pytest.raises(RepositoryStateError, match="already"):
        UpdateRepository.create(lab.repo.directory, clock=clock, passphrase_for=passphrase_for)
    with pytest.raises(RepositoryStateError, match="no update repository"):
        UpdateRepository.open(tmp_path / "nothing", clock=clock, passphrase_for=passphrase_for)
    with pytest.raises(WrongKeyPassphraseError):
        UpdateRepository.open(
            lab.repo.directory, clock=clock, passphrase_for=lambda name: b"not the passphrase"
        )


def test_signatures_collected_in_one_process_are_seen_by_another(lab: Lab) -> None:
    lab.repo.propose_drug_library(library_bytes(2))
    lab.repo.approve(UpdateKind.DRUG_LIBRARY, lab.signer("drug-libraries-2"))
    other = UpdateRepository.open(
        lab.repo.directory, clock=lab.clock, passphrase_for=passphrase_for
    )
    pending = other.pending(UpdateKind.DRUG_LIBRARY)
    assert pending is not None and pending.missing == 1
    other.approve(UpdateKind.DRUG_LIBRARY, lab.signer("drug-libraries-3"))
    assert lab.repo.publish(UpdateKind.DRUG_LIBRARY).version == 2
