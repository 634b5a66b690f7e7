from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from typer.testing import CliRunner, Result

from pumpguard.cli.admin import open_store
from pumpguard.cli.app import app
from pumpguard.clock import SystemClock
from pumpguard.monitor import Detection
from pumpguard.monitor.ruleset import DEFAULT_RULES
from pumpguard.security_events import Severity
from pumpguard.server.alert_store import AlertStore

runner = CliRunner()


def test_rules_as_json_name_every_rule() -> None:
    result = runner.invoke(app, ["alerts", "rules", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [r.rule_id for r in DEFAULT_RULES]
    assert all(r["rationale"] and r["codes"] for r in rows)


def test_sigma_export_writes_one_file_per_rule(tmp_path: Path) -> None:
    result = runner.invoke(app, ["alerts", "rules", "--sigma-dir", str(tmp_path / "sigma")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "sigma").glob("*.yml"))) == len(DEFAULT_RULES)


def test_sigma_export_to_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("x")
    result = runner.invoke(app, ["alerts", "rules", "--sigma-dir", str(target)])
    assert result.exit_code == 2
    assert "not a directory" in result.output


# -- alerts kept by the server, worked from the command line ------------------------------

ENV = {
    "COLUMNS": "200",
    "PUMPGUARD_DATABASE_URL": "",
    "PUMPGUARD_AUDIT_PASSPHRASE": "",
    "PUMPGUARD_DATA_DIR": "",
}


def run(*args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), env=ENV, input=input)


@dataclass(frozen=True)
class Analyst:
    username: str
    password: str
    totp: pyotp.TOTP

    def answers(self, steps_ahead: int = 0) -> str:
        return f"{self.password}\n{self.totp.at(time.time() + 30 * steps_ahead)}\n"


def _account(directory: Path, username: str, role: str) -> Analyst:
    result = run(
        "admin", "create", "--data-dir", str(directory), "--username", username, "--role", role
    )
    assert result.exit_code == 0, result.output
    password = re.search(r"password:\s+(\S+)", result.output)
    uri = re.search(r"(otpauth://totp/\S+)", result.output)
    assert password and uri
    return Analyst(username, password.group(1), pyotp.parse_uri(uri.group(1)))  # type: ignore[arg-type]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    _account(directory, "alice", "admin")
    store = open_store(directory, None, create=False)
    now = SystemClock().now_ms()
    try:
        with store.transaction() as session:
            alerts = AlertStore(session, store.ctx)
            for minutes, analytic, device in (
                (-30, "PG-LINK-001", "PUMP-0001"),
                (-20, "PG-LINK-001", "PUMP-0001"),
                (-10, "PG-TLS-001", "PUMP-0001"),
                (-5, "PG-MQTT-002", "PUMP-0002"),
            ):
                alerts.record(
                    Detection(
                        analytic_id=analytic,
                        title=f"{analytic} title",
                        time_ms=now + minutes * 60_000,
                        severity=Severity.HIGH if analytic != "PG-MQTT-002" else Severity.MEDIUM,
                        message="seen",
                        device_id=device,
                        technique="T0855",
                    )
                )
    finally:
        store.close()
    return directory


def test_list_show_and_incidents(data_dir: Path) -> None:
    listed = run("alerts", "list", "--data-dir", str(data_dir), "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["alert_id"], r["count"]) for r in rows] == [
        ("ALR-000003", 1),
        ("ALR-000002", 1),
        ("ALR-000001", 2),
    ]
    high = json.loads(
        run("alerts", "list", "--data-dir", str(data_dir), "--json", "--severity", "high").output
    )
    assert {r["alert_id"] for r in high} == {"ALR-000001", "ALR-000002"}
    by_device = run("alerts", "list", "--data-dir", str(data_dir), "--device", "PUMP-0002")
    assert "ALR-000003" in by_device.output and "ALR-000001" not in by_device.output
    shown = json.loads(
        run("alerts", "show", "ALR-000001", "--data-dir", str(data_dir), "--json").output
    )
    assert shown["history"][0]["state"] == "new" and shown["rule"] == "PG-LINK-001"
    text = run("alerts", "show", "ALR-000001", "--data-dir", str(data_dir))
    assert "seen 2 times" in text.output
    incidents = json.loads(run("alerts", "incidents", "--data-dir", str(data_dir), "--json").output)
    by_id = {i["incident_id"]: i["alert_ids"] for i in incidents}
    assert sorted(by_id.values()) == [["ALR-000001", "ALR-000002"], ["ALR-000003"]]
    one = run("alerts", "incidents", "INC-000001", "--data-dir", str(data_dir), "--json")
    assert [a["alert_id"] for a in json.loads(one.output)["alerts"]] == ["ALR-000001", "ALR-000002"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("list", "--state", "closed"), "--state must be one of"),
        (("list", "--severity", "urgent"), "--severity must be one of"),
        (("list", "--since", "yesterday"), "--since must be an ISO 8601 time"),
        (("show", "ALR-404404"), "no alert 'ALR-404404'"),
        (("incidents", "INC-404404"), "no incident 'INC-404404'"),
        (("resolve", "ALR-000001", "--user", "ana"), "needs --note"),
        (("resolve", "ALR-000001", "--user", "ana", "--note", "  "), "needs --note"),
    ],
)
def test_bad_input_is_named_and_exits_2(
    data_dir: Path, args: tuple[str, ...], message: str
) -> None:
    result = run("alerts", *args, "--data-dir", str(data_dir))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_ack_and_resolve_as_an_authenticated_analyst(data_dir: Path) -> None:
    ana = _account(data_dir, "ana", "security_analyst")
    wrong = run(
        "alerts",
        "ack",
        "ALR-000001",
        "--user",
        "ana",
        "--data-dir",
        str(data_dir),
        input="nope\n000000\n",
    )
    assert wrong.exit_code == 1 and "login refused" in wrong.output
    acked = run(
        "alerts",
        "ack",
        "ALR-000001",
        "--user",
        "ana",
        "--note",
        "on it",
        "--data-dir",
        str(data_dir),
        input=ana.answers(),
    )
    assert acked.exit_code == 0, acked.output
    assert "ALR-000001 is acknowledged (by ana)" in acked.output
    again = run(
        "alerts",
        "ack",
        "ALR-000001",
        "--user",
        "ana",
        "--data-dir",
        str(data_dir),
        input=ana.answers(1),
    )
    assert again.exit_code == 2 and "cannot become acknowledged" in again.output
    done = run(
        "alerts",
        "resolve",
        "ALR-000001",
        "--user",
        "ana",
        "--note",
        "replay from a test rig",
        "--data-dir",
        str(data_dir),
        input=ana.answers(-1),
    )
    # step -1 is older than the step already used: refused as a replayed code, never accepted
    assert done.exit_code == 1 and "login refused" in done.output
    eve = _account(data_dir, "eve", "security_analyst")
    closed = run(
        "alerts",
        "resolve",
        "ALR-000001",
        "--user",
        "eve",
        "--note",
        "replay from a test rig",
        "--data-dir",
        str(data_dir),
        input=eve.answers(),
    )
    assert closed.exit_code == 0, closed.output
    shown = json.loads(
        run("alerts", "show", "ALR-000001", "--data-dir", str(data_dir), "--json").output
    )
    assert [(h["state"], h["actor"], h["note"]) for h in shown["history"]] == [
        ("new", "monitor", ""),
        ("acknowledged", "ana", "on it"),
        ("resolved", "eve", "replay from a test rig"),
    ]
    audit = run("audit", "show", "--data-dir", str(data_dir), "--limit", "100")
    assert "alert.acknowledged" in audit.output and "alert.resolved" in audit.output


def test_a_reading_role_cannot_change_alerts(data_dir: Path) -> None:
    bob = _account(data_dir, "bob", "biomed")
    result = run(
        "alerts",
        "ack",
        "ALR-000001",
        "--user",
        "bob",
        "--data-dir",
        str(data_dir),
        input=bob.answers(),
    )
    assert result.exit_code == 1
    assert "lacks the permission alerts.manage" in result.output


@pytest.mark.parametrize(
    ("args", "settings", "message"),
    [
        (("--syslog", "collector-without-port"), None, "syslog destination must be HOST:PORT"),
        (("--webhook", "ftp://x"), None, "webhook URL must be http(s)"),
        ((), "[[syslog]]\nhost = 'siem'\n", "port must be an integer"),
        ((), "[live]\nutc_offset_min = 9000\n", "utc_offset_min must be within"),
        ((), "[alerts]\n", "unknown sections alerts"),
    ],
)
def test_up_refuses_bad_export_settings_before_starting(
    tmp_path: Path, args: tuple[str, ...], settings: str | None, message: str
) -> None:
    if settings is not None:
        (tmp_path / "monitoring.toml").write_text(settings)
    result = run("up", "--data-dir", str(tmp_path), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "pki").exists()  # refused before anything was set up
