"""``pumpguard risk``: assess a real pump inventory against published advisories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pumpguard.cli.common import err, fail, out
from pumpguard.risk import (
    AdvisoryError,
    AnswersError,
    AnswerSet,
    InventoryError,
    advisory_json_schema,
    build_register,
    load_answers,
    load_catalogue,
    load_controls,
    load_inventory,
    load_knowledge_base,
    load_questionnaires,
    load_threat_model,
    match_inventory,
    register_json,
    render_html,
    render_threat_model,
    write_pdf,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Risk assessment of real pump inventories against published advisories.",
)


def _report_problems(title: str, source: str, problems: list[str]) -> typer.Exit:
    err.print(f"[bold red]{title}[/] {source}", highlight=False)
    for problem in problems:
        err.print(f"  - {problem}", highlight=False, markup=False)
    return typer.Exit(1)


@app.command()
def assess(
    inventory: Annotated[
        Path, typer.Option("--inventory", "-i", help="Inventory CSV or JSON file.")
    ],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="HTML report to write.")],
    answers: Annotated[
        Path | None, typer.Option("--answers", "-a", help="Questionnaire answers (YAML).")
    ] = None,
    pdf: Annotated[
        Path | None, typer.Option("--pdf", help="PDF report to write (default: --out as .pdf).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the assessment as JSON on stdout.")
    ] = False,
) -> None:
    """Match INVENTORY against the advisory knowledge base and write the risk report.

    Exits 0 when the report was written (whatever it found), 1 for unusable input files.
    """
    try:
        kb = load_knowledge_base()
        catalogue = load_catalogue()
        questionnaires = load_questionnaires()
        controls = load_controls()
    except (AdvisoryError, ValueError) as exc:  # pragma: no cover - shipped data is tested
        raise fail(f"pumpguard's own risk data is invalid: {exc}") from None
    try:
        parsed = load_inventory(inventory)
    except InventoryError as exc:
        raise _report_problems(
            "invalid inventory", exc.source, [str(i) for i in exc.issues]
        ) from None
    answer_set = AnswerSet.empty()
    if answers is not None:
        try:
            answer_set = load_answers(answers, questionnaires, [m.key for m in catalogue.models])
        except AnswersError as exc:
            raise _report_problems("invalid answers", exc.source, list(exc.problems)) from None
    report = match_inventory(parsed, kb, catalogue)
    register = build_register(report, kb, catalogue, questionnaires, controls, answer_set)
    pdf_path = pdf if pdf is not None else out_path.with_suffix(".pdf")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        pdf_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(render_html(register, kb), encoding="utf-8")
        write_pdf(register, kb, pdf_path)
    except OSError as exc:
        raise fail(f"cannot write the report: {exc.filename or ''}: {exc.strerror}") from None
    if as_json:
        typer.echo(json.dumps(register_json(register, kb), indent=2))
        return
    document = register_json(register, kb)
    summary = document["summary"]
    out.print(
        f"[bold]{summary['devices_affected']}[/] of {summary['devices']} devices match "
        f"{summary['advisories_matched']} advisories; {summary['risks']} risks "
        + ", ".join(f"{k} {v}" for k, v in summary["by_rating"].items() if v),
        highlight=False,
    )
    if report.unknown_models:
        err.print(
            f"[yellow]{len(report.unknown_models)} row(s) with unknown models "
            "were not assessed:[/]",
            highlight=False,
        )
        for unknown in report.unknown_models:
            row = unknown.row
            err.print(
                f"  - line {row.line}: {row.manufacturer} {row.model} ({unknown.reason})",
                highlight=False,
                markup=False,
            )
    if register.unanswered:
        out.print(
            f"{len(register.unanswered)} questions unanswered (scored with the worse answer); "
            "see 'pumpguard risk questionnaire --template'",
            highlight=False,
        )
    out.print(f"wrote {out_path} and {pdf_path}", highlight=False)


@app.command()
def advisories(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the advisory knowledge base: products, CVEs, scores and sources."""
    kb = load_knowledge_base()
    if as_json:
        typer.echo(json.dumps([a.model_dump(mode="json") for a in kb], indent=2))
        return
    table = Table(title=f"{len(kb)} advisories")
    for column in ("advisory", "vendor", "title", "products", "CVEs", "max CVSS", "verified"):
        table.add_column(column)
    for advisory in kb:
        table.add_row(
            advisory.id,
            advisory.vendor,
            advisory.title,
            str(len(advisory.products)),
            ", ".join(v.cve for v in advisory.vulnerabilities),
            str(max(v.base_score for v in advisory.vulnerabilities)),
            "yes" if advisory.verified else "partly",
        )
    out.print(table)


@app.command()
def questionnaire(
    template: Annotated[
        bool, typer.Option("--template", help="Print an answers file to fill in (YAML).")
    ] = False,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Model key(s) for the device section (see 'risk models')."),
    ] = None,
) -> None:
    """Print the hospital and device questions, or an answers template."""
    questionnaires = load_questionnaires()
    catalogue = load_catalogue()
    keys = model or []
    unknown = [k for k in keys if k not in catalogue]
    if unknown:
        raise fail(f"unknown model key(s): {', '.join(unknown)} (see 'pumpguard risk models')", 2)
    if template:
        lines = ["# pumpguard risk answers: yes / no; leave empty for unanswered", "hospital:"]
        for q in questionnaires.hospital.questions:
            lines += [f"  # {q.text}", f"  {q.id}:"]
        lines.append("devices:")
        for key in keys or ["<model-key>"]:
            lines.append(f"  {key}:")
            for q in questionnaires.device.questions:
                lines += [f"    # [{q.section}] {q.text}", f"    {q.id}:"]
        typer.echo("\n".join(lines))
        return
    for title, items in (
        (questionnaires.hospital.title, questionnaires.hospital.questions),
        (questionnaires.device.title, questionnaires.device.questions),
    ):
        table = Table(title=title)
        for column in ("id", "section", "question", "if unanswered"):
            table.add_column(column)
        for q in items:
            table.add_row(q.id, q.section, q.text, q.assume)
        out.print(table)


@app.command()
def models() -> None:
    """List the device models the inventory normaliser knows."""
    catalogue = load_catalogue()
    kb = load_knowledge_base()
    table = Table(title="known models")
    table.add_column("key", no_wrap=True)
    for column in ("name", "kind", "advisories"):
        table.add_column(column)
    for model in catalogue.models:
        ids = sorted({a.id for a, _ in kb.products_for(model.key)})
        table.add_row(model.key, model.name, model.kind.value, ", ".join(ids) or "-")
    out.print(table)


@app.command()
def schema() -> None:
    """Print the advisory JSON Schema (the one published in docs/risk/)."""
    typer.echo(json.dumps(advisory_json_schema(), indent=2))


@app.command("threat-model")
def threat_model(
    output: Annotated[
        Path | None,
        typer.Option("--out", help="Write the Markdown here instead of standard output."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 1 if --out differs from the rendering (for CI)."),
    ] = False,
) -> None:
    """The ecosystem's threat model: data flows, STRIDE per element, threat -> control -> test."""
    try:
        model = load_threat_model()
    except ValueError as exc:
        raise fail(str(exc), 1) from None
    gaps = model.uncovered()
    unknown = model.unknown_controls(load_controls())
    if gaps or unknown:
        problems = [
            f"{element}: no threat covers STRIDE {letter.value}" for element, letter in gaps
        ]
        problems += [f"unknown control {control}" for control in unknown]
        raise _report_problems("threat model incomplete:", "threat-model.yaml", problems)
    text = render_threat_model(model, load_controls())
    if output is None:
        typer.echo(text, nl=False)
        return
    if check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            raise fail(
                f"{output} is out of date; run: pumpguard risk threat-model --out {output}", 1
            )
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror}", 2) from None
    out.print(f"threat model written to {output}", highlight=False)
