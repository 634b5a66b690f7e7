"""A repository with one published drug library, and pumps' update clients pointed at it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pumpguard.clinical import FORMAT, DrugLibrary, parse_library
from pumpguard.clock import VirtualClock
from pumpguard.security_events import SecurityEventLog
from pumpguard.updates import (
    Installed,
    MemorySource,
    SourceFetcher,
    UpdateClient,
    UpdateKind,
    UpdateRepository,
    load_signer,
)

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
LIBRARY_ID = "ward-library"


def passphrase_for(key_name: str) -> bytes:
    return f"lab passphrase of {key_name}".encode()


def library_bytes(version: int, *, heparin_hard_max: int = 40) -> bytes:
    document: dict[str, Any] = {
        "format": FORMAT,
        "library_id": LIBRARY_ID,
        "version": version,
        "name": "Update test library",
        "care_areas": [
            {
                "name": "ICU",
                "entries": [
                    {
                        "name": "Heparin",
                        "code": "HEP",
                        "concentration": {"amount": 25000, "unit": "units", "volume_ml": 250},
                        "dose_unit": "units/kg/h",
                        "continuous": {"hard_min": 2, "soft_max": 25, "hard_max": heparin_hard_max},
                        "weight_kg": {"min_kg": 30, "max_kg": 200},
                    },
                    {
                        "name": "Saline",
                        "code": "NS",
                        "dose_unit": "mL/h",
                        "continuous": {"soft_max": 250, "hard_max": 500},
                    },
                ],
            }
        ],
    }
    return json.dumps(document).encode()


def parse_library_bytes(data: bytes) -> DrugLibrary:
    return parse_library(json.loads(data, parse_float=Decimal))


def library_path(version: int) -> str:
    return f"drug-libraries/{LIBRARY_ID}-{version}.json"


def installed_library(version: int | None) -> Installed:
    return Installed(UpdateKind.DRUG_LIBRARY, LIBRARY_ID, version)


@dataclass
class Lab:
    """The hospital's repository, a mirror that serves it, and the keys the tests may steal."""

    clock: VirtualClock
    repo: UpdateRepository
    events: SecurityEventLog
    directory: Path

    def signer(self, key_name: str) -> Any:
        return load_signer(self.repo.keys_dir, key_name, passphrase_for(key_name))

    def publish_library(self, version: int, signers: tuple[str, ...] = ("1", "2")) -> str:
        self.repo.propose_drug_library(library_bytes(version))
        for index in signers:
            self.repo.approve(UpdateKind.DRUG_LIBRARY, self.signer(f"drug-libraries-{index}"))
        return self.repo.publish(UpdateKind.DRUG_LIBRARY).path

    def mirror(self) -> MemorySource:
        """A copy of what the server publishes right now."""
        return MemorySource.from_directory(self.repo.published_dir)

    def client(self, source: MemorySource, name: str = "pump-1") -> UpdateClient:
        state = self.directory / "pumps" / name
        if not state.exists():
            UpdateClient.provision(state, self.repo.trusted_root())
        return UpdateClient(
            state,
            SourceFetcher(source),
            clock=self.clock,
            events=self.events,
            device_id=name,
        )


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Key generation is the slow part; every test gets a copy of one freshly created repo."""
    directory = tmp_path_factory.mktemp("template") / "repo"
    UpdateRepository.create(directory, clock=VirtualClock(START_MS), passphrase_for=passphrase_for)
    return directory


@pytest.fixture
def lab(_template: Path, tmp_path: Path) -> Lab:
    directory = tmp_path / "repo"
    shutil.copytree(_template, directory)
    clock = VirtualClock(START_MS)
    events = SecurityEventLog()
    repo = UpdateRepository.open(
        directory, clock=clock, passphrase_for=passphrase_for, events=events
    )
    return Lab(clock, repo, events, tmp_path)
