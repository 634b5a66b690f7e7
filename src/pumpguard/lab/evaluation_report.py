"""The ``lab run`` report: ``results.json`` and one self-contained HTML page.

The page is what a newcomer opens first, and it must open anywhere: on a laptop without network,
from a file attached to a ticket. So it is one file: inline CSS, charts drawn here as inline SVG
(``lab.charts``), no script, no font or image fetched from anywhere. Tables have captions and
header scopes and every chart an accessible name, so a screen reader gets the same story.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pumpguard.lab.attacks import CatalogueAttack, Harm, InfusionHarm, System
from pumpguard.lab.charts import bar_chart, glucose_chart, grouped_bar_chart
from pumpguard.lab.evaluation import AttackRow, LabResults, Outcome
from pumpguard.monitor.ruleset import DEFAULT_RULES

__all__ = ["HTML_NAME", "JSON_NAME", "TEMPLATES_DIR", "render_html", "write_report"]

TEMPLATES_DIR = Path(__file__).parent / "templates"
HTML_NAME = "report.html"
JSON_NAME = "results.json"


@dataclass(frozen=True, slots=True)
class _Cell:
    outcome: str
    tone: str
    """CSS class: ``bad`` (succeeded unseen), ``warn`` (succeeded, detected), ``good``."""
    blocked_by: str
    detected: str
    harm: str


@dataclass(frozen=True, slots=True)
class _MatrixLine:
    name: str
    system: str
    goal: str
    tag: str
    """``availability`` or ``detection only`` when the secure profile can only notice it."""
    references: str
    control: str
    cells: tuple[_Cell, ...]


@dataclass(frozen=True, slots=True)
class _TraceFigure:
    name: str
    goal: str
    charts: tuple[tuple[str, Markup, str], ...]
    """(profile, SVG, caption) per profile."""


@dataclass(frozen=True, slots=True)
class _InfusionLine:
    name: str
    drug: str
    dose_unit: str
    prescribed_dose: str
    prescribed_ml: str
    per_profile: tuple[tuple[str, str, str, str], ...]
    """(profile, programmed dose, delivered mL, factor) per profile."""


_PRESCRIBED_COLOUR = "#6b7280"
_PROFILE_COLOURS = {"legacy": "#c2410c", "secure": "#1f5fa8"}
_TONES = {Outcome.SUCCEEDED: "bad", Outcome.SUCCEEDED_DETECTED: "warn", Outcome.BLOCKED: "good"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _harm_text(row: AttackRow) -> str:
    harm = row.result.harm
    if isinstance(harm, Harm):
        parts = [f"{harm.extra_insulin_u:+.1f} U", f"min {harm.min_bg_mgdl:.0f} mg/dL"]
        if harm.minutes_below_54:
            parts.append(f"{harm.minutes_below_54:+d} min <54")
        if harm.minutes_above_250:
            parts.append(f"{harm.minutes_above_250:+d} min >250")
        return ", ".join(parts)
    factor = harm.overdose_factor
    times = "" if factor is None else f" (x{factor:.2f})"
    return f"{_ml(harm.delivered_ml)} of {_ml(harm.prescribed_ml)} mL{times}"


def _ml(value: object) -> str:
    return f"{round(float(str(value)), 2):g}"


def _cell(row: AttackRow) -> _Cell:
    detected = "no"
    if row.detected:
        detected = f"yes, {_duration(row.time_to_detect_s)}"
    return _Cell(
        str(row.outcome),
        _TONES[row.outcome],
        row.result.blocked_by or "-",
        detected,
        _harm_text(row),
    )


def _matrix(results: LabResults) -> list[_MatrixLine]:
    lines = []
    for entry in results.entries:
        cells = tuple(_cell(results.row(entry.name, p)) for p in results.config.profiles)
        lines.append(
            _MatrixLine(
                entry.name,
                str(entry.system),
                entry.goal,
                _tag(entry),
                ", ".join(entry.references),
                entry.control,
                cells,
            )
        )
    return lines


def _tag(entry: type[CatalogueAttack]) -> str:
    if entry.detection_only:
        return "detection only: the secure profile can detect it and fall back, not prevent it"
    if entry.availability:
        return "availability attack"
    if entry.passive:
        return "passive: only listens"
    return ""


def _trace_caption(row: AttackRow) -> str:
    harm = row.result.harm
    assert isinstance(harm, Harm)
    return (
        f"{row.profile}: {row.outcome}. Lowest {harm.min_bg_mgdl:.0f} mg/dL "
        f"(twin {harm.baseline_min_bg_mgdl:.0f}), highest {harm.max_bg_mgdl:.0f} "
        f"(twin {harm.baseline_max_bg_mgdl:.0f}); {harm.extra_insulin_u:+.2f} U insulin, "
        f"{harm.minutes_below_54:+d} min below 54, {harm.minutes_above_250:+d} min above 250 "
        f"in the 24 h from the attack."
    )


def _traces(results: LabResults) -> list[_TraceFigure]:
    figures = []
    for entry in results.entries:
        if entry.system is not System.INSULIN:
            continue
        charts = []
        for profile in results.config.profiles:
            row = results.row(entry.name, profile)
            if row.trace is None:
                continue
            caption = _trace_caption(row)
            svg = glucose_chart(
                f"{entry.name} on the {profile} profile: glucose, attacked and attack-free",
                row.trace.minutes,
                row.trace.attacked_mgdl,
                row.trace.twin_mgdl,
                desc=caption,
            )
            charts.append((str(profile), Markup(svg), caption))
        figures.append(_TraceFigure(entry.name, entry.goal, tuple(charts)))
    return figures


def _number(value: object) -> str:
    return "-" if value is None else _ml(value)


def _infusions(results: LabResults) -> tuple[list[_InfusionLine], Markup]:
    lines = []
    groups: list[tuple[str, list[float | None]]] = []
    profiles = results.config.profiles
    for entry in results.entries:
        if entry.system is not System.HOSPITAL:
            continue
        rows = [results.row(entry.name, p) for p in profiles]
        harms = [r.result.harm for r in rows]
        first = harms[0]
        assert isinstance(first, InfusionHarm)
        per = []
        values: list[float | None] = [float(first.prescribed_ml)]
        for row, harm in zip(rows, harms, strict=True):
            assert isinstance(harm, InfusionHarm)
            factor = harm.overdose_factor
            per.append(
                (
                    row.profile,
                    _number(harm.programmed_dose),
                    _number(harm.delivered_ml),
                    "-" if factor is None else f"x{factor:.2f}",
                )
            )
            values.append(float(harm.delivered_ml))
        lines.append(
            _InfusionLine(
                entry.name,
                first.drug,
                first.dose_unit,
                _number(first.prescribed_dose),
                _number(first.prescribed_ml),
                tuple(per),
            )
        )
        groups.append((entry.name, values))
    series = ["prescribed", *(f"delivered, {p}" for p in profiles)]
    chart = grouped_bar_chart(
        "Hospital attacks: volume delivered in the hour after the attack against the "
        "prescription (mL)",
        groups,
        series,
        unit="mL",
        colours=[_PRESCRIBED_COLOUR, *(_PROFILE_COLOURS[str(p)] for p in profiles)],
        desc="One group per hospital attack: the prescribed volume, then the volume the pump "
        "delivered on each profile. The table below has the same figures.",
    )
    return lines, Markup(chart)


def _rule_titles(results: LabResults) -> list[tuple[str, str]]:
    titles = {r.rule_id: r.title for r in DEFAULT_RULES}
    fired: list[str] = []
    for row in results.rows:
        fired.extend(a for a in row.rules_fired if a not in fired)
    for report in results.fleet:
        for outcome in report.outcomes:
            fired.extend(a for a in outcome.analytics if a not in fired)
        if report.hospital is not None:
            for ward_outcome in report.hospital.outcomes:
                fired.extend(a for a in ward_outcome.analytics if a not in fired)
    return [(a, titles.get(a, "anomaly detector on the device's telemetry")) for a in sorted(fired)]


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _per_day(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _activity_chart(results: LabResults) -> Markup | None:
    for report in results.fleet:
        if report.hospital is not None:
            items = [(k, n) for k, n in report.hospital.attack_free.activity if k != "status"]
            return Markup(
                bar_chart(
                    f"Ward activity records, attack-free run, {report.config.profile} profile",
                    sorted(items, key=lambda kv: -kv[1]),
                )
            )
    return None


def render_html(results: LabResults) -> str:
    """The report as one self-contained HTML page."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    infusions, infusion_chart = _infusions(results)
    document = results.to_json()
    return env.get_template("lab-report.html.j2").render(
        r=results,
        doc=document,
        profiles=[str(p) for p in results.config.profiles],
        summaries=results.summaries(),
        matrix=_matrix(results),
        traces=_traces(results),
        infusions=infusions,
        infusion_chart=infusion_chart,
        rules=_rule_titles(results),
        activity_chart=_activity_chart(results),
        duration=_duration,
        ratio=_ratio,
        per_day=_per_day,
    )


def write_report(results: LabResults, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``results.json`` into ``out_dir`` (created if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / HTML_NAME, out_dir / JSON_NAME
    json_path.write_text(json.dumps(results.to_json(), indent=2) + "\n", encoding="utf-8")
    html_path.write_text(render_html(results), encoding="utf-8")
    return html_path, json_path
