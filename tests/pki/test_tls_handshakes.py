"""Real TLS handshakes between ``server_tls_context`` and ``client_tls_context``.

Each refusal the MQTT and MLLP listeners rely on is exercised with genuine certificates from a
genuine CA, and each must map to its own security event code.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pumpguard.pki import (
    CA_BUNDLE_FILE,
    CertificateAuthority,
    CertKind,
    CredentialFilesError,
    PeerIdentity,
    PeerIdentityError,
    PkiEvent,
    RevocationReason,
    classify_tls_failure,
    client_tls_context,
    crl_next_update,
    peer_identity,
    read_credential,
    reload_crl,
    server_tls_context,
    tls_configuration_problems,
    tls_failure_event,
)
from pumpguard.security_events import Component, Severity

from .conftest import PASSPHRASE, handshake

IssueTo = Callable[..., Path]


def _only_ca(ca: CertificateAuthority, directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / CA_BUNDLE_FILE).write_bytes(ca.ca_pem)
    return directory


def test_good_client_certificate_is_accepted_with_tls13_and_identified(
    issue_to: IssueTo, server_dir: Path
) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0001")
    result = handshake(server_tls_context(server_dir), client_tls_context(pump))
    assert result.succeeded, (result.server_error, result.client_error)
    assert result.version == "TLSv1.3"
    assert result.identity == PeerIdentity(CertKind.PUMP, "PUMP-0001")


def test_ehr_certificate_serves_as_both_client_and_server(issue_to: IssueTo) -> None:
    ehr = issue_to(CertKind.EHR, "ehr-1", sans=["localhost"])
    controller = issue_to(CertKind.CONTROLLER, "CTRL-7")
    as_server = handshake(server_tls_context(ehr), client_tls_context(controller))
    assert as_server.succeeded, as_server.server_error
    assert as_server.identity == PeerIdentity(CertKind.CONTROLLER, "CTRL-7")
    other_server = issue_to(CertKind.SERVER, "localhost")
    as_client = handshake(server_tls_context(other_server), client_tls_context(ehr))
    assert as_client.succeeded, as_client.server_error
    assert as_client.identity == PeerIdentity(CertKind.EHR, "ehr-1")


def test_client_without_certificate_is_refused(
    ca: CertificateAuthority, server_dir: Path, tmp_path: Path
) -> None:
    anonymous = _only_ca(ca, tmp_path / "anonymous")
    result = handshake(server_tls_context(server_dir), client_tls_context(anonymous))
    assert not result.succeeded
    assert result.server_error is not None
    assert classify_tls_failure(result.server_error) is PkiEvent.TLS_NO_CLIENT_CERT
    assert result.client_error is not None
    assert classify_tls_failure(result.client_error) is PkiEvent.TLS_PEER_REFUSED_US


def test_server_without_client_cert_requirement_accepts_anonymous_clients(
    ca: CertificateAuthority, server_dir: Path, tmp_path: Path
) -> None:
    anonymous = _only_ca(ca, tmp_path / "anonymous")
    result = handshake(
        server_tls_context(server_dir, require_client_cert=False), client_tls_context(anonymous)
    )
    assert result.succeeded
    assert result.identity is None


def test_certificate_from_another_ca_is_refused(
    ca: CertificateAuthority, server_dir: Path, tmp_path: Path
) -> None:
    foreign = CertificateAuthority.init(tmp_path / "foreign-pki", PASSPHRASE)
    # Same subject as a genuine pump: only the signature chain tells them apart. The attacker
    # trusts our (public) CA bundle, so the server side is the one that must refuse.
    foreign.issue(CertKind.PUMP, "PUMP-0001").write(tmp_path / "foreign")
    (tmp_path / "foreign" / CA_BUNDLE_FILE).write_bytes(ca.ca_pem)
    result = handshake(server_tls_context(server_dir), client_tls_context(tmp_path / "foreign"))
    assert result.server_error is not None
    assert classify_tls_failure(result.server_error) is PkiEvent.TLS_UNKNOWN_CA
    assert result.identity is None


def test_expired_certificate_is_refused(issue_to: IssueTo, server_dir: Path) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=30)
    expired = issue_to(CertKind.PUMP, "PUMP-0002", now=long_ago, validity=timedelta(days=1))
    result = handshake(server_tls_context(server_dir), client_tls_context(expired))
    assert result.server_error is not None
    assert classify_tls_failure(result.server_error) is PkiEvent.TLS_CERT_EXPIRED


def test_not_yet_valid_certificate_is_refused(issue_to: IssueTo, server_dir: Path) -> None:
    future = issue_to(CertKind.PUMP, "PUMP-0003", now=datetime.now(UTC) + timedelta(days=3))
    result = handshake(server_tls_context(server_dir), client_tls_context(future))
    assert result.server_error is not None
    assert classify_tls_failure(result.server_error) is PkiEvent.TLS_CERT_NOT_YET_VALID


def test_revoked_certificate_is_refused_when_the_crl_is_given(
    ca: CertificateAuthority, issue_to: IssueTo, server_dir: Path, tmp_path: Path
) -> None:
    revoked = issue_to(CertKind.PUMP, "PUMP-0004")
    serial = ca.certificates()[-1].serial
    ca.revoke(serial, RevocationReason.KEY_COMPROMISE)
    crl = tmp_path / "crl.pem"
    ca.write_crl(crl)
    without_crl = handshake(server_tls_context(server_dir), client_tls_context(revoked))
    assert without_crl.succeeded  # the CRL is what carries revocation, nothing else
    result = handshake(server_tls_context(server_dir, crl=crl), client_tls_context(revoked))
    assert result.server_error is not None
    assert classify_tls_failure(result.server_error) is PkiEvent.TLS_CERT_REVOKED


def test_reloading_the_crl_revokes_on_a_live_context(
    ca: CertificateAuthority, issue_to: IssueTo, server_dir: Path
) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0005")
    other = issue_to(CertKind.PUMP, "PUMP-0006")
    crl = ca.publish_crl()
    server_ctx = server_tls_context(server_dir, crl=crl)
    assert handshake(server_ctx, client_tls_context(pump)).succeeded
    ca.revoke_ident("PUMP-0005")
    reload_crl(server_ctx, crl)
    refused = handshake(server_ctx, client_tls_context(pump))
    assert refused.server_error is not None
    assert classify_tls_failure(refused.server_error) is PkiEvent.TLS_CERT_REVOKED
    assert handshake(server_ctx, client_tls_context(other)).succeeded


def test_an_expired_crl_is_refused_at_load_and_refuses_everyone_if_it_gets_in(
    ca: CertificateAuthority, issue_to: IssueTo, server_dir: Path, tmp_path: Path
) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0007")
    stale = tmp_path / "stale-crl.pem"
    ca.write_crl(stale, now=datetime.now(UTC) - timedelta(days=30))
    next_update = crl_next_update(stale)
    assert next_update is not None
    assert next_update < datetime.now(UTC)
    with pytest.raises(CredentialFilesError, match="expired"):
        server_tls_context(server_dir, crl=stale)
    # A CRL that expires while the listener runs: fail closed, with its own code.
    server_ctx = server_tls_context(server_dir)
    server_ctx.load_verify_locations(cafile=str(stale))
    server_ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    result = handshake(server_ctx, client_tls_context(pump))
    assert result.server_error is not None
    assert classify_tls_failure(result.server_error) is PkiEvent.TLS_CRL_UNAVAILABLE


def _legacy_client(maximum: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = maximum
    ctx.set_ciphers(ciphers)
    return ctx


def test_tls11_client_is_refused(server_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tls11 = ssl.TLSVersion.TLSv1_1
    result = handshake(server_tls_context(server_dir), _legacy_client(tls11))
    assert result.server_error is not None
    assert classify_tls_failure(result.server_error) is PkiEvent.TLS_PROTOCOL_TOO_OLD


def test_tls12_client_with_only_weak_ciphers_is_refused(server_dir: Path) -> None:
    weak = _legacy_client(ssl.TLSVersion.TLSv1_2, "AES128-SHA:AES256-SHA256:@SECLEVEL=0")
    result = handshake(server_tls_context(server_dir, require_client_cert=False), weak)
    assert result.server_error is not None
    assert classify_tls_failure(result.server_error) is PkiEvent.TLS_NO_SHARED_CIPHER


def test_tls12_client_gets_ecdhe_aead(issue_to: IssueTo, server_dir: Path) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0008")
    client = client_tls_context(pump)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    result = handshake(server_tls_context(server_dir), client)
    assert result.succeeded
    assert result.version == "TLSv1.2"


def test_pump_certificate_cannot_act_as_a_server(issue_to: IssueTo) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0009")
    client = issue_to(CertKind.CONTROLLER, "CTRL-1")
    result = handshake(
        server_tls_context(pump), client_tls_context(client, server_hostname_check=False)
    )
    assert result.client_error is not None
    assert classify_tls_failure(result.client_error) is PkiEvent.TLS_WRONG_PURPOSE


def test_server_certificate_cannot_act_as_a_client(issue_to: IssueTo, server_dir: Path) -> None:
    impostor = issue_to(CertKind.SERVER, "localhost")
    result = handshake(server_tls_context(server_dir), client_tls_context(impostor))
    assert result.server_error is not None
    assert classify_tls_failure(result.server_error) is PkiEvent.TLS_WRONG_PURPOSE


def test_client_checks_the_server_host_name(issue_to: IssueTo, server_dir: Path) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0010")
    result = handshake(
        server_tls_context(server_dir),
        client_tls_context(pump),
        server_hostname="pumps.example.org",
    )
    assert result.client_error is not None
    assert classify_tls_failure(result.client_error) is PkiEvent.TLS_HOSTNAME_MISMATCH


def test_client_refuses_a_server_from_another_ca(issue_to: IssueTo, tmp_path: Path) -> None:
    foreign = CertificateAuthority.init(tmp_path / "foreign-pki", PASSPHRASE)
    foreign.issue(CertKind.SERVER, "localhost").write(tmp_path / "rogue")
    pump = issue_to(CertKind.PUMP, "PUMP-0011")
    result = handshake(server_tls_context(tmp_path / "rogue"), client_tls_context(pump))
    assert result.client_error is not None
    assert classify_tls_failure(result.client_error) is PkiEvent.TLS_UNKNOWN_CA


def test_refusals_become_specific_security_events(
    ca: CertificateAuthority, server_dir: Path, tmp_path: Path
) -> None:
    anonymous = _only_ca(ca, tmp_path / "anonymous")
    result = handshake(server_tls_context(server_dir), client_tls_context(anonymous))
    assert result.server_error is not None
    event = tls_failure_event(
        result.server_error, time_ms=1_000, component=Component.TRANSPORT, peer="127.0.0.1:5000"
    )
    assert event.code == PkiEvent.TLS_NO_CLIENT_CERT
    assert event.component is Component.TRANSPORT
    assert event.severity is Severity.MEDIUM
    assert event.attributes["reason"] == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    assert event.peer == "127.0.0.1:5000"


def test_our_contexts_pass_the_tls_configuration_check(issue_to: IssueTo, server_dir: Path) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0012")
    for ctx in (server_tls_context(server_dir), client_tls_context(pump)):
        assert tls_configuration_problems(ctx) == []
        assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
        assert ctx.options & ssl.OP_NO_COMPRESSION
    assert server_tls_context(server_dir).verify_mode == ssl.CERT_REQUIRED


def test_configuration_check_names_weak_settings() -> None:
    weak = _legacy_client(ssl.TLSVersion.TLSv1_2, "AES128-SHA:@SECLEVEL=0")
    weak.options &= ~ssl.OP_NO_COMPRESSION
    problems = tls_configuration_problems(weak)
    assert any("below TLSv1_2" in p for p in problems)
    assert any("AES128-SHA" in p for p in problems)
    assert any("compression" in p for p in problems)
    assert any("does not verify" in p for p in problems)


def test_peer_identity_refuses_an_unverified_context(issue_to: IssueTo) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0013")
    server = server_tls_context(issue_to(CertKind.SERVER, "localhost"))
    server.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = server.wrap_bio(incoming, outgoing, server_side=True)
    with pytest.raises(PeerIdentityError, match="does not verify"):
        peer_identity(tls)
    del pump


def test_missing_credential_files_are_named(tmp_path: Path, issue_to: IssueTo) -> None:
    with pytest.raises(CredentialFilesError, match=r"ca\.pem"):
        client_tls_context(tmp_path)
    pump = issue_to(CertKind.PUMP, "PUMP-0014")
    (pump / "key.pem").unlink()
    with pytest.raises(CredentialFilesError, match=r"key\.pem"):
        client_tls_context(pump)
    with pytest.raises(CredentialFilesError, match=r"key\.pem"):
        server_tls_context(pump)
    with pytest.raises(CredentialFilesError, match="CRL"):
        server_tls_context(issue_to(CertKind.SERVER, "s"), crl=tmp_path / "nope.pem")


def test_mismatched_key_and_certificate_are_refused(issue_to: IssueTo) -> None:
    first = issue_to(CertKind.PUMP, "PUMP-0015")
    second = issue_to(CertKind.PUMP, "PUMP-0016")
    (first / "key.pem").write_bytes((second / "key.pem").read_bytes())
    with pytest.raises(CredentialFilesError, match="belong together"):
        client_tls_context(first)


def test_identity_failures_have_their_own_event_code() -> None:
    event = tls_failure_event(
        PeerIdentityError("certificate OU 'admin' is not a known kind"),
        time_ms=5,
        component=Component.TRANSPORT,
    )
    assert event.code == PkiEvent.PEER_BAD_IDENTITY
    assert event.severity is Severity.HIGH
    assert "admin" in event.message


class _MemoryEnd:
    """One end of an in-memory TLS connection, the way asyncio drives ``SSLObject``."""

    def __init__(self, ctx: ssl.SSLContext, *, server_side: bool) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        hostname = None if server_side else "localhost"
        self.tls = ctx.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=hostname
        )
        self.done = False

    def step(self) -> None:
        if self.done:
            return
        try:
            self.tls.do_handshake()
            self.done = True
        except ssl.SSLWantReadError:
            pass


def _handshake_in_memory(client: _MemoryEnd, server: _MemoryEnd) -> None:
    for _ in range(20):
        client.step()
        server.step()
        server.incoming.write(client.outgoing.read())
        client.incoming.write(server.outgoing.read())
        if client.done and server.done:
            return
    raise AssertionError("handshake made no progress")


def test_peer_identity_works_on_an_asyncio_style_ssl_object(
    issue_to: IssueTo, server_dir: Path
) -> None:
    controller = issue_to(CertKind.CONTROLLER, "CTRL-0099")
    client = _MemoryEnd(client_tls_context(controller), server_side=False)
    server = _MemoryEnd(server_tls_context(server_dir), server_side=True)
    _handshake_in_memory(client, server)
    assert peer_identity(server.tls) == PeerIdentity(CertKind.CONTROLLER, "CTRL-0099")


def test_a_party_reads_its_own_identity_from_its_certificate(
    ca: CertificateAuthority, issue_to: IssueTo, tmp_path: Path
) -> None:
    pump = issue_to(CertKind.PUMP, "PUMP-0100")
    own = read_credential(pump)
    assert own.identity == PeerIdentity(CertKind.PUMP, "PUMP-0100")
    record = ca.certificates()[-1]
    assert own.serial == record.serial
    assert own.not_after == record.not_after
    assert own.expires_within(timedelta(days=731), datetime.now(UTC))
    assert not own.expires_within(timedelta(days=30), datetime.now(UTC))
    (tmp_path / "ca-as-cert").mkdir()
    (tmp_path / "ca-as-cert" / "cert.pem").write_bytes(ca.ca_pem)
    with pytest.raises(CredentialFilesError, match="names no pumpguard party"):
        read_credential(tmp_path / "ca-as-cert")


def test_a_server_with_also_client_connects_as_a_client(
    ca: CertificateAuthority, server_dir: Path, tmp_path: Path
) -> None:
    ca.issue(CertKind.SERVER, "pumpguard-server", also_client=True).write(tmp_path / "dual")
    result = handshake(server_tls_context(server_dir), client_tls_context(tmp_path / "dual"))
    assert result.succeeded, result.server_error
    assert result.identity == PeerIdentity(CertKind.SERVER, "pumpguard-server")
