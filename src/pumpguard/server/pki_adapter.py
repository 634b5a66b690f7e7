"""``DeviceCertificates`` over the pumpguard CA (``pumpguard.pki``)."""

from __future__ import annotations

from datetime import UTC, datetime

from pumpguard.pki import (
    CertificateAlreadyRevokedError,
    CertificateAuthority,
    CertKind,
    PkiError,
    RevocationReason,
)
from pumpguard.server.certificates import DeviceCredential
from pumpguard.server.errors import CertificateAuthorityError

__all__ = ["PkiDeviceCertificates"]


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class PkiDeviceCertificates:
    """Issues pump certificates and revokes them (which republishes the CRL)."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self._ca = ca

    def issue_pump(self, ident: str, now_ms: int) -> DeviceCredential:
        try:
            issued = self._ca.issue(CertKind.PUMP, ident, now=_when(now_ms))
        except PkiError as exc:
            raise CertificateAuthorityError(f"the CA refused to certify {ident}: {exc}") from None
        return DeviceCredential(
            cert_pem=issued.cert_pem.decode("ascii"),
            key_pem=issued.key_pem.decode("ascii"),
            ca_pem=issued.ca_pem.decode("ascii"),
            serial=issued.serial,
            not_after_ms=int(issued.not_after.timestamp() * 1000),
        )

    def revoke(self, serial: int, reason: str, now_ms: int) -> None:
        try:
            self._ca.revoke(serial, RevocationReason(reason), now=_when(now_ms))
        except CertificateAlreadyRevokedError:
            return
        except (PkiError, ValueError) as exc:
            raise CertificateAuthorityError(f"the CA could not revoke {serial:X}: {exc}") from None
