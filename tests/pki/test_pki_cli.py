"""``pumpguard pki`` as an operator runs it: every state change under ``--data-dir``."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner, Result

from pumpguard.cli import app
from pumpguard.pki import CertificateAuthority, PkiEvent, server_tls_context

from .conftest import tls_listener

runner = CliRunner()
PASS = "a long enough passphrase"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    base = {"COLUMNS": "200", "PUMPGUARD_CA_PASSPHRASE": "", "PUMPGUARD_DATA_DIR": ""}
    return runner.invoke(app, ["pki", *args], env={**base, **(env or {})})


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    result = run("init", "--data-dir", str(directory))
    assert result.exit_code == 0, result.output
    return directory


def _listed(data: Path) -> list[dict[str, Any]]:
    result = run("list", "--json", "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def test_init_generates_and_stores_a_passphrase_with_a_warning(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    result = run("init", "--data-dir", str(directory))
    assert result.exit_code == 0, result.output
    stored = directory / "pki" / "passphrase"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert len(stored.read_bytes().strip()) >= 32
    assert "offline" in result.stderr
    assert "HSM" in result.stderr
    assert (directory / "pki" / "ca.pem").exists()


def test_init_with_a_passphrase_file_stores_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(PASS + "\n")
    directory = tmp_path / "data"
    result = run("init", "--data-dir", str(directory), "--passphrase-file", str(secret))
    assert result.exit_code == 0, result.output
    assert not (directory / "pki" / "passphrase").exists()
    CertificateAuthority.open(directory / "pki", PASS.encode())
    no_pass = run(
        "issue",
        "--kind",
        "pump",
        "--id",
        "P-1",
        "--out",
        str(tmp_path / "p"),
        "--data-dir",
        str(directory),
    )
    assert no_pass.exit_code == 1
    assert "no CA passphrase" in no_pass.stderr
    with_env = run(
        "issue",
        "--kind",
        "pump",
        "--id",
        "P-1",
        "--out",
        str(tmp_path / "p"),
        "--data-dir",
        str(directory),
        env={"PUMPGUARD_CA_PASSPHRASE": PASS},
    )
    assert with_env.exit_code == 0, with_env.output


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    directory = tmp_path / "from-env"
    result = run("init", env={"PUMPGUARD_DATA_DIR": str(directory)})
    assert result.exit_code == 0, result.output
    assert (directory / "pki" / "index.json").exists()


def test_issue_writes_verifiable_credentials(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "pump"
    result = run(
        "issue", "--kind", "pump", "--id", "PUMP-0001", "--out", str(out), "--data-dir", str(data)
    )
    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    (listed,) = _listed(data)
    assert listed["id"] == "PUMP-0001"
    assert listed["kind"] == "pump"
    assert listed["status"] == "valid"
    assert int(listed["serial"], 16) == cert.serial_number
    assert listed["serial"] in result.stdout


def test_issue_server_with_sans_and_days(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "server"
    result = run(
        "issue",
        "--kind",
        "server",
        "--id",
        "broker",
        "--san",
        "localhost",
        "--san",
        "127.0.0.1",
        "--days",
        "30",
        "--out",
        str(out),
        "--data-dir",
        str(data),
    )
    assert result.exit_code == 0, result.output
    (listed,) = _listed(data)
    assert listed["sans"] == ["localhost", "127.0.0.1"]
    assert not listed["also_client"]
    dual = run(
        "issue",
        "--kind",
        "server",
        "--id",
        "pumpguard-server",
        "--also-client",
        "--out",
        str(tmp_path / "dual"),
        "--data-dir",
        str(data),
    )
    assert dual.exit_code == 0, dual.output
    assert [r["also_client"] for r in _listed(data)] == [False, True]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--kind", "toaster", "--id", "X-1"], 2, "unknown certificate kind"),
        (["--kind", "pump", "--id", "PUMP/#"], 1, "invalid id"),
        (["--kind", "pump", "--id", "P-1", "--san", "x.local"], 1, "not pump"),
        (["--kind", "pump", "--id", "P-1", "--days", "0"], 2, "positive"),
    ],
)
def test_issue_refuses_bad_input(
    data: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = run("issue", *args, "--out", str(tmp_path / "x"), "--data-dir", str(data))
    assert result.exit_code == code
    assert message in result.stderr
    assert _listed(data) == []


def test_issue_does_not_overwrite_credentials_without_force(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "pump"
    args = ["issue", "--kind", "pump", "--id", "P-1", "--out", str(out), "--data-dir", str(data)]
    assert run(*args).exit_code == 0
    again = run(*args)
    assert again.exit_code == 1
    assert "--force" in again.stderr
    assert len(_listed(data)) == 1
    assert run(*args, "--force").exit_code == 0
    assert len(_listed(data)) == 2


def test_commands_before_init_say_so(tmp_path: Path) -> None:
    for args in (
        ["list"],
        ["crl"],
        ["revoke", "AB"],
        ["issue", "--kind", "pump", "--id", "P-1", "--out", str(tmp_path / "o")],
    ):
        result = run(*args, "--data-dir", str(tmp_path / "empty"))
        assert result.exit_code == 1, args
        assert "pki init" in result.stderr


def test_init_twice_is_refused(data: Path) -> None:
    result = run("init", "--data-dir", str(data))
    assert result.exit_code == 1
    assert "already exists" in result.stderr


def test_revoke_by_serial_and_by_id(data: Path, tmp_path: Path) -> None:
    for n in (1, 2, 3):
        args = ["--kind", "pump", "--id", "PUMP-2" if n > 1 else "PUMP-1"]
        assert (
            run("issue", *args, "--out", str(tmp_path / str(n)), "--data-dir", str(data)).exit_code
            == 0
        )
    first = _listed(data)[0]["serial"]
    result = run("revoke", first, "--reason", "key-compromise", "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    again = run("revoke", first, "--data-dir", str(data))
    assert again.exit_code == 1
    assert "already revoked" in again.stderr
    by_id = run("revoke", "--id", "PUMP-2", "--data-dir", str(data))
    assert by_id.exit_code == 0, by_id.output
    statuses = {(r["id"], r["status"], r["revocation_reason"]) for r in _listed(data)}
    assert statuses == {
        ("PUMP-1", "revoked", "key-compromise"),
        ("PUMP-2", "revoked", "cessation-of-operation"),
    }
    crl = x509.load_pem_x509_crl((data / "pki" / "crl.pem").read_bytes())
    assert len(list(crl)) == 3


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ABCDEF"], 1, "no certificate with serial ABCDEF"),
        (["not-hex"], 2, "hexadecimal"),
        ([], 2, "exactly one"),
        (["AB", "--id", "P-1"], 2, "exactly one"),
        (["AB", "--reason", "bored"], 2, "unknown revocation reason"),
        (["--id", "NOPE-1"], 1, "no certificate was ever issued"),
    ],
)
def test_revoke_refuses_bad_input(data: Path, args: list[str], code: int, message: str) -> None:
    result = run("revoke", *args, "--data-dir", str(data))
    assert result.exit_code == code
    assert message in result.stderr


def test_wrong_passphrase_fails_and_is_recorded(data: Path) -> None:
    result = run(
        "crl", "--data-dir", str(data), env={"PUMPGUARD_CA_PASSPHRASE": "definitely wrong"}
    )
    assert result.exit_code == 1
    assert "does not decrypt" in result.stderr
    lines = (data / "security-events.jsonl").read_text().splitlines()
    codes = [json.loads(line)["code"] for line in lines]
    assert PkiEvent.CA_WRONG_PASSPHRASE.value in codes


def test_crl_prints_a_fresh_signed_crl(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "published" / "crl.pem"
    result = run("crl", "--out", str(target), "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    crl = x509.load_pem_x509_crl(result.stdout.encode())
    assert target.read_bytes() == result.stdout.encode()
    ca = CertificateAuthority.read_certificates(data / "pki")
    assert ca == []
    issuing = x509.load_pem_x509_certificate((data / "pki" / "issuing-ca.pem").read_bytes())
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]


def test_list_table_shows_full_serials(data: Path, tmp_path: Path) -> None:
    run(
        "issue",
        "--kind",
        "ehr",
        "--id",
        "ehr-1",
        "--out",
        str(tmp_path / "e"),
        "--data-dir",
        str(data),
    )
    (listed,) = _listed(data)
    table = run("list", "--data-dir", str(data))
    assert table.exit_code == 0
    assert listed["serial"] in table.stdout.replace("\n", "").replace("│", "").replace(" ", "")
    assert "ehr-1" in table.stdout


def test_renew_writes_new_credentials(data: Path, tmp_path: Path) -> None:
    run(
        "issue",
        "--kind",
        "pump",
        "--id",
        "P-1",
        "--days",
        "10",
        "--out",
        str(tmp_path / "p"),
        "--data-dir",
        str(data),
    )
    run(
        "issue",
        "--kind",
        "pump",
        "--id",
        "P-2",
        "--out",
        str(tmp_path / "q"),
        "--data-dir",
        str(data),
    )
    result = run(
        "renew", "--within-days", "30", "--out", str(tmp_path / "renewed"), "--data-dir", str(data)
    )
    assert result.exit_code == 0, result.output
    (written,) = list((tmp_path / "renewed").iterdir())
    assert written.name.startswith("P-1-")
    assert (written / "key.pem").exists()
    assert len(_listed(data)) == 3


def test_a_stored_passphrase_readable_by_others_is_refused(data: Path) -> None:
    (data / "pki" / "passphrase").chmod(0o644)
    result = run("crl", "--data-dir", str(data))
    assert result.exit_code == 1
    assert "chmod 600" in result.stderr


@pytest.mark.parametrize("style", ["colons", "0x", "lower"])
def test_serials_are_accepted_as_openssl_prints_them(
    data: Path, tmp_path: Path, style: str
) -> None:
    run(
        "issue",
        "--kind",
        "pump",
        "--id",
        "P-1",
        "--out",
        str(tmp_path / "p"),
        "--data-dir",
        str(data),
    )
    serial = _listed(data)[0]["serial"]
    padded = serial if len(serial) % 2 == 0 else "0" + serial
    given = {
        "colons": ":".join(padded[i : i + 2] for i in range(0, len(padded), 2)),
        "0x": "0x" + serial,
        "lower": serial.lower(),
    }[style]
    result = run("revoke", given, "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert _listed(data)[0]["status"] == "revoked"


def test_check_tls_passes_our_listener_and_fails_a_lax_one(data: Path, tmp_path: Path) -> None:
    server = ["--kind", "server", "--id", "localhost", "--san", "127.0.0.1"]
    pump = ["--kind", "pump", "--id", "PUMP-1"]
    for args, name in ((server, "localhost"), (pump, "PUMP-1")):
        issued = run("issue", *args, "--out", str(tmp_path / name), "--data-dir", str(data))
        assert issued.exit_code == 0, issued.output
    probe = ["check-tls", "--host", "127.0.0.1", "--cert-dir", str(tmp_path / "PUMP-1")]
    with tls_listener(server_tls_context(tmp_path / "localhost")) as port:
        good = run(*probe, "--port", str(port))
    assert good.exit_code == 0, good.output
    assert "failed" not in good.stdout
    lax = server_tls_context(tmp_path / "localhost", require_client_cert=False)
    with tls_listener(lax) as port:
        bad = run(*probe, "--port", str(port))
    assert bad.exit_code == 1
    assert "failed" in bad.stdout
    assert "without a certificate" in bad.stdout


def test_issue_from_a_csr_writes_no_key(data: Path, tmp_path: Path) -> None:
    device = tmp_path / "device"
    device.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    own_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (device / "key.pem").write_bytes(own_key)
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PUMP-0042")]))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "req.pem").write_bytes(request.public_bytes(serialization.Encoding.PEM))
    result = run(
        "issue",
        "--kind",
        "pump",
        "--id",
        "PUMP-0042",
        "--csr",
        str(tmp_path / "req.pem"),
        "--out",
        str(device),
        "--data-dir",
        str(data),
    )
    assert result.exit_code == 0, result.output
    assert (device / "key.pem").read_bytes() == own_key
    cert = x509.load_pem_x509_certificate((device / "cert.pem").read_bytes())
    assert cert.public_key() == key.public_key()
    wrong = run(
        "issue",
        "--kind",
        "pump",
        "--id",
        "PUMP-0043",
        "--csr",
        str(tmp_path / "req.pem"),
        "--out",
        str(tmp_path / "other"),
        "--data-dir",
        str(data),
    )
    assert wrong.exit_code == 1
    assert "asks for CN 'PUMP-0042'" in wrong.stderr
    missing = run(
        "issue",
        "--kind",
        "pump",
        "--id",
        "P-1",
        "--csr",
        str(tmp_path / "nope.pem"),
        "--out",
        str(tmp_path / "x"),
        "--data-dir",
        str(data),
    )
    assert missing.exit_code == 1
    assert "cannot read CSR" in missing.stderr


def test_renew_names_devices_that_must_send_a_new_csr(data: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PUMP-0050")]))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "req.pem").write_bytes(request.public_bytes(serialization.Encoding.PEM))
    issued = run(
        "issue",
        "--kind",
        "pump",
        "--id",
        "PUMP-0050",
        "--csr",
        str(tmp_path / "req.pem"),
        "--days",
        "5",
        "--out",
        str(tmp_path / "dev"),
        "--data-dir",
        str(data),
    )
    assert issued.exit_code == 0, issued.output
    result = run("renew", "--out", str(tmp_path / "renewed"), "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert "PUMP-0050" in result.stdout
    assert "must send a new CSR" in result.stdout
    assert not (tmp_path / "renewed").exists()
