"""How well the monitor detects the attack catalogue mixed into normal life: ``lab detect``.

Each patient of a seeded cohort lives ``days`` days twice over the radio loop
(``lab.linked_loop``), with seeded random meals and the AID controller: once with the
catalogue's insulin attacks launched at seeded random times (one a day, windows never
overlapping), once without any. After each run, every security event it produced and the
telemetry a controller and a pump report (the CGM readings the controller took, its
fingersticks, the boluses the pump accepted) go, merged in time order, through one
``monitor.Monitor`` (rules, detectors, alert book), the object the server runs. The monitor is
told nothing about the attacks.

Only then are its detections matched with the attack plan (``attribute``): an attack instance
is detected when the monitor made at least one detection on that patient's attacked run between
the attack's launch and ``ATTRIBUTION_WINDOW_MIN`` after its active part ended; an alert opened
outside every such window, or on an attack-free run, is a false alert. Passive eavesdropping
puts nothing on the air, so no receiver can notice it: such attacks are run and listed as
undetectable by design, outside the rate.

The hospital entries of the catalogue are mixed into a simulated ward instead
(``lab.ward``): pumps programmed by nurses over the same number of days, their records through
the server's live detection, the attack trials' events injected at seeded times, an attack-free
ward run of the same seed beside it. Its figures are reported under ``hospital``; ``overall``
pools both systems.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from pumpguard.clock import MS_PER_MINUTE
from pumpguard.devices.insulin import Bolus
from pumpguard.lab.attacks import HOSPITAL_CATALOGUE, INSULIN_CATALOGUE, Attack, insulin_attack
from pumpguard.lab.attacks.availability import FLOOD_MINUTES, JAM_MINUTES
from pumpguard.lab.attacks.cgm import SPOOF_MINUTES
from pumpguard.lab.linked_loop import LinkedLoop, LinkedLoopConfig, MinuteHook
from pumpguard.lab.ward import WardConfig, WardReport, run_ward_evaluation
from pumpguard.link import Adversary, LinkProfile
from pumpguard.monitor import Detection, Monitor
from pumpguard.physiology import MINUTES_PER_DAY, RandomMealScenario, carbs_array, patient_names

__all__ = [
    "ATTRIBUTION_WINDOW_MIN",
    "AttackOutcome",
    "AttackSummary",
    "DetectConfig",
    "DetectError",
    "DetectReport",
    "HospitalOutcome",
    "PatientRun",
    "PlannedAttack",
    "RunAlerts",
    "active_minutes",
    "attribute",
    "insulin_attacks",
    "observe",
    "plan_attacks",
    "run_detection",
    "run_hospital",
    "run_patient",
]

ATTRIBUTION_WINDOW_MIN = 60
"""How long after an attack's active part ends a detection still counts for it."""
_PREPARE_MIN = 120
"""The attacker arrives (starts listening) two hours before it acts."""
_GAP_MIN = 60
"""Quiet time between one attack's window and the next attack's arrival."""
_ACTIVE_MINUTES: dict[str, int] = {
    "spoofed-cgm": SPOOF_MINUTES,
    "spoofed-cgm-low": SPOOF_MINUTES,
    "spoofed-cgm-sensor": SPOOF_MINUTES,
    "jamming": JAM_MINUTES,
    "wakeup-flood": FLOOD_MINUTES,
    "scan-dump": 30,
    "pairing-mitm": 10,
}
"""How long each attack acts after its launch (lab/attacks: spoof, jam, flood; scan-dump's
30 boluses a minute; pairing-mitm's legacy bolus 10 minutes after the pairing). The rest act
at launch."""
_CONTROLLER = "controller"


def active_minutes(name: str) -> int:
    """How long the insulin attack ``name`` acts after its launch (0: it acts at launch)."""
    return _ACTIVE_MINUTES.get(name, 0)


class DetectError(ValueError):
    """A configuration the evaluation cannot run."""


@dataclass(frozen=True, slots=True)
class DetectConfig:
    days: int
    patients: int
    seed: int = 1
    profile: LinkProfile = LinkProfile.SECURE
    workers: int = 1
    hospital: bool = True
    """Also run the hospital ward with the hospital entries of the catalogue (``lab.ward``)."""

    def __post_init__(self) -> None:
        if self.days < 1:
            raise DetectError(f"days must be at least 1, got {self.days}")
        if self.patients < 1:
            raise DetectError(f"patients must be at least 1, got {self.patients}")
        if self.workers < 1:
            raise DetectError(f"workers must be at least 1, got {self.workers}")


@dataclass(frozen=True, slots=True)
class PlannedAttack:
    """One attack instance: what, on which patient, when (minutes from the run's start)."""

    name: str
    patient: str
    start_min: int
    active_min: int

    @property
    def start_ms(self) -> int:
        return self.start_min * MS_PER_MINUTE

    @property
    def until_ms(self) -> int:
        """End of the attribution window."""
        return (self.start_min + self.active_min + ATTRIBUTION_WINDOW_MIN) * MS_PER_MINUTE


@dataclass(frozen=True, slots=True)
class RunAlerts:
    """What the monitor concluded on one run, stripped to what attribution needs."""

    patient: str
    attacked: bool
    detections: tuple[tuple[int, str], ...]
    """(time_ms, analytic id) of every detection, in time order."""
    alerts: tuple[tuple[int, str], ...]
    """(first_ms, analytic id) of every alert the book opened."""


@dataclass(frozen=True, slots=True)
class AttackOutcome:
    attack: PlannedAttack
    time_to_detect_s: float | None
    analytics: tuple[str, ...]
    """Analytics that fired inside the window, first firing order."""

    @property
    def detected(self) -> bool:
        return self.time_to_detect_s is not None


@dataclass(frozen=True, slots=True)
class AttackSummary:
    name: str
    instances: int
    detected: int
    median_time_to_detect_s: float | None
    analytics: dict[str, int]
    """Analytic id -> instances in whose window it fired."""
    passive: bool

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "instances": self.instances,
            "detected": self.detected,
            "detection_rate": _ratio(self.detected, self.instances),
            "median_time_to_detect_s": self.median_time_to_detect_s,
            "rules_fired": dict(sorted(self.analytics.items())),
        }


@dataclass(frozen=True, slots=True)
class DetectReport:
    config: DetectConfig
    patients: tuple[str, ...]
    outcomes: tuple[AttackOutcome, ...]
    false_alerts_attack_free: int
    false_alerts_attacked: int
    clean_patient_days: float
    """Patient-days observed outside every attack window (attack-free runs included)."""
    false_by_analytic: dict[str, int]
    wall_time_s: float
    hospital: WardReport | None = None
    """The hospital ward's evaluation (None when not run)."""

    def summaries(self) -> tuple[AttackSummary, ...]:
        by_name: dict[str, list[AttackOutcome]] = {}
        for outcome in self.outcomes:
            by_name.setdefault(outcome.attack.name, []).append(outcome)
        out = []
        for name, outcomes in by_name.items():
            fired: Counter[str] = Counter()
            for o in outcomes:
                fired.update(o.analytics)
            times = [o.time_to_detect_s for o in outcomes if o.time_to_detect_s is not None]
            out.append(
                AttackSummary(
                    name,
                    len(outcomes),
                    len(times),
                    statistics.median(times) if times else None,
                    dict(fired),
                    insulin_attack(name).passive,
                )
            )
        return tuple(sorted(out, key=lambda s: s.name))

    @property
    def counted(self) -> tuple[AttackOutcome, ...]:
        """The instances in the rate: all but the undetectable-by-design ones."""
        return tuple(o for o in self.outcomes if not insulin_attack(o.attack.name).passive)

    @property
    def detection_rate(self) -> float | None:
        counted = self.counted
        return _ratio(sum(o.detected for o in counted), len(counted))

    @property
    def median_time_to_detect_s(self) -> float | None:
        times = [o.time_to_detect_s for o in self.counted if o.time_to_detect_s is not None]
        return statistics.median(times) if times else None

    @property
    def false_alerts_per_patient_day(self) -> float | None:
        if self.clean_patient_days <= 0:
            return None
        false = self.false_alerts_attack_free + self.false_alerts_attacked
        return round(false / self.clean_patient_days, 4)

    def overall(self) -> dict[str, object]:
        """Both systems pooled: every counted instance, every false alert over the device-days
        (patient-days plus ward pump-days) observed outside attack windows."""
        ward = self.hospital
        ward_outcomes = ward.outcomes if ward is not None else ()
        detected = sum(o.detected for o in self.counted) + sum(o.detected for o in ward_outcomes)
        instances = len(self.counted) + len(ward_outcomes)
        times = [o.time_to_detect_s for o in self.counted if o.time_to_detect_s is not None]
        times += [o.time_to_detect_s for o in ward_outcomes if o.time_to_detect_s is not None]
        false = self.false_alerts_attack_free + self.false_alerts_attacked
        days = self.clean_patient_days
        if ward is not None:
            false += ward.false_alerts_attack_free + ward.false_alerts_attacked
            days += ward.clean_pump_days
        return {
            "attack_instances": instances,
            "detected": detected,
            "detection_rate": _ratio(detected, instances),
            "median_time_to_detect_s": statistics.median(times) if times else None,
            "false_alerts": false,
            "device_days_outside_windows": round(days, 3),
            "false_alerts_per_device_day": round(false / days, 4) if days > 0 else None,
        }

    def to_json(self) -> dict[str, object]:
        summaries = self.summaries()
        ward = self.hospital
        return {
            "config": {
                "days": self.config.days,
                "patients": self.config.patients,
                "seed": self.config.seed,
                "profile": str(self.config.profile),
                "patient_names": list(self.patients),
                "attribution_window_min": ATTRIBUTION_WINDOW_MIN,
                "systems": ["insulin", "hospital"] if self.hospital else ["insulin"],
            },
            "detection_rate": self.detection_rate,
            "median_time_to_detect_s": self.median_time_to_detect_s,
            "false_alerts_per_patient_day": self.false_alerts_per_patient_day,
            "attack_instances": len(self.counted),
            "false_alerts": {
                "attack_free_runs": self.false_alerts_attack_free,
                "attacked_runs_outside_windows": self.false_alerts_attacked,
                "patient_days_outside_windows": round(self.clean_patient_days, 3),
                "by_rule": dict(sorted(self.false_by_analytic.items())),
            },
            "attacks": [s.to_json() for s in summaries if not s.passive],
            "undetectable": [
                {
                    "name": s.name,
                    "instances": s.instances,
                    "detected": s.detected,
                    "reason": "passive: listens only, puts nothing on the air for any receiver "
                    "to notice; excluded from detection_rate",
                }
                for s in summaries
                if s.passive
            ],
            "hospital": None
            if ward is None
            else {
                "method": "a virtual-time ward (lab/ward.py): nurses program the pumps, their "
                "records go through the server's live detection; each hospital attack's trial "
                "(run_trial) is injected once at a seeded time on a ward pump; an attack-free "
                "ward run of the same seed beside it; attribution by time (docs/monitoring.md)",
                **ward.to_json(),
            },
            "overall": self.overall(),
            "wall_time_s": round(self.wall_time_s, 1),
        }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def insulin_attacks() -> tuple[type[Attack], ...]:
    return INSULIN_CATALOGUE


@dataclass(frozen=True, slots=True)
class HospitalOutcome:
    """One hospital attack, run as its own trial (``HospitalAttack.trial``) and shown to a
    fresh monitor: detected or not, and by which analytics. No ward background, so no time to
    detect and no false alerts are measured here."""

    name: str
    detected: bool
    analytics: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "detected": self.detected, "rules_fired": list(self.analytics)}


def run_hospital(profile: LinkProfile, seed: int) -> tuple[HospitalOutcome, ...]:
    """Every hospital entry of the catalogue once, its trial's security events through the
    monitor in emission order."""
    out = []
    for index, entry in enumerate(HOSPITAL_CATALOGUE):
        trial = entry().trial(profile, seed=seed * 100 + index)
        detections: list[Detection] = []
        monitor = Monitor(on_detection=detections.append)
        for event in trial.events:
            monitor.emit(event)
        fired = tuple(dict.fromkeys(d.analytic_id for d in detections))
        out.append(HospitalOutcome(entry.name, bool(detections), fired))
    return tuple(out)


def plan_attacks(
    patient: str, days: int, rng: random.Random, names: Sequence[str]
) -> tuple[PlannedAttack, ...]:
    """One attack a day at a random minute, drawn from ``names`` in turn; the attacker arrives
    two hours before, and each window ends (with a gap) before the next arrival. A day too
    full for its attack gets none."""
    out: list[PlannedAttack] = []
    free_from = _PREPARE_MIN
    for day, name in zip(range(days), names, strict=False):
        active = active_minutes(name)
        lo = max(day * MINUTES_PER_DAY, free_from)
        hi = min((day + 1) * MINUTES_PER_DAY, days * MINUTES_PER_DAY) - (
            active + ATTRIBUTION_WINDOW_MIN
        )
        if hi <= lo:
            continue
        start = rng.randrange(lo, hi)
        out.append(PlannedAttack(name, patient, start, active))
        free_from = start + active + ATTRIBUTION_WINDOW_MIN + _GAP_MIN + _PREPARE_MIN
    return tuple(out)


def attribute(
    plan: Sequence[PlannedAttack], run: RunAlerts
) -> tuple[tuple[AttackOutcome, ...], list[tuple[int, str]]]:
    """Match one attacked run's detections with its plan: the outcome of each attack and the
    alerts opened outside every window (false). Only times are compared: an alert says nothing
    about which attack, if any, caused it."""
    outcomes = []
    for attack in plan:
        inside = [(t, a) for t, a in run.detections if attack.start_ms <= t <= attack.until_ms]
        first = inside[0][0] if inside else None
        outcomes.append(
            AttackOutcome(
                attack,
                None if first is None else (first - attack.start_ms) / 1000,
                tuple(dict.fromkeys(a for _, a in inside)),
            )
        )
    false = [(t, a) for t, a in run.alerts if not any(p.start_ms <= t <= p.until_ms for p in plan)]
    return tuple(outcomes), false


@dataclass(frozen=True, slots=True)
class PatientRun:
    """One patient's run: its plan (empty for the attack-free run) and what seeds it."""

    profile: LinkProfile
    patient: str
    index: int
    seed: int
    days: int
    plan: tuple[PlannedAttack, ...]


def run_patient(job: PatientRun) -> RunAlerts:
    """Run one patient (attacks launched as planned), then show the monitor what it saw."""
    minutes = job.days * MINUTES_PER_DAY
    legacy_meter = job.profile is LinkProfile.LEGACY
    loop = LinkedLoop(
        LinkedLoopConfig(
            job.profile,
            patient=job.patient,
            seed=job.seed * 1000 + job.index,
            minutes=minutes,
            meter_remote=legacy_meter,
        )
    )
    meals = RandomMealScenario(job.seed).meals(job.index, job.days)
    loop.carbs = carbs_array([meals], minutes)[0]
    for planned in sorted(job.plan, key=lambda p: p.start_min):
        attack = insulin_attack(planned.name)
        loop.run_until(planned.start_min - _PREPARE_MIN)
        hooks = list(loop.hooks)
        attack.prepare(loop)
        loop.run_until(planned.start_min)
        attack.launch(loop)
        loop.run_until(planned.until_ms // MS_PER_MINUTE)
        _leave(loop, hooks)
    loop.run()
    return observe(loop, job.patient, bool(job.plan))


def _leave(loop: LinkedLoop, hooks: list[MinuteHook]) -> None:
    """The attacker leaves: its radios off the medium, its per-minute hooks gone."""
    for node in loop.medium.nodes:
        if isinstance(node, Adversary):
            loop.medium.detach(node)
    loop.hooks[:] = hooks


def observe(loop: LinkedLoop, patient: str, attacked: bool) -> RunAlerts:
    """Hand the run's events and telemetry to the monitor, merged in time order."""
    detections: list[Detection] = []
    monitor = Monitor(on_detection=detections.append)
    events = list(loop.events)
    readings = loop.taken_readings
    sticks = loop.controller.meter_readings
    boluses = [
        (h.at_us // 1000, float(h.command.amount_u))
        for h in loop.link.pump.handled
        if isinstance(h.command, Bolus) and h.result.accepted
    ]
    feed = [(e.time_ms, 0, i) for i, e in enumerate(events)]
    feed += [(r.time_ms, 1, i) for i, r in enumerate(readings)]
    feed += [(m.time_ms, 2, i) for i, m in enumerate(sticks)]
    feed += [(at, 3, i) for i, (at, _) in enumerate(boluses)]
    feed.sort()
    serial = loop.pump.serial
    for at, kind, i in feed:
        if kind == 0:
            monitor.emit(events[i])
        elif kind == 1:
            monitor.cgm(_CONTROLLER, at, readings[i].glucose_mgdl)
        elif kind == 2:
            monitor.meter(_CONTROLLER, at, sticks[i].glucose_mgdl)
        else:
            monitor.bolus(serial, at, boluses[i][1])
    return RunAlerts(
        patient,
        attacked,
        tuple((d.time_ms, d.analytic_id) for d in detections),
        tuple((a.first_ms, a.analytic_id) for a in monitor.book),
    )


def _cohort(config: DetectConfig) -> tuple[str, ...]:
    names = list(patient_names())
    random.Random(config.seed).shuffle(names)
    return tuple(names[i % len(names)] for i in range(config.patients))


def run_detection(
    config: DetectConfig, progress: Callable[[int, int], None] | None = None
) -> DetectReport:
    """Run the cohort with and without attacks and measure the monitor on it."""
    started = time.perf_counter()
    patients = _cohort(config)
    rng = random.Random(config.seed)
    catalogue = [a.name for a in insulin_attacks()]
    order: list[str] = []
    jobs: list[PatientRun] = []
    for index, patient in enumerate(patients):
        while len(order) < (index + 1) * config.days:
            batch = catalogue[:]
            rng.shuffle(batch)
            order.extend(batch)
        names = order[index * config.days : (index + 1) * config.days]
        plan = plan_attacks(patient, config.days, rng, names)
        jobs.append(PatientRun(config.profile, patient, index, config.seed, config.days, plan))
        jobs.append(PatientRun(config.profile, patient, index, config.seed, config.days, ()))
    results: list[RunAlerts] = []
    ward_config = WardConfig(config.days, config.seed, profile=config.profile)
    ward: WardReport | None = None
    if config.workers == 1:
        if config.hospital:
            ward = run_ward_evaluation(ward_config)
        for job in jobs:
            results.append(run_patient(job))
            if progress is not None:
                progress(len(results), len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            pending = pool.submit(run_ward_evaluation, ward_config) if config.hospital else None
            for result in pool.map(run_patient, jobs):
                results.append(result)
                if progress is not None:
                    progress(len(results), len(jobs))
            ward = pending.result() if pending is not None else None
    outcomes: list[AttackOutcome] = []
    false_free = false_attacked = 0
    false_by: Counter[str] = Counter()
    window_days = 0.0
    for job, result in zip(jobs, results, strict=True):
        found, false = attribute(job.plan, result)
        outcomes.extend(found)
        false_by.update(a for _, a in false)
        if job.plan:
            false_attacked += len(false)
        else:
            false_free += len(false)
        window_days += sum(p.until_ms - p.start_ms for p in job.plan) / (
            MINUTES_PER_DAY * MS_PER_MINUTE
        )
    return DetectReport(
        config,
        patients,
        tuple(outcomes),
        false_free,
        false_attacked,
        2 * config.days * config.patients - window_days,
        dict(false_by),
        time.perf_counter() - started,
        ward,
    )
