"""A tamper-evident audit log: a SHA-256 hash chain with Ed25519-signed checkpoints.

Each entry's hash covers the previous entry's hash and the canonical JSON of the entry, so an
edit, an insertion, a deletion or a reordering anywhere breaks the chain at that point. A chain
alone can be rebuilt by whoever can write the database, so every ``checkpoint_every`` entries
(and whenever asked) the head (sequence, hash) is signed with a key kept in the data directory,
encrypted at rest. Rewriting entries covered by a checkpoint then needs that key. What a
checkpoint cannot show is the loss of entries written after the last one: see docs/server.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from pumpguard.clock import Clock
from pumpguard.server._sql import insert_ignoring_conflicts
from pumpguard.server.models import AuditCheckpointRow, AuditEntryRow, AuditHeadRow

__all__ = [
    "GENESIS_HASH",
    "AuditAction",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditKeyError",
    "AuditLog",
    "AuditProblem",
    "AuditProblemKind",
    "AuditVerification",
    "CheckpointKey",
    "checkpoint_message",
    "entry_hash",
    "load_checkpoint_public_key",
    "public_key_path",
    "verify_audit_log",
]

GENESIS_HASH = "0" * 64
_HEAD_ID = 1
_KEY_FILE = "checkpoint-key.pem"
_PUBLIC_KEY_FILE = "checkpoint-key.pub.pem"
_CHECKPOINT_DOMAIN = b"pumpguard-audit-checkpoint-v1\x00"
_MAX_PROBLEMS = 50
_BATCH = 1000

DetailValue = str | int | bool | None


class AuditAction(StrEnum):
    """What happened; a published action name is never renamed (reports and rules match on it)."""

    LOGIN_SUCCEEDED = "auth.login.succeeded"
    LOGIN_FAILED = "auth.login.failed"
    ACCOUNT_LOCKED = "auth.account.locked"
    LOGOUT = "auth.logout"
    USER_CREATED = "user.created"
    USER_DISABLED = "user.disabled"
    PASSWORD_CHANGED = "user.password.changed"
    ASSET_REGISTERED = "asset.registered"
    ASSET_UPDATED = "asset.updated"
    ASSET_TRANSITIONED = "asset.transitioned"
    CERTIFICATE_ISSUED = "asset.certificate.issued"
    CERTIFICATE_REVOKED = "asset.certificate.revoked"
    SECRETS_WIPED = "asset.secrets.wiped"
    CREDENTIAL_COLLECTED = "asset.credential.collected"
    DATABASE_CREATED = "server.database.created"
    ORDER_RECEIVED = "order.received"
    ORDER_REFUSED = "order.refused"
    ORDER_PREFILLED = "order.prefilled"
    ORDER_CONFIRMED = "order.confirmed"
    ORDER_EDITED = "order.edited"
    ORDER_REJECTED = "order.rejected"
    ORDER_FAILED = "order.failed"
    ORDER_ACKNOWLEDGED = "order.acknowledged"
    LIBRARY_DRAFT_CREATED = "library.draft.created"
    LIBRARY_DRAFT_EDITED = "library.draft.edited"
    LIBRARY_SUBMITTED = "library.submitted"
    LIBRARY_APPROVED = "library.approved"
    LIBRARY_REJECTED = "library.rejected"
    LIBRARY_APPROVAL_REFUSED = "library.approval.refused"
    LIBRARY_PUBLISHED = "library.published"
    LIBRARY_ROLLOUT_STARTED = "library.rollout.started"
    LIBRARY_ROLLOUT_HALTED = "library.rollout.halted"
    FIRMWARE_PUBLISHED = "firmware.published"
    FIRMWARE_ROLLOUT_STARTED = "firmware.rollout.started"
    FIRMWARE_ROLLOUT_HALTED = "firmware.rollout.halted"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"
    ALERT_RESOLVED = "alert.resolved"
    ATTACK_LAUNCHED = "attack.launched"
    """A live attack launched from the dashboard at this server (``up --demo`` only): who, which,
    and what the system did, so that its alerts are never mistaken for a real incident."""


class AuditKeyError(Exception):
    """The checkpoint key is missing, unreadable, or the passphrase does not open it."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at_ms: int
    actor: str
    action: str
    subject: str
    details: str
    prev_hash: str
    entry_hash: str

    def details_dict(self) -> dict[str, DetailValue]:
        loaded = json.loads(self.details)
        return dict(loaded) if isinstance(loaded, dict) else {}


@dataclass(frozen=True, slots=True)
class AuditCheckpoint:
    seq: int
    entry_hash: str
    signed_at_ms: int
    key_id: str
    signature: str


class AuditProblemKind(StrEnum):
    GAP = "gap"
    OUT_OF_ORDER = "out-of-order"
    BROKEN_LINK = "broken-link"
    EDITED = "edited"
    CHECKPOINT_MISMATCH = "checkpoint-mismatch"
    CHECKPOINT_BAD_SIGNATURE = "checkpoint-bad-signature"
    TRUNCATED = "truncated"
    HEAD_MISMATCH = "head-mismatch"


@dataclass(frozen=True, slots=True)
class AuditProblem:
    seq: int
    kind: AuditProblemKind
    message: str


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The outcome of ``verify_audit_log``; ``unanchored`` entries are not yet under a signature."""

    entries: int
    last_seq: int
    checkpoints: int
    last_checkpoint_seq: int
    problems: tuple[AuditProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unanchored(self) -> int:
        return max(0, self.last_seq - self.last_checkpoint_seq)

    @property
    def first_problem(self) -> AuditProblem | None:
        return self.problems[0] if self.problems else None


def _canonical(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def entry_hash(
    prev_hash: str, seq: int, at_ms: int, actor: str, action: str, subject: str, details: str
) -> str:
    """The chain link: SHA-256 over the previous hash (as stored text) and the canonical JSON
    of the entry.

    ``details`` enters as the exact stored text, so even a whitespace edit is an edit.
    """
    body = _canonical(
        {
            "seq": seq,
            "at_ms": at_ms,
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details,
        }
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def checkpoint_message(seq: int, head_hash: str) -> bytes:
    """The bytes a checkpoint signs: a domain tag, the sequence and the chain hash there."""
    return _CHECKPOINT_DOMAIN + f"{seq}\n{head_hash}".encode()


def _key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_path(directory: Path) -> Path:
    return directory / _PUBLIC_KEY_FILE


class CheckpointKey:
    """The Ed25519 key that signs checkpoints; its private half is PKCS#8-encrypted on disk."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key = private_key.public_key()
        self.key_id = _key_id(self.public_key)

    @classmethod
    def create(cls, directory: Path, passphrase: bytes) -> CheckpointKey:
        if not passphrase:
            raise AuditKeyError("the audit key passphrase must not be empty")
        key_path = directory / _KEY_FILE
        if key_path.exists():
            raise AuditKeyError(f"{key_path} already exists; refusing to replace an audit key")
        directory.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        public_key_path(directory).write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(private)

    @classmethod
    def load(cls, directory: Path, passphrase: bytes) -> CheckpointKey:
        key_path = directory / _KEY_FILE
        try:
            data = key_path.read_bytes()
        except OSError as exc:
            raise AuditKeyError(f"cannot read the audit key {key_path}: {exc.strerror}") from None
        try:
            private = serialization.load_pem_private_key(data, password=passphrase)
        except (ValueError, TypeError):
            raise AuditKeyError(
                f"cannot open the audit key {key_path}: wrong passphrase or damaged file"
            ) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise AuditKeyError(f"{key_path} is not an Ed25519 key")
        return cls(private)

    @classmethod
    def load_or_create(cls, directory: Path, passphrase: bytes) -> CheckpointKey:
        if (directory / _KEY_FILE).exists():
            return cls.load(directory, passphrase)
        return cls.create(directory, passphrase)

    def sign(self, seq: int, head_hash: str) -> str:
        return self._private.sign(checkpoint_message(seq, head_hash)).hex()

    def derive_key(self, purpose: str) -> bytes:
        """A 256-bit key for ``purpose``, derived from this key (HKDF-SHA256)."""
        raw = self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode("utf-8")
        ).derive(raw)


def load_checkpoint_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit public key {path}: {exc.strerror}") from None
    except ValueError:
        raise AuditKeyError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError(f"{path} is not an Ed25519 public key")
    return key


def _entry(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        at_ms=row.at_ms,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        details=row.details,
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


class AuditLog:
    """Appends to the chain inside the caller's transaction (so an action and its record commit
    or roll back together) and signs a checkpoint every ``checkpoint_every`` entries."""

    def __init__(
        self,
        session: Session,
        clock: Clock,
        key: CheckpointKey | None,
        checkpoint_every: int = 32,
    ) -> None:
        self._session = session
        self._clock = clock
        self._key = key
        self._every = checkpoint_every

    def _lock_head(self) -> AuditHeadRow:
        self._session.execute(
            insert_ignoring_conflicts(self._session, AuditHeadRow, ["id"]).values(
                id=_HEAD_ID, last_seq=0, last_hash=GENESIS_HASH
            )
        )
        return self._session.execute(
            select(AuditHeadRow)
            .where(AuditHeadRow.id == _HEAD_ID)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()

    def append(
        self,
        action: AuditAction,
        actor: str,
        subject: str,
        details: Mapping[str, DetailValue] | None = None,
    ) -> AuditEntry:
        head = self._lock_head()
        seq = head.last_seq + 1
        at_ms = self._clock.now_ms()
        text = _canonical(dict(details or {}))
        digest = entry_hash(head.last_hash, seq, at_ms, actor, str(action), subject, text)
        row = AuditEntryRow(
            seq=seq,
            at_ms=at_ms,
            actor=actor,
            action=str(action),
            subject=subject,
            details=text,
            prev_hash=head.last_hash,
            entry_hash=digest,
        )
        self._session.add(row)
        head.last_seq = seq
        head.last_hash = digest
        self._session.flush()
        if self._key is not None and seq % self._every == 0:
            self._sign(seq, digest)
        return _entry(row)

    def _sign(self, seq: int, digest: str) -> AuditCheckpoint:
        assert self._key is not None
        row = AuditCheckpointRow(
            seq=seq,
            entry_hash=digest,
            signed_at_ms=self._clock.now_ms(),
            key_id=self._key.key_id,
            signature=self._key.sign(seq, digest),
        )
        self._session.add(row)
        self._session.flush()
        return AuditCheckpoint(row.seq, row.entry_hash, row.signed_at_ms, row.key_id, row.signature)

    def checkpoint(self) -> AuditCheckpoint | None:
        """Sign the current head now (a no-op when it is already signed or the log is empty)."""
        if self._key is None:
            raise AuditKeyError("no audit key loaded: cannot sign a checkpoint")
        head = self._lock_head()
        if head.last_seq == 0 or self._session.get(AuditCheckpointRow, head.last_seq) is not None:
            return None
        return self._sign(head.last_seq, head.last_hash)

    def entries(self, after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
        rows = self._session.scalars(
            select(AuditEntryRow)
            .where(AuditEntryRow.seq > after_seq)
            .order_by(AuditEntryRow.seq)
            .limit(limit)
        )
        return [_entry(r) for r in rows]


def verify_audit_log(session: Session, public_key: Ed25519PublicKey) -> AuditVerification:
    """Recompute the whole chain and check every checkpoint; report what does not hold.

    Reads in sequence order in batches, so memory stays flat however long the log is.
    """
    problems: list[AuditProblem] = []

    def note(seq: int, kind: AuditProblemKind, message: str) -> None:
        if len(problems) < _MAX_PROBLEMS:
            problems.append(AuditProblem(seq, kind, message))

    key_id = _key_id(public_key)
    checkpoints = {c.seq: c for c in session.scalars(select(AuditCheckpointRow))}
    signed: set[int] = set()
    for cp in checkpoints.values():
        try:
            if cp.key_id != key_id:
                raise InvalidSignature
            public_key.verify(
                bytes.fromhex(cp.signature), checkpoint_message(cp.seq, cp.entry_hash)
            )
            signed.add(cp.seq)
        except (InvalidSignature, ValueError):
            note(
                cp.seq,
                AuditProblemKind.CHECKPOINT_BAD_SIGNATURE,
                f"checkpoint at entry {cp.seq} is not signed by the audit key {key_id}",
            )

    expected_seq = 1
    prev_stored = GENESIS_HASH
    prev_computed = GENESIS_HASH
    count = 0
    last_seq = 0
    after = None
    while True:
        query = select(AuditEntryRow).order_by(AuditEntryRow.seq).limit(_BATCH)
        if after is not None:
            query = query.where(AuditEntryRow.seq > after)
        rows = list(session.scalars(query))
        if not rows:
            break
        for row in rows:
            count += 1
            if row.seq != expected_seq:
                kind = (
                    AuditProblemKind.GAP
                    if row.seq > expected_seq
                    else AuditProblemKind.OUT_OF_ORDER
                )
                note(
                    row.seq,
                    kind,
                    f"entry {row.seq} follows entry {expected_seq - 1}: "
                    f"entries {expected_seq}..{row.seq - 1} are missing",
                )
            if row.prev_hash != prev_stored:
                note(
                    row.seq,
                    AuditProblemKind.BROKEN_LINK,
                    f"entry {row.seq} does not link to the entry before it "
                    "(an entry was edited, inserted or removed there)",
                )
            recomputed_here = entry_hash(
                row.prev_hash, row.seq, row.at_ms, row.actor, row.action, row.subject, row.details
            )
            if recomputed_here != row.entry_hash:
                note(
                    row.seq,
                    AuditProblemKind.EDITED,
                    f"entry {row.seq} was edited after it was written",
                )
            prev_computed = entry_hash(
                prev_computed, row.seq, row.at_ms, row.actor, row.action, row.subject, row.details
            )
            anchor = checkpoints.get(row.seq)
            if anchor is not None and anchor.entry_hash != prev_computed:
                note(
                    row.seq,
                    AuditProblemKind.CHECKPOINT_MISMATCH,
                    f"the chain up to entry {row.seq} differs from the one signed at that "
                    "checkpoint (entries up to there were rewritten)",
                )
            prev_stored = row.entry_hash
            expected_seq = row.seq + 1
            last_seq = row.seq
        after = rows[-1].seq

    for seq in sorted(checkpoints):
        if seq > last_seq:
            note(
                seq,
                AuditProblemKind.TRUNCATED,
                f"a checkpoint signs entry {seq} but the log ends at entry {last_seq}: "
                "entries were removed from the end",
            )
    head = session.get(AuditHeadRow, _HEAD_ID)
    if head is not None and (head.last_seq != last_seq or head.last_hash != prev_stored):
        note(
            min(head.last_seq, last_seq) + 1 if head.last_seq != last_seq else last_seq,
            AuditProblemKind.HEAD_MISMATCH,
            f"the log ends at entry {last_seq} but its head records entry {head.last_seq}",
        )
    good_checkpoints = [s for s in signed if s <= last_seq]
    return AuditVerification(
        entries=count,
        last_seq=last_seq,
        checkpoints=len(checkpoints),
        last_checkpoint_seq=max(good_checkpoints, default=0),
        problems=tuple(sorted(problems, key=lambda p: p.seq)),
    )
