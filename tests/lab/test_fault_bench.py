"""``pumpguard bench faults``: the accounting against rows really stored in a database, the
command line's refusals, and (slow) a short run through every fault. No timed assertions:
recovery times are the bench's to report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.lab.fault_bench import FaultKind, Generated, count_stored
from pumpguard.server.db import make_engine, upgrade_database
from pumpguard.server.models import PumpEventRow

runner = CliRunner()


def _event(device: str, seq: int, log_seq: int) -> PumpEventRow:
    body = {"log_seq": log_seq, "occurred_at_ms": 1000 + seq, "summary": "mains", "attributes": {}}
    return PumpEventRow(
        device_id=device,
        seq=seq,
        sent_at_ms=1000 + seq,
        received_at_ms=2000 + seq,
        kind="mains",
        body=json.dumps(body),
    )


def _status(device: str, seq: int) -> PumpEventRow:
    return PumpEventRow(
        device_id=device,
        seq=seq,
        sent_at_ms=1000 + seq,
        received_at_ms=2000 + seq,
        kind="status",
        body=json.dumps({"state": "infusing", "battery_pct": 90}),
    )


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade_database(engine)
    engine.dispose()
    return url


def _store(url: str, rows: list[PumpEventRow]) -> None:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            session.add_all(rows)
            session.commit()
    finally:
        engine.dispose()


def test_everything_stored_once_counts_nothing_lost_or_duplicated(database: str) -> None:
    _store(
        database,
        [_status("P-1", 1), _event("P-1", 2, 1), _event("P-1", 3, 2), _status("P-2", 1)],
    )
    count = count_stored(database, {"P-1": Generated(1, 4, 2), "P-2": Generated(1, 2, 0)})
    assert (count.generated, count.stored) == (4, 4)
    assert count.events_lost == count.events_duplicated == count.log_entries_lost == 0
    assert count.unexpected_stored == 0
    assert count.log_entries == 2


def test_a_message_missing_from_the_store_is_lost(database: str) -> None:
    _store(database, [_status("P-1", 1), _event("P-1", 3, 2)])
    count = count_stored(database, {"P-1": Generated(1, 4, 2)})
    assert count.events_lost == 1
    assert count.log_entries_lost == 1  # seq 2 carried log entry 1
    assert count.stored == 2


def test_a_log_entry_stored_under_two_sequence_numbers_is_a_duplicate(database: str) -> None:
    """The unique (device, seq) key cannot catch a pump that sends one event twice with two
    sequence numbers; the firmware's log_seq can."""
    _store(database, [_event("P-1", 1, 1), _event("P-1", 2, 1), _event("P-1", 3, 2)])
    count = count_stored(database, {"P-1": Generated(1, 4, 2)})
    assert count.events_duplicated == 1
    assert count.events_lost == 0


def test_rows_no_pump_generated_are_unexpected_and_other_devices_ignored(database: str) -> None:
    _store(database, [_status("P-1", 1), _status("P-1", 7), _status("OTHER", 1)])
    count = count_stored(database, {"P-1": Generated(1, 2, 0)})
    assert count.unexpected_stored == 1
    assert count.stored == 1
    assert count.events_lost == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database", "mysql"], "must be sqlite or postgresql"),
        (["--database", "postgresql"], "needs a server"),
        (["--database", "postgresql", "--postgres-url", "mysql://x"], "postgresql:// URL"),
        (["--skew-hours", "0"], "must not be 0"),
        (["--fault-seconds", "-1"], "must be positive"),
    ],
)
def test_bad_flags_are_usage_errors(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUMPGUARD_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["bench", "faults", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_postgresql_server_is_a_clear_error() -> None:
    result = runner.invoke(
        app,
        [
            "bench",
            "faults",
            "--database",
            "postgresql",
            "--postgres-url",
            "postgresql://postgres@127.0.0.1:1/none",
        ],
    )
    assert result.exit_code == 1
    assert "cannot create a database on" in result.output
    assert "Connection refused" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def _run(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["bench", "faults", "--json", *args])
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.stdout)
    return report


def _check(report: dict[str, object], pumps: int) -> None:
    assert report["events_lost"] == 0
    assert report["events_duplicated"] == 0
    assert report["infusions_interrupted"] == 0
    assert report["log_entries_lost"] == 0
    assert report["all_zero"] is True
    generated = report["generated"]
    assert isinstance(generated, int) and generated > 0
    assert report["stored"] == generated
    faults = report["faults"]
    assert isinstance(faults, list)
    by_kind = {f["fault"]: f for f in faults}
    assert list(by_kind) == [k.value for k in FaultKind]
    assert all(f["recovery_s"] is not None for f in faults)
    # each fault really happened: nobody connected without a broker or a server, the
    # partitioned pumps were cut off, and the skewed pump's rows carry its clock
    assert by_kind["broker"]["connected_min"] == 0
    assert by_kind["server"]["connected_min"] == 0
    config = report["configuration"]
    assert isinstance(config, dict)
    assert by_kind["partition"]["connected_min"] <= pumps - 1 - config["partitioned"]
    skew = report["skew_observed_s"]
    assert isinstance(skew, dict)
    skewed = f"FAULT-{pumps - 1:05d}"
    assert abs(skew[skewed] - 3 * 3600) < 60
    outcomes = report["command_outcomes"]
    assert isinstance(outcomes, dict)
    assert outcomes["FAULT-00000 (true clock)"] == "accepted"
    assert outcomes[f"{skewed} (skewed clock)"] != "no acknowledgement stored"


@pytest.mark.slow
def test_a_short_run_through_every_fault_on_sqlite_loses_nothing() -> None:
    report = _run("--pumps", "6", "--seconds", "15")
    _check(report, 6)
    assert report["configuration"]["database"] == "sqlite"  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("PUMPGUARD_TEST_POSTGRES_URL"),
    reason="PUMPGUARD_TEST_POSTGRES_URL is not set",
)
def test_a_short_run_through_every_fault_on_postgresql_loses_nothing() -> None:
    url = os.environ["PUMPGUARD_TEST_POSTGRES_URL"]
    report = _run(
        "--pumps", "6", "--seconds", "15", "--database", "postgresql", "--postgres-url", url
    )
    _check(report, 6)
    faults = report["faults"]
    assert isinstance(faults, list)
    assert "server connections terminated" in faults[1]["detail"]
