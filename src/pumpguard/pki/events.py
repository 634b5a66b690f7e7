"""Security event codes of the PKI, and the mapping of TLS handshake failures onto them.

Every TLS user in the project (MQTT transport, pump server, MLLP) refuses peers the same way, so
the classification of a failed handshake lives here, next to the contexts that cause it: each
refusal (no certificate, foreign CA, expired, revoked, old protocol, ...) gets its own code that
detection rules can match on. Verify codes are OpenSSL's ``X509_V_ERR_*`` numbers
(``include/openssl/x509_vfy.h``); alert reasons are OpenSSL's ``SSL_R_*`` reason strings as
exposed by ``ssl.SSLError.reason``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from enum import StrEnum

from pumpguard.pki.errors import PeerIdentityError
from pumpguard.security_events import Component, SecurityEvent, Severity

__all__ = ["PkiEvent", "classify_tls_failure", "severity_of", "tls_failure_event"]


class PkiEvent(StrEnum):
    """Stable event codes; once published a code is never renamed."""

    TLS_NO_CLIENT_CERT = "pki.tls.no_client_cert"
    TLS_UNKNOWN_CA = "pki.tls.unknown_ca"
    TLS_CERT_EXPIRED = "pki.tls.cert_expired"
    TLS_CERT_NOT_YET_VALID = "pki.tls.cert_not_yet_valid"
    TLS_CERT_REVOKED = "pki.tls.cert_revoked"
    TLS_CRL_UNAVAILABLE = "pki.tls.crl_unavailable"
    TLS_WRONG_PURPOSE = "pki.tls.wrong_purpose"
    TLS_BAD_CERT = "pki.tls.bad_certificate"
    TLS_HOSTNAME_MISMATCH = "pki.tls.hostname_mismatch"
    TLS_PROTOCOL_TOO_OLD = "pki.tls.protocol_too_old"
    TLS_NO_SHARED_CIPHER = "pki.tls.no_shared_cipher"
    TLS_PEER_REFUSED_US = "pki.tls.refused_by_peer"
    TLS_HANDSHAKE_FAILED = "pki.tls.handshake_failed"
    PEER_BAD_IDENTITY = "pki.peer.bad_identity"
    CA_WRONG_PASSPHRASE = "pki.ca.wrong_passphrase"
    CERT_ISSUED = "pki.cert.issued"
    CERT_REVOKED = "pki.cert.revoked"
    CERT_RENEWED = "pki.cert.renewed"


# X509_V_ERR_* values from OpenSSL's x509_vfy.h.
_VERIFY_CODES: Mapping[int, PkiEvent] = {
    2: PkiEvent.TLS_UNKNOWN_CA,  # unable to get issuer certificate
    3: PkiEvent.TLS_CRL_UNAVAILABLE,  # unable to get certificate CRL
    4: PkiEvent.TLS_BAD_CERT,  # unable to decrypt certificate's signature
    7: PkiEvent.TLS_BAD_CERT,  # certificate signature failure
    8: PkiEvent.TLS_CRL_UNAVAILABLE,  # CRL signature failure
    9: PkiEvent.TLS_CERT_NOT_YET_VALID,
    10: PkiEvent.TLS_CERT_EXPIRED,
    11: PkiEvent.TLS_CRL_UNAVAILABLE,  # CRL not yet valid
    12: PkiEvent.TLS_CRL_UNAVAILABLE,  # CRL has expired
    18: PkiEvent.TLS_UNKNOWN_CA,  # self-signed leaf
    19: PkiEvent.TLS_UNKNOWN_CA,  # self-signed certificate in chain
    20: PkiEvent.TLS_UNKNOWN_CA,  # unable to get local issuer certificate
    21: PkiEvent.TLS_UNKNOWN_CA,  # unable to verify the first certificate
    23: PkiEvent.TLS_CERT_REVOKED,
    24: PkiEvent.TLS_BAD_CERT,  # invalid CA certificate
    26: PkiEvent.TLS_WRONG_PURPOSE,
    62: PkiEvent.TLS_HOSTNAME_MISMATCH,
    64: PkiEvent.TLS_HOSTNAME_MISMATCH,  # IP address mismatch
}

# ssl.SSLError.reason strings (OpenSSL SSL_R_* names).
_REASONS: Mapping[str, PkiEvent] = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": PkiEvent.TLS_NO_CLIENT_CERT,
    "UNSUPPORTED_PROTOCOL": PkiEvent.TLS_PROTOCOL_TOO_OLD,
    "WRONG_SSL_VERSION": PkiEvent.TLS_PROTOCOL_TOO_OLD,
    "WRONG_VERSION_NUMBER": PkiEvent.TLS_PROTOCOL_TOO_OLD,
    "TLSV1_ALERT_PROTOCOL_VERSION": PkiEvent.TLS_PROTOCOL_TOO_OLD,
    "NO_SHARED_CIPHER": PkiEvent.TLS_NO_SHARED_CIPHER,
    "NO_CIPHERS_AVAILABLE": PkiEvent.TLS_NO_SHARED_CIPHER,
    "TLSV1_ALERT_UNKNOWN_CA": PkiEvent.TLS_PEER_REFUSED_US,
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": PkiEvent.TLS_PEER_REFUSED_US,
    "SSLV3_ALERT_CERTIFICATE_REVOKED": PkiEvent.TLS_PEER_REFUSED_US,
    "SSLV3_ALERT_BAD_CERTIFICATE": PkiEvent.TLS_PEER_REFUSED_US,
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": PkiEvent.TLS_PEER_REFUSED_US,
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": PkiEvent.TLS_PEER_REFUSED_US,
    "SSLV3_ALERT_HANDSHAKE_FAILURE": PkiEvent.TLS_PEER_REFUSED_US,
}

_SEVERITY: Mapping[PkiEvent, Severity] = {
    PkiEvent.TLS_CERT_REVOKED: Severity.HIGH,
    PkiEvent.TLS_UNKNOWN_CA: Severity.HIGH,
    PkiEvent.TLS_BAD_CERT: Severity.HIGH,
    PkiEvent.TLS_HOSTNAME_MISMATCH: Severity.HIGH,
    PkiEvent.PEER_BAD_IDENTITY: Severity.HIGH,
    PkiEvent.CA_WRONG_PASSPHRASE: Severity.HIGH,
    PkiEvent.TLS_CRL_UNAVAILABLE: Severity.MEDIUM,
    PkiEvent.TLS_NO_CLIENT_CERT: Severity.MEDIUM,
    PkiEvent.TLS_CERT_EXPIRED: Severity.MEDIUM,
    PkiEvent.TLS_CERT_NOT_YET_VALID: Severity.MEDIUM,
    PkiEvent.TLS_WRONG_PURPOSE: Severity.MEDIUM,
    PkiEvent.TLS_PROTOCOL_TOO_OLD: Severity.MEDIUM,
    PkiEvent.TLS_NO_SHARED_CIPHER: Severity.MEDIUM,
    PkiEvent.TLS_PEER_REFUSED_US: Severity.MEDIUM,
    PkiEvent.TLS_HANDSHAKE_FAILED: Severity.LOW,
    PkiEvent.CERT_ISSUED: Severity.INFORMATIONAL,
    PkiEvent.CERT_REVOKED: Severity.LOW,
    PkiEvent.CERT_RENEWED: Severity.INFORMATIONAL,
}


def severity_of(code: PkiEvent) -> Severity:
    return _SEVERITY.get(code, Severity.MEDIUM)


def classify_tls_failure(exc: BaseException) -> PkiEvent:
    """Name why a handshake (or the first read after a TLS 1.3 handshake) failed.

    On the accepting side this tells which check refused the peer; on the connecting side an
    alert from the other end becomes ``TLS_PEER_REFUSED_US`` (we were refused, not attacked),
    except an old-protocol refusal, which keeps its own code. A ``PeerIdentityError`` from
    ``peer_identity`` (a verified certificate that names no pumpguard party) is included, so
    one call covers everything that can go wrong while admitting a peer.
    """
    if isinstance(exc, PeerIdentityError):
        return PkiEvent.PEER_BAD_IDENTITY
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = _VERIFY_CODES.get(exc.verify_code)
        if code is not None:
            return code
        return PkiEvent.TLS_BAD_CERT
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in _REASONS:
            return _REASONS[reason]
        if reason.startswith(("TLSV1_ALERT_", "SSLV3_ALERT_", "TLSV13_ALERT_")):
            return PkiEvent.TLS_PEER_REFUSED_US
    return PkiEvent.TLS_HANDSHAKE_FAILED


def tls_failure_event(
    exc: BaseException,
    *,
    time_ms: int,
    component: Component,
    peer: str | None = None,
    device_id: str | None = None,
) -> SecurityEvent:
    """The security event a TLS endpoint emits when admitting ``peer`` fails."""
    code = classify_tls_failure(exc)
    attributes: dict[str, str] = {"error": type(exc).__name__}
    detail = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        attributes["verify_code"] = str(exc.verify_code)
        detail = exc.verify_message or detail
    elif isinstance(exc, ssl.SSLError) and exc.reason:
        attributes["reason"] = exc.reason
    return SecurityEvent(
        time_ms=time_ms,
        component=component,
        code=code,
        severity=severity_of(code),
        message=f"TLS peer refused ({code.value}): {detail}",
        device_id=device_id,
        peer=peer,
        attributes=attributes,
    )
