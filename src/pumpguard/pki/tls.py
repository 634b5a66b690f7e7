"""TLS contexts every pumpguard endpoint shares, built from a ``cert.pem/key.pem/ca.pem`` dir.

One place decides the protocol floor and the cipher list, so the MQTT broker, the pump server
and the MLLP listener cannot drift apart: TLS 1.2 minimum (1.3 negotiated whenever both ends
have it, which OpenSSL always prefers), and for TLS 1.2 only ephemeral ECDHE key exchange with
AEAD ciphers (AES-GCM, ChaCha20-Poly1305), as NIST SP 800-52 Rev. 2 recommends. TLS 1.3 suites
are all AEAD by construction.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from pumpguard.pki.authority import CA_BUNDLE_FILE, CERT_FILE, KEY_FILE
from pumpguard.pki.errors import CredentialFilesError, PeerIdentityError
from pumpguard.pki.identity import PeerIdentity, identity_from_certificate

__all__ = [
    "TLS12_CIPHERS",
    "LocalCredential",
    "client_tls_context",
    "crl_next_update",
    "read_credential",
    "reload_crl",
    "server_tls_context",
    "tls_configuration_problems",
]

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

_AEAD_MARKERS = ("GCM", "CHACHA20", "CCM")


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise CredentialFilesError(f"{what} {path} does not exist")
    return path


def _load_identity(ctx: ssl.SSLContext, cert_dir: Path) -> None:
    cert = _require(cert_dir / CERT_FILE, "certificate")
    key = _require(cert_dir / KEY_FILE, "private key")
    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except ssl.SSLError as exc:
        raise CredentialFilesError(
            f"cannot use {cert} with {key}: {exc.reason or exc} (do they belong together?)"
        ) from None
    except OSError as exc:
        raise CredentialFilesError(f"cannot read {cert} or {key}: {exc}") from None


def _load_trust(ctx: ssl.SSLContext, cert_dir: Path) -> None:
    ca = _require(cert_dir / CA_BUNDLE_FILE, "CA bundle")
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise CredentialFilesError(f"cannot load CA bundle {ca}: {exc.reason or exc}") from None


def crl_next_update(crl: Path) -> datetime | None:
    """When ``crl`` stops being usable: a listener reloads a fresh one before then."""
    try:
        parsed = x509.load_pem_x509_crl(crl.read_bytes())
    except (OSError, ValueError) as exc:
        raise CredentialFilesError(f"cannot read CRL {crl}: {exc}") from None
    return parsed.next_update_utc


def reload_crl(ctx: ssl.SSLContext, crl: Path) -> None:
    """Add a (newer) CRL to a live context and turn leaf CRL checking on.

    OpenSSL keeps every CRL loaded and, for one issuer, uses the one with the latest
    ``thisUpdate``, so calling this after each publication makes new revocations effective for
    the next handshake without rebuilding the context.
    """
    _require(crl, "CRL")
    next_update = crl_next_update(crl)
    if next_update is not None and next_update <= datetime.now(UTC):
        raise CredentialFilesError(
            f"CRL {crl} expired on {next_update:%Y-%m-%d %H:%M} UTC and would refuse every "
            "client; republish it (`pumpguard pki crl`)"
        )
    try:
        ctx.load_verify_locations(cafile=str(crl))
    except ssl.SSLError as exc:
        raise CredentialFilesError(f"cannot load CRL {crl}: {exc.reason or exc}") from None
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def server_tls_context(
    cert_dir: Path, *, require_client_cert: bool = True, crl: Path | None = None
) -> ssl.SSLContext:
    """The accepting side: our ``cert.pem``/``key.pem``, peers verified against ``ca.pem``.

    With ``require_client_cert`` a client without a certificate signed by our CA is refused
    during the handshake (OpenSSL also checks the client certificate carries clientAuth).
    Without it, the server does not ask for client certificates at all.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    _load_identity(ctx, cert_dir)
    _load_trust(ctx, cert_dir)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    if crl is not None:
        reload_crl(ctx, crl)
    return ctx


def client_tls_context(
    cert_dir: Path, *, server_hostname_check: bool = True, crl: Path | None = None
) -> ssl.SSLContext:
    """The connecting side: the server is always verified against ``ca.pem``.

    ``cert.pem``/``key.pem`` are presented when the directory has them (devices, EHR); a
    directory with only ``ca.pem`` gives a client without a certificate. Turning the host name
    check off still verifies the chain and the serverAuth purpose; it is meant for brokers
    reached by an address that is not in their certificate, never for accepting any server.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    has_cert = (cert_dir / CERT_FILE).exists()
    has_key = (cert_dir / KEY_FILE).exists()
    if has_cert != has_key:
        missing = KEY_FILE if has_cert else CERT_FILE
        raise CredentialFilesError(f"{cert_dir} has no {missing} to go with its other half")
    if has_cert:
        _load_identity(ctx, cert_dir)
    _load_trust(ctx, cert_dir)
    ctx.check_hostname = server_hostname_check
    ctx.verify_mode = ssl.CERT_REQUIRED
    if crl is not None:
        reload_crl(ctx, crl)
    return ctx


def tls_configuration_problems(ctx: ssl.SSLContext) -> list[str]:
    """Every way ``ctx`` falls short of the project's TLS policy; empty when it complies."""
    problems: list[str] = []
    floor = ctx.minimum_version
    if floor is ssl.TLSVersion.MINIMUM_SUPPORTED or floor < ssl.TLSVersion.TLSv1_2:
        problems.append(f"minimum protocol is {floor.name}, below TLSv1_2")
    if not ctx.options & ssl.OP_NO_COMPRESSION:
        problems.append("TLS compression is not disabled (CRIME)")
    for cipher in ctx.get_ciphers():
        name = str(cipher["name"])
        if cipher["protocol"] == "TLSv1.3":
            continue
        kea = str(cipher.get("kea", ""))
        aead = bool(cipher.get("aead")) and any(m in name for m in _AEAD_MARKERS)
        if kea != "kx-ecdhe" or not aead:
            problems.append(f"weak cipher allowed: {name} (needs ECDHE key exchange and AEAD)")
    if ctx.protocol is ssl.PROTOCOL_TLS_CLIENT and ctx.verify_mode == ssl.CERT_NONE:
        problems.append("the client does not verify the server certificate")
    return problems


@dataclass(frozen=True)
class LocalCredential:
    """What a party knows about its own ``cert.pem``: who it is and until when."""

    identity: PeerIdentity
    serial: int
    not_after: datetime

    def expires_within(self, window: timedelta, now: datetime) -> bool:
        return self.not_after - now <= window


def read_credential(cert_dir: Path) -> LocalCredential:
    """Our own identity, from the certificate we present (a device never configures its id)."""
    path = _require(cert_dir / CERT_FILE, "certificate")
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CredentialFilesError(f"cannot read certificate {path}: {exc}") from None
    try:
        identity = identity_from_certificate(cert)
    except PeerIdentityError as exc:
        raise CredentialFilesError(f"{path} names no pumpguard party: {exc}") from None
    return LocalCredential(
        identity=identity, serial=cert.serial_number, not_after=cert.not_valid_after_utc
    )
