"""``pumpguard bench server``: a small fleet over real mutual-TLS MQTT against the real stack
stores every message once; bad flags are usage errors. No timed assertions: the figures are
the bench's to report, not the test's to judge."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.lab.server_bench import (
    DEFINITIONS,
    CredentialCache,
    ServerBenchConfig,
    pump_ident,
)

REQUIRED_KEYS = {
    "connected",
    "events_per_s",
    "ingest_p50_ms",
    "ingest_p99_ms",
    "lost_events",
    "duplicate_events",
}

runner = CliRunner()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


def _bench(cache: Path, *args: str) -> dict[str, object]:
    result = runner.invoke(
        app,
        ["bench", "server", "--cert-cache", str(cache), "--json", *args],
    )
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.stdout)
    return report


def _check_exact(report: dict[str, object], pumps: int) -> None:
    assert report.keys() >= REQUIRED_KEYS
    assert report["connected"] == pumps
    assert report["lost_events"] == 0
    assert report["lost_after_ack"] == 0
    assert report["duplicate_events"] == 0
    assert report["unexpected_stored"] == 0
    assert report["server_refused"] == 0
    assert report["security_events"] == {}
    created = report["created"]
    assert isinstance(created, int) and created > 0
    assert report["stored"] == created


def test_twenty_pumps_on_sqlite_store_every_message_once(cache: Path) -> None:
    report = _bench(cache, "--pumps", "20", "--duration", "5", "--status-interval", "2")
    _check_exact(report, 20)
    assert report["database"] == "sqlite"
    for key in REQUIRED_KEYS:
        assert key in DEFINITIONS or key in {"connected"}


@pytest.mark.skipif(
    not os.environ.get("PUMPGUARD_TEST_POSTGRES_URL"),
    reason="PUMPGUARD_TEST_POSTGRES_URL is not set",
)
def test_twenty_pumps_on_postgresql_store_every_message_once(cache: Path) -> None:
    url = os.environ["PUMPGUARD_TEST_POSTGRES_URL"]
    report = _bench(
        cache, "--pumps", "20", "--duration", "5", "--status-interval", "2", "--database", url
    )
    _check_exact(report, 20)
    assert report["database"] == "postgresql"


def test_credentials_are_issued_once_and_reused(cache: Path) -> None:
    store = CredentialCache(cache / "reuse")
    assert store.ensure(2) == [pump_ident(0), pump_ident(1)]
    first = (store.pump_dir(pump_ident(1)) / "cert.pem").read_bytes()
    store.ensure(3)
    assert (store.pump_dir(pump_ident(1)) / "cert.pem").read_bytes() == first
    assert (store.pump_dir(pump_ident(2)) / "key.pem").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pumps", "0"], "--pumps"),
        (["--duration", "0"], "--duration"),
        (["--ramp-rate", "0"], "--ramp-rate"),
        (["--status-interval", "-1"], "--status-interval"),
        (["--event-interval", "0"], "--event-interval"),
        (["--database", "mysql://localhost/x"], "postgresql://"),
    ],
)
def test_bad_flags_are_usage_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", "server", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="--drain-timeout"):
        ServerBenchConfig(pumps=1, drain_timeout_s=-1)


@pytest.mark.slow
def test_a_thousand_pumps_for_a_minute_lose_nothing(cache: Path) -> None:
    report = _bench(cache, "--pumps", "1000", "--duration", "60")
    _check_exact(report, 1000)
