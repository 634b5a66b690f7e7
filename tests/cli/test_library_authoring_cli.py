"""``pumpguard library`` on a data directory: two people, two logins, one approved library."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from typer.testing import CliRunner, Result

from pumpguard.cli import admin, app
from pumpguard.clock import VirtualClock
from pumpguard.data import EXAMPLE_LIBRARY

runner = CliRunner()
ENV = {
    "COLUMNS": "200",
    "PUMPGUARD_DATABASE_URL": "",
    "PUMPGUARD_AUDIT_PASSPHRASE": "",
    "PUMPGUARD_DATA_DIR": "",
    "PUMPGUARD_USER": "",
    "PUMPGUARD_PASSWORD": "",
    "PUMPGUARD_TOTP": "",
}
START_MS = 1_800_000_000_000


def run(*args: str, **env: str) -> Result:
    return runner.invoke(app, list(args), env={**ENV, **env})


@dataclass
class Person:
    username: str
    password: str
    secret: str


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """The CLI opens its store with a ``SystemClock``; one-time codes are one per 30 s, so the
    test moves a virtual clock instead of waiting."""
    virtual = VirtualClock(START_MS)
    monkeypatch.setattr(admin, "SystemClock", lambda: virtual)
    return virtual


def create(directory: Path, username: str, role: str) -> Person:
    result = run(
        "admin", "create", "--data-dir", str(directory), "--username", username, "--role", role
    )
    assert result.exit_code == 0, result.output
    password = re.search(r"password:\s+(\S+)", result.output)
    uri = re.search(r"(otpauth://totp/\S+)", result.output)
    assert password and uri
    secret = parse_qs(urlparse(uri.group(1)).query)["secret"][0]
    return Person(username, password.group(1), secret)


def as_(person: Person, clock: VirtualClock, directory: Path, *args: str) -> Result:
    clock.advance(30_000)
    code = pyotp.TOTP(person.secret).at(clock.now_ms() // 1000)
    return run(
        *args,
        "--data-dir",
        str(directory),
        "--user",
        person.username,
        "--totp",
        code,
        PUMPGUARD_PASSWORD=person.password,
    )


def test_draft_submit_and_approve_by_two_people(tmp_path: Path, clock: VirtualClock) -> None:
    directory = tmp_path / "data"
    create(directory, "alice", "admin")
    phil = create(directory, "phil", "pharmacist")
    anna = create(directory, "anna", "pharmacy_approver")
    source = tmp_path / "library.json"
    source.write_text(EXAMPLE_LIBRARY.read_text(encoding="utf-8"))

    imported = as_(phil, clock, directory, "library", "draft", "import", str(source))
    assert imported.exit_code == 0, imported.output
    assert "imported library.json as draft v1 (draft)" in imported.output
    wrong = as_(phil, clock, directory, "library", "submit", "1")
    assert wrong.exit_code == 0, wrong.output
    own = as_(phil, clock, directory, "library", "approve", "1")
    assert own.exit_code == 1
    assert "lacks the permission library.approve" in own.output
    stolen_name = run(
        "library",
        "approve",
        "1",
        "--data-dir",
        str(directory),
        "--user",
        "anna",
        "--totp",
        "000000",
        PUMPGUARD_PASSWORD=phil.password,
    )
    assert stolen_name.exit_code == 1 and "login refused" in stolen_name.output
    approved = as_(anna, clock, directory, "library", "approve", "1", "--note", "ok")
    assert approved.exit_code == 0, approved.output
    assert "approved v1 by anna (drafted by phil)" in approved.output

    listed = run("library", "versions", "--data-dir", str(directory), "--json")
    assert listed.exit_code == 0, listed.output
    (version,) = json.loads(listed.output)
    assert (version["state"], version["decided_by"], version["contributors"]) == (
        "approved",
        "anna",
        ["phil"],
    )
    exported = tmp_path / "v1.csv"
    result = run(
        "library",
        "export",
        "1",
        "--format",
        "csv",
        "-o",
        str(exported),
        "--data-dir",
        str(directory),
    )
    assert result.exit_code == 0, result.output
    again = as_(phil, clock, directory, "library", "draft", "import", str(exported))
    assert again.exit_code == 0, again.output
    diff = run("library", "diff", "1", "2", "--data-dir", str(directory))
    assert diff.exit_code == 0 and "no differences" in diff.output
    late = as_(phil, clock, directory, "library", "draft", "add-area", "1", "Burns")
    assert late.exit_code == 1 and "approved version never changes" in late.output
    audit = run("audit", "verify", "--data-dir", str(directory))
    assert audit.exit_code == 0, audit.output


def test_bad_input_is_one_readable_error(tmp_path: Path, clock: VirtualClock) -> None:
    directory = tmp_path / "data"
    create(directory, "alice", "admin")
    phil = create(directory, "phil", "pharmacist")
    bad = tmp_path / "bad.csv"
    bad.write_text("care_area,name,code,dose_unit,continuous_hard_max\nICU,Saline,NS,mL/h,lots\n")
    result = as_(
        phil,
        clock,
        directory,
        "library",
        "draft",
        "import",
        str(bad),
        "--library-id",
        "lib",
        "--name",
        "Lib",
    )
    assert result.exit_code == 1
    assert "line 2, column continuous_hard_max: 'lots' is not a number" in result.output
    missing = run("library", "versions", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "no pumpguard server data" in missing.output
    unknown = run("library", "export", "7", "--data-dir", str(directory))
    assert unknown.exit_code == 1 and "there is no drug library v7" in unknown.output
    text = tmp_path / "lib.txt"
    text.write_text("{}")
    wrong_kind = as_(phil, clock, directory, "library", "draft", "import", str(text))
    assert wrong_kind.exit_code == 2 and "expected a .json or .csv file" in wrong_kind.output
