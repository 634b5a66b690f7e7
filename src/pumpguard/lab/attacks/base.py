"""What every catalogue entry shares, and the insulin entries' scenario, twin and verdict.

``CatalogueAttack`` is the contract of the whole catalogue: a name, the system it attacks
(``System``), its references and the control that should stop it, and ``trial``, which runs one
instance (profile, patient, seed) and returns a ``Trial``: the ``AttackResult`` and the security
events of the attacked run. ``Attack`` is the insulin entries' base (its first name, kept so the
insulin modules need no change); the hospital entries' base is ``hospital_ward.HospitalAttack``.
Both systems report through one ``AttackResult`` and one JSON shape: ``harm`` is a ``Harm``
(insulin: the virtual patient's glucose) or an ``InfusionHarm`` (hospital: what the infusion
pump delivers against the prescription); the keys of the other system are null in the JSON.

An insulin attack runs on a ``LinkedLoop`` built from the same ``LinkedLoopConfig`` as its twin
(same patient, seeds, meals, profile); the twin runs without the attacker. Everything the result
says is measured on the two runs: what the attacker reached (``Verdict``, from the pump's
handled commands, the controller's readings, the sniffer's decodes, the pump's battery), which
security events the attack caused (events of the attacked run that the twin does not have), and the
harm on the virtual patient in the 24 hours from the attack (insulin, lowest glucose, minutes
below 54 mg/dL, each against the twin).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

from pumpguard.interop import InteropEvent
from pumpguard.lab.linked_loop import FloatArray, LinkedLoop, LinkedLoopConfig, LoopEventCode
from pumpguard.link import LinkEventCode, LinkProfile
from pumpguard.pki import PkiEvent
from pumpguard.security_events import SecurityEvent
from pumpguard.updates import UpdateEvent

__all__ = [
    "ATTACK_MINUTE",
    "DEFAULT_PATIENT",
    "HARM_KEYS",
    "HARM_MINUTES",
    "NOT_A_DETECTION",
    "Attack",
    "AttackResult",
    "CatalogueAttack",
    "GlucoseTrace",
    "Harm",
    "InfusionHarm",
    "System",
    "Trial",
    "Twin",
    "Verdict",
    "control_for",
    "twin_run",
]

ATTACK_MINUTE = 8 * 60
"""08:00 on the first day: after breakfast (07:00), so there is a meal bolus to record."""
HARM_MINUTES = 24 * 60
DEFAULT_PATIENT = "adult#001"


class System(StrEnum):
    """The two systems of the catalogue (issue 4's ``system`` key)."""

    INSULIN = "insulin"
    HOSPITAL = "hospital"


_CONTROLS: dict[str, str] = {
    LinkEventCode.FRAME_MALFORMED: "frame-validation",
    LinkEventCode.FRAME_CRC: "frame-validation",
    LinkEventCode.PDU_INVALID: "frame-validation",
    LinkEventCode.FRAME_WRONG_PROFILE: "no-downgrade",
    LinkEventCode.REFLECTION: "reflection-check",
    LinkEventCode.BAD_MAC: "aead",
    LinkEventCode.UNKNOWN_SENDER: "pairing",
    LinkEventCode.NO_SESSION: "session",
    LinkEventCode.SESSION_BAD_MAC: "session-authentication",
    LinkEventCode.REPLAY: "replay-window",
    LinkEventCode.COUNTER_JUMP: "replay-window",
    LinkEventCode.ROLE_DENIED: "role-authorisation",
    LinkEventCode.RATE_LIMITED: "rate-limit",
    LinkEventCode.E2E_CRC: "e2e-protection",
    LinkEventCode.E2E_COUNTER: "e2e-protection",
    LinkEventCode.PAIRING_OUTSIDE_WINDOW: "pairing-window",
    LinkEventCode.PAIRING_UNSOLICITED: "pairing-window",
    LinkEventCode.PAIRING_FAILED: "numeric-comparison",
    LinkEventCode.PAIRING_REJECTED: "numeric-comparison",
    LinkEventCode.WAKEUP_BUDGET_EXHAUSTED: "wakeup-budget",
    LinkEventCode.LINK_LOST: "link-loss-fallback",
    LoopEventCode.CGM_IMPLAUSIBLE: "cgm-plausibility",
    LoopEventCode.CGM_METER_MISMATCH: "cgm-plausibility",
    UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET: "signature-threshold",
    UpdateEvent.TARGET_HASH_MISMATCH: "target-hash",
    UpdateEvent.ROLLBACK: "anti-rollback",
    UpdateEvent.TARGET_ROLLBACK: "anti-rollback",
    UpdateEvent.FREEZE: "metadata-expiry",
    UpdateEvent.MIX_AND_MATCH: "snapshot-consistency",
    UpdateEvent.INVALID_TARGET: "target-validation",
    UpdateEvent.UNKNOWN_TARGET: "target-validation",
    UpdateEvent.MALFORMED_METADATA: "target-validation",
    UpdateEvent.ENDLESS_DATA: "target-validation",
    PkiEvent.TLS_NO_CLIENT_CERT: "mutual-tls",
    PkiEvent.TLS_UNKNOWN_CA: "mutual-tls",
    PkiEvent.TLS_BAD_CERT: "mutual-tls",
    PkiEvent.TLS_CERT_EXPIRED: "mutual-tls",
    PkiEvent.TLS_CERT_REVOKED: "mutual-tls",
    PkiEvent.TLS_WRONG_PURPOSE: "mutual-tls",
    PkiEvent.TLS_HANDSHAKE_FAILED: "mutual-tls",
    PkiEvent.PEER_BAD_IDENTITY: "mutual-tls",
    InteropEvent.UNAUTHENTICATED: "mutual-tls",
    InteropEvent.WRONG_PEER_KIND: "mutual-tls",
    InteropEvent.REPLAYED: "replay-memory",
    InteropEvent.STALE: "order-freshness",
    InteropEvent.PATIENT_MISMATCH: "patient-match",
    InteropEvent.HARD_LIMIT: "order-check",
    InteropEvent.MALFORMED: "hl7-validation",
}
NOT_A_DETECTION = frozenset(
    {
        str(LinkEventCode.PAIRING_COMPLETED),
        str(UpdateEvent.VERIFIED),
        str(UpdateEvent.PUBLISHED),
        str(InteropEvent.CLEARTEXT),
        str(PkiEvent.CERT_ISSUED),
    }
)
"""Codes that record normal operation (a pairing, a verified update, a publication, every
plain MLLP connection of the legacy profile): never the sign of an attack."""


def control_for(code: str) -> str | None:
    """The control a security event code stands for (``link.replay`` -> ``replay-window``,
    ``updates.rollback`` -> ``anti-rollback``, ``pki.tls.no_client_cert`` -> ``mutual-tls``)."""
    return _CONTROLS.get(code)


@dataclass(frozen=True, slots=True)
class Harm:
    """The 24 hours from the attack, on the virtual patient, against the attack-free twin."""

    extra_insulin_u: float
    min_bg_mgdl: float
    minutes_below_54: int
    """Minutes below 54 mg/dL the attack added (attacked run minus twin; negative if fewer)."""
    baseline_min_bg_mgdl: float
    baseline_minutes_below_54: int
    max_bg_mgdl: float = 0.0
    baseline_max_bg_mgdl: float = 0.0
    minutes_above_250: int = 0
    """Minutes above 250 mg/dL the attack added (withheld insulin shows here)."""

    def to_json(self) -> dict[str, object]:
        found: dict[str, object] = {
            "extra_insulin_u": round(self.extra_insulin_u, 3),
            "min_bg_mgdl": round(self.min_bg_mgdl, 1),
            "minutes_below_54": self.minutes_below_54,
            "baseline_min_bg_mgdl": round(self.baseline_min_bg_mgdl, 1),
            "baseline_minutes_below_54": self.baseline_minutes_below_54,
            "max_bg_mgdl": round(self.max_bg_mgdl, 1),
            "baseline_max_bg_mgdl": round(self.baseline_max_bg_mgdl, 1),
            "minutes_above_250": self.minutes_above_250,
        }
        return _all_harm_keys(found)

    def summary(self) -> str:
        return (
            f"{self.extra_insulin_u:+.2f} U, min {self.min_bg_mgdl:.0f} mg/dL, "
            f"{self.minutes_below_54:+d} min <54"
        )


@dataclass(frozen=True, slots=True)
class InfusionHarm:
    """What the hospital patient gets from the pump in the window after the attack.

    Measured on the infusion pump model (``devices.infusion``): ``delivered_ml`` is the volume
    the attacked pump infused in ``window_min``, ``prescribed_ml`` what the same pump model
    infuses on the prescription in the same time. ``programmed_dose`` is what the pump took in
    (pre-filled by an order, or the clinician's entry the library let through; None if the
    pump refused it). Library attacks also report the hard maximum of the prescribed drug the
    pump enforces after the attack against the legitimate library's.
    """

    drug: str
    dose_unit: str
    prescribed_dose: Decimal
    programmed_dose: Decimal | None
    prescribed_ml: Decimal
    delivered_ml: Decimal
    window_min: int
    legitimate_hard_max: Decimal | None = None
    enforced_hard_max: Decimal | None = None

    @property
    def overdose_factor(self) -> float | None:
        if self.prescribed_ml <= 0:
            return None
        return float(self.delivered_ml / self.prescribed_ml)

    @property
    def extra_ml(self) -> Decimal:
        return self.delivered_ml - self.prescribed_ml

    def to_json(self) -> dict[str, object]:
        factor = self.overdose_factor
        found: dict[str, object] = {
            "drug": self.drug,
            "dose_unit": self.dose_unit,
            "prescribed_dose": _number(self.prescribed_dose),
            "programmed_dose": _number(self.programmed_dose),
            "prescribed_ml": _number(self.prescribed_ml),
            "delivered_ml": _number(self.delivered_ml),
            "overdose_factor": None if factor is None else round(factor, 2),
            "window_min": self.window_min,
            "legitimate_hard_max": _number(self.legitimate_hard_max),
            "enforced_hard_max": _number(self.enforced_hard_max),
        }
        return _all_harm_keys(found)

    def summary(self) -> str:
        factor = self.overdose_factor
        times = "" if factor is None else f" (x{factor:.2f})"
        return (
            f"{self.drug}: {_number(self.delivered_ml)} mL delivered, "
            f"{_number(self.prescribed_ml)} mL prescribed{times} in {self.window_min} min"
        )


HARM_KEYS: tuple[str, ...] = (
    "extra_insulin_u",
    "min_bg_mgdl",
    "minutes_below_54",
    "baseline_min_bg_mgdl",
    "baseline_minutes_below_54",
    "max_bg_mgdl",
    "baseline_max_bg_mgdl",
    "minutes_above_250",
    "drug",
    "dose_unit",
    "prescribed_dose",
    "programmed_dose",
    "prescribed_ml",
    "delivered_ml",
    "overdose_factor",
    "window_min",
    "legitimate_hard_max",
    "enforced_hard_max",
)
"""Every key of the JSON ``harm`` object, for both systems; the other system's keys are null."""


def _all_harm_keys(found: dict[str, object]) -> dict[str, object]:
    return {key: found.get(key) for key in HARM_KEYS}


def _number(value: Decimal | None) -> float | None:
    return None if value is None else round(float(value), 3)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the attacker reached, measured; ``evidence`` says what was measured."""

    succeeded: bool
    evidence: str


@dataclass(frozen=True, slots=True)
class AttackResult:
    name: str
    system: str
    reference: str
    profile: str
    patient: str
    seed: int
    succeeded: bool
    blocked_by: str | None
    logged: bool
    harm: Harm | InfusionHarm
    availability: bool
    evidence: str
    events: tuple[str, ...] = field(default=())
    """Codes of the security events the attack caused, first occurrence order."""
    foreign_commands: int = 0
    """Commands the pump accepted that its controller never sent."""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "system": self.system,
            "reference": self.reference,
            "profile": self.profile,
            "patient": self.patient,
            "seed": self.seed,
            "succeeded": self.succeeded,
            "blocked_by": self.blocked_by,
            "logged": self.logged,
            "availability": self.availability,
            "harm": self.harm.to_json(),
            "evidence": self.evidence,
            "events": list(self.events),
            "foreign_commands": self.foreign_commands,
        }


@dataclass(frozen=True, slots=True, eq=False)
class GlucoseTrace:
    """The glucose of an insulin trial's attacked run and of its twin, one value a minute from
    the run's start, kept so a report can draw the attack's clinical effect without re-running."""

    attacked_bg: FloatArray
    twin_bg: FloatArray
    attack_minute: int


@dataclass(frozen=True, slots=True)
class Trial:
    """One run of one attack instance: its result, every security event of the attacked run
    in emission order, and the ones the attack caused (what ``logged`` and ``events`` count).
    Insulin trials also carry the glucose ``trace``; hospital trials carry None."""

    result: AttackResult
    events: tuple[SecurityEvent, ...]
    caused: tuple[SecurityEvent, ...]
    trace: GlucoseTrace | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Twin:
    bg: FloatArray
    insulin_u: FloatArray
    events: tuple[SecurityEvent, ...]
    pump_charge_uc: FloatArray


_TWINS: dict[LinkedLoopConfig, Twin] = {}
_TWIN_CACHE = 16


def twin_run(config: LinkedLoopConfig) -> Twin:
    """The attack-free run of ``config`` (cached: every attack on one scenario shares it)."""
    found = _TWINS.get(config)
    if found is None:
        loop = LinkedLoop(config)
        loop.run()
        found = Twin(loop.bg, loop.insulin_u, tuple(loop.events), loop.pump_charge_uc)
        if len(_TWINS) >= _TWIN_CACHE:
            _TWINS.pop(next(iter(_TWINS)))
        _TWINS[config] = found
    return found


class CatalogueAttack(ABC):
    """One catalogue entry of either system. ``trial`` runs one instance; an instance keeps
    state for one run, so take a fresh one (``get_attack``) per run."""

    name: ClassVar[str]
    system: ClassVar[System]
    references: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    goal: ClassVar[str]
    control: ClassVar[str]
    """The control of the secure profile that should stop (or, for availability, detect) it."""
    availability: ClassVar[bool] = False
    passive: ClassVar[bool] = False
    """Only listens: nothing on the air to log, in either profile."""
    detection_only: ClassVar[bool] = False
    """The secure profile can only detect it and fall back (therapy changes, safely)."""

    @property
    def reference(self) -> str:
        return ", ".join(self.references)

    @abstractmethod
    def trial(self, profile: LinkProfile, patient: str = DEFAULT_PATIENT, seed: int = 1) -> Trial:
        """Run this instance against ``profile`` (legacy or secure; the catalogue's profiles
        are the link's two, and select the hospital system's profile too). ``patient`` names
        the virtual insulin patient; hospital entries run their ward's patient and ignore it."""

    def run(
        self, profile: LinkProfile, patient: str = DEFAULT_PATIENT, seed: int = 1
    ) -> AttackResult:
        return self.trial(profile, patient, seed).result


class Attack(CatalogueAttack):
    """An insulin catalogue entry. Subclasses set the class attributes and the three steps."""

    system: ClassVar[System] = System.INSULIN
    meter_remote: ClassVar[bool] = False

    def config(self, profile: LinkProfile, patient: str, seed: int) -> LinkedLoopConfig:
        return LinkedLoopConfig(
            profile,
            patient=patient,
            seed=seed,
            minutes=ATTACK_MINUTE + HARM_MINUTES,
            meter_remote=self.meter_remote,
        )

    def prepare(self, loop: LinkedLoop) -> None:
        """Before the run starts (an attacker listening from the beginning)."""

    @abstractmethod
    def launch(self, loop: LinkedLoop) -> None:
        """At ``ATTACK_MINUTE``: act, or install per-minute hooks."""

    @abstractmethod
    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        """After the run: did the attacker reach the goal? Measured, never assumed."""

    def trial(self, profile: LinkProfile, patient: str = DEFAULT_PATIENT, seed: int = 1) -> Trial:
        return self.play(profile, patient, seed)[0]

    def play(
        self, profile: LinkProfile, patient: str = DEFAULT_PATIENT, seed: int = 1
    ) -> tuple[Trial, LinkedLoop]:
        """``trial``, and the attacked loop after the run, for callers that observe more of it
        (the monitor's telemetry in ``lab.evaluation``)."""
        config = self.config(profile, patient, seed)
        twin = twin_run(config)
        loop = LinkedLoop(config)
        self.prepare(loop)
        loop.run_until(ATTACK_MINUTE)
        self.launch(loop)
        loop.run()
        verdict = self.verdict(loop, twin)
        events = tuple(loop.events)
        caused = tuple(e for e in _caused(events, twin.events) if e.code not in NOT_A_DETECTION)
        codes = tuple(dict.fromkeys(e.code for e in caused))
        blocked_by = None if verdict.succeeded else self._blocked_by(loop, codes)
        result = AttackResult(
            self.name,
            self.system,
            self.reference,
            str(profile),
            patient,
            seed,
            bool(verdict.succeeded),
            blocked_by,
            bool(codes),
            _harm(loop, twin),
            self.availability,
            verdict.evidence,
            codes,
            sum(1 for c in loop.radio.foreign() if c.result.accepted),
        )
        return Trial(result, events, caused, GlucoseTrace(loop.bg, twin.bg, ATTACK_MINUTE)), loop

    def _blocked_by(self, loop: LinkedLoop, codes: tuple[str, ...]) -> str | None:
        """The control that stopped it: the one this entry names if its events show it, else
        the first one they show; with no event, the pump's own limits if the firmware refused
        the attacker's commands, or (a passive attack on the secure link) the entry's
        control; otherwise unknown."""
        controls = [c for c in (control_for(code) for code in codes) if c is not None]
        if controls:
            return self.control if self.control in controls else controls[0]
        if any(not c.result.accepted for c in loop.radio.foreign()):
            return "pump-limits"
        if self.passive and loop.profile is LinkProfile.SECURE:
            return self.control
        return None


def _caused(
    attacked: tuple[SecurityEvent, ...], twin: tuple[SecurityEvent, ...]
) -> list[SecurityEvent]:
    """Events of the attacked run the twin does not have (same time, code and device)."""
    left = Counter((e.time_ms, e.code, e.device_id) for e in twin)
    out = []
    for event in attacked:
        key = (event.time_ms, event.code, event.device_id)
        if left[key]:
            left[key] -= 1
        else:
            out.append(event)
    return out


def _harm(loop: LinkedLoop, twin: Twin) -> Harm:
    lo, hi = ATTACK_MINUTE, ATTACK_MINUTE + HARM_MINUTES
    bg, base = loop.bg[lo:hi], twin.bg[lo:hi]
    below, base_below = int((bg < 54).sum()), int((base < 54).sum())
    return Harm(
        float(loop.insulin_u[lo:hi].sum() - twin.insulin_u[lo:hi].sum()),
        float(bg.min()),
        below - base_below,
        float(base.min()),
        base_below,
        float(bg.max()),
        float(base.max()),
        int((bg > 250).sum()) - int((base > 250).sum()),
    )
