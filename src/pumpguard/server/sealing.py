"""Encryption at rest for the few secrets the database must hold (TOTP seeds, device keys
awaiting collection), so a copy of the database alone opens nothing.

AES-256-GCM with a key derived (HKDF-SHA256) from the audit checkpoint key, which is itself
encrypted under the operator's passphrase: one secret to guard, no extra file. Each value is
bound to where it belongs (``users.totp_secret:alice``) as associated data, so a value copied
into another row fails to open instead of granting that row's owner someone else's secret.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SealError", "Sealer"]

_PREFIX = "v1."
_NONCE = 12


class SealError(Exception):
    """A sealed value is damaged, was moved to another row, or the key changed."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a sealing key is 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, value: str, context: str) -> str:
        if not value.startswith(_PREFIX):
            raise SealError(f"{context}: not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(value[len(_PREFIX) :].encode("ascii"))
            opened = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode("utf-8"))
        except (InvalidTag, ValueError, binascii.Error):
            raise SealError(
                f"{context}: the sealed value does not open (damaged, moved from another row, "
                "or sealed under another key)"
            ) from None
        return opened.decode("utf-8")
