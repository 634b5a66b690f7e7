"""The server's view of the certificate authority: issue a pump's certificate, revoke it.

The server depends on this small protocol rather than on the CA's full API, so the asset
life cycle can be exercised against any CA and the PKI can evolve behind an adapter
(``PkiDeviceCertificates`` maps it onto ``pumpguard.pki``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["DeviceCertificates", "DeviceCredential"]


@dataclass(frozen=True, slots=True)
class DeviceCredential:
    """What onboarding hands a pump: its certificate, private key and the CA to trust."""

    cert_pem: str
    key_pem: str
    ca_pem: str
    serial: int
    not_after_ms: int


@runtime_checkable
class DeviceCertificates(Protocol):
    def issue_pump(self, ident: str, now_ms: int) -> DeviceCredential: ...

    def revoke(self, serial: int, reason: str, now_ms: int) -> None:
        """Revoke ``serial`` and republish the CRL so relying parties see it at once."""
        ...
