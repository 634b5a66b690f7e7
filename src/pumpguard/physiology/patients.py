"""The 30 standard virtual patients and their UVA/Padova parameters.

The numbers are simglucose's (MIT licence): carrying them over unchanged is what lets our
simulator be checked minute by minute against simglucose's ``T1DPatient``, and what makes a
result here comparable with the many published studies that use the same cohort. The shipped
file (``pumpguard.data.VIRTUAL_PATIENTS``) names its source and licence in its header.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from pumpguard.data import VIRTUAL_PATIENTS

__all__ = [
    "PMOL_PER_U",
    "STATE_SIZE",
    "PatientGroup",
    "UnknownPatientError",
    "VirtualPatient",
    "get_patient",
    "get_patients",
    "load_patients",
    "patient_names",
]

PMOL_PER_U = 6000.0
"""Insulin: 1 U = 6000 pmol, the conversion the model (and simglucose) uses."""

STATE_SIZE = 13
"""Number of states of the UVA/Padova model (see ``pumpguard.physiology.model.StateIndex``)."""


class PatientGroup(StrEnum):
    """Age group of a virtual patient; part of its name (``adult#003``)."""

    ADOLESCENT = "adolescent"
    ADULT = "adult"
    CHILD = "child"


class UnknownPatientError(LookupError):
    """A patient name that is not one of the shipped virtual patients."""

    def __init__(self, name: str, valid: Iterable[str]) -> None:
        self.name = name
        self.valid = tuple(valid)
        super().__init__(f"unknown virtual patient {name!r}; valid names: {', '.join(self.valid)}")


@dataclass(frozen=True)
class VirtualPatient:
    """One virtual patient: its name and every parameter of its row in the data file.

    ``params`` keeps the source's column names (``kabs``, ``Vg``, ``x0_4``...), so a reader can
    hold a number here against the published model and against simglucose's file.
    """

    name: str
    params: Mapping[str, float] = field(repr=False)

    @property
    def group(self) -> PatientGroup:
        return PatientGroup(self.name.split("#", 1)[0])

    @property
    def body_weight_kg(self) -> float:
        return self.params["BW"]

    @property
    def basal_u_per_min(self) -> float:
        """The basal insulin rate that holds this patient at its steady state (``u2ss``).

        ``u2ss`` is in pmol/kg/min; the same conversion as simglucose's own example,
        ``u2ss * BW / 6000``, so a replay with this basal is bit-for-bit the same input.
        """
        return self.params["u2ss"] * self.params["BW"] / PMOL_PER_U

    @property
    def basal_u_per_h(self) -> float:
        return self.basal_u_per_min * 60.0

    @property
    def carb_ratio_g_per_u(self) -> float:
        """Grams of carbohydrate covered by one unit (``CR``, from simglucose's Quest.csv)."""
        return self.params["CR"]

    @property
    def correction_factor_mgdl_per_u(self) -> float:
        """Glucose drop per unit of insulin (``CF``, from simglucose's Quest.csv)."""
        return self.params["CF"]

    @property
    def total_daily_insulin_u(self) -> float:
        return self.params["TDI"]

    @property
    def age_years(self) -> float:
        return self.params["Age"]

    @property
    def initial_state(self) -> npt.NDArray[np.float64]:
        """The 13 states simglucose starts from (``x0_1`` .. ``x0_13``): its basal steady state."""
        return np.array([self.params[f"x0_{i}"] for i in range(1, STATE_SIZE + 1)])

    @property
    def initial_bg_mgdl(self) -> float:
        """Glucose at the initial state, as the model reports it: ``Gs / Vg``."""
        return self.params[f"x0_{STATE_SIZE}"] / self.params["Vg"]


def _read(path: Path) -> tuple[VirtualPatient, ...]:
    with path.open(newline="", encoding="utf-8") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        reader = csv.DictReader(lines)
        patients = []
        for row in reader:
            name = row.pop("Name")
            params = {key: float(value) for key, value in row.items()}
            patients.append(VirtualPatient(name, MappingProxyType(params)))
    return tuple(patients)


@functools.cache
def load_patients() -> tuple[VirtualPatient, ...]:
    """All shipped virtual patients, in file order (adolescents, adults, children)."""
    return _read(VIRTUAL_PATIENTS)


@functools.cache
def _by_name() -> Mapping[str, VirtualPatient]:
    return MappingProxyType({p.name: p for p in load_patients()})


def patient_names(group: PatientGroup | None = None) -> tuple[str, ...]:
    """Names of the shipped patients, optionally of one age group."""
    return tuple(p.name for p in load_patients() if group is None or p.group is group)


def get_patient(name: str) -> VirtualPatient:
    """The patient called ``name`` (``adult#001``); ``UnknownPatientError`` lists valid names."""
    try:
        return _by_name()[name]
    except KeyError:
        raise UnknownPatientError(name, patient_names()) from None


def get_patients(names: Iterable[str | VirtualPatient]) -> tuple[VirtualPatient, ...]:
    """Resolve a mix of names and patients, keeping order and repeats (a cohort may hold twins)."""
    return tuple(n if isinstance(n, VirtualPatient) else get_patient(n) for n in names)
