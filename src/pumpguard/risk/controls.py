"""The control catalogue: what pumpguard implements (with its tests) and what it plans.

Each control maps to NIST CSF 2.0 subcategories, SP 800-53 rev. 5 controls and IEC TR
80001-2-2 security capabilities, says which SP 1800-8 threats and which weakness classes it
addresses, and - when implemented - names the pumpguard tests (pytest node ids) that show it
working. Only implemented controls earn residual-risk credit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pumpguard.data import DATA_DIR
from pumpguard.risk.advisories import Threat, Weakness
from pumpguard.risk.models import DeviceKind

__all__ = [
    "CONTROLS_FILE",
    "IEC_80001_CAPABILITIES",
    "Control",
    "ControlCatalogue",
    "ControlScope",
    "ControlStatus",
    "load_controls",
]

CONTROLS_FILE = DATA_DIR / "risk" / "controls.yaml"

IEC_80001_CAPABILITIES = frozenset(
    [
        "ALOF",
        "AUDT",
        "AUTH",
        "CNFS",
        "CSUP",
        "DIDT",
        "DTBK",
        "EMRG",
        "IGAU",
        "MLDP",
        "NAUT",
        "PAUT",
        "PLOK",
        "RDMP",
        "SAHD",
        "SGUD",
        "STCF",
        "TXCF",
        "TXIG",
    ]
)
"""The 19 security capabilities of IEC TR 80001-2-2."""

CsfId = Annotated[str, Field(pattern=r"^(GV|ID|PR|DE|RS|RC)\.[A-Z]{2}-\d{2}$")]
Sp80053Id = Annotated[str, Field(pattern=r"^[A-Z]{2}-\d{1,2}(\(\d{1,2}\))?$")]
TestId = Annotated[str, Field(pattern=r"^tests/[\w/]+\.py::\w+(::\w+)?$")]


class ControlStatus(StrEnum):
    IMPLEMENTED = "implemented"
    PLANNED = "planned"


class ControlScope(StrEnum):
    DEVICE = "device"
    ECOSYSTEM = "ecosystem"


class Control(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^PG-[A-Z0-9-]+$")]
    name: str = Field(min_length=1)
    status: ControlStatus
    scope: ControlScope
    description: str = Field(min_length=1)
    threats: list[Threat] = Field(min_length=1)
    weaknesses: list[Weakness] = Field(default_factory=list)
    device_kinds: list[DeviceKind] = Field(default_factory=list)
    likelihood_reduction: float = Field(default=0.0, ge=0, le=1)
    impact_reduction: float = Field(default=0.0, ge=0, le=1)
    tests: list[TestId] = Field(default_factory=list)
    csf: list[CsfId] = Field(min_length=1)
    sp800_53: list[Sp80053Id] = Field(min_length=1)
    iec80001: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Control:
        if self.status is ControlStatus.IMPLEMENTED and not self.tests:
            raise ValueError("an implemented control names the tests that show it working")
        if self.status is ControlStatus.PLANNED and self.tests:
            raise ValueError("a planned control has no tests yet")
        unknown = sorted(set(self.iec80001) - IEC_80001_CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown IEC TR 80001-2-2 capabilities: {', '.join(unknown)}")
        return self

    @property
    def implemented(self) -> bool:
        return self.status is ControlStatus.IMPLEMENTED

    def applies(self, threat: Threat, weaknesses: Sequence[Weakness], kind: DeviceKind) -> bool:
        if threat not in self.threats:
            return False
        if self.weaknesses and not set(self.weaknesses) & set(weaknesses):
            return False
        return not self.device_kinds or kind in self.device_kinds


class _ControlsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    controls: list[Control] = Field(min_length=1)


class ControlCatalogue:
    def __init__(self, controls: Sequence[Control]) -> None:
        ids = [c.id for c in controls]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate control ids")
        self.controls = tuple(controls)

    def __iter__(self) -> Iterator[Control]:
        return iter(self.controls)

    def applicable(
        self, threat: Threat, weaknesses: Sequence[Weakness], kind: DeviceKind
    ) -> list[Control]:
        return [c for c in self.controls if c.applies(threat, weaknesses, kind)]

    def test_ids(self) -> list[str]:
        return [t for c in self.controls for t in c.tests]


def load_controls(path: Path | None = None) -> ControlCatalogue:
    if path is None:
        return _default_controls()
    return _load(path)


def _load(path: Path) -> ControlCatalogue:
    try:
        parsed = _ControlsFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: invalid control catalogue: {exc}") from None
    return ControlCatalogue(parsed.controls)


@cache
def _default_controls() -> ControlCatalogue:
    return _load(CONTROLS_FILE)
