"""The pump side on the happy path, and the pump's own checks beyond TUF."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.updates.conftest import Lab, installed_library, library_bytes, library_path

from pumpguard.updates import (
    AlreadyInstalled,
    Installed,
    LocalFailureError,
    UpdateClient,
    UpdateEvent,
    UpdateKind,
    UpdateRefused,
    VerifiedUpdate,
)


def test_a_published_library_is_fetched_verified_and_parsed(lab: Lab) -> None:
    path = lab.publish_library(2)
    outcome = lab.client(lab.mirror()).fetch(path, installed_library(1))
    assert isinstance(outcome, VerifiedUpdate), outcome
    assert outcome.data == library_bytes(2)
    assert outcome.library is not None and outcome.library.version == 2
    assert outcome.target.version == 2 and outcome.target.path == library_path(2)
    verified = lab.events.with_code(UpdateEvent.VERIFIED)
    assert len(verified) == 1 and verified[0].device_id == "pump-1"


def test_the_installed_version_is_not_fetched_again(lab: Lab) -> None:
    path = lab.publish_library(2)
    outcome = lab.client(lab.mirror()).fetch(path, installed_library(2))
    assert isinstance(outcome, AlreadyInstalled)


def test_successive_releases_follow_each_other(lab: Lab) -> None:
    first = lab.publish_library(2)
    assert isinstance(lab.client(lab.mirror()).fetch(first, installed_library(1)), VerifiedUpdate)
    lab.clock.advance(3_600_000)
    second = lab.publish_library(3)
    outcome = lab.client(lab.mirror()).fetch(second, installed_library(2))
    assert isinstance(outcome, VerifiedUpdate) and outcome.target.version == 3


def test_firmware_travels_the_same_path(lab: Lab) -> None:
    lab.repo.propose_firmware("lvp-main", 5, b"\x7fELF image v5")
    lab.repo.approve(UpdateKind.FIRMWARE, lab.signer("firmware-1"))
    lab.repo.approve(UpdateKind.FIRMWARE, lab.signer("firmware-2"))
    path = lab.repo.publish(UpdateKind.FIRMWARE).path
    client = lab.client(lab.mirror())
    outcome = client.fetch(path, Installed(UpdateKind.FIRMWARE, "lvp-main", 4))
    assert isinstance(outcome, VerifiedUpdate)
    assert outcome.data == b"\x7fELF image v5" and outcome.library is None
    other = client.fetch(path, Installed(UpdateKind.FIRMWARE, "syringe-main", 4))
    assert isinstance(other, UpdateRefused) and other.code is UpdateEvent.INVALID_TARGET


def test_a_firmware_path_is_not_a_drug_library(lab: Lab) -> None:
    outcome = lab.client(lab.mirror()).fetch("firmware/lvp-main-5.bin", installed_library(1))
    assert isinstance(outcome, UpdateRefused) and outcome.code is UpdateEvent.INVALID_TARGET


def test_a_library_for_another_hospital_is_refused(lab: Lab) -> None:
    path = lab.publish_library(2)
    other = Installed(UpdateKind.DRUG_LIBRARY, "another-library", 1)
    outcome = lab.client(lab.mirror()).fetch(path, other)
    assert isinstance(outcome, UpdateRefused) and outcome.code is UpdateEvent.INVALID_TARGET
    assert "another-library" in str(outcome.error)


def test_an_unreachable_repository_is_not_an_attack(lab: Lab) -> None:
    from pumpguard.updates import MemorySource

    outcome = lab.client(MemorySource()).fetch(library_path(2), installed_library(1))
    assert isinstance(outcome, UpdateRefused)
    assert outcome.code is UpdateEvent.REPOSITORY_UNAVAILABLE
    assert outcome.event.severity == 2


def test_a_client_needs_a_trust_anchor(lab: Lab, tmp_path: Path) -> None:
    from pumpguard.updates import SourceFetcher

    with pytest.raises(LocalFailureError, match="provision"):
        UpdateClient(
            tmp_path / "blank",
            SourceFetcher(lab.mirror()),
            clock=lab.clock,
            events=lab.events,
            device_id="pump-x",
        )
    with pytest.raises(LocalFailureError, match="not TUF metadata"):
        UpdateClient.provision(tmp_path / "blank", b"{}")
    timestamp = (lab.repo.metadata_dir / "timestamp.json").read_bytes()
    with pytest.raises(LocalFailureError, match="not root"):
        UpdateClient.provision(tmp_path / "blank", timestamp)
