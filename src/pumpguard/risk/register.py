"""The risk register: asset group x threat x vulnerability, scored and traced to controls.

Formulas (docs/risk/README.md has the full text and the reasons):

* likelihood ``L`` in [0, 1]: the CVSS exploitability of the vulnerability with the
  environmental *modified* metrics the answers imply (MAV, MAC, MPR, MUI), divided by the
  largest exploitability CVSS allows, times the multiplicative factors of the answers that
  apply; 0 when a precondition is answered "no". CVSS v2 vectors use the v2 exploitability
  and the answers' v2 factors.
* impact ``I`` in [0, 1]: the therapy-delivery impact of the threat for this kind of
  device (after the MITRE medical-device rubric's emphasis on patient harm), times the
  vulnerability's CVSS impact on the matching property (C for PHI disclosure, I for dose
  change, A for therapy disruption: High 1, Low 0.5).
* score ``R = 10 * L * I``; rating low < 1.5 <= medium < 3.5 <= high < 6 <= critical.
* residual: ``L * prod(1 - l_c)`` and ``I * prod(1 - i_c)`` over the *implemented*
  pumpguard controls that apply; planned controls earn nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pumpguard.risk._cvss import metrics, score
from pumpguard.risk.advisories import Advisory, KnowledgeBase, Threat, Vulnerability, Weakness
from pumpguard.risk.controls import Control, ControlCatalogue
from pumpguard.risk.inventory import Match, MatchReport, MatchStatus
from pumpguard.risk.models import DeviceModel, ModelCatalogue, TherapyRole
from pumpguard.risk.questionnaire import Answer, AnswerSet, Effect, Question, Questionnaires

__all__ = [
    "AssetGroup",
    "Rating",
    "Risk",
    "RiskRegister",
    "Score",
    "Unanswered",
    "build_register",
    "rating_for",
]

_AV3 = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC3 = {"L": 0.77, "H": 0.44}
_PR3_U = {"N": 0.85, "L": 0.62, "H": 0.27}
_PR3_C = {"N": 0.85, "L": 0.68, "H": 0.5}
_UI3 = {"N": 0.85, "R": 0.62}
_MAX3 = 8.22 * 0.85 * 0.77 * 0.85 * 0.85
_AV2 = {"L": 0.395, "A": 0.646, "N": 1.0}
_AC2 = {"H": 0.35, "M": 0.61, "L": 0.71}
_AU2 = {"M": 0.45, "S": 0.56, "N": 0.704}
_IMPACT_WEIGHT = {"H": 1.0, "L": 0.5, "C": 1.0, "P": 0.5, "N": 0.0}


class Rating(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


def rating_for(score: float) -> Rating:
    if score >= 6.0:
        return Rating.CRITICAL
    if score >= 3.5:
        return Rating.HIGH
    if score >= 1.5:
        return Rating.MEDIUM
    return Rating.LOW


def _band(value: float) -> int:
    return max(1, min(5, math.ceil(value * 5 - 1e-9)))


@dataclass(frozen=True, slots=True)
class Score:
    likelihood: float
    impact: float

    @property
    def score(self) -> float:
        return round(10 * self.likelihood * self.impact, 2)

    @property
    def rating(self) -> Rating:
        return rating_for(self.score)

    @property
    def likelihood_band(self) -> int:
        return _band(self.likelihood)

    @property
    def impact_band(self) -> int:
        return _band(self.impact)


@dataclass(frozen=True, slots=True)
class AssetGroup:
    """Devices of one model at one software version in one zone."""

    model_key: str
    model_name: str
    version: str
    zone: str
    devices: int
    lines: tuple[int, ...]
    names_as_given: tuple[str, ...]

    @property
    def label(self) -> str:
        version = self.version or "version unknown"
        return f"{self.model_name} {version} ({self.zone or 'no zone'})"


@dataclass(frozen=True, slots=True)
class Unanswered:
    questionnaire: str
    model_key: str | None
    question: Question

    @property
    def where(self) -> str:
        return "hospital" if self.model_key is None else f"devices.{self.model_key}"


@dataclass(frozen=True, slots=True)
class Risk:
    id: str
    asset: AssetGroup
    advisory: Advisory
    vulnerability: Vulnerability
    threat: Threat
    status: MatchStatus
    therapy_impact: float
    environmental_vector: str
    environmental_score: float
    inherent: Score
    current: Score
    residual: Score
    credited: tuple[Control, ...]
    recommended: tuple[Control, ...]
    gaps: tuple[Question, ...]
    notes: tuple[str, ...]
    precondition_met: bool

    @property
    def cvss_version(self) -> str:
        return "3" if self.vulnerability.cvss_v3 is not None else "2"


@dataclass(frozen=True, slots=True)
class RiskRegister:
    risks: tuple[Risk, ...]
    matches: MatchReport
    unanswered: tuple[Unanswered, ...]
    answers_source: str
    controls: ControlCatalogue
    notes: tuple[str, ...] = field(default_factory=tuple)

    def top(self, count: int = 10) -> list[Risk]:
        return sorted(self.risks, key=lambda r: (-r.current.score, -r.asset.devices, r.id))[:count]

    def heat_map(self, which: str = "current") -> list[list[int]]:
        """cells[likelihood_band - 1][impact_band - 1] = number of risks (scores > 0)."""
        cells = [[0] * 5 for _ in range(5)]
        for risk in self.risks:
            score: Score = getattr(risk, which)
            if score.score > 0:
                cells[score.likelihood_band - 1][score.impact_band - 1] += 1
        return cells


def _therapy_impact(
    threat: Threat, model: DeviceModel, device_answers: Mapping[str, Answer]
) -> float:
    role = model.role
    if threat is Threat.PHI_DISCLOSURE:
        if role is TherapyRole.RECORDS:
            return 0.5
        return 0.5 if device_answers.get("dev.stores_phi", "yes") == "yes" else 0.2
    if threat is Threat.DOSE_CHANGE:
        high_alert = device_answers.get("dev.high_alert_drugs", "yes") == "yes"
        return {
            TherapyRole.DELIVERS: 1.0 if high_alert else 0.7,
            TherapyRole.COMMANDS: 0.8 if high_alert else 0.6,
            TherapyRole.SUPPORTS: 0.5,
            TherapyRole.RECORDS: 0.2,
        }[role]
    sustaining = device_answers.get("dev.life_sustaining", "yes") == "yes"
    return {
        TherapyRole.DELIVERS: 0.8 if sustaining else 0.5,
        TherapyRole.COMMANDS: 0.4,
        TherapyRole.SUPPORTS: 0.4,
        TherapyRole.RECORDS: 0.1,
    }[role]


@dataclass(slots=True)
class _Applied:
    effects: list[tuple[Question, Answer, Effect]]
    gaps: list[Question]
    precondition_met: bool
    notes: list[str]


def _applied_effects(
    vuln: Vulnerability,
    attack_vector: str,
    questionnaires: Questionnaires,
    hospital: Mapping[str, Answer],
    device: Mapping[str, Answer],
) -> _Applied:
    applied = _Applied([], [], True, [])
    for questionnaire, answers in (
        (questionnaires.hospital, hospital),
        (questionnaires.device, device),
    ):
        for question in questionnaire.questions:
            answer = answers.get(question.id, question.assume)
            if question.precondition:
                if question.id in vuln.preconditions and answer == "no":
                    applied.precondition_met = False
                    applied.notes.append(f"{question.id} = no: precondition not met")
                continue
            effect = question.effect(answer)
            if effect.applies(vuln.weaknesses, attack_vector) and effect != Effect():
                applied.effects.append((question, answer, effect))
            protective = question.effect("yes")
            if (
                questionnaire is questionnaires.hospital
                and answer != "yes"
                and protective != Effect()
                and protective.applies(vuln.weaknesses, attack_vector)
            ):
                applied.gaps.append(question)
    return applied


def _likelihood_v3(vector: str, modified: Mapping[str, str]) -> float:
    base = metrics(vector, "3")
    av = modified.get("AV", base["AV"])
    ac = modified.get("AC", base["AC"])
    pr = modified.get("PR", base["PR"])
    ui = modified.get("UI", base["UI"])
    pr_weights = _PR3_C if base["S"] == "C" else _PR3_U
    return 8.22 * _AV3[av] * _AC3[ac] * pr_weights[pr] * _UI3[ui] / _MAX3


def _likelihood_v2(vector: str) -> float:
    base = metrics(vector, "2")
    return 20 * _AV2[base["AV"]] * _AC2[base["AC"]] * _AU2[base["Au"]] / 10


def _environmental(
    vuln: Vulnerability, modified: Mapping[str, str], requirements: Mapping[str, str]
) -> tuple[str, float]:
    extra = [f"{k}:{v}" for k, v in requirements.items()]
    if vuln.cvss_v3 is not None:
        extra = [f"M{k}:{v}" for k, v in modified.items()] + extra
    scored = score("/".join([vuln.vector, *extra]), vuln.cvss_version)
    return scored.vector, scored.environmental


def _score_for(
    vuln: Vulnerability,
    threat: Threat,
    model: DeviceModel,
    questionnaires: Questionnaires,
    hospital: Mapping[str, Answer],
    device: Mapping[str, Answer],
) -> tuple[Score, str, float, _Applied, float]:
    base = metrics(vuln.vector, vuln.cvss_version)
    attack_vector = base["AV"]
    applied = _applied_effects(vuln, attack_vector, questionnaires, hospital, device)
    modified: dict[str, str] = {}
    requirements: dict[str, str] = {}
    factor = 1.0
    for _question, _answer, effect in applied.effects:
        for metric, mapping in effect.modify.items():
            current = modified.get(metric, base[metric])
            if current in mapping:
                modified[metric] = mapping[current]
        requirements.update({str(k): str(v) for k, v in effect.requirement.items()})
        factor *= effect.factor
        if vuln.cvss_v3 is None:
            factor *= {str(k): v for k, v in effect.factor_v2.items()}.get(attack_vector, 1.0)
    if vuln.cvss_v3 is not None:
        likelihood = _likelihood_v3(vuln.cvss_v3, modified)
    else:
        assert vuln.cvss_v2 is not None
        likelihood = _likelihood_v2(vuln.cvss_v2)
        modified = {}
    likelihood = min(1.0, likelihood * factor) if applied.precondition_met else 0.0
    therapy = _therapy_impact(threat, model, device)
    impact = therapy * _IMPACT_WEIGHT[base[threat.cvss_metric]]
    env_vector, env_score = _environmental(vuln, modified, requirements)
    return Score(round(likelihood, 4), round(impact, 4)), env_vector, env_score, applied, therapy


def _groups(report: MatchReport) -> dict[tuple[str, str, str], list[Match]]:
    groups: dict[tuple[str, str, str], list[Match]] = {}
    for match in report.matches:
        key = (match.model_key, match.version.strip(), match.row.zone.strip())
        groups.setdefault(key, []).append(match)
    return groups


def build_register(
    report: MatchReport,
    kb: KnowledgeBase,
    catalogue: ModelCatalogue,
    questionnaires: Questionnaires,
    controls: ControlCatalogue,
    answers: AnswerSet | None = None,
) -> RiskRegister:
    """Score every matched vulnerability for every asset group and threat."""
    answers = answers or AnswerSet.empty()
    risks: list[Risk] = []
    for (model_key, version, zone), matches in sorted(_groups(report).items()):
        model = catalogue.get(model_key)
        rows = {m.row.line: m.row for m in matches}
        asset = AssetGroup(
            model_key,
            model.name,
            version,
            zone,
            sum(r.count for r in rows.values()),
            tuple(sorted(rows)),
            tuple(dict.fromkeys(f"{r.manufacturer} {r.model}".strip() for r in rows.values())),
        )
        device_answers = answers.devices.get(model_key, {})
        seen: set[tuple[str, str]] = set()
        for match in matches:
            for vuln in match.vulnerabilities:
                if (match.advisory.id, vuln.cve) in seen:
                    continue
                seen.add((match.advisory.id, vuln.cve))
                for threat in vuln.threats():
                    worst = {q.id: q.assume for q in questionnaires.device.questions}
                    inherent, *_ = _score_for(vuln, threat, model, questionnaires, {}, worst)
                    current, env_vector, env_score, applied, therapy = _score_for(
                        vuln, threat, model, questionnaires, answers.hospital, device_answers
                    )
                    applicable = controls.applicable(threat, vuln.weaknesses, model.kind)
                    credited = tuple(
                        c
                        for c in applicable
                        if c.implemented and (c.likelihood_reduction or c.impact_reduction)
                    )
                    keep_l = math.prod(1 - c.likelihood_reduction for c in credited)
                    keep_i = math.prod(1 - c.impact_reduction for c in credited)
                    residual = Score(
                        round(current.likelihood * keep_l, 4), round(current.impact * keep_i, 4)
                    )
                    notes = list(applied.notes)
                    if match.status is MatchStatus.POSSIBLY_AFFECTED:
                        notes.append(f"possibly affected: {match.reason}")
                    if vuln.cvss_v3 is None:
                        notes.append("scored on the published CVSS v2 vector (no v3 published)")
                    if not vuln.verified:
                        notes.append("contains unverified fields: " + (vuln.note or ""))
                    number = len(risks) + 1
                    risks.append(
                        Risk(
                            f"R{number:03d}",
                            asset,
                            match.advisory,
                            vuln,
                            threat,
                            match.status,
                            therapy,
                            env_vector,
                            env_score,
                            inherent,
                            current,
                            residual,
                            credited,
                            tuple(c for c in applicable if not c.implemented),
                            tuple(applied.gaps),
                            tuple(notes),
                            applied.precondition_met,
                        )
                    )
    return RiskRegister(
        tuple(risks),
        report,
        tuple(_unanswered(report, questionnaires, answers)),
        answers.source,
        controls,
    )


def _unanswered(
    report: MatchReport, questionnaires: Questionnaires, answers: AnswerSet
) -> list[Unanswered]:
    missing = [
        Unanswered("hospital", None, q)
        for q in questionnaires.hospital.questions
        if q.id not in answers.hospital
    ]
    models = sorted({i.identification.model.key for i in report.identified})
    for key in models:
        given = answers.devices.get(key, {})
        missing.extend(
            Unanswered("device", key, q)
            for q in questionnaires.device.questions
            if q.id not in given
        )
    return missing


def threats_traceability(controls: ControlCatalogue) -> dict[Threat, list[Control]]:
    """Threat -> controls (implemented first) for the traceability table."""
    table: dict[Threat, list[Control]] = {t: [] for t in Threat}
    for control in controls:
        for threat in control.threats:
            table[threat].append(control)
    for threat in table:
        table[threat].sort(key=lambda c: (not c.implemented, c.id))
    return table


def weaknesses_of(risks: Sequence[Risk]) -> set[Weakness]:
    return {w for r in risks for w in r.vulnerability.weaknesses}
