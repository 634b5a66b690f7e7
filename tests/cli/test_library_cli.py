"""The ``pumpguard library`` and ``demo`` commands, as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from pumpguard.cli import app
from pumpguard.clinical import library_json_schema
from pumpguard.data import EXAMPLE_LIBRARY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "drug-library.json"
runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def write(tmp_path: Path, data: Any, name: str = "lib.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_examples_link_is_the_embedded_library() -> None:
    assert EXAMPLE.resolve() == EXAMPLE_LIBRARY.resolve()


def test_validate_example() -> None:
    result = run("library", "validate", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_example_has_required_content() -> None:
    from pumpguard.clinical import load_library

    library = load_library(EXAMPLE)
    areas = {a.name for a in library.care_areas}
    assert {"ICU", "Med-Surg", "Oncology", "Pediatrics"} <= areas
    assert len({e.name.casefold() for _, e in library.entries()}) >= 20
    icu = library.care_area("ICU")
    assert icu is not None
    expected = {
        "Heparin": ("units/kg/h", "25000", "units", "250"),
        "Norepinephrine": ("mcg/kg/min", "4", "mg", "250"),
        "Insulin Regular": ("units/h", "100", "units", "100"),
    }
    for name, (unit, amount, amount_unit, volume) in expected.items():
        (entry,) = icu.find(name)
        assert entry.dose_unit == unit
        assert entry.concentration is not None
        assert entry.concentration.amount == Decimal(amount)
        assert entry.concentration.unit == amount_unit
        assert entry.concentration.volume_ml == Decimal(volume)
    (propofol,) = icu.find("Propofol")
    assert propofol.dose_unit == "mcg/kg/min"
    conc = propofol.to_concentration()
    assert conc is not None
    assert conc.per_ml(conc.unit) == 10
    med_surg = library.care_area("Med-Surg")
    assert med_surg is not None
    (morphine,) = med_surg.find("Morphine")
    assert morphine.pca is not None
    assert all(entry.sources for _, entry in library.entries())


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["care_areas"][0]["entries"][0]["continuous"].update(hard_max=1), "hard_max"),
        (lambda d: d["care_areas"][0]["entries"][0].update(dose_unit="U/kg/h"), "ISMP"),
        (lambda d: d["care_areas"][0]["entries"][0].update(dose_unit="mg/fortnight"), "fortnight"),
        (
            lambda d: d["care_areas"][0]["entries"].append(d["care_areas"][0]["entries"][0]),
            "duplicate drug",
        ),
        (lambda d: d.pop("care_areas"), "care_areas"),
        (lambda d: d.update(version="two"), "version"),
    ],
    ids=["hard-below-soft", "ismp-unit", "unknown-unit", "duplicate", "missing", "version"],
)
def test_validate_broken_variants(tmp_path: Path, mutate: Any, expected: str) -> None:
    data = example()
    mutate(data)
    result = run("library", "validate", str(write(tmp_path, data)))
    assert result.exit_code == 1
    assert expected in result.output
    first = data.get("care_areas", [{}])[0].get("entries", [{}])[0].get("name")
    if expected not in ("care_areas", "version"):
        assert f"drug {first!r}" in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [("{not json", "not valid JSON"), ("", "not valid JSON"), ("[]", "valid dictionary")],
)
def test_validate_unreadable(tmp_path: Path, content: str, expected: str) -> None:
    result = run("library", "validate", str(write(tmp_path, content)))
    assert result.exit_code == 1
    assert expected in result.output


def test_validate_missing_file(tmp_path: Path) -> None:
    result = run("library", "validate", str(tmp_path / "nope.json"))
    assert result.exit_code == 1
    assert "cannot read file" in result.output


def check(*extra: str) -> Any:
    return run("library", "check", str(EXAMPLE), "--care-area", "ICU", *extra)


def test_check_heparin_far_above_hard_max() -> None:
    result = check(
        "--drug", "Heparin", "--dose", "100", "--unit", "units/kg/h", "--weight", "80", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verdict"] == "hard-high"
    assert report["err_code"] == 9024
    assert report["flow_ml_h"] == "80.00"


def test_check_unknown_drug() -> None:
    result = check("--drug", "Unobtainium", "--dose", "1", "--unit", "mg/h", "--json")
    report = json.loads(result.output)
    assert report["verdict"] == "no-match"
    assert report["err_code"] == 9010


def test_check_ok_and_soft() -> None:
    ok = json.loads(
        check(
            "--drug", "heparin", "--dose", "18", "--unit", "units/kg/h", "--weight", "80", "--json"
        ).output
    )
    assert ok["verdict"] == "ok"
    assert ok["err_code"] is None
    assert ok["flow_ml_h"] == "14.40"
    soft = json.loads(
        check(
            "--drug",
            "Norepinephrine",
            "--dose",
            "2",
            "--unit",
            "mcg/kg/min",
            "--weight",
            "70",
            "--json",
        ).output
    )
    assert soft["verdict"] == "soft-high"
    assert soft["err_code"] is None


def test_check_other_verdicts_and_codes() -> None:
    cases = [
        (("--drug", "Heparin", "--dose", "18", "--unit", "units/kg/h"), "weight-required", 9011),
        (
            ("--drug", "Heparin", "--dose", "18", "--unit", "units/h", "--weight", "80"),
            "units-mismatch",
            9009,
        ),
        (
            ("--drug", "Heparin", "--dose", "18", "--unit", "units/kg/h", "--weight", "500"),
            "weight-out-of-range",
            9005,
        ),
    ]
    for args, verdict, code in cases:
        report = json.loads(check(*args, "--json").output)
        assert (report["verdict"], report["err_code"]) == (verdict, code)
    wrong_area = run(
        "library",
        "check",
        str(EXAMPLE),
        "--care-area",
        "Mars",
        "--drug",
        "Heparin",
        "--dose",
        "1",
        "--unit",
        "units/h",
        "--json",
    )
    report = json.loads(wrong_area.output)
    assert (report["verdict"], report["err_code"]) == ("care-area-mismatch", 9021)


def test_check_human_output() -> None:
    result = check("--drug", "Heparin", "--dose", "100", "--unit", "units/kg/h", "--weight", "80")
    assert result.exit_code == 0
    assert "hard-high" in result.output
    assert "9024" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dose", "lots"), "--dose must be a number"),
        (("--dose", "nan"), "--dose must be a finite number"),
        (("--dose", "1", "--weight", "heavy"), "--weight must be a number"),
    ],
)
def test_check_bad_numbers(args: tuple[str, ...], message: str) -> None:
    base = ("--drug", "Heparin", "--unit", "units/kg/h")
    result = check(*base, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_check_missing_option_is_a_usage_error() -> None:
    result = run("library", "check", str(EXAMPLE), "--care-area", "ICU")
    assert result.exit_code == 2
    assert "Missing option" in result.output


def test_published_schema_is_current_and_accepts_the_example() -> None:
    published = json.loads((ROOT / "docs" / "drug-library.schema.json").read_text())
    assert published == library_json_schema(), "regenerate: pumpguard library schema > docs/..."
    jsonschema.Draft202012Validator.check_schema(published)
    jsonschema.Draft202012Validator(published).validate(example())


def test_demo_runs_and_shows_refusals() -> None:
    result = run("demo")
    assert result.exit_code == 0, result.output
    assert "9024" in result.output
    assert "lockout" in result.output
    assert "hourly limit reached" in result.output


def test_version_via_console_script() -> None:
    exe = shutil.which("pumpguard", path=str(Path(sys.executable).parent))
    assert exe is not None
    completed = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert completed.returncode == 0
    assert completed.stdout.startswith("pumpguard ")


def test_unknown_command_is_a_usage_error() -> None:
    result = run("frobnicate")
    assert result.exit_code == 2
