"""The two-level CA: an offline-style root, an issuing CA, the certificate index and the CRL.

Layout of a CA directory (``DATA_DIR/pki/`` for the CLI)::

    root-ca.pem        root certificate (self-signed, 10 years)
    root-ca.key.pem    root private key, PKCS#8 encrypted with the passphrase
    issuing-ca.pem     issuing CA certificate (signed by the root, 5 years)
    issuing-ca.key.pem issuing CA private key, PKCS#8 encrypted with the passphrase
    ca.pem             trust bundle handed to every party: issuing CA then root
    crl.pem            the current CRL, signed by the issuing CA, republished on every revocation
    index.json         every certificate ever issued, written atomically
    certs/<serial>.pem a copy of every issued certificate (never the device's key)

Every mutation re-reads ``index.json`` under an exclusive ``flock`` so that the CLI and a running
server can issue and revoke against the same directory without losing a record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, ValidationError

from pumpguard.pki._files import atomic_write
from pumpguard.pki.errors import (
    CaAlreadyInitialisedError,
    CaNotInitialisedError,
    CaStateError,
    CertificateAlreadyRevokedError,
    CsrError,
    InvalidIdentError,
    UnknownIdentError,
    UnknownSerialError,
    WrongPassphraseError,
)
from pumpguard.pki.events import PkiEvent, severity_of
from pumpguard.pki.identity import ORGANISATION, CertKind, validate_ident
from pumpguard.pki.passphrase import check_passphrase_strength
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink

__all__ = [
    "CA_BUNDLE_FILE",
    "CERT_FILE",
    "CRL_FILE",
    "CRL_VALIDITY",
    "DEFAULT_CRL_URL",
    "KEY_FILE",
    "CertStatus",
    "CertificateAuthority",
    "CertificateRecord",
    "IssuedCredential",
    "RevocationReason",
    "SignedCertificate",
    "default_validity",
]

ROOT_CERT_FILE = "root-ca.pem"
ROOT_KEY_FILE = "root-ca.key.pem"
ISSUING_CERT_FILE = "issuing-ca.pem"
ISSUING_KEY_FILE = "issuing-ca.key.pem"
CA_BUNDLE_FILE = "ca.pem"
CRL_FILE = "crl.pem"
INDEX_FILE = "index.json"
_CERTS_DIR = "certs"
_LOCK_FILE = ".lock"

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"

# Placeholder until the pump server publishes the CRL over HTTP; set with ``init --crl-url``.
DEFAULT_CRL_URL = "http://pumpguard.invalid/pki/crl.pem"

ROOT_VALIDITY = timedelta(days=3652)
ISSUING_VALIDITY = timedelta(days=1826)
DEVICE_VALIDITY = timedelta(days=730)
# 397 days: the longest validity the CA/Browser Forum Baseline Requirements (6.3.2) recommend
# for TLS server certificates (398 is their hard limit), kept for a private PKI's servers too.
SERVER_VALIDITY = timedelta(days=397)
CRL_VALIDITY = timedelta(days=7)
# Devices with a slightly slow clock must still accept a certificate issued a moment ago.
_BACKDATE = timedelta(minutes=5)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)

_T = TypeVar("_T")


def default_validity(kind: CertKind) -> timedelta:
    return SERVER_VALIDITY if kind.server_auth else DEVICE_VALIDITY


class RevocationReason(StrEnum):
    """The RFC 5280 (5.3.1) reason codes an operator of this PKI can have."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key-compromise"
    AFFILIATION_CHANGED = "affiliation-changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation-of-operation"

    def flag(self) -> x509.ReasonFlags:
        return {
            RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
            RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
            RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
            RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
            RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
        }[self]


class CertStatus(StrEnum):
    VALID = "valid"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class CertificateRecord:
    """One issued certificate as the CA remembers it."""

    serial: int
    kind: CertKind
    ident: str
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    revoked_at: datetime | None = None
    revocation_reason: RevocationReason | None = None
    renewed_by: int | None = None
    also_client: bool = False
    device_key: bool = False

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "X")

    def status(self, now: datetime | None = None) -> CertStatus:
        when = _utc(now)
        if self.revoked:
            return CertStatus.REVOKED
        if when < self.not_before:
            return CertStatus.NOT_YET_VALID
        if when >= self.not_after:
            return CertStatus.EXPIRED
        return CertStatus.VALID


@dataclass(frozen=True)
class IssuedCredential:
    """A certificate, its fresh private key and the CA bundle: what a device is handed."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    serial: int
    not_after: datetime

    def write(self, directory: Path, *, overwrite: bool = True) -> None:
        """Write ``cert.pem``, ``key.pem`` (mode 0600) and ``ca.pem`` into ``directory``."""
        targets = [directory / CERT_FILE, directory / KEY_FILE, directory / CA_BUNDLE_FILE]
        if not overwrite:
            existing = [p.name for p in targets if p.exists()]
            if existing:
                raise FileExistsError(
                    f"{directory} already holds {', '.join(existing)}; refusing to overwrite"
                )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(directory / KEY_FILE, self.key_pem, mode=0o600)
        atomic_write(directory / CERT_FILE, self.cert_pem)
        atomic_write(directory / CA_BUNDLE_FILE, self.ca_pem)

    def __repr__(self) -> str:
        return f"IssuedCredential(serial={self.serial:X}, not_after={self.not_after.isoformat()})"


@dataclass(frozen=True)
class SignedCertificate:
    """A certificate for a key the CA never saw (from a CSR), and the CA bundle."""

    cert_pem: bytes
    ca_pem: bytes
    serial: int
    not_after: datetime

    def write(self, directory: Path, *, overwrite: bool = True) -> None:
        """Write ``cert.pem`` and ``ca.pem`` next to the ``key.pem`` the device already has."""
        targets = [directory / CERT_FILE, directory / CA_BUNDLE_FILE]
        if not overwrite:
            existing = [p.name for p in targets if p.exists()]
            if existing:
                raise FileExistsError(
                    f"{directory} already holds {', '.join(existing)}; refusing to overwrite"
                )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(directory / CERT_FILE, self.cert_pem)
        atomic_write(directory / CA_BUNDLE_FILE, self.ca_pem)


class _StoredRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    serial: str
    kind: CertKind
    ident: str
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    revoked_at: datetime | None = None
    revocation_reason: RevocationReason | None = None
    renewed_by: str | None = None
    also_client: bool = False
    device_key: bool = False

    @classmethod
    def of(cls, record: CertificateRecord) -> _StoredRecord:
        return cls(
            serial=record.serial_hex,
            kind=record.kind,
            ident=record.ident,
            sans=record.sans,
            not_before=record.not_before,
            not_after=record.not_after,
            fingerprint_sha256=record.fingerprint_sha256,
            revoked_at=record.revoked_at,
            revocation_reason=record.revocation_reason,
            renewed_by=None if record.renewed_by is None else format(record.renewed_by, "X"),
            also_client=record.also_client,
            device_key=record.device_key,
        )

    def record(self) -> CertificateRecord:
        return CertificateRecord(
            serial=int(self.serial, 16),
            kind=self.kind,
            ident=self.ident,
            sans=self.sans,
            not_before=_utc(self.not_before),
            not_after=_utc(self.not_after),
            fingerprint_sha256=self.fingerprint_sha256,
            revoked_at=None if self.revoked_at is None else _utc(self.revoked_at),
            revocation_reason=self.revocation_reason,
            renewed_by=None if self.renewed_by is None else int(self.renewed_by, 16),
            also_client=self.also_client,
            device_key=self.device_key,
        )


class _StoredIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    crl_url: str
    crl_number: int = 0
    crl_last_update: datetime | None = None
    certificates: list[_StoredRecord] = []


@dataclass
class _Index:
    crl_url: str
    crl_number: int
    records: list[CertificateRecord]
    crl_last_update: datetime | None = None

    def find(self, serial: int) -> int:
        for position, record in enumerate(self.records):
            if record.serial == serial:
                return position
        raise UnknownSerialError(f"no certificate with serial {serial:X} was issued by this CA")


def _utc(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("datetimes given to the PKI must be timezone-aware")
    return when.astimezone(UTC)


def _time_ms(when: datetime) -> int:
    return max(0, (when - _EPOCH) // timedelta(milliseconds=1))


def _ski(key: ec.EllipticCurvePrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _aki(key: ec.EllipticCurvePrivateKey) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(key))


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _spki_of(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _parse_sans(kind: CertKind, ident: str, sans: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(f"urn:pumpguard:{kind}:{ident}")
    ]
    if not kind.server_auth:
        if sans:
            raise InvalidIdentError(
                f"subject alternative names are for server and ehr certificates, not {kind}"
            )
        return names
    wanted = list(sans) if sans else [ident]
    for text in wanted:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(text)))
            continue
        except ValueError:
            pass
        if _HOSTNAME.fullmatch(text) is None:
            if not sans:
                continue  # the id is not a hostname: no default DNS name
            raise InvalidIdentError(
                f"invalid subject alternative name {text!r}: give a DNS host name or an IP address"
            )
        names.append(x509.DNSName(text.lower()))
    return names


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    when: datetime,
    validity: timedelta,
    *,
    path_length: int,
) -> x509.Certificate:
    """A CA certificate; the root signs itself, the issuing CA is signed by the root."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - _BACKDATE)
        .not_valid_after(when + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(_aki(signer), critical=False)
        .sign(signer, hashes.SHA256())
    )


class CertificateAuthority:
    """Root and issuing CA (ECDSA P-256, SHA-256) over a directory; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        root_cert: x509.Certificate,
        issuing_cert: x509.Certificate,
        issuing_key: ec.EllipticCurvePrivateKey,
        events: SecurityEventSink | None,
    ) -> None:
        self._dir = directory
        self._root_cert = root_cert
        self._issuing_cert = issuing_cert
        self._issuing_key = issuing_key
        self._events = events
        self._thread_lock = threading.RLock()
        self._bundle = _pem(issuing_cert) + _pem(root_cert)

    # -- construction ---------------------------------------------------------------------

    @staticmethod
    def is_initialised(directory: Path) -> bool:
        return any(
            (directory / name).exists()
            for name in (INDEX_FILE, ROOT_KEY_FILE, ISSUING_KEY_FILE, ROOT_CERT_FILE)
        )

    @staticmethod
    def read_certificates(directory: Path) -> list[CertificateRecord]:
        """The index without the passphrase: listing needs no key."""
        if not (directory / INDEX_FILE).exists():
            raise CaNotInitialisedError(
                f"no certificate authority in {directory} (run `pumpguard pki init` first)"
            )
        return list(_read_index(directory).records)

    @classmethod
    def init(
        cls,
        directory: Path,
        passphrase: bytes,
        *,
        now: datetime | None = None,
        crl_url: str = DEFAULT_CRL_URL,
        events: SecurityEventSink | None = None,
    ) -> CertificateAuthority:
        """Create the root and issuing CA, an empty index and the first (empty) CRL."""
        if cls.is_initialised(directory):
            raise CaAlreadyInitialisedError(
                f"a certificate authority already exists in {directory}; refusing to replace it"
            )
        check_passphrase_strength(passphrase)
        if not re.fullmatch(r"https?://[^\s/?#]+/\S*", crl_url):
            raise CaStateError(f"the CRL URL must be an http(s) URL with a path, got {crl_url!r}")
        when = _utc(now)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        instance = secrets.token_hex(4)
        encryption = serialization.BestAvailableEncryption(passphrase)

        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _ca_name(f"pumpguard Root CA {instance}")
        root_cert = _ca_certificate(
            root_name, root_name, root_key, root_key, when, ROOT_VALIDITY, path_length=1
        )
        issuing_key = ec.generate_private_key(ec.SECP256R1())
        issuing_cert = _ca_certificate(
            _ca_name(f"pumpguard Issuing CA {instance}"),
            root_name,
            issuing_key,
            root_key,
            when,
            ISSUING_VALIDITY,
            path_length=0,
        )

        def private(key: ec.EllipticCurvePrivateKey) -> bytes:
            return key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            )

        atomic_write(directory / ROOT_KEY_FILE, private(root_key), mode=0o600)
        atomic_write(directory / ISSUING_KEY_FILE, private(issuing_key), mode=0o600)
        atomic_write(directory / ROOT_CERT_FILE, _pem(root_cert))
        atomic_write(directory / ISSUING_CERT_FILE, _pem(issuing_cert))
        atomic_write(directory / CA_BUNDLE_FILE, _pem(issuing_cert) + _pem(root_cert))
        (directory / _CERTS_DIR).mkdir(exist_ok=True, mode=0o700)
        ca = cls(directory, root_cert, issuing_cert, issuing_key, events)
        ca._save(_Index(crl_url=crl_url, crl_number=0, records=[]))
        ca.publish_crl(now=when)
        return ca

    @classmethod
    def open(
        cls,
        directory: Path,
        passphrase: bytes,
        *,
        events: SecurityEventSink | None = None,
    ) -> CertificateAuthority:
        """Load the CA; only the issuing key is decrypted (the root key stays sealed)."""
        required = (INDEX_FILE, ROOT_CERT_FILE, ISSUING_CERT_FILE, ISSUING_KEY_FILE)
        missing = [name for name in required if not (directory / name).exists()]
        if len(missing) == len(required):
            raise CaNotInitialisedError(
                f"no certificate authority in {directory} (run `pumpguard pki init` first)"
            )
        if missing:
            raise CaStateError(f"the CA in {directory} is incomplete: missing {', '.join(missing)}")
        try:
            root_cert = x509.load_pem_x509_certificate((directory / ROOT_CERT_FILE).read_bytes())
            issuing_cert = x509.load_pem_x509_certificate(
                (directory / ISSUING_CERT_FILE).read_bytes()
            )
            key_pem = (directory / ISSUING_KEY_FILE).read_bytes()
        except (OSError, ValueError) as exc:
            raise CaStateError(f"cannot read the CA certificates in {directory}: {exc}") from None
        try:
            issuing_cert.verify_directly_issued_by(root_cert)
        except (ValueError, TypeError, InvalidSignature):
            raise CaStateError(
                f"{directory / ISSUING_CERT_FILE} is not signed by {directory / ROOT_CERT_FILE}"
            ) from None
        if b"ENCRYPTED" not in key_pem:
            raise CaStateError(f"{directory / ISSUING_KEY_FILE} is not encrypted; refusing it")
        try:
            key = serialization.load_pem_private_key(key_pem, password=passphrase)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            if events is not None:
                events.emit(
                    SecurityEvent(
                        time_ms=_time_ms(_utc(None)),
                        component=Component.PKI,
                        code=PkiEvent.CA_WRONG_PASSPHRASE,
                        severity=severity_of(PkiEvent.CA_WRONG_PASSPHRASE),
                        message=f"wrong passphrase for the CA key in {directory}",
                    )
                )
            raise WrongPassphraseError(
                "the passphrase does not decrypt the issuing CA key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or _spki(key) != _spki_of(issuing_cert):
            raise CaStateError("the issuing CA key does not match the issuing CA certificate")
        ca = cls(directory, root_cert, issuing_cert, key, events)
        ca._load()
        return ca

    # -- queries --------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def ca_pem(self) -> bytes:
        """The trust bundle: issuing CA, then root."""
        return self._bundle

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._root_cert

    @property
    def issuing_certificate(self) -> x509.Certificate:
        return self._issuing_cert

    @property
    def crl_url(self) -> str:
        return self._load().crl_url

    def certificates(self) -> list[CertificateRecord]:
        return list(self._load().records)

    def certificate(self, serial: int) -> CertificateRecord:
        index = self._load()
        return index.records[index.find(serial)]

    def certificate_pem(self, serial: int) -> bytes:
        self.certificate(serial)
        path = self._dir / _CERTS_DIR / f"{serial:X}.pem"
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CaStateError(f"cannot read {path}: {exc.strerror}") from None

    # -- mutations ------------------------------------------------------------------------

    def issue(
        self,
        kind: CertKind,
        ident: str,
        *,
        sans: Sequence[str] = (),
        now: datetime | None = None,
        validity: timedelta | None = None,
        also_client: bool = False,
    ) -> IssuedCredential:
        """Issue a certificate with a fresh P-256 key for ``ident``.

        ``also_client`` adds clientAuth to a ``server`` certificate, for a back-end service that
        also connects as a client (the pump server subscribing at the MQTT broker). It is
        opt-in so that a listener's certificate (the broker's, an MLLP gateway's) cannot log in
        elsewhere with server rights.
        """
        kind = CertKind(kind)
        validate_ident(ident)
        if also_client and kind is not CertKind.SERVER:
            raise InvalidIdentError(
                f"also_client is for server certificates; a {kind} certificate's usage is fixed"
            )
        names = _parse_sans(kind, ident, sans)
        when = _utc(now)
        credential, record = self._transaction(
            lambda index: self._issue_into(
                index, kind, ident, names, tuple(sans), when, validity, also_client
            )
        )
        self._emit(
            PkiEvent.CERT_ISSUED,
            when,
            f"issued a {kind} certificate to {ident} (serial {record.serial_hex})",
            ident,
            {"serial": record.serial_hex, "kind": kind.value},
        )
        return credential

    def sign_csr(
        self,
        kind: CertKind,
        csr_pem: bytes,
        *,
        ident: str | None = None,
        sans: Sequence[str] = (),
        now: datetime | None = None,
        validity: timedelta | None = None,
        also_client: bool = False,
    ) -> SignedCertificate:
        """Certify a key generated on the device itself, from its PKCS#10 request.

        The CSR proves possession of the key and may name the id in its CN; everything else in
        it (requested extensions, other subject fields) is ignored: the CA alone decides the
        profile. Only ECDSA P-256 keys are accepted, like the keys the CA generates.
        """
        kind = CertKind(kind)
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CsrError(f"not a PEM certificate signing request: {exc}") from None
        if not csr.is_signature_valid:
            raise CsrError("the CSR signature does not verify (no proof of key possession)")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise CsrError("the CSR key must be ECDSA P-256")
        names_in_csr = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if len(names_in_csr) > 1:
            raise CsrError("the CSR subject carries more than one CN")
        requested = str(names_in_csr[0]) if names_in_csr else None
        if ident is None:
            if requested is None:
                raise CsrError("the CSR names no CN and no id was given")
            ident = requested
        elif requested is not None and requested != ident:
            raise CsrError(f"the CSR asks for CN {requested!r}, not {ident!r}")
        validate_ident(ident)
        if also_client and kind is not CertKind.SERVER:
            raise InvalidIdentError(
                f"also_client is for server certificates; a {kind} certificate's usage is fixed"
            )
        names = _parse_sans(kind, ident, sans)
        when = _utc(now)
        chosen = ident
        cert_pem, record = self._transaction(
            lambda index: self._sign_into(
                index,
                kind,
                chosen,
                names,
                tuple(sans),
                when,
                validity,
                also_client,
                public_key,
                device_key=True,
            )
        )
        self._emit(
            PkiEvent.CERT_ISSUED,
            when,
            f"signed a {kind} certificate request of {ident} (serial {record.serial_hex})",
            ident,
            {"serial": record.serial_hex, "kind": kind.value, "csr": "true"},
        )
        return SignedCertificate(
            cert_pem=cert_pem, ca_pem=self._bundle, serial=record.serial, not_after=record.not_after
        )

    def revoke(
        self,
        serial: int,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
        *,
        now: datetime | None = None,
    ) -> None:
        """Revoke one certificate and republish ``crl.pem``."""
        when = _utc(now)
        reason = RevocationReason(reason)

        def mutate(index: _Index) -> CertificateRecord:
            position = index.find(serial)
            record = index.records[position]
            if record.revoked:
                raise CertificateAlreadyRevokedError(
                    f"certificate {serial:X} ({record.ident}) was already revoked on "
                    f"{record.revoked_at:%Y-%m-%d %H:%M:%S} UTC ({record.revocation_reason})"
                )
            revoked = replace(record, revoked_at=when, revocation_reason=reason)
            index.records[position] = revoked
            return revoked

        record = self._transaction(mutate, publish_crl_at=when)
        self._emit_revoked(record, when)

    def revoke_ident(
        self,
        ident: str,
        reason: RevocationReason = RevocationReason.CESSATION_OF_OPERATION,
        *,
        now: datetime | None = None,
    ) -> list[int]:
        """Revoke every unrevoked certificate of ``ident`` (decommissioning), return the serials."""
        validate_ident(ident)
        when = _utc(now)
        reason = RevocationReason(reason)

        def mutate(index: _Index) -> list[CertificateRecord]:
            positions = [i for i, r in enumerate(index.records) if r.ident == ident]
            if not positions:
                raise UnknownIdentError(f"no certificate was ever issued to {ident!r}")
            revoked: list[CertificateRecord] = []
            for position in positions:
                record = index.records[position]
                if record.revoked:
                    continue
                index.records[position] = replace(record, revoked_at=when, revocation_reason=reason)
                revoked.append(index.records[position])
            return revoked

        records = self._transaction(mutate, publish_crl_at=when)
        for record in records:
            self._emit_revoked(record, when)
        return [record.serial for record in records]

    def renew_due(
        self, within: timedelta, *, now: datetime | None = None
    ) -> list[IssuedCredential]:
        """Re-issue (with new keys) every valid certificate expiring within ``within``.

        The old certificate stays valid until it expires, so a device can switch over at its
        own pace; it is marked ``renewed_by`` and never renewed twice. Expired, revoked and
        not-yet-valid certificates are left alone: renewal happens before expiry or not at all.
        Certificates of device-generated keys (``sign_csr``) are not re-keyed here, since that
        would hand the device a key made elsewhere: ``due_for_renewal`` lists them, and the
        device sends a new CSR.
        """
        when = _utc(now)

        def mutate(index: _Index) -> list[tuple[IssuedCredential, CertificateRecord]]:
            results: list[tuple[IssuedCredential, CertificateRecord]] = []
            for position, record in enumerate(list(index.records)):
                if not _due(record, within, when) or record.device_key:
                    continue
                names = _parse_sans(record.kind, record.ident, record.sans)
                credential, new = self._issue_into(
                    index,
                    record.kind,
                    record.ident,
                    names,
                    record.sans,
                    when,
                    None,
                    record.also_client,
                )
                index.records[position] = replace(record, renewed_by=new.serial)
                results.append((credential, record))
            return results

        renewed = self._transaction(mutate)
        for credential, old in renewed:
            self._emit(
                PkiEvent.CERT_RENEWED,
                when,
                f"renewed the certificate of {old.ident}: "
                f"{old.serial_hex} -> {credential.serial:X}",
                old.ident,
                {"serial": format(credential.serial, "X"), "previous_serial": old.serial_hex},
            )
        return [credential for credential, _ in renewed]

    def due_for_renewal(
        self, within: timedelta, *, now: datetime | None = None
    ) -> list[CertificateRecord]:
        """Valid, not yet renewed certificates expiring within ``within`` (any key origin)."""
        when = _utc(now)
        return [r for r in self.certificates() if _due(r, within, when)]

    # -- CRL ------------------------------------------------------------------------------

    def crl_pem(self, *, now: datetime | None = None) -> bytes:
        """A freshly signed CRL listing every revoked certificate, valid for ``CRL_VALIDITY``."""
        when = _utc(now)

        def mutate(index: _Index) -> bytes:
            index.crl_number += 1
            return self._build_crl(index, when)

        return self._transaction(mutate)

    def write_crl(self, path: Path, *, now: datetime | None = None) -> None:
        atomic_write(path, self.crl_pem(now=now))

    def publish_crl(self, *, now: datetime | None = None) -> Path:
        """Refresh ``crl.pem`` in the CA directory (it expires after ``CRL_VALIDITY``)."""
        self._transaction(lambda index: None, publish_crl_at=_utc(now))
        return self._dir / CRL_FILE

    # -- internals ------------------------------------------------------------------------

    def _issue_into(
        self,
        index: _Index,
        kind: CertKind,
        ident: str,
        names: list[x509.GeneralName],
        sans: tuple[str, ...],
        when: datetime,
        validity: timedelta | None,
        also_client: bool,
    ) -> tuple[IssuedCredential, CertificateRecord]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert_pem, record = self._sign_into(
            index, kind, ident, names, sans, when, validity, also_client, key.public_key()
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        credential = IssuedCredential(
            cert_pem=cert_pem,
            key_pem=key_pem,
            ca_pem=self._bundle,
            serial=record.serial,
            not_after=record.not_after,
        )
        return credential, record

    def _sign_into(
        self,
        index: _Index,
        kind: CertKind,
        ident: str,
        names: list[x509.GeneralName],
        sans: tuple[str, ...],
        when: datetime,
        validity: timedelta | None,
        also_client: bool,
        public_key: ec.EllipticCurvePublicKey,
        *,
        device_key: bool = False,
    ) -> tuple[bytes, CertificateRecord]:
        period = default_validity(kind) if validity is None else validity
        if period <= timedelta(0):
            raise ValueError("validity must be positive")
        when = when.replace(microsecond=0)  # X.509 times have one-second resolution
        not_before = when - _BACKDATE
        not_after = min(when + period, self._issuing_cert.not_valid_after_utc)
        if not_after <= when:
            raise CaStateError(
                f"the issuing CA expired on {self._issuing_cert.not_valid_after_utc:%Y-%m-%d}; "
                "it can issue nothing more"
            )
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind.value),
                x509.NameAttribute(NameOID.COMMON_NAME, ident),
            ]
        )
        serial = x509.random_serial_number()
        while any(r.serial == serial for r in index.records):  # pragma: no cover - 2**-159
            serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._issuing_cert.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(), critical=True)
            .add_extension(kind.extended_key_usage(also_client=also_client), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_aki(self._issuing_key), critical=False)
            .add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            full_name=[x509.UniformResourceIdentifier(index.crl_url)],
                            relative_name=None,
                            reasons=None,
                            crl_issuer=None,
                        )
                    ]
                ),
                critical=False,
            )
            .sign(self._issuing_key, hashes.SHA256())
        )
        cert_pem = _pem(cert)
        atomic_write(self._dir / _CERTS_DIR / f"{serial:X}.pem", cert_pem)
        record = CertificateRecord(
            serial=serial,
            kind=kind,
            ident=ident,
            sans=sans,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            fingerprint_sha256=hashlib.sha256(
                cert.public_bytes(serialization.Encoding.DER)
            ).hexdigest(),
            also_client=also_client,
            device_key=device_key,
        )
        index.records.append(record)
        return cert_pem, record

    def _build_crl(self, index: _Index, when: datetime) -> bytes:
        # OpenSSL, holding several CRLs of one issuer, uses the one with the latest thisUpdate
        # and keeps the older on a tie: two CRLs signed within one second must still differ.
        last_update = (when - _BACKDATE).replace(microsecond=0)
        previous = index.crl_last_update
        if previous is not None and last_update <= previous < when:
            last_update = previous + timedelta(seconds=1)
        if previous is None or last_update > previous:
            index.crl_last_update = last_update
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._issuing_cert.subject)
            .last_update(last_update)
            .next_update(when + CRL_VALIDITY)
            .add_extension(x509.CRLNumber(index.crl_number), critical=False)
            .add_extension(_aki(self._issuing_key), critical=False)
        )
        for record in index.records:
            if record.revoked_at is None:
                continue
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(record.serial)
                .revocation_date(record.revoked_at)
            )
            reason = record.revocation_reason
            # RFC 5280 5.3.1: the reasonCode "unspecified" SHOULD be absent.
            if reason is not None and reason is not RevocationReason.UNSPECIFIED:
                entry = entry.add_extension(x509.CRLReason(reason.flag()), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        crl = builder.sign(self._issuing_key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock, (self._dir / _LOCK_FILE).open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _transaction(
        self, mutate: Callable[[_Index], _T], *, publish_crl_at: datetime | None = None
    ) -> _T:
        with self._locked():
            index = self._load()
            result = mutate(index)
            if publish_crl_at is not None:
                index.crl_number += 1
                crl = self._build_crl(index, publish_crl_at)
            self._save(index)
            if publish_crl_at is not None:
                atomic_write(self._dir / CRL_FILE, crl)
            return result

    def _load(self) -> _Index:
        return _read_index(self._dir)

    def _save(self, index: _Index) -> None:
        stored = _StoredIndex(
            crl_url=index.crl_url,
            crl_number=index.crl_number,
            crl_last_update=index.crl_last_update,
            certificates=[_StoredRecord.of(r) for r in index.records],
        )
        atomic_write(self._dir / INDEX_FILE, stored.model_dump_json(indent=2).encode() + b"\n")

    def _emit(
        self,
        code: PkiEvent,
        when: datetime,
        message: str,
        ident: str,
        attributes: dict[str, str],
    ) -> None:
        if self._events is None:
            return
        self._events.emit(
            SecurityEvent(
                time_ms=_time_ms(when),
                component=Component.PKI,
                code=code,
                severity=severity_of(code),
                message=message,
                device_id=ident,
                attributes=attributes,
            )
        )

    def _emit_revoked(self, record: CertificateRecord, when: datetime) -> None:
        reason = record.revocation_reason or RevocationReason.UNSPECIFIED
        self._emit(
            PkiEvent.CERT_REVOKED,
            when,
            f"revoked certificate {record.serial_hex} of {record.ident} ({reason})",
            record.ident,
            {"serial": record.serial_hex, "reason": reason.value},
        )


def _due(record: CertificateRecord, within: timedelta, when: datetime) -> bool:
    return (
        record.renewed_by is None
        and record.status(when) is CertStatus.VALID
        and record.not_after - when <= within
    )


def _read_index(directory: Path) -> _Index:
    path = directory / INDEX_FILE
    try:
        stored = _StoredIndex.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise CaNotInitialisedError(f"no certificate index in {directory}") from None
    except OSError as exc:
        raise CaStateError(f"cannot read {path}: {exc.strerror}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CaStateError(
            f"{path} is damaged ({exc.error_count()} problem(s); first at {where or 'top'}: "
            f"{first['msg']})"
        ) from None
    return _Index(
        crl_url=stored.crl_url,
        crl_number=stored.crl_number,
        crl_last_update=None if stored.crl_last_update is None else _utc(stored.crl_last_update),
        records=[r.record() for r in stored.certificates],
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
