"""The ecosystem's threat model: a data-flow diagram, STRIDE per element, and its traceability.

The model is data (``data/risk/threat-model.yaml``) so that the document a reviewer reads, the
coverage check (every element has a threat, or an accepted risk, for every STRIDE letter that
applies to its kind) and the trace to controls, tests and attacks all come from one source;
``docs/security/threat-model.md`` is rendered from it and a test keeps the two equal.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pumpguard.data import DATA_DIR
from pumpguard.risk.controls import ControlCatalogue

__all__ = [
    "THREAT_MODEL_FILE",
    "Boundary",
    "Element",
    "ElementKind",
    "Stride",
    "ThreatEntry",
    "ThreatModel",
    "load_threat_model",
    "render_threat_model",
]

THREAT_MODEL_FILE = DATA_DIR / "risk" / "threat-model.yaml"

_TestId = Annotated[str, Field(pattern=r"^tests/[\w/]+\.py::\w+(::\w+)?$")]


class Stride(StrEnum):
    SPOOFING = "S"
    TAMPERING = "T"
    REPUDIATION = "R"
    INFORMATION_DISCLOSURE = "I"
    DENIAL_OF_SERVICE = "D"
    ELEVATION_OF_PRIVILEGE = "E"


class ElementKind(StrEnum):
    EXTERNAL_ENTITY = "external_entity"
    PROCESS = "process"
    DATA_STORE = "data_store"
    DATA_FLOW = "data_flow"


_APPLICABLE: dict[ElementKind, frozenset[Stride]] = {
    ElementKind.EXTERNAL_ENTITY: frozenset({Stride.SPOOFING, Stride.REPUDIATION}),
    ElementKind.PROCESS: frozenset(Stride),
    ElementKind.DATA_STORE: frozenset(
        {Stride.TAMPERING, Stride.INFORMATION_DISCLOSURE, Stride.DENIAL_OF_SERVICE}
    ),
    ElementKind.DATA_FLOW: frozenset(
        {Stride.TAMPERING, Stride.INFORMATION_DISCLOSURE, Stride.DENIAL_OF_SERVICE}
    ),
}
"""STRIDE per element as Microsoft's SDL threat modelling defines it."""


class Boundary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^B-[A-Z0-9-]+$")]
    name: str = Field(min_length=1)


class Element(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")]
    kind: ElementKind
    name: str = Field(min_length=1)
    log: bool = False
    """A data store that is a log can also be repudiated (entries denied or removed)."""
    source: str | None = Field(default=None, alias="from")
    destination: str | None = Field(default=None, alias="to")
    crosses: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _flow_has_ends(self) -> Self:
        is_flow = self.kind is ElementKind.DATA_FLOW
        if is_flow != (self.source is not None and self.destination is not None):
            raise ValueError(f"{self.id}: a data flow, and only a data flow, has from and to")
        if self.log and self.kind is not ElementKind.DATA_STORE:
            raise ValueError(f"{self.id}: only a data store can be a log")
        return self

    @property
    def applicable(self) -> frozenset[Stride]:
        letters = _APPLICABLE[self.kind]
        return letters | {Stride.REPUDIATION} if self.log else letters


class ThreatEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^T-[A-Z0-9-]+$")]
    elements: tuple[str, ...] = Field(min_length=1)
    stride: tuple[Stride, ...] = Field(min_length=1)
    title: str = Field(min_length=1)
    controls: tuple[str, ...] = ()
    tests: tuple[_TestId, ...] = ()
    attacks: tuple[str, ...] = ()
    accepted: str | None = None
    """Why what remains is accepted; a threat with no mitigation must say this."""

    @model_validator(mode="after")
    def _mitigated_or_accepted(self) -> Self:
        if not (self.controls or self.tests or self.attacks or self.accepted):
            raise ValueError(f"{self.id}: name its mitigations or say why the risk is accepted")
        return self


class ThreatModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    boundaries: tuple[Boundary, ...] = Field(min_length=1)
    elements: tuple[Element, ...] = Field(min_length=1)
    threats: tuple[ThreatEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        element_ids = [e.id for e in self.elements]
        for kind, ids in (
            ("element", element_ids),
            ("boundary", [b.id for b in self.boundaries]),
            ("threat", [t.id for t in self.threats]),
        ):
            if len(set(ids)) != len(ids):
                raise ValueError(f"duplicate {kind} ids")
        known, boundaries = set(element_ids), {b.id for b in self.boundaries}
        for element in self.elements:
            for end in (element.source, element.destination):
                if end is not None and end not in known:
                    raise ValueError(f"{element.id}: unknown flow end {end!r}")
            for crossed in element.crosses:
                if crossed not in boundaries:
                    raise ValueError(f"{element.id}: unknown boundary {crossed!r}")
        for threat in self.threats:
            for name in threat.elements:
                if name not in known:
                    raise ValueError(f"{threat.id}: unknown element {name!r}")
        return self

    def element(self, element_id: str) -> Element:
        return next(e for e in self.elements if e.id == element_id)

    def threats_for(self, element_id: str, letter: Stride) -> list[ThreatEntry]:
        return [t for t in self.threats if element_id in t.elements and letter in t.stride]

    def uncovered(self) -> list[tuple[str, Stride]]:
        """(element, letter) pairs that apply to the element's kind and no threat covers."""
        return [
            (element.id, letter)
            for element in self.elements
            for letter in Stride
            if letter in element.applicable and not self.threats_for(element.id, letter)
        ]

    def unknown_controls(self, catalogue: ControlCatalogue) -> list[str]:
        known = {c.id for c in catalogue}
        return sorted({c for t in self.threats for c in t.controls} - known)


def load_threat_model(path: Path | None = None) -> ThreatModel:
    source = path or THREAT_MODEL_FILE
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        return ThreatModel.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{source}: cannot read the threat model: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{source}: {where}: {first['msg']}") from None


def _cell(items: tuple[str, ...] | list[str], code: bool = True) -> str:
    return "<br>".join(f"`{i}`" if code else i for i in items) or "-"


def _mermaid(model: ThreatModel) -> list[str]:
    shapes = {
        ElementKind.EXTERNAL_ENTITY: ('["', '"]'),
        ElementKind.PROCESS: ('(("', '"))'),
        ElementKind.DATA_STORE: ('[("', '")]'),
    }
    lines = ["```mermaid", "flowchart LR"]
    for element in model.elements:
        if element.kind in shapes:
            opening, closing = shapes[element.kind]
            lines.append(f"  {element.id}{opening}{element.name}{closing}")
    for flow in model.elements:
        if flow.kind is ElementKind.DATA_FLOW:
            crossing = f" ({', '.join(flow.crosses)})" if flow.crosses else ""
            lines.append(f'  {flow.source} -->|"{flow.id}{crossing}"| {flow.destination}')
    lines.append("```")
    return lines


def render_threat_model(model: ThreatModel, catalogue: ControlCatalogue) -> str:
    """Markdown for ``docs/security/threat-model.md``; the same model always gives the same text."""
    controls = {c.id: c for c in catalogue}
    out = [
        "# Threat model",
        "",
        "Generated by `pumpguard risk threat-model` from",
        "`src/pumpguard/data/risk/threat-model.yaml`; do not edit by hand (a test compares this",
        "file with the rendering).",
        "",
        "Method: a data-flow diagram of the ecosystem, then STRIDE per element (Microsoft SDL):",
        "external entities can be spoofed or repudiate; processes suffer all six letters; data",
        "stores tampering, disclosure and denial (and repudiation for logs); flows tampering,",
        "disclosure and denial. Each applicable (element, letter) pair is covered by a threat",
        "below, which names its mitigations: pumpguard controls (`data/risk/controls.yaml`, each",
        "with the tests that show it working), tests of its own, and catalogue attacks that",
        "exercise it (`pumpguard attack run NAME --profile legacy|secure`); or the threat is",
        "accepted, with the reason, as a residual risk.",
        "",
        "## Data flows and trust boundaries",
        "",
        *_mermaid(model),
        "",
        "| boundary | crossed by |",
        "| --- | --- |",
    ]
    for boundary in model.boundaries:
        flows = [e.id for e in model.elements if boundary.id in e.crosses]
        out.append(f"| {boundary.id}: {boundary.name} | {_cell(flows)} |")
    out += ["", "## STRIDE per element", ""]
    out += ["| element | kind | " + " | ".join(s.value for s in Stride) + " |"]
    out += ["| --- | --- | " + " | ".join("---" for _ in Stride) + " |"]
    for element in model.elements:
        cells = []
        for letter in Stride:
            if letter not in element.applicable:
                cells.append("")
                continue
            cells.append(
                ", ".join(t.id for t in model.threats_for(element.id, letter)) or "**gap**"
            )
        kind = element.kind.value.replace("_", " ")
        out.append(f"| {element.id}: {element.name} | {kind} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Traceability: threat -> control -> test, attack",
        "",
        "| threat | STRIDE | controls | tests (control's and own) | attacks |",
        "| --- | --- | --- | --- | --- |",
    ]
    for threat in model.threats:
        tests = [t for c in threat.controls if c in controls for t in controls[c].tests]
        tests += [t for t in threat.tests if t not in tests]
        named = [
            f"{c} ({'implemented' if controls[c].implemented else 'planned'})"
            for c in threat.controls
            if c in controls
        ]
        out.append(
            f"| {threat.id}: {threat.title} | {''.join(s.value for s in threat.stride)} "
            f"| {_cell(named, code=False)} | {_cell(tests)} | {_cell(threat.attacks)} |"
        )
    out += ["", "## Residual risks", ""]
    for threat in model.threats:
        planned = [c for c in threat.controls if c in controls and not controls[c].implemented]
        if threat.accepted or planned:
            reason = threat.accepted or ""
            if planned:
                reason += (" " if reason else "") + f"Planned, not yet built: {', '.join(planned)}."
            out.append(f"- **{threat.id}** ({threat.title}): {reason}")
    return "\n".join(out) + "\n"
