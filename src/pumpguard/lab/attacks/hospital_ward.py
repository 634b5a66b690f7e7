"""The hospital scenario the hospital attacks run in: one ICU ward in virtual time.

A large-volume pump (``devices.infusion``) in the ICU care area of the hospital's drug library
(the shipped example library), one patient with one prescription, a clinician at the bedside,
and a ``SecurityEventLog`` every component of the scenario reports to. The seed picks the
prescription: the drug cycles through six ICU high-alert infusions (seed 1 is heparin) and the
patient's weight is drawn from the seed. Each prescribed dose is inside the library's soft
limits and ten times it is above the hard maximum, so the library is what stands between a
tenfold slip and the patient.

Harm is measured on the pump model, never computed: after the attack the clinician acts at the
bedside (``slip_at_bedside`` for library attacks: a tenfold keypad slip, re-entered correctly if
the pump refuses it; ``confirm_at_bedside`` for order attacks: whatever the pump shows
pre-filled is confirmed without noticing, unless it raises an alert), the ward runs
``WINDOW_MIN`` minutes of virtual time, and the volume the pump infused is compared with what a
pump of the same model infuses on the prescription in the same time.
"""

from __future__ import annotations

import json
import random
import tempfile
from abc import abstractmethod
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, ClassVar

from pumpguard.clinical import (
    DrugEntry,
    DrugLibrary,
    PumpKind,
    dose_to_flow,
    load_library,
    parse_library,
)
from pumpguard.clock import MS_PER_MINUTE, VirtualClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import (
    Cancel,
    CommandResult,
    CommandSource,
    Confirm,
    ContinuousProgramme,
    InfusionPump,
    InstallLibrary,
    PowerOn,
    Program,
    PumpState,
    SetCareArea,
)
from pumpguard.lab.attacks.base import (
    DEFAULT_PATIENT,
    NOT_A_DETECTION,
    AttackResult,
    CatalogueAttack,
    InfusionHarm,
    System,
    Trial,
    control_for,
)
from pumpguard.link import LinkProfile
from pumpguard.security_events import SecurityEvent, SecurityEventLog

__all__ = [
    "CARE_AREA",
    "OTHER_PATIENT_ID",
    "PATIENT_ID",
    "PUMP_ID",
    "SLIP_FACTOR",
    "START_MS",
    "WINDOW_MIN",
    "HospitalAttack",
    "Outcome",
    "Prescription",
    "Ward",
    "library_bytes",
    "library_with_limits",
    "prescription_for",
]

START_MS = 1_795_248_000_000
"""2026-11-21 08:00 UTC, when the ward's scenario starts."""
PUMP_ID = "PUMP-0001"
PATIENT_ID = "MRN-4711"
OTHER_PATIENT_ID = "MRN-0815"
CARE_AREA = "ICU"
WINDOW_MIN = 60
SLIP_FACTOR = 10
"""The keypad slip the library must catch: a misplaced decimal point."""

_DRUGS: tuple[tuple[str, Decimal], ...] = (
    ("HEP-25K-250", Decimal(18)),
    ("INS-100-100", Decimal(5)),
    ("PROP-1000-100", Decimal(30)),
    ("DOPA-400-250", Decimal(5)),
    ("FENT-2500-250", Decimal(100)),
    ("MIDAZ-100-100", Decimal(5)),
)
"""Library code and prescribed dose (in the entry's dose unit): typical adult ICU doses."""


@dataclass(frozen=True, slots=True)
class Prescription:
    """What the patient should get: one continuous infusion of one library entry."""

    code: str
    drug: str
    dose: Decimal
    dose_unit: str
    weight_kg: Decimal
    vtbi_ml: Decimal
    concentration_amount: Decimal
    concentration_unit: str
    concentration_ml: Decimal

    def programme(
        self, dose: Decimal | None = None, order_id: str | None = None
    ) -> ContinuousProgramme:
        return ContinuousProgramme(
            drug=self.code,
            dose=self.dose if dose is None else dose,
            dose_unit=self.dose_unit,
            vtbi_ml=self.vtbi_ml,
            weight_kg=self.weight_kg,
            care_area=CARE_AREA,
            order_id=order_id,
            patient_id=PATIENT_ID,
        )


def _entry(library: DrugLibrary, code: str) -> DrugEntry:
    area = library.care_area(CARE_AREA)
    found = [] if area is None else [e for e in area.entries if e.code == code]
    if not found:
        raise LookupError(f"{code} is not in care area {CARE_AREA} of {library.library_id}")
    return found[0]


def prescription_for(seed: int, library: DrugLibrary) -> Prescription:
    """The seed's prescription: the (seed-1)-th drug of the list, a weight drawn from the seed
    (55-110 kg, inside the entry's weight range), one bag; a drug with a maximum duration gets
    the volume that half the dose (the lowest rate a scenario titrates to) infuses in it."""
    code, dose = _DRUGS[(seed - 1) % len(_DRUGS)]
    entry = _entry(library, code)
    weight = Decimal(random.Random(seed).randrange(55, 111))
    if entry.weight_kg is not None:
        weight = min(max(weight, entry.weight_kg.min_kg), entry.weight_kg.max_kg)
    concentration = entry.concentration
    if concentration is None:
        raise LookupError(f"{code} has no concentration; the ward needs a drug in a bag")
    vtbi = concentration.volume_ml
    if entry.max_duration_min is not None:
        slowest = dose_to_flow(dose / 2, entry.unit, entry.to_concentration(), weight)
        vtbi = min(vtbi, (slowest * entry.max_duration_min / 60).to_integral_value(ROUND_FLOOR))
    return Prescription(
        code=code,
        drug=entry.name,
        dose=dose,
        dose_unit=entry.dose_unit,
        weight_kg=weight,
        vtbi_ml=vtbi,
        concentration_amount=concentration.amount,
        concentration_unit=concentration.unit,
        concentration_ml=concentration.volume_ml,
    )


def library_bytes(library: DrugLibrary) -> bytes:
    """The library as the published JSON file (what an update carries)."""
    return json.dumps(library.model_dump(mode="json")).encode()


def library_with_limits(
    library: DrugLibrary, *, version: int, code: str | None = None, factor: Decimal = Decimal(1)
) -> DrugLibrary:
    """``library`` as version ``version``, with the upper soft and hard limits of every entry
    with ``code`` (in every care area) multiplied by ``factor``: what an attacker writes so
    that a tenfold dose passes without even a soft-limit alert, or what a units slip in an
    older library version looked like."""
    document: dict[str, Any] = library.model_dump(mode="json")
    document["version"] = version
    for area in document["care_areas"]:
        for entry in area["entries"]:
            if code is None or entry["code"] != code:
                continue
            limits = entry["continuous"]
            for key in ("soft_max", "hard_max"):
                if limits.get(key) is not None:
                    limits[key] = float(Decimal(str(limits[key])) * factor)
    return parse_library(document, f"{library.library_id} v{version}")


def _hard_max(library: DrugLibrary | None, code: str) -> Decimal | None:
    if library is None:
        return None
    return _entry(library, code).continuous.hard_max


def _infused_ml(library: DrugLibrary, programme: ContinuousProgramme, minutes: int) -> Decimal:
    """What a fresh pump of the ward's model infuses on ``programme`` in ``minutes``."""
    clock = VirtualClock(START_MS)
    pump = InfusionPump(
        PumpKind.LVP, clock, serial="REFERENCE", library=library, care_area=CARE_AREA
    )
    pump.handle(PowerOn())
    if not pump.handle(Program(programme)).accepted or not pump.handle(Confirm()).accepted:
        raise RuntimeError(f"the reference pump refused the prescription {programme}")
    clock.advance(minutes * MS_PER_MINUTE)
    return pump.volume_infused_ml


class Ward:
    """One ICU bed: the pump, its library, the patient's prescription, and the event log."""

    def __init__(self, profile: LinkProfile, seed: int, workdir: Path) -> None:
        self.profile = profile
        self.seed = seed
        self.workdir = workdir
        self.clock = VirtualClock(START_MS)
        self.events = SecurityEventLog()
        self.legitimate = load_library(EXAMPLE_LIBRARY)
        """The library the hospital approved for this pump (attacks may change which)."""
        self.prescription = prescription_for(seed, self.legitimate)
        self.pump = self.new_pump(self.legitimate)
        self._mark = 0
        self._prefilled: ContinuousProgramme | None = None

    @property
    def secure(self) -> bool:
        return self.profile is LinkProfile.SECURE

    @property
    def entry(self) -> DrugEntry:
        return _entry(self.legitimate, self.prescription.code)

    def new_pump(self, library: DrugLibrary | None) -> InfusionPump:
        """A pump of the ward's model switched on at the bedside (a firmware image that boots
        replaces the running pump this way)."""
        pump = InfusionPump(
            PumpKind.LVP,
            self.clock,
            serial=PUMP_ID,
            library=library,
            care_area=CARE_AREA if library is not None else None,
        )
        pump.handle(PowerOn())
        return pump

    def install(self, library: DrugLibrary) -> CommandResult:
        """``library`` handed to the pump's firmware by its update path; a pump that had no
        library gets the ward's care area selected at the bedside."""
        result = self.pump.handle(InstallLibrary(library))
        if result.accepted and self.pump.care_area is None:
            self.pump.handle(SetCareArea(CARE_AREA))
        return result

    def advance_min(self, minutes: float) -> None:
        self.clock.advance(int(minutes * MS_PER_MINUTE))

    def attack_starts(self) -> None:
        """Events before this instant are the ward's set-up, not the attack's doing."""
        self._mark = len(self.events)

    def caused(self) -> tuple[SecurityEvent, ...]:
        return tuple(e for e in tuple(self.events)[self._mark :] if e.code not in NOT_A_DETECTION)

    # ------------------------------------------------------------------ the bedside

    def slip_at_bedside(self) -> Decimal | None:
        """The clinician enters the prescription with a tenfold slip and confirms; if the pump
        refuses the slip (or asks for an override reason: a warning noticed) they enter the
        prescription. Returns the slipped dose if the pump took it."""
        slip = self.prescription.dose * SLIP_FACTOR
        programmed = self.pump.handle(Program(self.prescription.programme(slip)))
        if programmed.accepted and self.pump.handle(Confirm()).accepted:
            return slip
        if self.pump.awaiting_confirmation:
            self.pump.handle(Cancel())
        self._start_prescription()
        return None

    def confirm_at_bedside(self) -> Decimal | None:
        """The clinician confirms what the pump shows pre-filled without noticing whose order
        it is (they were about to start this drug); a programme that needs an override reason
        is noticed, cancelled and the prescription entered instead; an idle pump gets the
        prescription entered at the keypad. Returns the pre-filled dose that was confirmed."""
        pending = self._prefilled if self.pump.awaiting_confirmation else None
        self._prefilled = None
        if pending is not None:
            if self.pump.handle(Confirm()).accepted:
                return pending.dose
            self.pump.handle(Cancel())
        if self.pump.state is PumpState.IDLE:
            self._start_prescription()
        return None

    def prefill(self, programme: ContinuousProgramme) -> CommandResult:
        """An order's programme sent to the pump (it pre-fills; only the bedside confirms)."""
        result = self.pump.handle(Program(programme, CommandSource.AUTO_PROGRAMME))
        if result.accepted:
            self._prefilled = programme
        return result

    def _start_prescription(self) -> CommandResult:
        self.pump.handle(Program(self.prescription.programme()))
        return self.pump.handle(Confirm())

    def measure(
        self,
        programmed: Decimal | None,
        *,
        prescribed_dose: Decimal | None = None,
        with_limits: bool = False,
    ) -> InfusionHarm:
        """Run ``WINDOW_MIN`` minutes from now; what the pump infused against the prescription
        (``prescribed_dose`` when the current prescription differs from the first one)."""
        before = self.pump.volume_infused_ml
        self.advance_min(WINDOW_MIN)
        delivered = self.pump.volume_infused_ml - before
        dose = self.prescription.dose if prescribed_dose is None else prescribed_dose
        prescribed = _infused_ml(self.legitimate, self.prescription.programme(dose), WINDOW_MIN)
        code = self.prescription.code
        return InfusionHarm(
            drug=self.prescription.drug,
            dose_unit=self.prescription.dose_unit,
            prescribed_dose=dose,
            programmed_dose=programmed,
            prescribed_ml=prescribed,
            delivered_ml=delivered,
            window_min=WINDOW_MIN,
            legitimate_hard_max=_hard_max(self.legitimate, code) if with_limits else None,
            enforced_hard_max=_hard_max(self.pump.library, code) if with_limits else None,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a hospital attack measured: its goal, the harm, and what was seen on the way."""

    succeeded: bool
    evidence: str
    harm: InfusionHarm
    foreign_commands: int = 0
    """Programmes or installs the pump accepted from the attacker."""
    refused_by: str | None = None
    """The control that refused it without a security event (the pump's own DERS)."""


class HospitalAttack(CatalogueAttack):
    """A hospital catalogue entry: ``perform`` runs it on a fresh ``Ward``."""

    system: ClassVar[System] = System.HOSPITAL

    @abstractmethod
    def perform(self, ward: Ward) -> Outcome:
        """Set the ward up, call ``ward.attack_starts()``, attack, act at the bedside, measure."""

    def trial(self, profile: LinkProfile, patient: str = DEFAULT_PATIENT, seed: int = 1) -> Trial:
        with tempfile.TemporaryDirectory(prefix="pumpguard-attack-") as tmp:
            ward = Ward(profile, seed, Path(tmp))
            outcome = self.perform(ward)
        caused = ward.caused()
        codes = tuple(dict.fromkeys(e.code for e in caused))
        blocked_by = None
        if not outcome.succeeded:
            blocked_by = self._blocked_by(codes, outcome)
        result = AttackResult(
            self.name,
            self.system,
            self.reference,
            str(profile),
            PATIENT_ID,
            seed,
            outcome.succeeded,
            blocked_by,
            bool(codes),
            outcome.harm,
            self.availability,
            outcome.evidence,
            codes,
            outcome.foreign_commands,
        )
        return Trial(result, tuple(ward.events), caused)

    def _blocked_by(self, codes: tuple[str, ...], outcome: Outcome) -> str | None:
        controls = [c for c in (control_for(code) for code in codes) if c is not None]
        if controls:
            return self.control if self.control in controls else controls[0]
        return outcome.refused_by
