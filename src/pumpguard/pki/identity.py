"""Who a certificate names: the kind of party and its id, and how both are read back from TLS.

The id becomes the subject CN, Mosquitto's username (``use_identity_as_username``) and an MQTT
topic level, so it is validated strictly at issue time and again when read from a peer.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pumpguard.pki.errors import InvalidIdentError, PeerIdentityError

__all__ = [
    "ORGANISATION",
    "CertKind",
    "PeerIdentity",
    "identity_from_certificate",
    "peer_identity",
    "validate_ident",
]

ORGANISATION = "pumpguard"

# ASCII letters, digits and the separators "-", "_", "."; starts and ends with a letter or digit;
# 1..64 characters (the X.520 upper bound of commonName). Excludes "/", "+", "#", "$",
# whitespace and every other character that is special in MQTT topics or X.500 names.
_IDENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")


class CertKind(StrEnum):
    """What the certified party is; it fixes the certificate's extended key usage."""

    PUMP = "pump"
    SERVER = "server"
    EHR = "ehr"
    CONTROLLER = "controller"

    @property
    def client_auth(self) -> bool:
        return self is not CertKind.SERVER

    @property
    def server_auth(self) -> bool:
        return self in (CertKind.SERVER, CertKind.EHR)

    def extended_key_usage(self, *, also_client: bool = False) -> x509.ExtendedKeyUsage:
        """``also_client`` adds clientAuth to a server that is also a client (see ``issue``)."""
        usages: list[x509.ObjectIdentifier] = []
        if self.client_auth or also_client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if self.server_auth:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        return x509.ExtendedKeyUsage(usages)


def validate_ident(ident: str) -> str:
    """Return ``ident`` unchanged if it may name a device or server, else say why not."""
    if not isinstance(ident, str) or not ident:
        raise InvalidIdentError("the id must not be empty")
    if _IDENT.fullmatch(ident) is None:
        bad = sorted({c for c in ident if not (c.isascii() and (c.isalnum() or c in "._-"))})
        if bad:
            shown = ", ".join(repr(c) for c in bad)
            why = f"it contains {shown}"
        elif len(ident) > 64:
            why = f"it is {len(ident)} characters long (at most 64)"
        else:
            why = "it must start and end with a letter or digit"
        raise InvalidIdentError(
            f"invalid id {ident!r}: {why}; use letters, digits, '-', '_' and '.' "
            "(e.g. PUMP-0001), since the id becomes the certificate CN and an MQTT topic level"
        )
    return ident


@dataclass(frozen=True)
class PeerIdentity:
    """The authenticated party at the other end of a TLS connection."""

    kind: CertKind
    ident: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.ident}"


def _single(cert: x509.Certificate, oid: x509.ObjectIdentifier, label: str) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    if len(values) != 1:
        raise PeerIdentityError(
            f"certificate subject must carry exactly one {label}, found {len(values)}"
        )
    value = values[0].value
    if not isinstance(value, str):
        raise PeerIdentityError(f"certificate subject {label} is not a string")
    return value


def identity_from_certificate(cert: x509.Certificate) -> PeerIdentity:
    """Read ``CN=<ident>, OU=<kind>, O=pumpguard`` back, refusing anything else."""
    organisation = _single(cert, NameOID.ORGANIZATION_NAME, "O")
    if organisation != ORGANISATION:
        raise PeerIdentityError(
            f"certificate organisation is {organisation!r}, not {ORGANISATION!r}"
        )
    kind_text = _single(cert, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU")
    try:
        kind = CertKind(kind_text)
    except ValueError:
        raise PeerIdentityError(f"certificate OU {kind_text!r} is not a known kind") from None
    ident = _single(cert, NameOID.COMMON_NAME, "CN")
    try:
        validate_ident(ident)
    except InvalidIdentError as exc:
        raise PeerIdentityError(f"certificate CN is not a valid id: {exc}") from None
    return PeerIdentity(kind=kind, ident=ident)


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> PeerIdentity:
    """The identity of a peer whose certificate the handshake verified.

    A certificate that was received but not verified (a context with ``CERT_NONE``) names no
    one: trusting its subject would let anyone claim any device id.
    """
    if ssl_object.context.verify_mode == ssl.CERT_NONE:
        raise PeerIdentityError(
            "the TLS context does not verify peer certificates, so the peer has no identity"
        )
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise PeerIdentityError("the peer presented no certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PeerIdentityError(f"the peer certificate cannot be parsed: {exc}") from None
    return identity_from_certificate(cert)
