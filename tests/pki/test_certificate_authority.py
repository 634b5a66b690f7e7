"""The CA itself: keys at rest, certificate profile, index, revocation, CRL and renewal."""

from __future__ import annotations

import json
import stat
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pumpguard.pki import (
    CRL_VALIDITY,
    CaAlreadyInitialisedError,
    CaNotInitialisedError,
    CaStateError,
    CertificateAlreadyRevokedError,
    CertificateAuthority,
    CertKind,
    CertStatus,
    InvalidIdentError,
    PassphraseError,
    PkiEvent,
    RevocationReason,
    UnknownIdentError,
    UnknownSerialError,
    WrongPassphraseError,
)
from pumpguard.security_events import SecurityEventLog

from .conftest import PASSPHRASE

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _crl(pem: bytes) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(pem)


def test_ca_keys_are_encrypted_at_rest_and_private(ca: CertificateAuthority) -> None:
    for name in ("root-ca.key.pem", "issuing-ca.key.pem"):
        path = ca.directory / name
        pem = path.read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(TypeError):  # needs a password
            serialization.load_pem_private_key(pem, password=None)
        # A wrong key fails the PKCS#7 padding check, or (about 1 time in 256) passes it and
        # yields garbage that fails ASN.1 parsing: both are a refusal, neither gives a key.
        with pytest.raises(
            ValueError,
            match=r"[Ii]ncorrect password|[Bb]ad decrypt|ASN\.1|[Cc]ould not deserialize",
        ):
            serialization.load_pem_private_key(pem, password=b"not the passphrase")
        key = serialization.load_pem_private_key(pem, password=PASSPHRASE)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"


def test_open_with_the_right_passphrase_sees_the_same_ca(ca: CertificateAuthority) -> None:
    issued = ca.issue(CertKind.PUMP, "PUMP-0001")
    reopened = CertificateAuthority.open(ca.directory, PASSPHRASE)
    assert reopened.ca_pem == ca.ca_pem
    assert [r.serial for r in reopened.certificates()] == [issued.serial]


def test_wrong_passphrase_is_refused_and_reported(
    ca: CertificateAuthority, events: SecurityEventLog
) -> None:
    with pytest.raises(WrongPassphraseError, match="does not decrypt"):
        CertificateAuthority.open(ca.directory, b"guessing-the-passphrase", events=events)
    assert len(events.with_code(PkiEvent.CA_WRONG_PASSPHRASE)) == 1


def test_init_refuses_an_existing_ca_and_a_weak_passphrase(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    with pytest.raises(CaAlreadyInitialisedError, match="already exists"):
        CertificateAuthority.init(ca.directory, PASSPHRASE)
    with pytest.raises(PassphraseError, match="at least 12"):
        CertificateAuthority.init(tmp_path / "weak", b"short")


def test_open_without_a_ca_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(CaNotInitialisedError, match="pki init"):
        CertificateAuthority.open(tmp_path / "nothing", PASSPHRASE)
    with pytest.raises(CaNotInitialisedError):
        CertificateAuthority.read_certificates(tmp_path / "nothing")


def test_an_unencrypted_or_swapped_ca_key_is_refused(ca: CertificateAuthority) -> None:
    issuing_key = ca.directory / "issuing-ca.key.pem"
    root_key = ca.directory / "root-ca.key.pem"
    issuing_key.write_bytes(root_key.read_bytes())
    with pytest.raises(CaStateError, match="does not match"):
        CertificateAuthority.open(ca.directory, PASSPHRASE)
    plain = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    issuing_key.write_bytes(plain)
    with pytest.raises(CaStateError, match="not encrypted"):
        CertificateAuthority.open(ca.directory, PASSPHRASE)


def test_a_damaged_index_is_reported_not_ignored(ca: CertificateAuthority) -> None:
    index = ca.directory / "index.json"
    data = json.loads(index.read_text())
    data["certificates"] = [{"serial": "ZZ"}]
    index.write_text(json.dumps(data))
    with pytest.raises(CaStateError, match="damaged"):
        ca.certificates()
    index.write_text("{not json")
    with pytest.raises(CaStateError, match="damaged"):
        CertificateAuthority.open(ca.directory, PASSPHRASE)


def test_ca_hierarchy_profile(ca: CertificateAuthority) -> None:
    root, issuing = ca.root_certificate, ca.issuing_certificate
    assert root.subject == root.issuer
    assert issuing.issuer == root.subject
    for cert, pathlen in ((root, 1), (issuing, 0)):
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical
        assert bc.value.ca
        assert bc.value.path_length == pathlen
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert ku.value.key_cert_sign
        assert ku.value.crl_sign
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.signature_hash_algorithm is not None
        assert cert.signature_hash_algorithm.name == "sha256"
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    issuing_aki = issuing.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert issuing_aki.key_identifier == root_ski.digest
    root_years = (root.not_valid_after_utc - root.not_valid_before_utc).days / 365.25
    issuing_years = (issuing.not_valid_after_utc - issuing.not_valid_before_utc).days / 365.25
    assert round(root_years) == 10
    assert round(issuing_years) == 5
    assert ca.ca_pem == (
        issuing.public_bytes(serialization.Encoding.PEM)
        + root.public_bytes(serialization.Encoding.PEM)
    )


@pytest.mark.parametrize(
    ("kind", "usages", "days"),
    [
        (CertKind.PUMP, [ExtendedKeyUsageOID.CLIENT_AUTH], 730),
        (CertKind.CONTROLLER, [ExtendedKeyUsageOID.CLIENT_AUTH], 730),
        (CertKind.SERVER, [ExtendedKeyUsageOID.SERVER_AUTH], 397),
        (CertKind.EHR, [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH], 397),
    ],
)
def test_leaf_profile(
    ca: CertificateAuthority, kind: CertKind, usages: list[x509.ObjectIdentifier], days: int
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    credential = ca.issue(kind, "DEV-01", now=now)
    cert = _cert(credential.cert_pem)
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "DEV-01"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == kind
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "pumpguard"
    assert cert.issuer == ca.issuing_certificate.subject
    assert cert.serial_number == credential.serial
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert not bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert not ku.key_cert_sign
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuing_ski = ca.issuing_certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    assert aki.key_identifier == issuing_ski.digest
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name is not None
    assert cdp[0].full_name[0].value == ca.crl_url
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"urn:pumpguard:{kind}:DEV-01" in san.get_values_for_type(x509.UniformResourceIdentifier)
    assert cert.not_valid_after_utc == credential.not_after
    assert credential.not_after - now == timedelta(days=days)
    key = serialization.load_pem_private_key(credential.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()
    assert credential.ca_pem == ca.ca_pem


def test_server_sans_hold_dns_names_and_ip_addresses(ca: CertificateAuthority) -> None:
    cert = _cert(ca.issue(CertKind.SERVER, "broker", sans=["Broker.Local", "::1"]).cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.local"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["::1"]
    default = _cert(ca.issue(CertKind.SERVER, "pumpserver").cert_pem)
    names = default.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["pumpserver"]


def test_bad_sans_and_ids_are_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidIdentError, match="subject alternative name"):
        ca.issue(CertKind.SERVER, "broker", sans=["bad name!"])
    with pytest.raises(InvalidIdentError, match="not pump"):
        ca.issue(CertKind.PUMP, "PUMP-1", sans=["pump.local"])
    with pytest.raises(InvalidIdentError, match="'#'"):
        ca.issue(CertKind.PUMP, "PUMP#1")
    assert ca.certificates() == []


def test_leaf_validity_never_outlives_the_issuing_ca(ca: CertificateAuthority) -> None:
    credential = ca.issue(CertKind.PUMP, "PUMP-1", validity=timedelta(days=365 * 20))
    assert credential.not_after == ca.issuing_certificate.not_valid_after_utc


def test_credential_files_and_modes(ca: CertificateAuthority, tmp_path: Path) -> None:
    credential = ca.issue(CertKind.PUMP, "PUMP-1")
    target = tmp_path / "out" / "pump"
    credential.write(target)
    assert (target / "cert.pem").read_bytes() == credential.cert_pem
    assert (target / "ca.pem").read_bytes() == ca.ca_pem
    assert stat.S_IMODE((target / "key.pem").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        credential.write(target, overwrite=False)
    (target / "key.pem").chmod(0o644)
    credential.write(target)
    assert stat.S_IMODE((target / "key.pem").stat().st_mode) == 0o600


def test_index_records_every_issue_and_survives_reopening(
    ca: CertificateAuthority, events: SecurityEventLog
) -> None:
    serials = {ca.issue(CertKind.PUMP, f"PUMP-{n:04d}").serial for n in range(3)}
    records = CertificateAuthority.read_certificates(ca.directory)
    assert {r.serial for r in records} == serials
    assert all(r.status() is CertStatus.VALID for r in records)
    for record in records:
        assert (ca.directory / "certs" / f"{record.serial_hex}.pem").exists()
        assert _cert(ca.certificate_pem(record.serial)).serial_number == record.serial
    assert len(events.with_code(PkiEvent.CERT_ISSUED)) == 3


def test_revocation_lands_in_the_signed_crl(
    ca: CertificateAuthority, events: SecurityEventLog
) -> None:
    keep = ca.issue(CertKind.PUMP, "PUMP-1")
    gone = ca.issue(CertKind.PUMP, "PUMP-2")
    ca.revoke(gone.serial, RevocationReason.KEY_COMPROMISE, now=T0)
    record = ca.certificate(gone.serial)
    assert record.revoked
    assert record.revoked_at == T0
    assert record.status() is CertStatus.REVOKED
    crl = _crl((ca.directory / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.issuing_certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ca.issuing_certificate.subject
    entry = crl.get_revoked_certificate_by_serial_number(gone.serial)
    assert entry is not None
    assert entry.revocation_date_utc == T0
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(keep.serial) is None
    assert len(events.with_code(PkiEvent.CERT_REVOKED)) == 1


def test_revocation_errors_are_specific(ca: CertificateAuthority) -> None:
    credential = ca.issue(CertKind.PUMP, "PUMP-1")
    with pytest.raises(UnknownSerialError, match="ABC"):
        ca.revoke(0xABC, RevocationReason.UNSPECIFIED)
    ca.revoke(credential.serial, RevocationReason.SUPERSEDED)
    with pytest.raises(CertificateAlreadyRevokedError, match="already revoked"):
        ca.revoke(credential.serial, RevocationReason.KEY_COMPROMISE)
    assert ca.certificate(credential.serial).revocation_reason is RevocationReason.SUPERSEDED


def test_decommissioning_revokes_every_live_certificate_of_the_device(
    ca: CertificateAuthority,
) -> None:
    first = ca.issue(CertKind.PUMP, "PUMP-7")
    second = ca.issue(CertKind.PUMP, "PUMP-7")
    bystander = ca.issue(CertKind.PUMP, "PUMP-8")
    ca.revoke(first.serial, RevocationReason.KEY_COMPROMISE)
    assert ca.revoke_ident("PUMP-7") == [second.serial]
    assert ca.certificate(second.serial).revocation_reason is (
        RevocationReason.CESSATION_OF_OPERATION
    )
    assert ca.certificate(first.serial).revocation_reason is RevocationReason.KEY_COMPROMISE
    assert not ca.certificate(bystander.serial).revoked
    assert ca.revoke_ident("PUMP-7") == []
    with pytest.raises(UnknownIdentError, match="PUMP-9"):
        ca.revoke_ident("PUMP-9")


def test_crl_numbers_increase_and_validity_is_bounded(ca: CertificateAuthority) -> None:
    numbers = []
    for _ in range(3):
        crl = _crl(ca.crl_pem(now=T0))
        numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        assert crl.next_update_utc is not None
        assert crl.next_update_utc - T0 == CRL_VALIDITY
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 3


def test_crls_signed_in_the_same_second_have_increasing_this_update(
    ca: CertificateAuthority,
) -> None:
    now = datetime.now(UTC)
    first = _crl(ca.crl_pem(now=now))
    second = _crl(ca.crl_pem(now=now))
    assert second.last_update_utc > first.last_update_utc


def test_renewal_reissues_only_what_expires_soon(
    ca: CertificateAuthority, events: SecurityEventLog
) -> None:
    soon = ca.issue(CertKind.PUMP, "PUMP-1", now=T0, validity=timedelta(days=20))
    later = ca.issue(CertKind.PUMP, "PUMP-2", now=T0, validity=timedelta(days=200))
    revoked = ca.issue(CertKind.PUMP, "PUMP-3", now=T0, validity=timedelta(days=20))
    expired = ca.issue(CertKind.PUMP, "PUMP-4", now=T0, validity=timedelta(days=1))
    ca.revoke(revoked.serial, RevocationReason.UNSPECIFIED, now=T0)
    check = T0 + timedelta(days=5)
    renewed = ca.renew_due(timedelta(days=30), now=check)
    assert len(renewed) == 1
    new = renewed[0]
    assert new.serial != soon.serial
    assert new.key_pem != soon.key_pem
    new_record = ca.certificate(new.serial)
    assert new_record.ident == "PUMP-1"
    assert new_record.kind is CertKind.PUMP
    assert ca.certificate(soon.serial).renewed_by == new.serial
    assert not ca.certificate(soon.serial).revoked  # valid until the device switches over
    assert ca.renew_due(timedelta(days=30), now=check) == []  # never renewed twice
    untouched = {later.serial, revoked.serial, expired.serial}
    assert all(ca.certificate(s).renewed_by is None for s in untouched)
    assert len(events.with_code(PkiEvent.CERT_RENEWED)) == 1


def test_renewal_keeps_server_sans(ca: CertificateAuthority) -> None:
    ca.issue(CertKind.SERVER, "broker", sans=["broker.local", "10.0.0.5"], now=T0)
    (renewed,) = ca.renew_due(timedelta(days=400), now=T0 + timedelta(days=1))
    san = _cert(renewed.cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["broker.local"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]


def test_two_ca_handles_on_one_directory_lose_no_record(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.open(ca.directory, PASSPHRASE)
    a = ca.issue(CertKind.PUMP, "PUMP-1")
    b = other.issue(CertKind.PUMP, "PUMP-2")
    ca.revoke(b.serial, RevocationReason.UNSPECIFIED)
    c = other.issue(CertKind.PUMP, "PUMP-3")
    records = {r.serial: r for r in ca.certificates()}
    assert set(records) == {a.serial, b.serial, c.serial}
    assert records[b.serial].revoked


def test_naive_datetimes_are_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ca.issue(CertKind.PUMP, "PUMP-1", now=datetime(2026, 1, 1))


def test_an_issuing_certificate_not_signed_by_the_root_is_refused(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    other = CertificateAuthority.init(tmp_path / "other", PASSPHRASE)
    (ca.directory / "root-ca.pem").write_bytes((other.directory / "root-ca.pem").read_bytes())
    with pytest.raises(CaStateError, match="not signed by"):
        CertificateAuthority.open(ca.directory, PASSPHRASE)


def test_an_expired_issuing_ca_issues_nothing(ca: CertificateAuthority) -> None:
    beyond = ca.issuing_certificate.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(CaStateError, match="issuing CA expired"):
        ca.issue(CertKind.PUMP, "PUMP-1", now=beyond)
    assert ca.certificates() == []


def test_the_crl_url_must_be_a_url(tmp_path: Path) -> None:
    with pytest.raises(CaStateError, match="CRL URL"):
        CertificateAuthority.init(tmp_path / "pki", PASSPHRASE, crl_url="file:///etc/crl")
    assert not CertificateAuthority.is_initialised(tmp_path / "pki")
    ca = CertificateAuthority.init(
        tmp_path / "pki", PASSPHRASE, crl_url="https://pumps.example.org/pki/crl.pem"
    )
    cert = _cert(ca.issue(CertKind.PUMP, "PUMP-1").cert_pem)
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name is not None
    assert cdp[0].full_name[0].value == "https://pumps.example.org/pki/crl.pem"


_ops = st.lists(
    st.tuples(st.sampled_from(["issue", "revoke", "decommission"]), st.integers(0, 3)),
    max_size=6,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops)
def test_the_crl_lists_exactly_the_revoked_certificates(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca = CertificateAuthority.init(Path(tmp) / "pki", PASSPHRASE)
        for op, n in ops:
            live = [r for r in ca.certificates() if not r.revoked]
            if op == "issue":
                ca.issue(CertKind.PUMP, f"PUMP-{n}")
            elif op == "revoke" and live:
                ca.revoke(live[n % len(live)].serial, RevocationReason.SUPERSEDED)
            elif op == "decommission" and any(r.ident == f"PUMP-{n}" for r in ca.certificates()):
                ca.revoke_ident(f"PUMP-{n}")
        revoked = {r.serial for r in ca.certificates() if r.revoked}
        published = _crl((ca.directory / "crl.pem").read_bytes())
        assert {entry.serial_number for entry in published} == revoked
        assert {entry.serial_number for entry in _crl(ca.crl_pem())} == revoked


def test_a_server_may_opt_in_to_client_auth_and_keeps_it_on_renewal(
    ca: CertificateAuthority,
) -> None:
    plain = _cert(ca.issue(CertKind.SERVER, "broker").cert_pem)
    dual = ca.issue(CertKind.SERVER, "pumpguard-server", also_client=True, now=T0)
    assert list(plain.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    usages = _cert(dual.cert_pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert set(usages.value) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert ca.certificate(dual.serial).also_client
    (renewed,) = ca.renew_due(timedelta(days=400), now=T0 + timedelta(days=1))
    again = _cert(renewed.cert_pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert set(again.value) == set(usages.value)
    with pytest.raises(InvalidIdentError, match="also_client is for server"):
        ca.issue(CertKind.PUMP, "PUMP-1", also_client=True)
