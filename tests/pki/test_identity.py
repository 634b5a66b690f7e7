"""Device ids and certificate kinds: what may become a CN and an MQTT topic level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from pumpguard.pki import (
    CertificateAuthority,
    CertKind,
    InvalidIdentError,
    PeerIdentity,
    PeerIdentityError,
    identity_from_certificate,
    validate_ident,
)


@pytest.mark.parametrize("ident", ["PUMP-0001", "ctrl_7", "a", "pump-server.ward-3", "9" * 64])
def test_valid_ids_are_accepted_unchanged(ident: str) -> None:
    assert validate_ident(ident) == ident


@pytest.mark.parametrize(
    ("ident", "why"),
    [
        ("", "empty"),
        ("PUMP/0001", "'/'"),
        ("PUMP+", "'\\+'"),
        ("PUMP#1", "'#'"),
        ("PUMP 1", "' '"),
        ("PUMP\t1", "'\\\\t'"),
        ("$SYS", "'\\$'"),
        ("PÜMP", "'Ü'"),
        ("-PUMP", "start and end"),
        ("PUMP.", "start and end"),
        ("P" * 65, "65 characters"),
        ("PUMP\x00", "'\\\\x00'"),
    ],
)
def test_invalid_ids_are_refused_with_the_reason(ident: str, why: str) -> None:
    with pytest.raises(InvalidIdentError, match=why):
        validate_ident(ident)


_MQTT_SPECIAL = set("/+#$") | {chr(c) for c in range(33)} | {"\x7f"}


@given(st.text(max_size=80))
def test_accepted_ids_are_safe_topic_levels(text: str) -> None:
    try:
        validate_ident(text)
    except InvalidIdentError:
        return
    assert 1 <= len(text) <= 64
    assert not _MQTT_SPECIAL & set(text)
    assert text.isascii()


@given(
    st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=20),
    st.sampled_from(sorted(_MQTT_SPECIAL)),
    st.integers(min_value=0, max_value=20),
)
def test_any_id_with_a_special_character_is_refused(text: str, bad: str, at: int) -> None:
    position = min(at, len(text))
    with pytest.raises(InvalidIdentError):
        validate_ident(text[:position] + bad + text[position:])


@pytest.mark.parametrize(
    ("kind", "client", "server"),
    [
        (CertKind.PUMP, True, False),
        (CertKind.CONTROLLER, True, False),
        (CertKind.SERVER, False, True),
        (CertKind.EHR, True, True),
    ],
)
def test_kind_fixes_the_extended_key_usage(kind: CertKind, client: bool, server: bool) -> None:
    usages = list(kind.extended_key_usage())
    assert (ExtendedKeyUsageOID.CLIENT_AUTH in usages) is client
    assert (ExtendedKeyUsageOID.SERVER_AUTH in usages) is server


def test_identity_is_read_back_from_an_issued_certificate(ca: CertificateAuthority) -> None:
    credential = ca.issue(CertKind.CONTROLLER, "CTRL-0042")
    cert = x509.load_pem_x509_certificate(credential.cert_pem)
    assert identity_from_certificate(cert) == PeerIdentity(CertKind.CONTROLLER, "CTRL-0042")
    assert str(identity_from_certificate(cert)) == "controller:CTRL-0042"


def test_ca_certificates_name_no_peer(ca: CertificateAuthority) -> None:
    with pytest.raises(PeerIdentityError, match="OU"):
        identity_from_certificate(ca.issuing_certificate)


def test_foreign_subjects_name_no_peer() -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    def cert(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256())
        )

    org = (NameOID.ORGANIZATION_NAME, "pumpguard")
    pump = (NameOID.ORGANIZATIONAL_UNIT_NAME, "pump")
    with pytest.raises(PeerIdentityError, match="organisation"):
        identity_from_certificate(
            cert((NameOID.ORGANIZATION_NAME, "evil"), pump, (NameOID.COMMON_NAME, "PUMP-1"))
        )
    with pytest.raises(PeerIdentityError, match="known kind"):
        identity_from_certificate(
            cert(org, (NameOID.ORGANIZATIONAL_UNIT_NAME, "admin"), (NameOID.COMMON_NAME, "x"))
        )
    with pytest.raises(PeerIdentityError, match="exactly one CN"):
        identity_from_certificate(
            cert(org, pump, (NameOID.COMMON_NAME, "A"), (NameOID.COMMON_NAME, "B"))
        )
    with pytest.raises(PeerIdentityError, match="not a valid id"):
        identity_from_certificate(cert(org, pump, (NameOID.COMMON_NAME, "pumps/#")))
