"""Questionnaires and answers: how the hospital and each device model change likelihood.

Two questionnaires ship as YAML: the hospital environment (segmentation, wireless
admission, monitoring, hardening, vendor access, MFA, physical security, life cycle,
patching, inventory) and a per-model device questionnaire organised by the MDS2 (2019)
sections and IEC TR 80001-2-2 capabilities. An answers file gives yes/no per question; an
unanswered question takes its worse answer (``assume``) and is listed in the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pumpguard.data import DATA_DIR
from pumpguard.risk.advisories import Weakness

__all__ = [
    "QUESTIONNAIRES_DIR",
    "Answer",
    "AnswerSet",
    "AnswersError",
    "Effect",
    "Question",
    "Questionnaire",
    "load_answers",
    "load_questionnaires",
    "parse_answers",
]

QUESTIONNAIRES_DIR = DATA_DIR / "questionnaires"

Answer = Literal["yes", "no"]
Level = Literal["L", "M", "H"]
AttackVector = Literal["N", "A", "L", "P"]
QuestionId = Annotated[str, Field(pattern=r"^(env|dev)\.[a-z0-9_]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Effect(_Model):
    """What an answer does to one vulnerability's likelihood (see docs/risk/README.md)."""

    modify: dict[Literal["AV", "AC", "PR", "UI"], dict[str, str]] = Field(default_factory=dict)
    factor: float = Field(default=1.0, ge=0, le=1)
    factor_v2: dict[AttackVector, float] = Field(default_factory=dict)
    requirement: dict[Literal["CR", "IR", "AR"], Level] = Field(default_factory=dict)
    only_weaknesses: list[Weakness] | None = None
    only_attack_vectors: list[AttackVector] | None = None

    def applies(self, weaknesses: Sequence[Weakness], attack_vector: str) -> bool:
        if self.only_weaknesses is not None and not set(self.only_weaknesses) & set(weaknesses):
            return False
        return self.only_attack_vectors is None or attack_vector in self.only_attack_vectors


class Refs(_Model):
    csf: list[str] = Field(default_factory=list)
    sp800_53: list[str] = Field(default_factory=list)


class Question(_Model):
    id: QuestionId
    section: str = Field(min_length=1)
    text: str = Field(min_length=1)
    capability: str | None = None
    assume: Answer
    yes: Effect = Field(default_factory=Effect)
    no: Effect = Field(default_factory=Effect)
    precondition: bool = False
    note: str | None = None
    refs: Refs = Field(default_factory=Refs)

    def effect(self, answer: Answer) -> Effect:
        return self.yes if answer == "yes" else self.no


class Questionnaire(_Model):
    id: Literal["hospital", "device"]
    title: str
    questions: list[Question] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Questionnaire:
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique")
        prefix = "env." if self.id == "hospital" else "dev."
        wrong = [i for i in ids if not i.startswith(prefix)]
        if wrong:
            raise ValueError(f"{self.id} question ids must start with {prefix!r}: {wrong}")
        return self

    def get(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)


@dataclass(frozen=True, slots=True)
class Questionnaires:
    hospital: Questionnaire
    device: Questionnaire


def load_questionnaires(directory: Path | None = None) -> Questionnaires:
    if directory is None:
        return _default_questionnaires()
    return _load(directory)


def _load(directory: Path) -> Questionnaires:
    parsed = []
    for name in ("hospital", "device"):
        path = directory / f"{name}.yaml"
        try:
            parsed.append(Questionnaire.model_validate(yaml.safe_load(path.read_text("utf-8"))))
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise ValueError(f"{path}: invalid questionnaire: {exc}") from None
    return Questionnaires(parsed[0], parsed[1])


@cache
def _default_questionnaires() -> Questionnaires:
    return _load(QUESTIONNAIRES_DIR)


class AnswersError(ValueError):
    """An answers file that cannot be used; every problem is named."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s) in the answers\n{lines}")


@dataclass(frozen=True, slots=True)
class AnswerSet:
    """Hospital answers and per-model device answers, as given (unanswered = absent)."""

    hospital: Mapping[str, Answer]
    devices: Mapping[str, Mapping[str, Answer]]
    source: str = "(no answers)"

    @classmethod
    def empty(cls) -> AnswerSet:
        return cls({}, {})


def _answer(value: object) -> Answer | None:
    if value is True or (isinstance(value, str) and value.strip().lower() in ("yes", "y", "true")):
        return "yes"
    if value is False or (isinstance(value, str) and value.strip().lower() in ("no", "n", "false")):
        return "no"
    return None


def parse_answers(
    data: Any,
    questionnaires: Questionnaires,
    model_keys: Sequence[str],
    source: str = "answers",
) -> AnswerSet:
    """Validate decoded answers: known question ids, yes/no values, known model keys."""
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AnswersError(source, ["expected a mapping with 'hospital' and/or 'devices'"])
    unknown_top = sorted(set(data) - {"hospital", "devices"})
    if unknown_top:
        problems.append(f"unknown section(s) {unknown_top}; use 'hospital' and 'devices'")
    hospital: dict[str, Answer] = {}
    section = data.get("hospital") or {}
    if not isinstance(section, dict):
        problems.append("hospital: expected a mapping of question id to yes/no")
        section = {}
    for qid, value in section.items():
        if value is None:
            continue
        if questionnaires.hospital.get(str(qid)) is None:
            problems.append(
                f"hospital.{qid}: unknown question (see 'pumpguard risk questionnaire')"
            )
            continue
        answer = _answer(value)
        if answer is None:
            problems.append(f"hospital.{qid}: answer must be yes or no, got {value!r}")
            continue
        hospital[str(qid)] = answer
    devices: dict[str, dict[str, Answer]] = {}
    section = data.get("devices") or {}
    if not isinstance(section, dict):
        problems.append("devices: expected a mapping of model key to answers")
        section = {}
    for key, answers in section.items():
        if key not in model_keys:
            problems.append(f"devices.{key}: unknown model key (see 'pumpguard risk models')")
            continue
        if not isinstance(answers, dict):
            problems.append(f"devices.{key}: expected a mapping of question id to yes/no")
            continue
        devices[str(key)] = {}
        for qid, value in answers.items():
            if value is None:
                continue
            if questionnaires.device.get(str(qid)) is None:
                problems.append(f"devices.{key}.{qid}: unknown question")
                continue
            answer = _answer(value)
            if answer is None:
                problems.append(f"devices.{key}.{qid}: answer must be yes or no, got {value!r}")
                continue
            devices[str(key)][str(qid)] = answer
    if problems:
        raise AnswersError(source, problems)
    return AnswerSet(hospital, devices, source)


def load_answers(
    path: Path | str, questionnaires: Questionnaires, model_keys: Sequence[str]
) -> AnswerSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnswersError(str(path), [f"not UTF-8 text (offset {exc.start})"]) from None
    except OSError as exc:
        raise AnswersError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed"
        raise AnswersError(str(path), [f"not valid YAML: {problem}{where}"]) from None
    return parse_answers(data, questionnaires, model_keys, str(path))
