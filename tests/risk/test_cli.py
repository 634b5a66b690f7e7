"""``pumpguard risk`` end to end: reports written, JSON shape, exit codes, readable errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pumpguard.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "inventory.csv"
runner = CliRunner()


def _run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["risk", *args])


def test_assess_example_writes_html_pdf_and_json(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = _run("assess", "--inventory", str(EXAMPLE), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {"matches", "unknown_models", "risks"} <= set(document)
    assert all(isinstance(m["cves"], list) and m["cves"] for m in document["matches"])
    assert all({"line", "advisory", "status"} <= set(m) for m in document["matches"])
    unknown = {u["model"] for u in document["unknown_models"]}
    assert {"Agilia VP MC", "CURLIN 6000 CMS"} <= unknown
    assert document["risks"] and {"current", "residual", "cvss", "controls"} <= set(
        document["risks"][0]
    )
    html = out.read_text("utf-8")
    assert "<svg" in html or "Heat map" in html
    assert "ICSMA-20-317-01" in html and "Traceability" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    pdf = out.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF")


def test_every_row_is_accounted_for(tmp_path: Path) -> None:
    result = _run("assess", "-i", str(EXAMPLE), "-o", str(tmp_path / "r.html"), "--json")
    document = json.loads(result.stdout)
    lines = len(EXAMPLE.read_text("utf-8").strip().splitlines()) - 1
    identified = {m["line"] for m in document["matches"]}
    unknown = {u["line"] for u in document["unknown_models"]}
    assert not identified & unknown
    assert len(unknown) + len(identified) <= lines
    assert document["summary"]["rows"] == lines


def test_human_summary_and_pdf_path(tmp_path: Path) -> None:
    pdf = tmp_path / "custom.pdf"
    result = _run("assess", "-i", str(EXAMPLE), "-o", str(tmp_path / "r.html"), "--pdf", str(pdf))
    assert result.exit_code == 0
    assert "devices match" in result.stdout
    assert pdf.exists()


def test_answers_change_the_report(tmp_path: Path) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        "hospital:\n  env.segmentation: yes\n  env.monitoring: yes\n"
        "devices:\n  smiths-medfusion-4000:\n    dev.ftp_enabled: no\n",
        "utf-8",
    )
    base = json.loads(
        _run("assess", "-i", str(EXAMPLE), "-o", str(tmp_path / "a.html"), "--json").stdout
    )
    with_answers = json.loads(
        _run(
            "assess",
            "-i",
            str(EXAMPLE),
            "-o",
            str(tmp_path / "b.html"),
            "-a",
            str(answers),
            "--json",
        ).stdout
    )
    total = sum(r["current"]["score"] for r in base["risks"])
    assert sum(r["current"]["score"] for r in with_answers["risks"]) < total
    assert len(with_answers["unanswered"]) == len(base["unanswered"]) - 3


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            "manufacturer,model,count,zone\nBD,Alaris,1,ICU\n",
            "missing required column(s): software_version",
        ),
        (
            "manufacturer,model,software_version,count,zone\nBD,Alaris,1,lots,ICU\n",
            "line 2, column 'count'",
        ),
        ("", "the file is empty"),
    ],
)
def test_bad_inventory_exits_1_with_a_located_message(
    tmp_path: Path, content: str, words: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, "utf-8")
    result = _run("assess", "-i", str(path), "-o", str(tmp_path / "r.html"))
    assert result.exit_code == 1
    assert words in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "r.html").exists()


def test_wrong_encoding_and_missing_file(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        (
            "manufacturer,model,software_version,count,zone\n"
            "B. Braun,Space,L81,1,Bloc op\xe9ratoire\n"
        ).encode("latin-1")
    )
    result = _run("assess", "-i", str(latin), "-o", str(tmp_path / "r.html"))
    assert result.exit_code == 1 and "not UTF-8" in result.stderr
    result = _run("assess", "-i", str(tmp_path / "none.csv"), "-o", str(tmp_path / "r.html"))
    assert result.exit_code == 1 and "cannot read" in result.stderr


def test_bad_answers_exit_1(tmp_path: Path) -> None:
    answers = tmp_path / "a.yaml"
    answers.write_text("hospital: {env.segmentation: perhaps}\n", "utf-8")
    result = _run("assess", "-i", str(EXAMPLE), "-o", str(tmp_path / "r.html"), "-a", str(answers))
    assert result.exit_code == 1
    assert "env.segmentation: answer must be yes or no" in result.stderr


def test_unwritable_output_exits_1(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _run("assess", "-i", str(EXAMPLE), "-o", str(blocker / "r.html"))
    assert result.exit_code == 1
    assert "cannot write the report" in result.stderr


def test_output_directory_is_created(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "2026" / "r.html"
    result = _run("assess", "-i", str(EXAMPLE), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.exists()
    assert out.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_missing_options_are_usage_errors() -> None:
    assert _run("assess").exit_code == 2


def test_advisories_listing() -> None:
    result = _run("advisories", "--json")
    assert result.exit_code == 0
    ids = {a["id"] for a in json.loads(result.stdout)}
    assert {"ICSMA-19-178-01", "ICSA-15-125-01B", "ICSMA-23-194-01"} <= ids
    assert _run("advisories").exit_code == 0


def test_questionnaire_template_round_trips(tmp_path: Path) -> None:
    result = _run("questionnaire", "--template", "--model", "bd-alaris-pcu-8015")
    assert result.exit_code == 0
    path = tmp_path / "answers.yaml"
    path.write_text(result.stdout, "utf-8")
    assessed = _run("assess", "-i", str(EXAMPLE), "-o", str(tmp_path / "r.html"), "-a", str(path))
    assert assessed.exit_code == 0, assessed.stderr
    assert _run("questionnaire").exit_code == 0
    assert _run("questionnaire", "--model", "acme").exit_code == 2


def test_models_and_schema() -> None:
    assert "bd-alaris-pcu-8015" in _run("models").stdout
    schema = json.loads(_run("schema").stdout)
    assert schema["title"] == "Advisory"
