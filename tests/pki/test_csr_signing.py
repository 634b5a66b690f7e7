"""Certificates for keys generated on the device: the private key never leaves it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pumpguard.pki import (
    CertificateAuthority,
    CertKind,
    CsrError,
    InvalidIdentError,
    PeerIdentity,
    PkiEvent,
    client_tls_context,
    server_tls_context,
)
from pumpguard.security_events import SecurityEventLog

from .conftest import handshake

IssueTo = Callable[..., Path]


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *common_names: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in common_names])
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_a_device_key_is_certified_and_authenticates(
    ca: CertificateAuthority, server_dir: Path, tmp_path: Path, events: SecurityEventLog
) -> None:
    device_key = ec.generate_private_key(ec.SECP256R1())
    signed = ca.sign_csr(CertKind.PUMP, _csr(device_key, "PUMP-0042"))
    cert = x509.load_pem_x509_certificate(signed.cert_pem)
    assert cert.public_key() == device_key.public_key()
    assert cert.issuer == ca.issuing_certificate.subject
    assert ca.certificate(signed.serial).ident == "PUMP-0042"
    device = tmp_path / "device"
    device.mkdir()
    (device / "key.pem").write_bytes(_key_pem(device_key))
    signed.write(device)
    result = handshake(server_tls_context(server_dir), client_tls_context(device))
    assert result.succeeded, result.server_error
    assert result.identity == PeerIdentity(CertKind.PUMP, "PUMP-0042")
    (issued,) = [e for e in events.with_code(PkiEvent.CERT_ISSUED) if e.attributes.get("csr")]
    assert issued.device_id == "PUMP-0042"


def test_the_id_may_come_from_the_caller_when_the_csr_names_none(
    ca: CertificateAuthority,
) -> None:
    signed = ca.sign_csr(
        CertKind.SERVER, _csr(ec.generate_private_key(ec.SECP256R1())), ident="broker"
    )
    assert ca.certificate(signed.serial).ident == "broker"


def test_the_ca_decides_the_profile_not_the_request(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    greedy = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PUMP-1")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    cert = x509.load_pem_x509_certificate(ca.sign_csr(CertKind.PUMP, greedy).cert_pem)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


@pytest.mark.parametrize(
    ("make", "ident", "message"),
    [
        (lambda: _csr(ec.generate_private_key(ec.SECP256R1()), "PUMP-2"), "PUMP-1", "asks for"),
        (lambda: _csr(ec.generate_private_key(ec.SECP256R1())), None, "no CN"),
        (lambda: _csr(ec.generate_private_key(ec.SECP256R1()), "A", "B"), None, "more than one"),
        (lambda: _csr(ec.generate_private_key(ec.SECP384R1()), "PUMP-1"), None, "P-256"),
        (lambda: _csr(rsa.generate_private_key(65537, 2048), "PUMP-1"), None, "P-256"),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", None, "not a PEM"),
    ],
)
def test_bad_requests_are_refused(
    ca: CertificateAuthority, make: Callable[[], bytes], ident: str | None, message: str
) -> None:
    with pytest.raises(CsrError, match=message):
        ca.sign_csr(CertKind.PUMP, make(), ident=ident)
    assert ca.certificates() == []


def test_a_request_with_a_broken_signature_is_refused(ca: CertificateAuthority) -> None:
    pem = _csr(ec.generate_private_key(ec.SECP256R1()), "PUMP-1")
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value
    body = base64.encodebytes(bytes(der)).decode()
    tampered = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(CsrError, match="proof of key possession"):
        ca.sign_csr(CertKind.PUMP, tampered.encode())
    assert ca.certificates() == []


def test_an_invalid_id_in_the_csr_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidIdentError, match="'#'"):
        ca.sign_csr(CertKind.PUMP, _csr(ec.generate_private_key(ec.SECP256R1()), "PUMP#1"))


def test_renewal_never_rekeys_a_device_generated_key(ca: CertificateAuthority) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    own = ca.sign_csr(CertKind.PUMP, _csr(key, "PUMP-1"), now=start, validity=timedelta(days=10))
    made_here = ca.issue(CertKind.PUMP, "PUMP-2", now=start, validity=timedelta(days=10))
    later = start + timedelta(days=5)
    due = {r.serial for r in ca.due_for_renewal(timedelta(days=30), now=later)}
    assert due == {own.serial, made_here.serial}
    assert ca.certificate(own.serial).device_key
    renewed = ca.renew_due(timedelta(days=30), now=later)
    assert [ca.certificate(c.serial).ident for c in renewed] == ["PUMP-2"]
    assert ca.certificate(own.serial).renewed_by is None
    remaining = {r.serial for r in ca.due_for_renewal(timedelta(days=30), now=later)}
    assert remaining == {own.serial}
