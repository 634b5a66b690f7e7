"""What every catalogue entry shares: the scenario, the attack-free twin, and the verdict.

An attack runs on a ``LinkedLoop`` built from the same ``LinkedLoopConfig`` as its twin (same
patient, seeds, meals, profile); the twin runs without the attacker. Everything the result says
is measured on the two runs: what the attacker reached (``Verdict``, from the pump's handled
commands, the controller's readings, the sniffer's decodes, the pump's battery), which security
events the attack caused (events of the attacked run that the twin does not have), and the
harm on the virtual patient in the 24 hours from the attack (insulin, lowest glucose, minutes
below 54 mg/dL, each against the twin).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from pumpguard.lab.linked_loop import FloatArray, LinkedLoop, LinkedLoopConfig, LoopEventCode
from pumpguard.link import LinkEventCode, LinkProfile
from pumpguard.security_events import SecurityEvent

__all__ = [
    "ATTACK_MINUTE",
    "HARM_MINUTES",
    "Attack",
    "AttackResult",
    "Harm",
    "Twin",
    "Verdict",
    "control_for",
    "twin_run",
]

ATTACK_MINUTE = 8 * 60
"""08:00 on the first day: after breakfast (07:00), so there is a meal bolus to record."""
HARM_MINUTES = 24 * 60

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
}
_NOT_A_DETECTION = frozenset({str(LinkEventCode.PAIRING_COMPLETED)})


def control_for(code: str) -> str | None:
    """The control a security event code stands for (``link.replay`` -> ``replay-window``)."""
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
    harm: Harm
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
            "harm": {
                "extra_insulin_u": round(self.harm.extra_insulin_u, 3),
                "min_bg_mgdl": round(self.harm.min_bg_mgdl, 1),
                "minutes_below_54": self.harm.minutes_below_54,
                "baseline_min_bg_mgdl": round(self.harm.baseline_min_bg_mgdl, 1),
                "baseline_minutes_below_54": self.harm.baseline_minutes_below_54,
                "max_bg_mgdl": round(self.harm.max_bg_mgdl, 1),
                "baseline_max_bg_mgdl": round(self.harm.baseline_max_bg_mgdl, 1),
                "minutes_above_250": self.harm.minutes_above_250,
            },
            "evidence": self.evidence,
            "events": list(self.events),
            "foreign_commands": self.foreign_commands,
        }


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


class Attack(ABC):
    """One catalogue entry. Subclasses set the class attributes and the three steps."""

    name: ClassVar[str]
    system: ClassVar[str] = "insulin"
    references: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    goal: ClassVar[str]
    control: ClassVar[str]
    """The control of the secure profile that should stop (or, for availability, detect) it."""
    availability: ClassVar[bool] = False
    passive: ClassVar[bool] = False
    """Only listens: nothing on the air to log, in either profile."""
    meter_remote: ClassVar[bool] = False
    detection_only: ClassVar[bool] = False
    """The secure profile can only detect it and fall back (therapy changes, safely)."""

    @property
    def reference(self) -> str:
        return ", ".join(self.references)

    def config(self, profile: LinkProfile, patient: str, seed: int) -> LinkedLoopConfig:
        return LinkedLoopConfig(
            profile,
            patient=patient,
            seed=seed,
            minutes=ATTACK_MINUTE + HARM_MINUTES,
            meter_remote=self.meter_remote,
        )

    def prepare(self, loop: LinkedLoop) -> None:  # noqa: B027 - most attacks need no set-up
        """Before the run starts (an attacker listening from the beginning)."""

    @abstractmethod
    def launch(self, loop: LinkedLoop) -> None:
        """At ``ATTACK_MINUTE``: act, or install per-minute hooks."""

    @abstractmethod
    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        """After the run: did the attacker reach the goal? Measured, never assumed."""

    def run(self, profile: LinkProfile, patient: str = "adult#001", seed: int = 1) -> AttackResult:
        config = self.config(profile, patient, seed)
        twin = twin_run(config)
        loop = LinkedLoop(config)
        self.prepare(loop)
        loop.run_until(ATTACK_MINUTE)
        self.launch(loop)
        loop.run()
        verdict = self.verdict(loop, twin)
        caused = _caused(tuple(loop.events), twin.events)
        codes = tuple(dict.fromkeys(e.code for e in caused if e.code not in _NOT_A_DETECTION))
        blocked_by = None if verdict.succeeded else self._blocked_by(loop, codes)
        return AttackResult(
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
