"""Named failures of the PKI: every refusal says what was wrong in one readable sentence."""

from __future__ import annotations

__all__ = [
    "CaAlreadyInitialisedError",
    "CaNotInitialisedError",
    "CaStateError",
    "CertificateAlreadyRevokedError",
    "CredentialFilesError",
    "CsrError",
    "InvalidIdentError",
    "PassphraseError",
    "PeerIdentityError",
    "PkiError",
    "UnknownIdentError",
    "UnknownSerialError",
    "WrongPassphraseError",
]


class PkiError(Exception):
    """Base of every PKI failure; ``str(exc)`` is meant to be shown to an operator as is."""


class CaNotInitialisedError(PkiError):
    """The directory holds no certificate authority (``pumpguard pki init`` was never run)."""


class CaAlreadyInitialisedError(PkiError):
    """``init`` refuses to overwrite an existing CA: its keys anchor every issued certificate."""


class CaStateError(PkiError):
    """The CA files exist but are damaged, inconsistent or tampered with."""


class PassphraseError(PkiError):
    """The CA passphrase is missing, too weak or unreadable."""


class WrongPassphraseError(PassphraseError):
    """The passphrase does not decrypt the CA private key."""


class InvalidIdentError(PkiError):
    """A device or server id that cannot be a certificate CN and an MQTT topic level."""


class UnknownSerialError(PkiError):
    """No certificate with this serial number was issued by this CA."""


class UnknownIdentError(PkiError):
    """No certificate was ever issued to this id."""


class CertificateAlreadyRevokedError(PkiError):
    """Revoking twice would rewrite the revocation date and reason: refused."""


class CsrError(PkiError):
    """A certificate signing request that is malformed, unsigned, or asks for the wrong id."""


class CredentialFilesError(PkiError):
    """``cert.pem`` / ``key.pem`` / ``ca.pem`` missing, unreadable or not matching."""


class PeerIdentityError(PkiError):
    """A TLS peer without a verified certificate that names a pumpguard identity."""
