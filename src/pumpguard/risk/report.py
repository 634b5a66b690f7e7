"""Reports: the JSON document, the HTML page (jinja2, self-contained) and the PDF (fpdf2)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pumpguard import __version__
from pumpguard.data import DATA_DIR
from pumpguard.risk.advisories import Advisory, KnowledgeBase
from pumpguard.risk.controls import Control
from pumpguard.risk.inventory import Match
from pumpguard.risk.questionnaire import Question
from pumpguard.risk.register import Rating, Risk, RiskRegister, Score, threats_traceability

__all__ = ["TEMPLATES_DIR", "register_json", "render_html", "write_pdf"]

TEMPLATES_DIR = DATA_DIR / "risk" / "templates"


def _score_json(score: Score) -> dict[str, Any]:
    return {
        "score": score.score,
        "rating": score.rating.value,
        "likelihood": score.likelihood,
        "impact": score.impact,
        "likelihood_band": score.likelihood_band,
        "impact_band": score.impact_band,
    }


def _match_json(match: Match) -> dict[str, Any]:
    row = match.row
    return {
        "line": row.line,
        "manufacturer": row.manufacturer,
        "model": row.model,
        "software_version": row.software_version,
        "version_used": match.version,
        "count": row.count,
        "zone": row.zone,
        "extra": dict(row.extra),
        "model_key": match.model_key,
        "model_name": match.model_name,
        "model_inferred": match.inferred_model,
        "advisory": match.advisory.id,
        "advisory_title": match.advisory.title,
        "status": match.status.value,
        "cves": match.cves,
        "products": [p.name for p in match.products],
        "fixed_in": match.fixed_in,
        "reason": match.reason,
    }


def _risk_json(risk: Risk) -> dict[str, Any]:
    vuln = risk.vulnerability
    return {
        "id": risk.id,
        "asset": {
            "model_key": risk.asset.model_key,
            "model": risk.asset.model_name,
            "version": risk.asset.version,
            "zone": risk.asset.zone,
            "devices": risk.asset.devices,
            "lines": list(risk.asset.lines),
        },
        "advisory": risk.advisory.id,
        "cve": vuln.cve,
        "cwe": vuln.cwe,
        "threat": risk.threat.value,
        "status": risk.status.value,
        "weaknesses": [w.value for w in vuln.weaknesses],
        "cvss": {
            "version": risk.cvss_version,
            "vector": vuln.vector,
            "base": vuln.base_score,
            "environmental_vector": risk.environmental_vector,
            "environmental": risk.environmental_score,
        },
        "therapy_impact": risk.therapy_impact,
        "precondition_met": risk.precondition_met,
        "inherent": _score_json(risk.inherent),
        "current": _score_json(risk.current),
        "residual": _score_json(risk.residual),
        "controls": {
            "credited": [c.id for c in risk.credited],
            "recommended": [c.id for c in risk.recommended],
            "environment_gaps": [q.id for q in risk.gaps],
        },
        "notes": list(risk.notes),
    }


def _summary(register: RiskRegister, kb: KnowledgeBase) -> dict[str, Any]:
    report = register.matches
    affected_lines = {m.row.line for m in report.matches}
    current = Counter(r.current.rating.value for r in register.risks)
    residual = Counter(r.residual.rating.value for r in register.risks)
    return {
        "rows": len(report.inventory.rows),
        "devices": report.inventory.device_count,
        "devices_affected": sum(r.count for r in report.inventory.rows if r.line in affected_lines),
        "rows_matched": len(affected_lines),
        "advisories_matched": len({m.advisory.id for m in report.matches}),
        "advisories_in_kb": len(kb),
        "cves_in_kb": sum(len(a.vulnerabilities) for a in kb),
        "risks": len(register.risks),
        "by_rating": {r.value: current.get(r.value, 0) for r in Rating},
        "residual_by_rating": {r.value: residual.get(r.value, 0) for r in Rating},
    }


def register_json(register: RiskRegister, kb: KnowledgeBase) -> dict[str, Any]:
    """The machine-readable assessment: ``matches``, ``unknown_models``, ``risks`` and more."""
    report = register.matches
    return {
        "format": "pumpguard.risk-assessment/1",
        "pumpguard": __version__,
        "inventory": report.inventory.source,
        "answers": register.answers_source,
        "summary": _summary(register, kb),
        "matches": [_match_json(m) for m in report.matches],
        "unknown_models": [
            {
                "line": u.row.line,
                "manufacturer": u.row.manufacturer,
                "model": u.row.model,
                "software_version": u.row.software_version,
                "count": u.row.count,
                "zone": u.row.zone,
                "reason": u.reason,
            }
            for u in report.unknown_models
        ],
        "risks": [_risk_json(r) for r in register.risks],
        "unanswered": [{"where": u.where, "question": u.question.id} for u in register.unanswered],
        "heat_map": {
            "current": register.heat_map("current"),
            "residual": register.heat_map("residual"),
        },
    }


@dataclass(frozen=True, slots=True)
class _AdvisoryBlock:
    advisory: Advisory
    matches: list[Match]
    cves: list[str]
    devices: int
    unverified: bool


@dataclass(frozen=True, slots=True)
class _Gap:
    question: Question
    count: int


def _per_advisory(register: RiskRegister) -> list[_AdvisoryBlock]:
    blocks: dict[str, list[Match]] = {}
    for match in register.matches.matches:
        blocks.setdefault(match.advisory.id, []).append(match)
    result = []
    for matches in blocks.values():
        advisory = matches[0].advisory
        cves = list(dict.fromkeys(c for m in matches for c in m.cves))
        unverified = any(not p.verified for m in matches for p in m.products) or any(
            not v.verified for m in matches for v in m.vulnerabilities
        )
        devices = sum(m.row.count for m in matches)
        result.append(_AdvisoryBlock(advisory, matches, cves, devices, unverified))
    return sorted(result, key=lambda b: (-b.devices, b.advisory.id))


def _gaps(register: RiskRegister) -> list[_Gap]:
    counts: Counter[str] = Counter()
    questions: dict[str, Question] = {}
    for risk in register.risks:
        for question in risk.gaps:
            counts[question.id] += 1
            questions[question.id] = question
    return [_Gap(questions[q], n) for q, n in counts.most_common()]


def _planned(register: RiskRegister) -> list[tuple[Control, int]]:
    counts: Counter[str] = Counter()
    controls: dict[str, Control] = {}
    for risk in register.risks:
        for control in risk.recommended:
            counts[control.id] += 1
            controls[control.id] = control
    return [(controls[c], n) for c, n in counts.most_common()]


def _unverified(kb: KnowledgeBase) -> list[str]:
    items = []
    for advisory in kb:
        for product in advisory.products:
            if not product.verified:
                items.append(f"{advisory.id} product '{product.name}': {product.note}")
        for vuln in advisory.vulnerabilities:
            if not vuln.verified:
                items.append(f"{advisory.id} {vuln.cve}: {vuln.note}")
    return items


def _heat_colour(likelihood_band: int, impact_band: int, count: int) -> str:
    level = likelihood_band * impact_band
    strong, pale = (
        ("#a4161a", "#f3d1d2")
        if level >= 15
        else ("#e85d04", "#fbe0cc")
        if level >= 8
        else ("#e9c46a", "#faf0d7")
        if level >= 4
        else ("#52b788", "#dcefe4")
    )
    return strong if count else pale


def _context(register: RiskRegister, kb: KnowledgeBase) -> dict[str, Any]:
    return {
        "inventory_name": register.matches.inventory.source,
        "answers_source": register.answers_source,
        "version": __version__,
        "summary": _summary(register, kb),
        "heatmaps": [
            ("Current", register.heat_map("current")),
            ("Residual (pumpguard controls)", register.heat_map("residual")),
        ],
        "heat_colour": _heat_colour,
        "top": register.top(10),
        "per_advisory": _per_advisory(register),
        "gaps": _gaps(register),
        "planned": _planned(register),
        "trace": list(threats_traceability(register.controls).items()),
        "unknown": register.matches.unknown_models,
        "unanswered": register.unanswered,
        "risks": register.risks,
        "unverified": _unverified(kb),
    }


def render_html(register: RiskRegister, kb: KnowledgeBase) -> str:
    """The report as one self-contained HTML page (no scripts, fonts or external assets)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**_context(register, kb))


_LATIN1 = str.maketrans({"—": "-", "–": "-", "→": "->", "×": "x", "’": "'", "“": '"', "”": '"'})


def _pdf_text(text: object) -> str:
    return str(text).translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


_RGB = {
    "#a4161a": (164, 22, 26),
    "#e85d04": (232, 93, 4),
    "#e9c46a": (233, 196, 106),
    "#52b788": (82, 183, 136),
    "#f3d1d2": (243, 209, 210),
    "#fbe0cc": (251, 224, 204),
    "#faf0d7": (250, 240, 215),
    "#dcefe4": (220, 239, 228),
}


class _Pdf(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=7)
        self.set_text_color(110, 110, 110)
        self.cell(0, 5, _pdf_text(f"pumpguard risk assessment - page {self.page_no()}"), align="C")


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 12)
    pdf.set_text_color(29, 35, 48)
    pdf.cell(0, 7, _pdf_text(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)


def _table(pdf: FPDF, header: list[str], rows: list[list[object]], widths: tuple[int, ...]) -> None:
    pdf.set_font("Helvetica", size=7)
    heading = FontFace(emphasis="BOLD", fill_color=(238, 241, 246))
    with pdf.table(
        col_widths=widths, headings_style=heading, line_height=3.6, text_align="LEFT"
    ) as table:
        table.row([_pdf_text(h) for h in header])
        for values in rows:
            table.row([_pdf_text(v) for v in values])


def _heat(pdf: FPDF, title: str, cells: list[list[int]], x: float, y: float) -> None:
    size = 9.0
    pdf.set_xy(x, y)
    pdf.set_font("Helvetica", "B", 8)
    pdf.cell(6 * size, 5, _pdf_text(title))
    for row, lb in enumerate([5, 4, 3, 2, 1]):
        top = y + 6 + row * size
        pdf.set_xy(x, top)
        pdf.set_font("Helvetica", size=7)
        pdf.cell(size, size, f"L{lb}", align="C")
        for col, ib in enumerate([1, 2, 3, 4, 5]):
            count = cells[lb - 1][ib - 1]
            pdf.set_fill_color(*_RGB[_heat_colour(lb, ib, count)])
            pdf.set_xy(x + size * (col + 1), top)
            pdf.set_font("Helvetica", "B", 8)
            pdf.set_text_color(*((255, 255, 255) if count and lb * ib >= 8 else (29, 35, 48)))
            pdf.cell(size, size, str(count) if count else "", border=1, align="C", fill=True)
            pdf.set_text_color(29, 35, 48)
    pdf.set_xy(x + size, y + 6 + 5 * size)
    pdf.set_font("Helvetica", size=7)
    for ib in [1, 2, 3, 4, 5]:
        pdf.cell(size, 4, f"I{ib}", align="C")


def write_pdf(register: RiskRegister, kb: KnowledgeBase, path: Path) -> None:
    """A printable summary: heat maps, top risks, devices per advisory, gaps, traceability."""
    context = _context(register, kb)
    summary = context["summary"]
    pdf = _Pdf(orientation="landscape", format="A4")
    pdf.set_auto_page_break(auto=True, margin=14)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, "Infusion pump fleet risk assessment", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)
    pdf.multi_cell(
        0,
        4,
        _pdf_text(
            f"Inventory {context['inventory_name']}: {summary['rows']} rows, "
            f"{summary['devices']} devices, {summary['devices_affected']} matched to "
            f"{summary['advisories_matched']} advisories. {summary['risks']} risks; current "
            + ", ".join(f"{k} {v}" for k, v in summary["by_rating"].items())
            + "; residual "
            + ", ".join(f"{k} {v}" for k, v in summary["residual_by_rating"].items())
            + f". Answers: {context['answers_source']}. Unknown models: "
            f"{len(context['unknown'])}. Unanswered questions: {len(context['unanswered'])}."
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    y = pdf.get_y() + 2
    for index, (title, cells) in enumerate(context["heatmaps"]):
        _heat(pdf, title, cells, 12 + index * 80, y)
    pdf.set_xy(pdf.l_margin, y + 62)
    _heading(pdf, "Top risks")
    _table(
        pdf,
        [
            "#",
            "Asset group",
            "Devices",
            "Advisory / CVE",
            "Threat",
            "Current",
            "Residual",
            "Credited",
        ],
        [
            [
                r.id,
                r.asset.label,
                r.asset.devices,
                f"{r.advisory.id} {r.vulnerability.cve}",
                r.threat.label,
                f"{r.current.score} {r.current.rating.value}",
                f"{r.residual.score} {r.residual.rating.value}",
                ", ".join(c.id for c in r.credited) or "none",
            ]
            for r in context["top"]
        ],
        (10, 70, 14, 48, 28, 24, 24, 55),
    )
    _heading(pdf, "Devices affected per advisory")
    rows = []
    for block in context["per_advisory"]:
        for m in block.matches:
            rows.append(
                [
                    block.advisory.id,
                    f"{m.row.manufacturer} {m.row.model}",
                    m.version or "-",
                    m.row.zone,
                    m.row.count,
                    m.status.value.replace("_", " "),
                    ", ".join(m.cves),
                    ", ".join(m.fixed_in) or "no fix named",
                ]
            )
    _table(
        pdf,
        ["Advisory", "As listed", "Version", "Zone", "Devices", "Status", "CVEs", "Fixed in"],
        rows,
        (28, 50, 20, 22, 14, 22, 80, 37),
    )
    if context["unknown"]:
        _heading(pdf, "Unknown models (not assessed)")
        _table(
            pdf,
            ["Line", "Manufacturer", "Model", "Version", "Zone", "Devices", "Why"],
            [
                [
                    u.row.line,
                    u.row.manufacturer,
                    u.row.model,
                    u.row.software_version,
                    u.row.zone,
                    u.row.count,
                    u.reason,
                ]
                for u in context["unknown"]
            ],
            (12, 40, 50, 25, 25, 15, 106),
        )
    _heading(pdf, "Recommended: environment gaps")
    _table(
        pdf,
        ["Question", "Risks it would lower", "CSF 2.0", "SP 800-53"],
        [
            [
                f"{g.question.id}: {g.question.text}",
                g.count,
                ", ".join(g.question.refs.csf),
                ", ".join(g.question.refs.sp800_53),
            ]
            for g in context["gaps"]
        ],
        (170, 25, 38, 40),
    )
    _heading(pdf, "Traceability: threat -> control -> test")
    _table(
        pdf,
        ["Threat", "Control", "Status", "CSF 2.0 / SP 800-53 / 80001-2-2", "Tests"],
        [
            [
                threat.label,
                f"{c.id} {c.name}",
                c.status.value,
                " / ".join([", ".join(c.csf), ", ".join(c.sp800_53), ", ".join(c.iec80001)]),
                "\n".join(c.tests) or "none yet (no residual credit)",
            ]
            for threat, controls in context["trace"]
            for c in controls
        ],
        (25, 60, 18, 55, 115),
    )
    pdf.output(str(path))
