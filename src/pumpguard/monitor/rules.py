"""Detection rules over security events: documented, countable, exportable as Sigma.

A rule matches event codes (the stable dotted codes every package publishes), optionally only
when ``threshold`` of them arrive within ``window_ms`` for the same device or peer: one failed
MAC is noise on a radio, fifty in a minute is an attack. Every rule carries its rationale and,
where one fits, the MITRE ATT&CK for ICS technique, because an alert nobody can explain gets
ignored. The ``RuleEngine`` is itself a ``SecurityEventSink``: plug it wherever events flow.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from pumpguard.monitor.detections import MAX_EVIDENCE, Detection
from pumpguard.security_events import Component, SecurityEvent, Severity

__all__ = ["GroupBy", "Rule", "RuleEngine", "RuleError", "peer_host"]

_RULE_ID = re.compile(r"^PG-[A-Z][A-Z0-9]*-\d{3}$")
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")


class RuleError(ValueError):
    """A rule that cannot be loaded: bad id, no codes, nonsensical threshold."""


class GroupBy(StrEnum):
    """What a threshold counts per: the device that saw the events, or the peer that caused them."""

    DEVICE = "device"
    PEER = "peer"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    title: str
    severity: Severity
    component: Component
    codes: frozenset[str]
    rationale: str
    technique: str | None = None
    threshold: int = 1
    window_ms: int = 0
    group_by: GroupBy = GroupBy.DEVICE
    references: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", frozenset(str(c) for c in self.codes))
        problems: list[str] = []
        if not _RULE_ID.match(self.rule_id):
            problems.append(f"id {self.rule_id!r} is not of the form PG-AREA-NNN")
        if not self.codes:
            problems.append("no event codes to match")
        if not self.rationale.strip():
            problems.append("no rationale")
        if self.technique is not None and not _TECHNIQUE.match(self.technique):
            problems.append(f"technique {self.technique!r} is not an ATT&CK id (Tnnnn[.nnn])")
        if self.threshold < 1:
            problems.append("threshold must be at least 1")
        if self.threshold > 1 and self.window_ms <= 0:
            problems.append("a threshold above 1 needs a positive window")
        if problems:
            raise RuleError(f"rule {self.rule_id}: " + "; ".join(problems))

    def key(self, event: SecurityEvent) -> str | None:
        if self.group_by is GroupBy.DEVICE:
            return event.device_id
        if self.group_by is GroupBy.PEER:
            return peer_host(event.peer)
        return None


_HOST_PORT = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:\d{1,5}|(?P<host>[^:\[\]]+):\d{1,5}")


def peer_host(peer: str | None) -> str | None:
    """The host of a network peer written ``host:port`` or ``[v6]:port``; other peers (a radio
    address, ``pump:ID``, a certificate subject) as they are. Counting per peer means per
    attacking host: each TCP connection comes from a new source port, so counting per
    ``host:port`` would never reach a threshold."""
    if peer is None:
        return None
    found = _HOST_PORT.fullmatch(peer)
    if found is None:
        return peer
    return found.group("v6") or found.group("host")


DetectionListener = Callable[[Detection], None]


class RuleEngine:
    """Evaluates every rule on every event, in event order; deterministic in virtual time."""

    def __init__(self, rules: Iterable[Rule], on_detection: DetectionListener) -> None:
        self._rules = tuple(rules)
        seen: set[str] = set()
        for rule in self._rules:
            if rule.rule_id in seen:
                raise RuleError(f"rule id {rule.rule_id} is used twice")
            seen.add(rule.rule_id)
        self._by_code: dict[str, list[Rule]] = {}
        for rule in self._rules:
            for code in rule.codes:
                self._by_code.setdefault(code, []).append(rule)
        self._recent: dict[tuple[str, str | None], deque[SecurityEvent]] = {}
        self._on_detection = on_detection

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    def emit(self, event: SecurityEvent) -> None:
        for rule in self._by_code.get(event.code, ()):
            self._evaluate(rule, event)

    def _evaluate(self, rule: Rule, event: SecurityEvent) -> None:
        key = rule.key(event)
        if rule.threshold == 1:
            self._detect(rule, event, (event,), 1)
            return
        recent = self._recent.setdefault((rule.rule_id, key), deque())
        recent.append(event)
        while recent and event.time_ms - recent[0].time_ms > rule.window_ms:
            recent.popleft()
        if len(recent) >= rule.threshold:
            count = len(recent)
            evidence = tuple(recent)[-MAX_EVIDENCE:]
            recent.clear()
            self._detect(rule, event, evidence, count)

    def _detect(
        self, rule: Rule, event: SecurityEvent, evidence: tuple[SecurityEvent, ...], count: int
    ) -> None:
        what = event.message if count == 1 else f"{count} events like: {event.message}"
        self._on_detection(
            Detection(
                analytic_id=rule.rule_id,
                title=rule.title,
                time_ms=event.time_ms,
                severity=rule.severity,
                message=what,
                device_id=event.device_id,
                peer=event.peer,
                technique=rule.technique,
                evidence=evidence,
            )
        )
