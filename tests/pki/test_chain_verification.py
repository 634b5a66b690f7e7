"""Issued certificates verify with independent implementations: cryptography's X.509 path
validation (a webpki-style verifier) and the ``openssl verify`` binary."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from pumpguard.pki import CertificateAuthority, CertKind, RevocationReason

from .conftest import PASSPHRASE

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")


def _policy(ca: CertificateAuthority, at: datetime | None = None) -> PolicyBuilder:
    builder = PolicyBuilder().store(Store([ca.root_certificate]))
    return builder.time(at) if at is not None else builder


@pytest.mark.parametrize("kind", [CertKind.PUMP, CertKind.CONTROLLER, CertKind.EHR])
def test_client_certificates_verify_to_the_root(ca: CertificateAuthority, kind: CertKind) -> None:
    leaf = x509.load_pem_x509_certificate(ca.issue(kind, "DEV-1").cert_pem)
    verified = _policy(ca).build_client_verifier().verify(leaf, [ca.issuing_certificate])
    assert verified.chain == [leaf, ca.issuing_certificate, ca.root_certificate]
    assert verified.subjects is not None
    assert x509.UniformResourceIdentifier(f"urn:pumpguard:{kind}:DEV-1") in verified.subjects


def test_server_certificates_verify_for_their_names(ca: CertificateAuthority) -> None:
    leaf = x509.load_pem_x509_certificate(
        ca.issue(CertKind.SERVER, "broker", sans=["broker.ward.local", "10.1.2.3"]).cert_pem
    )
    for subject in (DNSName("broker.ward.local"), IPAddress(ip_address("10.1.2.3"))):
        chain = _policy(ca).build_server_verifier(subject).verify(leaf, [ca.issuing_certificate])
        assert chain[-1] == ca.root_certificate
    with pytest.raises(VerificationError):
        _policy(ca).build_server_verifier(DNSName("other.local")).verify(
            leaf, [ca.issuing_certificate]
        )


def test_pump_certificate_is_not_a_server_certificate(ca: CertificateAuthority) -> None:
    leaf = x509.load_pem_x509_certificate(ca.issue(CertKind.PUMP, "localhost").cert_pem)
    with pytest.raises(VerificationError):
        _policy(ca).build_server_verifier(DNSName("localhost")).verify(
            leaf, [ca.issuing_certificate]
        )


def test_expired_and_foreign_certificates_do_not_verify(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    leaf = x509.load_pem_x509_certificate(ca.issue(CertKind.PUMP, "PUMP-1").cert_pem)
    later = datetime.now(UTC) + timedelta(days=800)
    with pytest.raises(VerificationError):
        _policy(ca, later).build_client_verifier().verify(leaf, [ca.issuing_certificate])
    foreign = CertificateAuthority.init(tmp_path / "foreign", PASSPHRASE)
    stranger = x509.load_pem_x509_certificate(foreign.issue(CertKind.PUMP, "PUMP-1").cert_pem)
    with pytest.raises(VerificationError):
        _policy(ca).build_client_verifier().verify(
            stranger, [ca.issuing_certificate, foreign.issuing_certificate]
        )


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@needs_openssl
@pytest.mark.parametrize("kind", list(CertKind))
def test_openssl_verify_accepts_cert_pem_against_ca_pem(
    ca: CertificateAuthority, kind: CertKind, tmp_path: Path
) -> None:
    target = tmp_path / kind
    ca.issue(kind, "DEV-1").write(target)
    purpose = "sslserver" if kind is CertKind.SERVER else "sslclient"
    result = _openssl(
        "verify",
        "-x509_strict",
        "-purpose",
        purpose,
        "-CAfile",
        target / "ca.pem",
        target / "cert.pem",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


@needs_openssl
def test_openssl_verify_with_the_crl_refuses_a_revoked_certificate(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    ca.issue(CertKind.PUMP, "PUMP-1").write(good)
    revoked = ca.issue(CertKind.PUMP, "PUMP-2")
    revoked.write(bad)
    ca.revoke(revoked.serial, RevocationReason.KEY_COMPROMISE)
    crl = ca.directory / "crl.pem"
    ok = _openssl(
        "verify", "-crl_check", "-CAfile", good / "ca.pem", "-CRLfile", crl, good / "cert.pem"
    )
    assert ok.returncode == 0, ok.stderr
    refused = _openssl(
        "verify", "-crl_check", "-CAfile", bad / "ca.pem", "-CRLfile", crl, bad / "cert.pem"
    )
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stderr


@needs_openssl
def test_openssl_refuses_a_foreign_certificate(ca: CertificateAuthority, tmp_path: Path) -> None:
    foreign = CertificateAuthority.init(tmp_path / "foreign", PASSPHRASE)
    foreign.issue(CertKind.PUMP, "PUMP-1").write(tmp_path / "stranger")
    ca.issue(CertKind.PUMP, "PUMP-1").write(tmp_path / "ours")
    result = _openssl(
        "verify", "-CAfile", tmp_path / "ours" / "ca.pem", tmp_path / "stranger" / "cert.pem"
    )
    assert result.returncode != 0


@needs_openssl
def test_openssl_reads_the_encrypted_ca_key_only_with_the_passphrase(
    ca: CertificateAuthority,
) -> None:
    key = ca.directory / "issuing-ca.key.pem"
    wrong = _openssl("pkey", "-in", key, "-passin", "pass:not-the-passphrase", "-noout")
    assert wrong.returncode != 0
    right = _openssl("pkey", "-in", key, "-passin", f"pass:{PASSPHRASE.decode()}", "-noout")
    assert right.returncode == 0, right.stderr
