"""CI's share of fuzzing: a short seeded run of every target, and every past crash replayed.

The long runs are ``python3 tasks.py fuzz --seconds N`` (docs/security/fuzzing.md).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from tests.fuzz.engine import FuzzTarget, fuzz
from tests.fuzz.targets import TARGETS

REGRESSIONS = Path(__file__).parent / "regressions"


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_a_short_run_finds_no_crash(target: FuzzTarget) -> None:
    report = fuzz(target, executions=150, seed=2026)
    assert report.executions == 150
    assert [(c.where, c.error) for c in report.unique_crashes] == []


def _regressions() -> list[tuple[FuzzTarget, Path]]:
    by_name = {t.name: t for t in TARGETS}
    found = []
    for path in sorted(REGRESSIONS.glob("*/*")):
        found.append((by_name[path.parent.name], path))
    return found


@pytest.mark.parametrize(("target", "path"), _regressions(), ids=lambda x: getattr(x, "name", x))
def test_past_crashes_stay_fixed(target: FuzzTarget, path: Path) -> None:
    data = path.read_bytes()
    with contextlib.suppress(target.expected):
        target.call(data)


def test_the_engine_reports_a_crash_it_is_shown() -> None:
    def fragile(data: bytes) -> None:
        if b"\xff" in data:
            raise IndexError("boom")
        if not data:
            raise ValueError("empty")

    report = fuzz(FuzzTarget("fragile", fragile, (ValueError,), [b"abc"]), executions=2000, seed=1)
    assert report.crashes and {c.where.split(":")[0] for c in report.unique_crashes} == {
        "test_fuzz_smoke.py"
    }
    assert all(b"\xff" in c.data for c in report.crashes)


def test_the_atheris_driver_runs_a_target_and_reports() -> None:
    pytest.importorskip("atheris", reason="atheris is locked for Linux x86-64 only")
    import json
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "tests.fuzz", "--seconds", "2", "--target", "mllp-stream", "--json"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert report["engine"] == "atheris"
    (row,) = report["targets"]
    assert row["executions"] > 100 and row["coverage"] > 0 and row["crashes"] == 0
