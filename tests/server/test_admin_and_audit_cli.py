"""``pumpguard admin`` and ``pumpguard audit`` as an operator runs them."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pyotp
import pytest
from typer.testing import CliRunner, Result

from pumpguard.cli import app
from pumpguard.cli.audit import TAMPERED_EXIT

runner = CliRunner()
ENV = {
    "COLUMNS": "200",
    "PUMPGUARD_DATABASE_URL": "",
    "PUMPGUARD_AUDIT_PASSPHRASE": "",
    "PUMPGUARD_DATA_DIR": "",
}


def run(*args: str, input: str | None = None, **env: str) -> Result:
    return runner.invoke(app, list(args), input=input, env={**ENV, **env})


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    result = run("admin", "create", "--data-dir", str(directory), "--username", "alice")
    assert result.exit_code == 0, result.output
    return directory


def tamper(directory: Path, statement: str) -> None:
    with sqlite3.connect(directory / "pumpguard.db") as conn:
        conn.execute(statement)


def test_admin_create_prints_the_secrets_once_and_stores_none(data_dir: Path) -> None:
    result = run(
        "admin", "create", "--data-dir", str(data_dir), "--username", "bob", "--role", "biomed"
    )
    assert result.exit_code == 0, result.output
    password = re.search(r"password:\s+(\S+)", result.output)
    uri = re.search(r"(otpauth://totp/\S+)", result.output)
    assert password and uri
    assert "created biomed account 'bob'" in result.output
    database = (data_dir / "pumpguard.db").read_bytes()
    assert password.group(1).encode() not in database
    assert (data_dir / "pumpguard.db").stat().st_mode & 0o077 == 0
    assert (
        (data_dir / "audit" / "checkpoint-key.pem")
        .read_bytes()
        .startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    )
    listed = run("admin", "list", "--data-dir", str(data_dir))
    assert (
        "alice" in listed.output
        and "bob" in listed.output
        and password.group(1) not in listed.output
    )


def test_admin_create_refuses_duplicates_and_bad_input(data_dir: Path) -> None:
    duplicate = run("admin", "create", "--data-dir", str(data_dir), "--username", "alice")
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.output
    bad_role = run(
        "admin", "create", "--data-dir", str(data_dir), "--username", "x1", "--role", "root"
    )
    assert bad_role.exit_code == 2 and "--role must be one of" in bad_role.output
    bad_name = run("admin", "create", "--data-dir", str(data_dir), "--username", "Robert'); DROP")
    assert bad_name.exit_code == 2 and "username" in bad_name.output


def test_a_wrong_audit_passphrase_is_refused(data_dir: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all\n")
    result = run(
        "admin",
        "create",
        "--data-dir",
        str(data_dir),
        "--username",
        "bob",
        "--audit-passphrase-file",
        str(wrong),
    )
    assert result.exit_code == 1
    assert "wrong passphrase" in result.output


def test_the_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    directory = tmp_path / "from-env"
    result = run("admin", "create", "--username", "alice", PUMPGUARD_DATA_DIR=str(directory))
    assert result.exit_code == 0, result.output
    assert (directory / "pumpguard.db").exists()


def test_audit_verify_passes_an_intact_log(data_dir: Path) -> None:
    result = run("audit", "verify", "--data-dir", str(data_dir), "--json")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output)
    assert verdict["ok"] and verdict["entries"] == 1 and verdict["unanchored"] == 0


@pytest.mark.parametrize(
    ("statement", "first"),
    [
        (
            'UPDATE audit_entries SET details = \'{"role":"nurse"}\' WHERE seq = 1',
            "first bad entry 1",
        ),
        ("DELETE FROM audit_entries WHERE seq = 2", "first bad entry 2"),
        (
            "INSERT INTO audit_entries SELECT 3, at_ms, 'mallory', action, subject, details, "
            "entry_hash, entry_hash FROM audit_entries WHERE seq = 2",
            "first bad entry 3",
        ),
    ],
    ids=["update", "delete", "insert"],
)
def test_audit_verify_names_the_first_bad_entry(data_dir: Path, statement: str, first: str) -> None:
    assert run("admin", "create", "--data-dir", str(data_dir), "--username", "bob").exit_code == 0
    assert run("audit", "checkpoint", "--data-dir", str(data_dir)).exit_code == 0
    tamper(data_dir, statement)
    result = run("audit", "verify", "--data-dir", str(data_dir))
    assert result.exit_code == TAMPERED_EXIT
    assert "TAMPERED" in result.output and first in result.output


def test_audit_verify_with_an_outside_public_key(data_dir: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.pub.pem"
    kept.write_bytes((data_dir / "audit" / "checkpoint-key.pub.pem").read_bytes())
    assert (
        run("audit", "verify", "--data-dir", str(data_dir), "--public-key", str(kept)).exit_code
        == 0
    )
    other = tmp_path / "other"
    assert run("admin", "create", "--data-dir", str(other), "--username", "eve").exit_code == 0
    foreign = other / "audit" / "checkpoint-key.pub.pem"
    result = run("audit", "verify", "--data-dir", str(data_dir), "--public-key", str(foreign))
    assert result.exit_code == TAMPERED_EXIT
    assert "checkpoint-bad-signature" in result.output


def test_audit_commands_on_a_missing_data_dir_fail_cleanly(tmp_path: Path) -> None:
    result = run("audit", "verify", "--data-dir", str(tmp_path / "none"))
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output
    shown = run("audit", "show", "--data-dir", str(tmp_path / "none"))
    assert shown.exit_code == 1


def test_audit_show_lists_entries(data_dir: Path) -> None:
    result = run("audit", "show", "--data-dir", str(data_dir))
    assert result.exit_code == 0
    assert "user.created" in result.output and "user:alice" in result.output


def test_admin_create_on_postgresql_via_the_environment(tmp_path: Path) -> None:
    from tests.server.conftest import PostgresDatabase, require_postgres

    database = PostgresDatabase(require_postgres())
    try:
        directory = tmp_path / "pg"
        created = run(
            "admin",
            "create",
            "--data-dir",
            str(directory),
            "--username",
            "alice",
            PUMPGUARD_DATABASE_URL=database.url,
        )
        assert created.exit_code == 0, created.output
        assert not (directory / "pumpguard.db").exists()
        verified = run(
            "audit", "verify", "--data-dir", str(directory), PUMPGUARD_DATABASE_URL=database.url
        )
        assert verified.exit_code == 0, verified.output
    finally:
        database.drop()


def test_admin_totp_prints_the_code_an_authenticator_would(data_dir: Path) -> None:
    created = run("admin", "create", "--data-dir", str(data_dir), "--username", "carol")
    uri = re.search(r"(otpauth://totp/\S+)", created.output)
    assert uri
    result = run("admin", "totp", "--uri", uri.group(1))
    assert result.exit_code == 0, result.output
    code = result.output.split()[0]
    assert re.fullmatch(r"\d{6}", code)
    assert pyotp.parse_uri(uri.group(1)).verify(code, valid_window=1)
    assert run("admin", "totp", input=uri.group(1) + "\n").output.split()[0] in {
        code,
        pyotp.parse_uri(uri.group(1)).now(),
    }


@pytest.mark.parametrize(
    "uri",
    ["", "not a uri", "otpauth://hotp/x?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&counter=1"],
)
def test_admin_totp_refuses_what_is_not_a_totp_uri(uri: str) -> None:
    result = run("admin", "totp", "--uri", uri)
    assert result.exit_code == 2
    assert "not a TOTP URI" in result.output
