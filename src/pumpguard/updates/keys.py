"""Signing keys of the update repository: one ECDSA P-256 key per file, encrypted at rest.

Every signer (each root key holder, each pharmacist, each firmware approver, the online snapshot
and timestamp keys) has its own PKCS#8 PEM file encrypted with its own passphrase, so that
"one stolen key" means exactly one file and one passphrase. An unencrypted key file is refused
on load: a key that was ever stored in clear must be treated as stolen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from securesystemslib.signer import CryptoSigner, Signer, SSlibKey

from pumpguard.updates._files import atomic_write
from pumpguard.updates.errors import KeyFileError, WrongKeyPassphraseError

__all__ = [
    "MIN_KEY_PASSPHRASE_BYTES",
    "PassphraseFor",
    "generate_key",
    "key_path",
    "load_signer",
    "public_keyid",
]

MIN_KEY_PASSPHRASE_BYTES = 12

PassphraseFor = Callable[[str], bytes]
"""Gives the passphrase of the key with the given name (``drug-libraries-2``, ...)."""


def key_path(keys_dir: Path, key_name: str) -> Path:
    return keys_dir / f"{key_name}.pem"


def _public_path(keys_dir: Path, key_name: str) -> Path:
    return keys_dir / f"{key_name}.pub"


def generate_key(keys_dir: Path, key_name: str, passphrase: bytes) -> CryptoSigner:
    """Create a new key, store it encrypted under ``passphrase``, return its signer."""
    if len(passphrase) < MIN_KEY_PASSPHRASE_BYTES:
        raise KeyFileError(
            f"the passphrase for key {key_name} is {len(passphrase)} bytes long; at least "
            f"{MIN_KEY_PASSPHRASE_BYTES} are required"
        )
    path = key_path(keys_dir, key_name)
    if path.exists():
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite a key")
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase)
    )
    atomic_write(path, pem, 0o600)
    public = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    atomic_write(_public_path(keys_dir, key_name), public, 0o644)
    return CryptoSigner(private)


def load_signer(keys_dir: Path, key_name: str, passphrase: bytes) -> Signer:
    """Decrypt one key file; every failure is a ``KeyFileError`` naming the file."""
    path = key_path(keys_dir, key_name)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        private = load_pem_private_key(pem, password=passphrase)
    except TypeError:
        raise KeyFileError(
            f"key file {path} is not encrypted; a key stored in clear must be replaced"
        ) from None
    except ValueError as exc:
        if b"ENCRYPTED" in pem:
            raise WrongKeyPassphraseError(
                f"the passphrase does not decrypt key file {path}"
            ) from None
        raise KeyFileError(f"key file {path} is not a PEM private key: {exc}") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
        private.curve, ec.SECP256R1
    ):
        raise KeyFileError(f"key file {path} does not hold an ECDSA P-256 key")
    return CryptoSigner(private)


def public_keyid(keys_dir: Path, key_name: str) -> str:
    """The TUF key id of a stored key, from its public half (no passphrase needed)."""
    path = _public_path(keys_dir, key_name)
    try:
        public = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise KeyFileError(f"cannot read public key file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise KeyFileError(f"{path} does not hold an ECDSA public key")
    keyid: str = SSlibKey.from_crypto(public).keyid
    return keyid
