"""``pumpguard sim replay`` and ``pumpguard bench physiology`` end to end, bad inputs included."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from pumpguard.cli import app
from pumpguard.cli.reference import ENV_VAR

runner = CliRunner()
HEADER = "minute,carbs_g,insulin_u\n"


def _write_inputs(path: Path, carbs: np.ndarray, insulin: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        handle.write(HEADER)
        handle.writelines(
            f"{m},{float(c)!r},{float(u)!r}\n"
            for m, (c, u) in enumerate(zip(carbs, insulin, strict=True))
        )
    return path


def _replay(tmp_path: Path, text: str, patient: str = "adult#001") -> Any:
    inputs = tmp_path / "in.csv"
    inputs.write_text(text)
    return runner.invoke(
        app,
        [
            "sim",
            "replay",
            "--patient",
            patient,
            "--inputs",
            str(inputs),
            "--trace",
            str(tmp_path / "out.csv"),
        ],
    )


def test_replay_matches_the_stored_simglucose_trace(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    names = [str(n) for n in reference["mixed_names"]]
    i = names.index("child#007")
    inputs = _write_inputs(
        tmp_path / "in.csv", reference["mixed_carbs"][i], reference["mixed_insulin"][i]
    )
    trace = tmp_path / "trace.csv"
    result = runner.invoke(
        app,
        ["sim", "replay", "--patient", "child#007", "--inputs", str(inputs), "--trace", str(trace)],
    )
    assert result.exit_code == 0, result.output
    assert "1440 minutes" in result.stdout
    with trace.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["minute", "bg_mgdl"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1440))
    bg = np.array([float(r[1]) for r in rows[1:]])
    assert np.abs(bg - reference["mixed_bg"][i]).max() <= 0.5


def test_replay_to_stdout_and_header_in_any_order(tmp_path: Path) -> None:
    inputs = tmp_path / "in.csv"
    inputs.write_text("insulin_u,minute,carbs_g\n0.02,0,0\n0.02,1,10\n\n")
    result = runner.invoke(
        app, ["sim", "replay", "--patient", "adult#003", "--inputs", str(inputs), "--trace", "-"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "minute,bg_mgdl" and len(lines) == 3
    assert lines[2].startswith("1,")


@pytest.mark.parametrize(
    ("text", "patient", "code", "needles"),
    [
        (HEADER + "0,0,0.01\n", "adult#011", 2, ["unknown virtual patient", "adult#010"]),
        (HEADER + "0,0,0.01\n1,abc,0.01\n", "adult#001", 1, ["line 3", "carbs_g", "'abc'"]),
        (HEADER + "0,0,-0.5\n", "adult#001", 1, ["line 2", "insulin_u", "negative"]),
        (HEADER + "0,-1,0\n", "adult#001", 1, ["carbs_g", "negative"]),
        (HEADER + "0,0,0\n2,0,0\n", "adult#001", 1, ["line 3", "got 2, expected 1"]),
        (HEADER + "1,0,0\n", "adult#001", 1, ["expected 0"]),
        (HEADER + "0.5,0,0\n", "adult#001", 1, ["minute", "whole number"]),
        (HEADER + "0,0,nan\n", "adult#001", 1, ["insulin_u", "finite"]),
        (HEADER + "0,0\n", "adult#001", 1, ["line 2", "2 fields, expected 3"]),
        ("minute,carbs,insulin_u\n0,0,0\n", "adult#001", 1, ["header", "missing carbs_g"]),
        ("minute,carbs_g,insulin_u,bg\n0,0,0,1\n", "adult#001", 1, ["unknown bg"]),
        (HEADER, "adult#001", 1, ["no input rows"]),
        ("", "adult#001", 1, ["empty file"]),
    ],
)
def test_replay_bad_inputs_give_clear_errors(
    tmp_path: Path, text: str, patient: str, code: int, needles: list[str]
) -> None:
    result = _replay(tmp_path, text, patient)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = " ".join(result.stderr.split())
    assert "error:" in message and "Traceback" not in result.output
    for needle in needles:
        assert needle in message, message
    assert not (tmp_path / "out.csv").exists()


def test_replay_missing_input_file(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            *("sim", "replay", "--patient", "adult#001"),
            *("--inputs", str(tmp_path / "nope.csv"), "--trace", str(tmp_path / "out.csv")),
        ],
    )
    assert result.exit_code == 1
    assert "cannot read" in result.stderr


def test_bench_ours_only_json() -> None:
    result = runner.invoke(
        app,
        [
            *("bench", "physiology", "--patients", "3", "--scale", "5", "--repeats", "1"),
            *("--ours-only", "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ours_patient_days_per_s"] > 0
    assert report["simglucose_patient_days_per_s"] is None and report["speedup"] is None
    assert [row["patients"] for row in report["scaling"]] == [5]


def test_bench_without_simglucose_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "no-python"))
    result = runner.invoke(app, ["bench", "physiology", "--patients", "2", "--scale", ""])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "pip install simglucose==0.2.11" in message and ENV_VAR in message
    assert "--ours-only" in message


@pytest.mark.slow
@pytest.mark.usefixtures("simglucose")
def test_bench_against_simglucose_json() -> None:
    result = runner.invoke(app, ["bench", "physiology", "--json", "--scale", "1000"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in (
        "ours_patient_days_per_s",
        "simglucose_patient_days_per_s",
        "speedup",
        "max_abs_diff_mgdl",
    ):
        assert isinstance(report[key], float)
    assert report["max_abs_diff_mgdl"] <= 0.5  # accuracy only: no timing assertions
    assert report["scaling"][0]["simglucose_extrapolated"] is True
