"""The whole security evaluation in one run: ``pumpguard lab run``.

Two parts, both in virtual time, both seeded:

- **The attack matrix.** Every catalogue entry (or a chosen subset) against each chosen profile,
  once: the insulin entries on a closed loop over the radio (virtual patient, CGM, controller,
  pump) beside their attack-free twin, the hospital entries on their ICU bed (pump, drug library,
  EHR orders). Each row keeps the ``AttackResult`` (succeeded, blocked by, harm), and whether the
  monitor the server runs (``monitor.Monitor``) detected it: the attacked run's security events,
  and for insulin its telemetry too, go through a fresh monitor told nothing about the attack
  (``lab.detection.observe``); a detection between the attack's launch and the end of its
  attribution window (``lab.detection.attribute``) counts, and its delay is the time to detect.
  Insulin rows keep the glucose of both runs around the attack for the report's charts.
- **Normal life.** The detection evaluation of ``lab detect`` at a size that fits the time
  budget: a small insulin cohort with the insulin attacks mixed into its days, and a hospital
  ward (``lab.ward``: pumps, nurses, a library update, the server's live detection) with the
  hospital attacks injected, each beside an attack-free run; they give the fleet summary, the
  detection rate among normal activity and false alerts per device-day.

What the secure profile blocked or detected is credited to NIST CSF 2.0 subcategories through
the project's own data: the threat model (``data/risk/threat-model.yaml``) names, for each
threat, the catalogue attacks that exercise it and the controls that mitigate it; the control
catalogue (``data/risk/controls.yaml``) maps each control to CSF subcategories.

``results.json`` (``LabResults.to_json``, schema ``SCHEMA``) is documented in ``docs/lab.md``;
``lab.evaluation_report`` renders the HTML page.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np

from pumpguard import __version__
from pumpguard.clock import MS_PER_MINUTE
from pumpguard.lab.attacks import (
    ATTACK_MINUTE,
    CATALOGUE,
    DEFAULT_PATIENT,
    HARM_MINUTES,
    HOSPITAL_CATALOGUE,
    Attack,
    AttackResult,
    CatalogueAttack,
    GlucoseTrace,
    Harm,
    InfusionHarm,
    Trial,
    UnknownAttackError,
    get_attack,
)
from pumpguard.lab.detection import (
    DetectConfig,
    DetectReport,
    PlannedAttack,
    active_minutes,
    attribute,
    observe,
    run_detection,
)
from pumpguard.lab.ward import WARD_ATTRIBUTION_MIN, WardConfig, WardReport, run_ward_evaluation
from pumpguard.link import LinkProfile
from pumpguard.monitor import Detection, Monitor
from pumpguard.risk.controls import ControlCatalogue, load_controls
from pumpguard.risk.threat_model import ThreatModel, load_threat_model

__all__ = [
    "FLEET_DAYS",
    "FLEET_PATIENTS",
    "SCHEMA",
    "TRACE_AFTER_MIN",
    "TRACE_BEFORE_MIN",
    "TRACE_STEP_MIN",
    "AttackRow",
    "ControlUse",
    "CsfCoverage",
    "GlucoseWindow",
    "LabConfig",
    "LabError",
    "LabResults",
    "Outcome",
    "ProfileSummary",
    "csf_coverage",
    "parse_profiles",
    "run_lab",
]

SCHEMA = "pumpguard.lab.run/1"
TRACE_BEFORE_MIN = 120
TRACE_AFTER_MIN = HARM_MINUTES
TRACE_STEP_MIN = 5
"""Glucose kept for the report: two hours before the attack to the end of the harm window, one
value every five minutes (the CGM's own interval)."""
FLEET_PATIENTS = 5
FLEET_DAYS = 3
"""Normal life at a size that fits the two-minute budget: 5 patients x 3 days is one pass of the
14 insulin attacks (one a day), and 3 ward days fit all 11 hospital attacks with their
windows."""

Progress = Callable[[int, int, str], None]
"""Called after each finished job with (done, total, what finished)."""


class LabError(ValueError):
    """A ``lab run`` configuration that cannot run."""


def parse_profiles(text: str) -> tuple[LinkProfile, ...]:
    """``legacy``, ``secure`` or ``both`` (legacy first) as the profiles to run."""
    choice = text.strip().lower()
    if choice == "both":
        return (LinkProfile.LEGACY, LinkProfile.SECURE)
    try:
        return (LinkProfile(choice),)
    except ValueError:
        raise LabError(f"profile must be legacy, secure or both, got {text!r}") from None


@dataclass(frozen=True, slots=True)
class LabConfig:
    profiles: tuple[LinkProfile, ...] = (LinkProfile.LEGACY, LinkProfile.SECURE)
    seed: int = 1
    attacks: tuple[str, ...] | None = None
    """Catalogue entries to run, in catalogue order whatever the order given; None: all."""
    workers: int = 1
    fleet: bool = True
    """Also run normal life (cohort and ward) for the fleet and detection summaries."""
    fleet_patients: int = FLEET_PATIENTS
    fleet_days: int = FLEET_DAYS

    def __post_init__(self) -> None:
        if not self.profiles:
            raise LabError("choose at least one profile")
        if len(set(self.profiles)) != len(self.profiles):
            raise LabError("a profile is listed twice")
        if self.seed < 0:
            raise LabError(f"seed must be 0 or more, got {self.seed}")
        if self.workers < 1:
            raise LabError(f"workers must be at least 1, got {self.workers}")
        if self.fleet_patients < 1 or self.fleet_days < 1:
            raise LabError("the fleet needs at least one patient and one day")
        if self.attacks is not None:
            if not self.attacks:
                raise LabError("choose at least one attack, or leave the choice out for all")
            for name in self.attacks:
                try:
                    get_attack(name)
                except UnknownAttackError as exc:
                    raise LabError(str(exc)) from None

    def entries(self) -> tuple[type[CatalogueAttack], ...]:
        chosen = None if self.attacks is None else set(self.attacks)
        return tuple(a for a in CATALOGUE if chosen is None or a.name in chosen)

    def trial_seed(self, entry: type[CatalogueAttack]) -> int:
        """Insulin entries run on ``seed``; hospital entry i on ``seed * 100 + i``, the seeds
        ``lab detect``'s ward injects, so the matrix rows are the very instances it places
        (and the ward's prescriptions cycle through its six high-alert drugs)."""
        for index, hospital in enumerate(HOSPITAL_CATALOGUE):
            if hospital is entry:
                return self.seed * 100 + index
        return self.seed

    def to_json(self) -> dict[str, object]:
        return {
            "profiles": [str(p) for p in self.profiles],
            "seed": self.seed,
            "attacks": None if self.attacks is None else [a.name for a in self.entries()],
            "insulin_patient": DEFAULT_PATIENT,
            "workers": self.workers,
            "fleet": self.fleet,
            "fleet_patients": self.fleet_patients,
            "fleet_days": self.fleet_days,
        }


class Outcome(StrEnum):
    """One matrix cell in one word: what the attacker got and whether anyone noticed."""

    SUCCEEDED = "succeeded"
    """Reached its goal and nothing detected it."""
    SUCCEEDED_DETECTED = "succeeded, detected"
    """Reached its goal (availability attacks: the link was down) but the monitor raised it."""
    BLOCKED = "blocked"
    """Did not reach its goal."""


@dataclass(frozen=True, slots=True)
class GlucoseWindow:
    """Glucose of the attacked run and of the twin, ``start_min`` minutes from the attack (a
    negative number) every ``step_min`` minutes; NaN where the model had no value."""

    start_min: int
    step_min: int
    attacked_mgdl: tuple[float, ...]
    twin_mgdl: tuple[float, ...]

    @property
    def minutes(self) -> tuple[int, ...]:
        return tuple(self.start_min + i * self.step_min for i in range(len(self.attacked_mgdl)))

    @classmethod
    def around_attack(cls, trace: GlucoseTrace) -> GlucoseWindow:
        lo = max(0, trace.attack_minute - TRACE_BEFORE_MIN)
        hi = min(len(trace.attacked_bg), trace.attack_minute + TRACE_AFTER_MIN)
        return cls(
            lo - trace.attack_minute,
            TRACE_STEP_MIN,
            _sampled(trace.attacked_bg[lo:hi]),
            _sampled(trace.twin_bg[lo:hi]),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "start_min": self.start_min,
            "step_min": self.step_min,
            "attacked_mgdl": [_finite(v) for v in self.attacked_mgdl],
            "twin_mgdl": [_finite(v) for v in self.twin_mgdl],
        }


def _sampled(values: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), 1) for v in values[::TRACE_STEP_MIN])


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class AttackRow:
    """One attack against one profile: the catalogue's result, what the monitor made of the
    attacked run, and (insulin) the glucose around the attack."""

    result: AttackResult
    time_to_detect_s: float | None
    """From the attack's launch to the monitor's first detection in its window; None: none."""
    rules_fired: tuple[str, ...]
    """Analytics (rule or detector ids) that fired in the window, first firing order."""
    trace: GlucoseWindow | None
    wall_time_s: float

    @property
    def name(self) -> str:
        return self.result.name

    @property
    def profile(self) -> str:
        return self.result.profile

    @property
    def detected(self) -> bool:
        return self.time_to_detect_s is not None

    @property
    def outcome(self) -> Outcome:
        if not self.result.succeeded:
            return Outcome.BLOCKED
        return Outcome.SUCCEEDED_DETECTED if self.detected else Outcome.SUCCEEDED

    def to_json(self) -> dict[str, object]:
        return {
            **self.result.to_json(),
            "outcome": str(self.outcome),
            "detected": self.detected,
            "time_to_detect_s": _seconds(self.time_to_detect_s),
            "rules_fired": list(self.rules_fired),
            "glucose_trace": None if self.trace is None else self.trace.to_json(),
            "wall_time_s": round(self.wall_time_s, 3),
        }


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """The matrix of one profile in a few figures."""

    profile: str
    attacks: int
    succeeded: int
    blocked: int
    detected: int
    logged: int
    median_time_to_detect_s: float | None
    hypo_minutes_added: int
    """Minutes below 54 mg/dL the insulin attacks added, summed over those that added any."""
    lowest_bg_mgdl: float | None
    overdosed: int
    """Hospital attacks after which the pump delivered more than 110 % of the prescription."""
    worst_overdose_factor: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "attacks": self.attacks,
            "succeeded": self.succeeded,
            "blocked": self.blocked,
            "detected": self.detected,
            "logged": self.logged,
            "median_time_to_detect_s": _seconds(self.median_time_to_detect_s),
            "hypo_minutes_below_54_added": self.hypo_minutes_added,
            "lowest_bg_mgdl": None
            if self.lowest_bg_mgdl is None
            else round(self.lowest_bg_mgdl, 1),
            "hospital_overdoses": self.overdosed,
            "worst_overdose_factor": self.worst_overdose_factor,
        }


_OVERDOSE = 1.1


def _summary(profile: str, rows: list[AttackRow]) -> ProfileSummary:
    times = [r.time_to_detect_s for r in rows if r.time_to_detect_s is not None]
    glucose = [r.result.harm for r in rows if isinstance(r.result.harm, Harm)]
    factors = [
        f
        for r in rows
        if isinstance(r.result.harm, InfusionHarm)
        and (f := r.result.harm.overdose_factor) is not None
    ]
    return ProfileSummary(
        profile,
        len(rows),
        sum(r.result.succeeded for r in rows),
        sum(not r.result.succeeded for r in rows),
        sum(r.detected for r in rows),
        sum(r.result.logged for r in rows),
        statistics.median(times) if times else None,
        sum(max(h.minutes_below_54, 0) for h in glucose),
        min((h.min_bg_mgdl for h in glucose), default=None),
        sum(f > _OVERDOSE for f in factors),
        round(max(factors), 2) if factors else None,
    )


@dataclass(frozen=True, slots=True)
class ControlUse:
    """A control of the catalogue that the secure profile's blocked or detected attacks
    exercised, with the CSF subcategories it maps to."""

    control_id: str
    name: str
    csf: tuple[str, ...]
    attacks: tuple[str, ...]
    threats: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "control": self.control_id,
            "name": self.name,
            "csf": list(self.csf),
            "attacks": list(self.attacks),
            "threats": list(self.threats),
        }


@dataclass(frozen=True, slots=True)
class CsfCoverage:
    """One NIST CSF 2.0 subcategory and what this run exercised of it."""

    subcategory: str
    controls: tuple[str, ...]
    attacks: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "subcategory": self.subcategory,
            "controls": list(self.controls),
            "attacks": list(self.attacks),
        }


def csf_coverage(
    exercised: list[str], model: ThreatModel, catalogue: ControlCatalogue
) -> tuple[tuple[ControlUse, ...], tuple[CsfCoverage, ...]]:
    """The implemented controls the threat model names for threats the ``exercised`` attacks
    exercise, and the CSF subcategories of those controls (sorted by id)."""
    controls = {c.id: c for c in catalogue if c.implemented}
    attacks_of: dict[str, list[str]] = {}
    threats_of: dict[str, list[str]] = {}
    for threat in model.threats:
        for name in (a for a in threat.attacks if a in exercised):
            for control_id in (c for c in threat.controls if c in controls):
                attacks_of.setdefault(control_id, [])
                threats_of.setdefault(control_id, [])
                if name not in attacks_of[control_id]:
                    attacks_of[control_id].append(name)
                if threat.id not in threats_of[control_id]:
                    threats_of[control_id].append(threat.id)
    order = {name: i for i, name in enumerate(exercised)}
    uses = tuple(
        ControlUse(
            cid,
            controls[cid].name,
            tuple(controls[cid].csf),
            tuple(sorted(attacks_of[cid], key=order.__getitem__)),
            tuple(threats_of[cid]),
        )
        for cid in sorted(attacks_of)
    )
    by_csf: dict[str, tuple[list[str], list[str]]] = {}
    for use in uses:
        for sub in use.csf:
            found_controls, found_attacks = by_csf.setdefault(sub, ([], []))
            found_controls.append(use.control_id)
            found_attacks.extend(a for a in use.attacks if a not in found_attacks)
    coverage = tuple(
        CsfCoverage(sub, tuple(cs), tuple(sorted(attacks, key=order.__getitem__)))
        for sub, (cs, attacks) in sorted(by_csf.items())
    )
    return uses, coverage


@dataclass(frozen=True, slots=True)
class LabResults:
    config: LabConfig
    generated_at: str
    """UTC time the run started (ISO 8601); with ``wall_time_s`` and the rows' timings the
    only fields that change between two runs of one seed."""
    rows: tuple[AttackRow, ...]
    """Catalogue order, then profile order."""
    fleet: tuple[DetectReport, ...]
    """Normal life per profile (cohort, and the ward in ``hospital``); empty without it."""
    controls: tuple[ControlUse, ...]
    csf: tuple[CsfCoverage, ...]
    wall_time_s: float
    fleet_times: tuple[tuple[str, float], ...] = ()
    """Seconds each normal-life job took where it ran (label, seconds)."""

    @property
    def entries(self) -> tuple[type[CatalogueAttack], ...]:
        return self.config.entries()

    def row(self, name: str, profile: LinkProfile | str) -> AttackRow:
        for row in self.rows:
            if row.name == name and row.profile == str(profile):
                return row
        raise KeyError(f"no row for {name} on the {profile} profile")

    def summaries(self) -> tuple[ProfileSummary, ...]:
        return tuple(
            _summary(str(p), [r for r in self.rows if r.profile == str(p)])
            for p in self.config.profiles
        )

    def unexercised_controls(self) -> tuple[str, ...]:
        """Implemented controls of the catalogue this run gave no credit to."""
        used = {u.control_id for u in self.controls}
        return tuple(c.id for c in load_controls() if c.implemented and c.id not in used)

    def to_json(self) -> dict[str, object]:
        return {
            "schema": SCHEMA,
            "generated_at": self.generated_at,
            "versions": _versions(),
            "config": self.config.to_json(),
            "timings": {
                "wall_time_s": round(self.wall_time_s, 1),
                "trials_cpu_s": round(sum(r.wall_time_s for r in self.rows), 1),
                "fleet_cpu_s": {label: round(t, 1) for label, t in self.fleet_times},
            },
            "catalogue": [
                {
                    "name": e.name,
                    "system": str(e.system),
                    "references": list(e.references),
                    "description": e.description,
                    "goal": e.goal,
                    "control": e.control,
                    "availability": e.availability,
                    "passive": e.passive,
                    "detection_only": e.detection_only,
                    "trial_seed": self.config.trial_seed(e),
                }
                for e in self.entries
            ],
            "matrix": [r.to_json() for r in self.rows],
            "summary": [s.to_json() for s in self.summaries()],
            "fleet": [_fleet_json(f) for f in self.fleet],
            "csf": {
                "method": "attacks the secure profile blocked or detected -> threats of "
                "data/risk/threat-model.yaml that name them -> the implemented controls those "
                "threats name -> the CSF 2.0 subcategories of data/risk/controls.yaml",
                "controls": [u.to_json() for u in self.controls],
                "subcategories": [c.to_json() for c in self.csf],
                "unexercised_controls": list(self.unexercised_controls()),
            },
        }


def _versions() -> dict[str, str]:
    return {
        "pumpguard": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(terse=True),
    }


def _fleet_json(report: DetectReport) -> dict[str, object]:
    return {"profile": str(report.config.profile), **report.to_json()}


# ---------------------------------------------------------------------- running


def _run_row(name: str, profile: LinkProfile, seed: int) -> AttackRow:
    """One matrix cell (a top-level function: it runs in worker processes)."""
    started = time.perf_counter()
    attack = get_attack(name)
    if isinstance(attack, Attack):
        trial, loop = attack.play(profile, DEFAULT_PATIENT, seed)
        plan = PlannedAttack(name, DEFAULT_PATIENT, ATTACK_MINUTE, active_minutes(name))
        outcomes, _ = attribute([plan], observe(loop, DEFAULT_PATIENT, True))
        ttd, fired = outcomes[0].time_to_detect_s, outcomes[0].analytics
        window = None if trial.trace is None else GlucoseWindow.around_attack(trial.trace)
    else:
        trial = attack.trial(profile, seed=seed)
        ttd, fired = _hospital_detection(trial)
        window = None
    return AttackRow(trial.result, ttd, fired, window, time.perf_counter() - started)


def _hospital_detection(trial: Trial) -> tuple[float | None, tuple[str, ...]]:
    """The trial's events through a fresh monitor in emission order (as ``lab detect`` shows
    them); its launch is its first security-relevant event (``Trial.caused``), its window ends
    ``WARD_ATTRIBUTION_MIN`` after its last event, as on the ward. A trial that caused no such
    event is not detected: whatever fired saw only normal operation (a legacy pump's every
    plain MLLP connection, the legitimate orders' too), which says nothing about the attack."""
    if not trial.caused:
        return None, ()
    detections: list[Detection] = []
    monitor = Monitor(on_detection=detections.append)
    for event in trial.events:
        monitor.emit(event)
    launch = trial.caused[0].time_ms
    last = max((e.time_ms for e in trial.events), default=launch)
    until = last + WARD_ATTRIBUTION_MIN * MS_PER_MINUTE
    inside = [d for d in detections if launch <= d.time_ms <= until]
    if not inside:
        return None, ()
    return (inside[0].time_ms - launch) / 1000, tuple(dict.fromkeys(d.analytic_id for d in inside))


def _run_cohort(config: DetectConfig) -> DetectReport:
    return run_detection(config)


def _run_ward(config: WardConfig) -> WardReport:
    return run_ward_evaluation(config)


_Job = tuple[str, Callable[..., object], tuple[object, ...]]


def _timed(function: Callable[..., object], *args: object) -> tuple[object, float]:
    """``function(*args)`` and the seconds it took, measured where it ran."""
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def run_lab(config: LabConfig, progress: Progress | None = None) -> LabResults:
    """Run the matrix and normal life (on ``config.workers`` processes), then credit CSF."""
    started = time.perf_counter()
    generated = datetime.now(UTC).replace(microsecond=0).isoformat()
    jobs: list[_Job] = []
    fleet_labels: set[str] = set()
    if config.fleet:
        for profile in config.profiles:
            cohort = DetectConfig(
                config.fleet_days, config.fleet_patients, config.seed, profile, 1, hospital=False
            )
            ward = WardConfig(config.fleet_days, config.seed, profile=profile)
            jobs.append((f"insulin cohort, {profile}", _run_cohort, (cohort,)))
            jobs.append((f"hospital ward, {profile}", _run_ward, (ward,)))
            fleet_labels.update(label for label, _, _ in jobs[-2:])
    for entry in config.entries():
        for profile in config.profiles:
            jobs.append(
                (
                    f"{entry.name}, {profile}",
                    _run_row,
                    (entry.name, profile, config.trial_seed(entry)),
                )
            )
    done: dict[str, object] = {}
    seconds: dict[str, float] = {}

    def finished(label: str, timed: tuple[object, float]) -> None:
        done[label], seconds[label] = timed
        if progress is not None:
            progress(len(done), len(jobs), label)

    if config.workers == 1:
        for label, function, args in jobs:
            finished(label, _timed(function, *args))
    else:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            futures: dict[Future[tuple[object, float]], str] = {
                pool.submit(_timed, function, *args): label for label, function, args in jobs
            }
            for future in as_completed(futures):
                finished(futures[future], future.result())
    rows = tuple(v for label, _, _ in jobs if isinstance(v := done[label], AttackRow))
    fleet = tuple(_fleet(config, done))
    exercised = [
        r.name
        for r in rows
        if r.profile == str(LinkProfile.SECURE) and (not r.result.succeeded or r.detected)
    ]
    uses, coverage = csf_coverage(exercised, load_threat_model(), load_controls())
    fleet_times = tuple((label, seconds[label]) for label, _, _ in jobs if label in fleet_labels)
    return LabResults(
        config,
        generated,
        rows,
        fleet,
        uses,
        coverage,
        time.perf_counter() - started,
        fleet_times,
    )


def _fleet(config: LabConfig, done: dict[str, object]) -> list[DetectReport]:
    out: list[DetectReport] = []
    if not config.fleet:
        return out
    for profile in config.profiles:
        cohort = done[f"insulin cohort, {profile}"]
        ward = done[f"hospital ward, {profile}"]
        assert isinstance(cohort, DetectReport) and isinstance(ward, WardReport)
        out.append(
            replace(
                cohort,
                config=replace(cohort.config, hospital=True),
                hospital=ward,
                wall_time_s=cohort.wall_time_s,
            )
        )
    return out
