"""A hospital ward in virtual time, for ``lab detect``: nurses, pumps, and the server's detection.

The hospital attacks of the catalogue only mean something for detection when they happen among
normal ward work: a soft-limit override, a programme entered at 3 a.m. in the ICU or a pump
dropping off the network are routine, and the live detection (``monitor.live``) has to tell
them from an attack. So this module runs a ward of large-volume infusion pumps
(``devices.infusion`` firmware, the example drug library) for ``days`` days on one virtual
clock, with simulated nurses: starting and stopping programmes, bag changes, titrations,
occasional soft-limit overrides (with a reason), hard-limit refusals re-entered correctly,
occlusion alarms, short network dead zones, around-the-clock work in the ICU and day shifts on
the medical-surgical beds, and one library update during the run.

Every pump log entry and a status every ``STATUS_EVERY_S`` seconds become the transport's
``DeviceEvent`` / ``StatusMessage``, are turned into the server's records by
``server.mqtt_ingest.to_record`` and go through ``server.live_detection.activity_from_record``
into a ``monitor.live.ActivityWatch``, exactly as the server's ingest feeds them; the watch's
findings and the hospital attack trials' own security events (``run_trial``, shifted into the
ward's time and onto a ward pump) go, in time order, through one ``monitor.Monitor`` (rules
and alert book). Attribution is by time only, as for the insulin cohort.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from pumpguard.clinical import DrugEntry, DrugLibrary, PumpKind, load_library
from pumpguard.clock import MS_PER_MINUTE, VirtualClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import (
    AcknowledgeAlarm,
    Cancel,
    Clear,
    Confirm,
    ContinuousProgramme,
    InfusionPump,
    InstallLibrary,
    LogEntry,
    Pause,
    PowerOn,
    Program,
    PumpState,
    Resume,
    SensorChange,
    SensorKind,
)
from pumpguard.lab.attacks import HOSPITAL_CATALOGUE, InfusionHarm, Trial, run_trial
from pumpguard.lab.attacks.hospital_ward import PUMP_ID, START_MS, library_with_limits
from pumpguard.link import LinkProfile
from pumpguard.monitor import Detection, Monitor
from pumpguard.monitor.live import ActivityWatch, LiveSettings
from pumpguard.security_events import SecurityEvent
from pumpguard.server.live_detection import activity_from_record
from pumpguard.server.mqtt_ingest import to_record
from pumpguard.transport import DeviceEvent, StatusMessage

__all__ = [
    "STATUS_EVERY_S",
    "WARD_ATTRIBUTION_MIN",
    "InjectedAttack",
    "WardAttackOutcome",
    "WardConfig",
    "WardError",
    "WardReport",
    "WardRun",
    "plan_ward_attacks",
    "run_ward",
    "run_ward_evaluation",
]

STATUS_EVERY_S = 10
"""Pumps report their status every 10 s (``server.device_runtime``'s default)."""
WARD_ATTRIBUTION_MIN = 60
"""How long after an injected attack's last event a detection still counts for it."""
FIRMWARE = "pumpguard-sim 1.0"
_DAY_MS = 24 * 60 * MS_PER_MINUTE
_HOUR_MS = 60 * MS_PER_MINUTE
_DAY_SHIFT = (7, 22)
"""Med-Surg nurses program pumps from 07:00 to 22:00 local (UTC in the lab)."""
_OVERRIDE_P = 0.04
"""Share of programmings entered above the soft maximum and confirmed with a reason."""
_HARD_P = 0.02
"""Share entered above the hard maximum (a decimal slip): refused, re-entered correctly."""
_OCCLUSION_P = 0.04
_DEAD_ZONE_P = 0.03
"""Chance, per nurse action, that the pump drops off the network for 2-6 minutes (transport)."""
_GAP_MIN = 60
"""Quiet time between one injected attack's window and the next."""


class WardError(ValueError):
    """A ward configuration that cannot run."""


@dataclass(frozen=True, slots=True)
class WardConfig:
    """The ward: ``icu`` around-the-clock beds and ``medsurg`` day-shift beds for ``days``."""

    days: int
    seed: int = 1
    icu: int = 6
    medsurg: int = 4
    profile: LinkProfile = LinkProfile.SECURE

    def __post_init__(self) -> None:
        if self.days < 1:
            raise WardError(f"days must be at least 1, got {self.days}")
        if self.icu < 1 or self.medsurg < 0:
            raise WardError("the ward needs at least one ICU pump and no negative bed count")

    @property
    def pumps(self) -> int:
        return self.icu + self.medsurg


@dataclass(frozen=True, slots=True)
class InjectedAttack:
    """One hospital attack trial placed in the ward's time, on one ward pump.

    ``start_ms`` is where the trial's own start (``hospital_ward.START_MS``: its set-up, a
    legitimate library install or order first) lands in the ward; ``launch_ms`` where its first
    security-relevant event (``Trial.caused``) lands, or the start if it caused none. The window
    runs from ``start_ms`` to ``WARD_ATTRIBUTION_MIN`` after its last event.
    """

    name: str
    device_id: str
    start_ms: int
    launch_ms: int
    last_event_ms: int
    events: tuple[SecurityEvent, ...]
    succeeded: bool
    """What the trial reports (on its own one-pump scenario)."""
    dose_factor: Decimal | None = None
    """When the trial reports that its pump took a dose other than the prescription: that dose
    over the prescribed one, applied to the ward pump's running infusion at ``launch_ms``."""

    @property
    def until_ms(self) -> int:
        return self.last_event_ms + WARD_ATTRIBUTION_MIN * MS_PER_MINUTE


@dataclass(frozen=True, slots=True)
class WardRun:
    """One ward run: what its pumps sent, what the live detection found in it, and what the
    monitor concluded on those findings plus the injected attacks' events."""

    detections: tuple[tuple[int, str], ...]
    """(time_ms, analytic id) of every detection, in time order."""
    alerts: tuple[tuple[int, str], ...]
    """(first_ms, analytic id) of every alert the book opened."""
    records: int
    """Records the ward's pumps sent (statuses and log entries)."""
    activity: tuple[tuple[str, int], ...]
    """Records per kind (``programmed``, ``soft-limit-override``, ``alarm-on``...), sorted."""
    findings: int
    """Findings of the live detection (``monitor.*`` events) on the ward's own records."""


@dataclass(frozen=True, slots=True)
class WardAttackOutcome:
    """One injected attack and what the monitor made of it. ``attack`` keeps its placement
    but not its events (they were fed to the monitor already; their read-only attribute
    mappings do not pickle, and the report comes back from a worker process)."""

    attack: InjectedAttack
    time_to_detect_s: float | None
    analytics: tuple[str, ...]

    @property
    def detected(self) -> bool:
        return self.time_to_detect_s is not None


@dataclass(frozen=True, slots=True)
class WardReport:
    config: WardConfig
    outcomes: tuple[WardAttackOutcome, ...]
    false_alerts_attack_free: int
    false_alerts_attacked: int
    clean_pump_days: float
    """Pump-days outside every attack window, both runs."""
    false_by_analytic: dict[str, int]
    attacked: WardRun
    attack_free: WardRun

    @property
    def ward_pump_days(self) -> int:
        return self.config.pumps * self.config.days

    @property
    def detection_rate(self) -> float | None:
        if not self.outcomes:
            return None
        return round(sum(o.detected for o in self.outcomes) / len(self.outcomes), 4)

    @property
    def median_time_to_detect_s(self) -> float | None:
        times = [o.time_to_detect_s for o in self.outcomes if o.time_to_detect_s is not None]
        return statistics.median(times) if times else None

    @property
    def false_alerts_per_pump_day(self) -> float | None:
        if self.clean_pump_days <= 0:
            return None
        false = self.false_alerts_attack_free + self.false_alerts_attacked
        return round(false / self.clean_pump_days, 4)

    def to_json(self) -> dict[str, object]:
        return {
            "ward_pumps": {"icu": self.config.icu, "medsurg": self.config.medsurg},
            "ward_pump_days": self.ward_pump_days,
            "ward_records": self.attacked.records + self.attack_free.records,
            "ward_activity_attack_free": dict(self.attack_free.activity),
            "live_findings": {
                "attack_free_run": self.attack_free.findings,
                "attacked_run": self.attacked.findings,
            },
            "detection_rate": self.detection_rate,
            "median_time_to_detect_s": self.median_time_to_detect_s,
            "ward_false_alerts_per_pump_day": self.false_alerts_per_pump_day,
            "false_alerts": {
                "attack_free_run": self.false_alerts_attack_free,
                "attacked_run_outside_windows": self.false_alerts_attacked,
                "pump_days_outside_windows": round(self.clean_pump_days, 3),
                "by_rule": dict(sorted(self.false_by_analytic.items())),
            },
            "attribution_window_min": WARD_ATTRIBUTION_MIN,
            "instances": len(self.outcomes),
            "detected": sum(o.detected for o in self.outcomes),
            "attacks": [
                {
                    "name": o.attack.name,
                    "device_id": o.attack.device_id,
                    "launch_offset_s": (o.attack.launch_ms - START_MS) / 1000,
                    "trial_succeeded": o.attack.succeeded,
                    "dose_factor_on_ward": None
                    if o.attack.dose_factor is None
                    else str(o.attack.dose_factor),
                    "detected": o.detected,
                    "time_to_detect_s": o.time_to_detect_s,
                    "rules_fired": list(o.analytics),
                }
                for o in self.outcomes
            ],
        }


# ---------------------------------------------------------------------- the nurses


@dataclass(slots=True)
class _Bed:
    """One pump at one bed, and what its nurse will do next."""

    pump: InfusionPump
    area: str
    mrn: str
    entries: tuple[DrugEntry, ...]
    next_at: int
    online_from: int = 0
    """The pump is off the network until then (a dead zone)."""
    forwarded: int = 0
    seq: int = 0
    occluded: bool = False


def _mid(low: Decimal | None, high: Decimal | None) -> Decimal | None:
    if low is not None and high is not None:
        return (Decimal(low) + Decimal(high)) / 2
    if high is not None:
        return Decimal(high) / 2
    return None


def _programme(entry: DrugEntry, mrn: str, dose: Decimal) -> ContinuousProgramme:
    weight = Decimal(70) if "/kg" in entry.dose_unit else None
    if weight is not None and entry.weight_kg is not None:
        weight = min(max(weight, entry.weight_kg.min_kg), entry.weight_kg.max_kg)
    vtbi = Decimal(250)
    if entry.vtbi_ml is not None:
        high = entry.vtbi_ml.soft_max or entry.vtbi_ml.hard_max
        if high is not None:
            vtbi = min(vtbi, Decimal(high))
    return ContinuousProgramme(
        entry.name,
        dose.quantize(Decimal("0.01")),
        entry.dose_unit,
        vtbi,
        weight_kg=weight,
        concentration=entry.to_concentration(),
        patient_id=mrn,
    )


def _usable(library: DrugLibrary, area: str) -> tuple[DrugEntry, ...]:
    care_area = library.care_area(area)
    if care_area is None:
        raise WardError(f"the drug library has no care area {area}")
    return tuple(
        e
        for e in care_area.entries
        if PumpKind.LVP in e.pump_kinds
        and e.pca is None
        and _mid(e.continuous.soft_min, e.continuous.soft_max) is not None
    )


class _Nurses:
    """The seeded behaviour of the ward's nurses, one action per pump at a time."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def act(self, bed: _Bed, now: int) -> None:
        pump = bed.pump
        rng = self.rng
        if bed.occluded:  # the nurse clears the line, silences the alarm, resumes
            pump.handle(SensorChange(SensorKind.OCCLUSION, active=False))
            pump.handle(AcknowledgeAlarm())
            pump.handle(Resume())
            bed.occluded = False
            bed.next_at = now + self._pause(bed, now)
            return
        if pump.alarms:
            pump.handle(AcknowledgeAlarm())
        state = pump.state
        if state is PumpState.PROGRAMMING or pump.awaiting_confirmation:
            pump.handle(Cancel())
            state = pump.state
        if state is PumpState.INFUSING:
            roll = rng.random()
            if roll < _OCCLUSION_P:
                pump.handle(SensorChange(SensorKind.OCCLUSION, active=True))
                bed.occluded = True
                bed.next_at = now + rng.randint(1, 6) * MS_PER_MINUTE
                return
            if roll < 0.55:
                self._titrate(bed)
            else:  # the bag ran low or the order stopped: stop, clear, new bag
                pump.handle(Pause())
                pump.handle(Clear())
                self._start(bed)
        elif state in (PumpState.PAUSED, PumpState.KVO, PumpState.IDLE):
            if state is not PumpState.IDLE:
                pump.handle(Clear())
            self._start(bed)
        bed.next_at = now + self._pause(bed, now)

    def accept(self, bed: _Bed, factor: Decimal) -> None:
        """An attack's consequence: the nurse confirms the running drug at ``factor`` times its
        dose (what the trial's pump took), with an override reason if the pump asks for one;
        the ward pump's own library may still refuse it."""
        running = bed.pump.running_programmes()
        programme = running[0].programme if running else None
        if not isinstance(programme, ContinuousProgramme):
            return
        if bed.pump.handle(
            Program(dataclasses.replace(programme, dose=programme.dose * factor))
        ).accepted:
            if not bed.pump.handle(Confirm()).accepted:
                bed.pump.handle(Confirm(override_reason="as ordered"))
            if bed.pump.awaiting_confirmation:
                bed.pump.handle(Cancel())

    def _pause(self, bed: _Bed, now: int) -> int:
        """Minutes to the nurse's next action at this bed; Med-Surg waits for the day shift."""
        wait = self.rng.randint(30, 240) * MS_PER_MINUTE
        if bed.area == "ICU":
            return wait
        at = now + wait
        hour = at % _DAY_MS // _HOUR_MS
        if _DAY_SHIFT[0] <= hour < _DAY_SHIFT[1]:
            return wait
        day = at // _DAY_MS + (1 if hour >= _DAY_SHIFT[1] else 0)
        morning = day * _DAY_MS + _DAY_SHIFT[0] * _HOUR_MS
        return morning + self.rng.randint(0, 90) * MS_PER_MINUTE - now

    def _start(self, bed: _Bed) -> None:
        entry = self.rng.choice(bed.entries)
        self._enter(bed, entry, self._dose(entry))

    def _titrate(self, bed: _Bed) -> None:
        running = bed.pump.running_programmes()
        programme = running[0].programme if running else None
        entry = next(
            (e for e in bed.entries if programme is not None and e.name == programme.drug), None
        )
        if entry is None or not isinstance(programme, ContinuousProgramme):
            self._start(bed)
            return
        factor = Decimal(str(round(self.rng.uniform(0.8, 1.2), 2)))
        low, high = entry.continuous.soft_min, entry.continuous.soft_max
        dose = programme.dose * factor
        if low is not None:
            dose = max(dose, Decimal(low))
        if high is not None:
            dose = min(dose, Decimal(high))
        self._enter(bed, entry, dose)

    def _dose(self, entry: DrugEntry) -> Decimal:
        limits = entry.continuous
        typical = _mid(limits.soft_min, limits.soft_max)
        assert typical is not None  # _usable keeps only entries with one
        roll = self.rng.random()
        if roll < _HARD_P and limits.hard_max is not None:
            return Decimal(limits.hard_max) * 10  # a decimal slip
        if roll < _HARD_P + _OVERRIDE_P and limits.soft_max is not None:
            ceiling = limits.hard_max if limits.hard_max is not None else limits.soft_max * 2
            return (Decimal(limits.soft_max) + Decimal(ceiling)) / 2
        return typical * Decimal(str(round(self.rng.uniform(0.8, 1.2), 2)))

    def _enter(self, bed: _Bed, entry: DrugEntry, dose: Decimal) -> None:
        """Program and confirm; an override is confirmed with a reason; a refusal (hard
        limit) is corrected to the typical dose."""
        pump = bed.pump
        result = pump.handle(Program(_programme(entry, bed.mrn, dose)))
        if result.accepted:
            if pump.handle(Confirm()).accepted:
                return
            if (
                pump.awaiting_confirmation
                and pump.handle(
                    Confirm(override_reason="titrating to clinical response per physician")
                ).accepted
            ):
                return
            if pump.awaiting_confirmation:
                pump.handle(Cancel())
        typical = _mid(entry.continuous.soft_min, entry.continuous.soft_max)
        if typical is None or dose == typical:
            return
        self._enter(bed, entry, typical)


# ---------------------------------------------------------------------- the ward run


def _event_attributes(bed: _Bed, entry: LogEntry) -> dict[str, str]:
    """The attributes ``server.device_runtime.SimulatedPump`` puts on a forwarded log entry."""
    attributes = {"source": entry.source.value}
    if entry.mdc_code is not None:
        attributes["mdc_code"] = str(entry.mdc_code)
    if entry.after is not None:
        attributes["state"] = entry.after.state
        attributes["rate_ml_h"] = f"{entry.after.rate_ml_h:f}"
        if entry.after.drug:
            attributes["drug"] = entry.after.drug[:200]
    attributes["patient_id"] = bed.mrn
    return attributes


def run_ward(
    config: WardConfig,
    attacks: Sequence[InjectedAttack] = (),
    settings: LiveSettings | None = None,
) -> WardRun:
    """Run the ward; its records through the server's live detection (``settings``: the
    server's ``[live]`` settings, defaults unless given), the findings and ``attacks``' events
    merged in time order into one monitor. An attack's ``dose_factor`` is applied to its pump's
    running infusion at its launch (what the nurse confirms, as in the trial)."""
    rng = random.Random(config.seed * 7919 + 17)
    clock = VirtualClock(START_MS)
    library = load_library(EXAMPLE_LIBRARY)
    updated = library_with_limits(library, version=library.version + 1)
    beds: list[_Bed] = []
    for i in range(config.pumps):
        area = "ICU" if i < config.icu else "Med-Surg"
        pump = InfusionPump(
            PumpKind.LVP, clock, serial=f"PUMP-{i + 1:04d}", library=library, care_area=area
        )
        pump.handle(PowerOn())
        first = START_MS + rng.randint(1, 60) * MS_PER_MINUTE
        beds.append(_Bed(pump, area, f"MRN-{5000 + i}", _usable(library, area), first))
    by_serial = {bed.pump.serial: bed for bed in beds}
    nurses = _Nurses(rng)
    end = START_MS + config.days * _DAY_MS
    update_at = START_MS + (config.days * _DAY_MS) // 2 + rng.randint(0, 120) * MS_PER_MINUTE
    library_updated = False
    consequences = sorted(
        (a for a in attacks if a.dose_factor is not None), key=lambda a: a.launch_ms
    )
    watch = ActivityWatch(settings)
    findings: list[SecurityEvent] = []
    kinds: Counter[str] = Counter()

    def send(message: DeviceEvent | StatusMessage, received: int) -> None:
        record = to_record(message)
        kinds[record.kind] += 1
        findings.extend(watch.observe(activity_from_record(record, received)))

    def forward(bed: _Bed, now: int) -> None:
        """New log entries to the server (held while the pump is off the network)."""
        if now < bed.online_from:
            return
        for entry in bed.pump.log.since(bed.forwarded):
            bed.seq += 1
            message = DeviceEvent(
                device_id=bed.pump.serial,
                seq=bed.seq,
                sent_at_ms=now,
                event=entry.kind,
                log_seq=entry.seq,
                occurred_at_ms=entry.time_ms,
                summary=(entry.detail or entry.kind.value)[:200],
                attributes=_event_attributes(bed, entry),
            )
            send(message, now)
            bed.forwarded = entry.seq

    step = STATUS_EVERY_S * 1000
    for now in range(START_MS + step, end + 1, step):
        clock.advance_to(now)
        if not library_updated and now >= update_at:  # the pharmacy's library update
            for bed in beds:
                bed.pump.handle(InstallLibrary(updated))
            library_updated = True
        while consequences and consequences[0].launch_ms <= now:
            attack = consequences.pop(0)
            assert attack.dose_factor is not None
            nurses.accept(by_serial[attack.device_id], attack.dose_factor)
        for bed in beds:
            if now >= bed.next_at:
                nurses.act(bed, now)
                if rng.random() < _DEAD_ZONE_P:
                    bed.online_from = now + rng.randint(2, 6) * MS_PER_MINUTE
            forward(bed, now)
            if now < bed.online_from:
                continue
            bed.seq += 1
            pump = bed.pump
            status = StatusMessage(
                device_id=pump.serial,
                seq=bed.seq,
                sent_at_ms=now,
                state=pump.state,
                care_area=bed.area,
                battery_percent=100,
                on_mains=True,
                firmware_version=FIRMWARE,
                library_version=None if pump.library is None else str(pump.library.version),
            )
            send(status, now)
    stream = sorted([*findings, *(e for a in attacks for e in a.events)], key=lambda e: e.time_ms)
    detections: list[Detection] = []
    monitor = Monitor(on_detection=detections.append)
    for event in stream:
        monitor.emit(event)
    return WardRun(
        tuple((d.time_ms, d.analytic_id) for d in detections),
        tuple((a.first_ms, a.analytic_id) for a in monitor.book),
        sum(kinds.values()),
        tuple(sorted(kinds.items())),
        len(findings),
    )


# ---------------------------------------------------------------------- the attacks


def _dose_factor(trial: Trial) -> Decimal | None:
    harm = trial.result.harm
    if not trial.result.succeeded or not isinstance(harm, InfusionHarm):
        return None
    if harm.programmed_dose is None or harm.prescribed_dose <= 0:
        return None
    if harm.programmed_dose == harm.prescribed_dose:
        return None
    return harm.programmed_dose / harm.prescribed_dose


def plan_ward_attacks(config: WardConfig) -> tuple[InjectedAttack, ...]:
    """Every hospital attack once, each trial (``run_trial``, seed ``S*100 + i``) shifted to a
    seeded random time of the ward and onto a seeded random ICU pump (the trial's scenario is
    one ICU bed), in a seeded order. Windows never overlap and keep ``_GAP_MIN`` between them:
    each attack starts at a random point of its share of the time the rest leaves free. Attacks
    that do not fit (a run too short for all eleven) are left out, last first."""
    rng = random.Random(config.seed * 104_729 + 3)
    entries = list(enumerate(HOSPITAL_CATALOGUE))
    rng.shuffle(entries)
    trials = [
        (entry.name, run_trial(entry.name, config.profile, seed=config.seed * 100 + index))
        for index, entry in entries
    ]
    spans = [
        max((e.time_ms for e in trial.events), default=START_MS)
        - START_MS
        + (WARD_ATTRIBUTION_MIN + _GAP_MIN) * MS_PER_MINUTE
        for _, trial in trials
    ]
    end = START_MS + config.days * _DAY_MS
    free_from = START_MS + _HOUR_MS
    while trials and free_from + sum(spans) > end:
        trials.pop()
        spans.pop()
    out: list[InjectedAttack] = []
    for n, (name, trial) in enumerate(trials):
        slack = end - free_from - sum(spans[n:])
        start = free_from + rng.randrange(0, max(slack // (len(trials) - n), 1))
        shift = start - START_MS
        device = f"PUMP-{rng.randint(1, config.icu):04d}"
        events = tuple(
            dataclasses.replace(
                e,
                time_ms=e.time_ms + shift,
                device_id=device if e.device_id == PUMP_ID else e.device_id,
            )
            for e in trial.events
        )
        launch = trial.caused[0].time_ms + shift if trial.caused else start
        last = max((e.time_ms for e in events), default=start)
        factor = _dose_factor(trial)
        out.append(
            InjectedAttack(
                name, device, start, launch, last, events, trial.result.succeeded, factor
            )
        )
        free_from = start + spans[n]
    return tuple(out)


def run_ward_evaluation(config: WardConfig, settings: LiveSettings | None = None) -> WardReport:
    """The ward with the hospital attacks injected, and its attack-free twin (same seed, same
    nurses); an attack instance is detected when the monitor made a detection (any rule, any
    device) between its launch and the end of its window; an alert opened on the twin, or on
    the attacked run outside every window, is false."""
    attacks = plan_ward_attacks(config)
    attacked = run_ward(config, attacks, settings)
    free = run_ward(config, (), settings)
    outcomes = []
    for attack in attacks:
        inside = [
            (t, a) for t, a in attacked.detections if attack.launch_ms <= t <= attack.until_ms
        ]
        outcomes.append(
            WardAttackOutcome(
                dataclasses.replace(attack, events=()),
                None if not inside else (inside[0][0] - attack.launch_ms) / 1000,
                tuple(dict.fromkeys(a for _, a in inside)),
            )
        )
    false_attacked = [
        (t, a)
        for t, a in attacked.alerts
        if not any(x.start_ms <= t <= x.until_ms for x in attacks)
    ]
    false_by: Counter[str] = Counter(a for _, a in [*false_attacked, *free.alerts])
    window_days = sum(a.until_ms - a.start_ms for a in attacks) / _DAY_MS
    return WardReport(
        config,
        tuple(outcomes),
        len(free.alerts),
        len(false_attacked),
        config.pumps * (2 * config.days - window_days),
        dict(false_by),
        attacked,
        free,
    )
