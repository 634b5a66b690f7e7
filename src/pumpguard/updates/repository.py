"""The server side: a TUF repository of drug libraries and firmware over one directory.

Layout (only ``published/`` is ever served)::

    <directory>/published/metadata/   1.root.json, root.json, timestamp.json, N.snapshot.json,
                                      N.targets.json, N.drug-libraries.json, N.firmware.json
    <directory>/published/targets/    drug-libraries/<sha256>.<id>-<v>.json, firmware/...
    <directory>/keys/                 one encrypted PEM per signer (never served)
    <directory>/staging/              a release waiting for signatures, per delegated role

Trust is split so that no single key and no server process can publish a drug library:
root and top-level targets are offline threshold roles that only delegate; ``drug-libraries``
and ``firmware`` are delegated roles with their own threshold of distinct signers; only the
snapshot and timestamp keys are online, and they can only re-date and re-list what the threshold
roles already signed. Consistent snapshots are on, so a pump fetching while a release is
published sees the old set or the new set, never half of each.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from pumpguard.clinical.library import LibraryError, parse_library
from pumpguard.clock import Clock
from pumpguard.security_events import SecurityEventSink
from pumpguard.updates._files import atomic_write
from pumpguard.updates.errors import (
    DuplicateSignatureError,
    KeyFileError,
    NothingPendingError,
    RepositoryStateError,
    ThresholdNotMetError,
    UnauthorisedSignerError,
)
from pumpguard.updates.events import UpdateEvent, update_event
from pumpguard.updates.keys import PassphraseFor, generate_key, load_signer, public_keyid
from pumpguard.updates.targets import TargetDescription, UpdateKind, describe_target, target_path

__all__ = [
    "METADATA_DIR",
    "PUBLISHED_DIR",
    "TARGETS_DIR",
    "PendingRelease",
    "RepositoryPolicy",
    "RepositoryVersions",
    "RolePolicy",
    "SigningRole",
    "UpdateRepository",
    "ms_to_datetime",
]

PUBLISHED_DIR = "published"
METADATA_DIR = "metadata"
TARGETS_DIR = "targets"
_KEYS_DIR = "keys"
_STAGING_DIR = "staging"

_S = TypeVar("_S", Root, Timestamp, Snapshot, Targets)


def ms_to_datetime(ms: int) -> datetime:
    """Exact conversion of a ``Clock`` reading; TUF expiries are whole seconds in UTC."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


class SigningRole(StrEnum):
    """Every role that signs metadata; each key file is named ``<role>-<n>``."""

    ROOT = "root"
    TARGETS = "targets"
    SNAPSHOT = "snapshot"
    TIMESTAMP = "timestamp"
    DRUG_LIBRARIES = "drug-libraries"
    FIRMWARE = "firmware"

    def key_name(self, index: int) -> str:
        return f"{self.value}-{index}"

    @property
    def is_top_level(self) -> bool:
        return self in _TOP_LEVEL


_TOP_LEVEL = (SigningRole.ROOT, SigningRole.TARGETS, SigningRole.SNAPSHOT, SigningRole.TIMESTAMP)
_DELEGATED = (SigningRole.DRUG_LIBRARIES, SigningRole.FIRMWARE)


def _role_of(kind: UpdateKind) -> SigningRole:
    return SigningRole(kind.role)


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """How many keys a role has, how many must sign, and how long its metadata stays valid."""

    keys: int
    threshold: int
    expiry: timedelta

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= self.keys:
            raise ValueError(
                f"a threshold of {self.threshold} needs between 1 and {self.keys} (the key count)"
            )
        if self.expiry <= timedelta(0):
            raise ValueError("metadata must expire after it is signed")


@dataclass(frozen=True, slots=True)
class RepositoryPolicy:
    """Key counts, thresholds and expiries; the thresholds end up signed in root and targets.

    Drug libraries need at least two distinct signers (the issue's rule: one stolen pharmacy
    key or one compromised server process cannot publish alone). Firmware defaults to two of
    two: the maker's release key and the hospital's biomedical-engineering acceptance key.
    """

    root: RolePolicy = RolePolicy(3, 2, timedelta(days=365))
    targets: RolePolicy = RolePolicy(2, 2, timedelta(days=365))
    snapshot: RolePolicy = RolePolicy(1, 1, timedelta(days=7))
    timestamp: RolePolicy = RolePolicy(1, 1, timedelta(days=1))
    drug_libraries: RolePolicy = RolePolicy(3, 2, timedelta(days=90))
    firmware: RolePolicy = RolePolicy(2, 2, timedelta(days=180))

    def __post_init__(self) -> None:
        if self.drug_libraries.threshold < 2:
            raise ValueError(
                "drug libraries need a threshold of at least 2 signers, "
                f"got {self.drug_libraries.threshold}"
            )

    def of(self, role: SigningRole) -> RolePolicy:
        match role:
            case SigningRole.ROOT:
                return self.root
            case SigningRole.TARGETS:
                return self.targets
            case SigningRole.SNAPSHOT:
                return self.snapshot
            case SigningRole.TIMESTAMP:
                return self.timestamp
            case SigningRole.DRUG_LIBRARIES:
                return self.drug_libraries
            case SigningRole.FIRMWARE:
                return self.firmware


@dataclass(frozen=True, slots=True)
class RepositoryVersions:
    """The metadata versions currently published."""

    root: int
    timestamp: int
    snapshot: int
    targets: int
    drug_libraries: int
    firmware: int


@dataclass(frozen=True, slots=True)
class PendingRelease:
    """A release of one target waiting for its role's threshold of distinct signatures."""

    kind: UpdateKind
    role_version: int
    target: TargetDescription
    threshold: int
    signed_by: tuple[str, ...] = field(default=())

    @property
    def missing(self) -> int:
        return max(0, self.threshold - len(self.signed_by))


class UpdateRepository:
    """A TUF repository for drug libraries and firmware; see the module docstring for the layout.

    Build one with ``create`` (a key ceremony: every key is generated and the first metadata is
    signed) or ``open`` (the server process: it unlocks only the online snapshot and timestamp
    keys). State is read from the directory on every operation, so several processes (the
    server, a pharmacist's signing tool) can share one repository.
    """

    def __init__(
        self,
        directory: Path,
        clock: Clock,
        policy: RepositoryPolicy,
        online: Sequence[Signer],
        events: SecurityEventSink | None,
    ) -> None:
        self._dir = directory
        self._clock = clock
        self._policy = policy
        self._online = tuple(online)
        self._events = events

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        clock: Clock,
        passphrase_for: PassphraseFor,
        policy: RepositoryPolicy | None = None,
        events: SecurityEventSink | None = None,
    ) -> UpdateRepository:
        """Generate every key (each under its own passphrase) and publish version 1."""
        policy = policy or RepositoryPolicy()
        directory = Path(directory)
        if (directory / PUBLISHED_DIR / METADATA_DIR / "root.json").exists():
            raise RepositoryStateError(f"{directory} already holds an update repository")
        keys_dir = directory / _KEYS_DIR
        signers: dict[SigningRole, list[Signer]] = {}
        for role in SigningRole:
            signers[role] = [
                generate_key(keys_dir, role.key_name(i), passphrase_for(role.key_name(i)))
                for i in range(1, policy.of(role).keys + 1)
            ]
        now = ms_to_datetime(clock.now_ms())

        root = Root(expires=now + policy.root.expiry, consistent_snapshot=True)
        for role in _TOP_LEVEL:
            for signer in signers[role]:
                root.add_key(signer.public_key, role.value)
            root.roles[role.value].threshold = policy.of(role).threshold

        delegated_roles = {
            role.value: DelegatedRole(
                role.value,
                [],
                policy.of(role).threshold,
                terminating=True,
                paths=[f"{role.value}/*"],
            )
            for role in _DELEGATED
        }
        targets = Targets(
            expires=now + policy.targets.expiry,
            delegations=Delegations(keys={}, roles=delegated_roles),
        )
        for role in _DELEGATED:
            for signer in signers[role]:
                targets.add_key(signer.public_key, role.value)

        online = [*signers[SigningRole.SNAPSHOT], *signers[SigningRole.TIMESTAMP]]
        repo = cls(directory, clock, policy, online, events)
        metadata_dir = repo.metadata_dir
        root_bytes = _signed_bytes(Metadata(root), signers[SigningRole.ROOT])
        atomic_write(metadata_dir / "1.root.json", root_bytes, 0o644)
        atomic_write(metadata_dir / "root.json", root_bytes, 0o644)
        repo._write_role(SigningRole.TARGETS, Metadata(targets), signers[SigningRole.TARGETS])
        for role in _DELEGATED:
            empty = Targets(expires=now + policy.of(role).expiry)
            repo._write_role(role, Metadata(empty), signers[role])
        snapshot = Snapshot(
            expires=now + policy.snapshot.expiry,
            meta={f"{role.value}.json": MetaFile(1) for role in (SigningRole.TARGETS, *_DELEGATED)},
        )
        repo._write_role(SigningRole.SNAPSHOT, Metadata(snapshot), signers[SigningRole.SNAPSHOT])
        timestamp = Timestamp(expires=now + policy.timestamp.expiry, snapshot_meta=MetaFile(1))
        atomic_write(
            metadata_dir / "timestamp.json",
            _signed_bytes(Metadata(timestamp), signers[SigningRole.TIMESTAMP]),
            0o644,
        )
        return repo

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        clock: Clock,
        passphrase_for: PassphraseFor,
        policy: RepositoryPolicy | None = None,
        events: SecurityEventSink | None = None,
    ) -> UpdateRepository:
        """Open an existing repository with only its online (snapshot, timestamp) keys."""
        directory = Path(directory)
        if not (directory / PUBLISHED_DIR / METADATA_DIR / "root.json").exists():
            raise RepositoryStateError(f"{directory} holds no update repository (no root.json)")
        keys_dir = directory / _KEYS_DIR
        root = _load(directory / PUBLISHED_DIR / METADATA_DIR / "root.json", Root)
        online: list[Signer] = []
        for role in (SigningRole.SNAPSHOT, SigningRole.TIMESTAMP):
            current = set(root.signed.roles[role.value].keyids)
            names = [
                p.stem
                for p in sorted(keys_dir.glob(f"{role.value}-*.pem"))
                if public_keyid(keys_dir, p.stem) in current
            ]
            if not names:
                raise KeyFileError(f"{keys_dir} has no current {role.value} key")
            online.extend(load_signer(keys_dir, name, passphrase_for(name)) for name in names)
        return cls(directory, clock, policy or RepositoryPolicy(), online, events)

    # ------------------------------------------------------------------ reading

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def published_dir(self) -> Path:
        """What a web server (or a ``DirectorySource``) serves to pumps."""
        return self._dir / PUBLISHED_DIR

    @property
    def metadata_dir(self) -> Path:
        return self.published_dir / METADATA_DIR

    @property
    def targets_dir(self) -> Path:
        return self.published_dir / TARGETS_DIR

    @property
    def keys_dir(self) -> Path:
        return self._dir / _KEYS_DIR

    def trusted_root(self) -> bytes:
        """The current root, as installed on a pump at provisioning (its trust anchor)."""
        return (self.metadata_dir / "root.json").read_bytes()

    def versions(self) -> RepositoryVersions:
        root = _load(self.metadata_dir / "root.json", Root)
        timestamp = _load(self.metadata_dir / "timestamp.json", Timestamp)
        snapshot = self._snapshot()
        return RepositoryVersions(
            root=root.signed.version,
            timestamp=timestamp.signed.version,
            snapshot=snapshot.signed.version,
            targets=snapshot.signed.meta["targets.json"].version,
            drug_libraries=snapshot.signed.meta["drug-libraries.json"].version,
            firmware=snapshot.signed.meta["firmware.json"].version,
        )

    def published(self, kind: UpdateKind) -> tuple[TargetDescription, ...]:
        """Every target of ``kind`` in the current metadata, oldest version first."""
        role = self._role(_role_of(kind))
        found = [
            describe_target(path, info.length, info.hashes, info.custom)
            for path, info in role.signed.targets.items()
        ]
        return tuple(sorted(found, key=lambda t: (t.name, t.version)))

    def expires_ms(self, role: SigningRole) -> int:
        """When the published metadata of a top-level online role expires (ms since epoch)."""
        if role is SigningRole.TIMESTAMP:
            signed: Signed = _load(self.metadata_dir / "timestamp.json", Timestamp).signed
        elif role is SigningRole.SNAPSHOT:
            signed = self._snapshot().signed
        else:
            raise RepositoryStateError(f"{role.value} is not an online role")
        return int(signed.expires.timestamp() * 1000)

    def pending(self, kind: UpdateKind) -> PendingRelease | None:
        staged = self._staging_metadata(kind)
        if staged is None:
            return None
        return self._describe_pending(kind, staged)

    # ------------------------------------------------------------------ releasing

    def propose_drug_library(self, data: bytes) -> PendingRelease:
        """Stage a library for signing; it must validate, and be newer than any published."""
        try:
            raw = json.loads(data.decode("utf-8"), parse_float=Decimal)
            library = parse_library(raw, "proposed drug library")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RepositoryStateError(f"the proposed drug library is not JSON: {exc}") from None
        except LibraryError as exc:
            raise RepositoryStateError(str(exc)) from None
        return self._propose(UpdateKind.DRUG_LIBRARY, library.library_id, library.version, data)

    def propose_firmware(self, product: str, version: int, image: bytes) -> PendingRelease:
        if not image:
            raise RepositoryStateError("a firmware image cannot be empty")
        return self._propose(UpdateKind.FIRMWARE, product, version, image)

    def withdraw(self, kind: UpdateKind) -> None:
        """Discard the release waiting for signatures (signatures collected so far are lost)."""
        for path in self._staging_paths(kind):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def approve(self, kind: UpdateKind, signer: Signer) -> PendingRelease:
        """Add one signer's signature; a key not delegated to, or one that signed, is refused."""
        staged = self._staging_metadata(kind)
        if staged is None:
            raise NothingPendingError(f"no {kind.value} release is waiting for signatures")
        role = _role_of(kind)
        delegated = self._delegated_role(role)
        keyid = signer.public_key.keyid
        if keyid not in delegated.keyids:
            self._emit(UpdateEvent.SIGNATURE_REFUSED, f"key {keyid[:16]} is not a {role} key")
            raise UnauthorisedSignerError(
                f"key {keyid[:16]} is not one of the {role.value} signing keys"
            )
        if keyid in staged.signatures:
            self._emit(UpdateEvent.SIGNATURE_REFUSED, f"key {keyid[:16]} signed twice")
            raise DuplicateSignatureError(
                f"key {keyid[:16]} has already signed this {kind.value} release; "
                "a second signature must come from a different key holder"
            )
        signature = staged.sign(signer, append=True)
        try:
            signer.public_key.verify_signature(signature, staged.signed_bytes)
        except (UnverifiedSignatureError, VerificationError):
            raise UnauthorisedSignerError(
                f"the signature of key {keyid[:16]} does not verify"
            ) from None
        atomic_write(self._staging_paths(kind)[0], staged.to_bytes(), 0o600)
        return self._describe_pending(kind, staged)

    def publish(self, kind: UpdateKind) -> TargetDescription:
        """Publish the pending release if, and only if, its threshold of signatures is met."""
        staged = self._staging_metadata(kind)
        if staged is None:
            raise NothingPendingError(f"no {kind.value} release is waiting for signatures")
        role = _role_of(kind)
        pending = self._describe_pending(kind, staged)
        top = self._role(SigningRole.TARGETS)
        try:
            top.signed.verify_delegate(role.value, staged.signed_bytes, staged.signatures)
        except UnsignedMetadataError:
            message = (
                f"{kind.value} {pending.target.path} has {len(pending.signed_by)} of the "
                f"{pending.threshold} signatures it needs"
            )
            self._emit(UpdateEvent.PUBLISH_REFUSED, message)
            raise ThresholdNotMetError(message) from None
        if staged.signed.is_expired(self._now()):
            message = f"the signatures on {pending.target.path} expired before publication"
            self._emit(UpdateEvent.PUBLISH_REFUSED, message)
            raise ThresholdNotMetError(message)
        data = self._staging_paths(kind)[1].read_bytes()
        target = pending.target
        directory, _, basename = target.path.rpartition("/")
        atomic_write(self.targets_dir / directory / f"{target.sha256}.{basename}", data, 0o644)
        atomic_write(
            self.metadata_dir / f"{staged.signed.version}.{role.value}.json",
            staged.to_bytes(),
            0o644,
        )
        self._new_snapshot({f"{role.value}.json": staged.signed.version})
        self.withdraw(kind)
        self._emit(UpdateEvent.PUBLISHED, f"{target.path} published")
        return target

    def refresh_timestamp(self) -> int:
        """Re-sign the timestamp with a fresh expiry; the server does this well before expiry."""
        current = _load(self.metadata_dir / "timestamp.json", Timestamp)
        return self._write_timestamp(current.signed.snapshot_meta.version, current.signed.version)

    def rotate_key(
        self,
        role: SigningRole,
        retire: str,
        passphrase: bytes,
        *,
        root_signers: Sequence[Signer],
    ) -> str:
        """Replace one root, snapshot or timestamp key by a new one; return the new key's name.

        A new root version is signed by ``root_signers``, which must meet the threshold of the
        current root and of the new one (for a root key, the new key signs too); pumps follow
        the chain of roots on their next fetch. Rotating an online key (the recovery after a
        server compromise) also re-signs snapshot and timestamp with the new key at once, so
        metadata signed by the retired key stops verifying as soon as a pump has the new root.
        """
        if role not in (SigningRole.ROOT, SigningRole.SNAPSHOT, SigningRole.TIMESTAMP):
            raise RepositoryStateError(
                f"rotating a {role.value} key means re-signing that role by a threshold of its "
                "new key set; that ceremony is not automated (see docs/updates.md)"
            )
        if not retire.startswith(f"{role.value}-"):
            raise RepositoryStateError(f"{retire} is not a {role.value} key")
        old_keyid = public_keyid(self.keys_dir, retire)
        current = _load(self.metadata_dir / "root.json", Root)
        if old_keyid not in current.signed.roles[role.value].keyids:
            raise RepositoryStateError(f"{retire} is not a current {role.value} key")
        used = [
            int(index)
            for p in self.keys_dir.glob(f"{role.value}-*")
            if (index := p.stem.removeprefix(f"{role.value}-")).isdigit()
        ]
        new_name = role.key_name(max(used, default=0) + 1)
        new_signer = generate_key(self.keys_dir, new_name, passphrase)
        root = _load(self.metadata_dir / "root.json", Root)
        root.signed.revoke_key(old_keyid, role.value)
        root.signed.add_key(new_signer.public_key, role.value)
        root.signed.version += 1
        root.signed.expires = self._now() + self._policy.root.expiry
        signers = [*root_signers, new_signer] if role is SigningRole.ROOT else list(root_signers)
        data = _signed_bytes(root, signers)
        try:
            current.signed.verify_delegate(Root.type, root.signed_bytes, root.signatures)
            root.signed.verify_delegate(Root.type, root.signed_bytes, root.signatures)
        except UnsignedMetadataError as exc:
            for path in self.keys_dir.glob(f"{new_name}.*"):
                path.unlink()
            self._emit(UpdateEvent.PUBLISH_REFUSED, f"root v{root.signed.version}: {exc}")
            raise ThresholdNotMetError(
                f"the new root v{root.signed.version} is not signed by a threshold of the old "
                f"and the new root keys: {exc}"
            ) from None
        atomic_write(self.metadata_dir / f"{root.signed.version}.root.json", data, 0o644)
        atomic_write(self.metadata_dir / "root.json", data, 0o644)
        if role is not SigningRole.ROOT:
            self._online = (
                *(s for s in self._online if s.public_key.keyid != old_keyid),
                new_signer,
            )
            self._new_snapshot({})
        self._emit(UpdateEvent.PUBLISHED, f"root v{root.signed.version}: {retire} -> {new_name}")
        return new_name

    def refresh_snapshot(self) -> int:
        """Re-sign the snapshot (and timestamp) with fresh expiries, listing the same roles."""
        return self._new_snapshot({})

    # ------------------------------------------------------------------ internals

    def _now(self) -> datetime:
        return ms_to_datetime(self._clock.now_ms())

    def _emit(self, code: UpdateEvent, message: str) -> None:
        if self._events is not None:
            self._events.emit(update_event(code, message, time_ms=self._clock.now_ms()))

    def _snapshot(self) -> Metadata[Snapshot]:
        timestamp = _load(self.metadata_dir / "timestamp.json", Timestamp)
        version = timestamp.signed.snapshot_meta.version
        return _load(self.metadata_dir / f"{version}.snapshot.json", Snapshot)

    def _role(self, role: SigningRole) -> Metadata[Targets]:
        version = self._snapshot().signed.meta[f"{role.value}.json"].version
        return _load(self.metadata_dir / f"{version}.{role.value}.json", Targets)

    def _delegated_role(self, role: SigningRole) -> DelegatedRole:
        delegations = self._role(SigningRole.TARGETS).signed.delegations
        if delegations is None or delegations.roles is None or role.value not in delegations.roles:
            raise RepositoryStateError(f"the targets role does not delegate {role.value}")
        return delegations.roles[role.value]

    def _write_role(self, role: SigningRole, md: Metadata[Any], signers: Sequence[Signer]) -> None:
        atomic_write(
            self.metadata_dir / f"{md.signed.version}.{role.value}.json",
            _signed_bytes(md, signers),
            0o644,
        )

    def _new_snapshot(self, changed: dict[str, int]) -> int:
        current = self._snapshot()
        meta = dict(current.signed.meta)
        for name, version in changed.items():
            meta[name] = MetaFile(version)
        snapshot = Snapshot(
            version=current.signed.version + 1,
            expires=self._now() + self._policy.snapshot.expiry,
            meta=meta,
        )
        self._write_role(SigningRole.SNAPSHOT, Metadata(snapshot), self._online_for(Snapshot))
        timestamp = _load(self.metadata_dir / "timestamp.json", Timestamp)
        self._write_timestamp(snapshot.version, timestamp.signed.version)
        return snapshot.version

    def _write_timestamp(self, snapshot_version: int, previous_version: int) -> int:
        timestamp = Timestamp(
            version=previous_version + 1,
            expires=self._now() + self._policy.timestamp.expiry,
            snapshot_meta=MetaFile(snapshot_version),
        )
        atomic_write(
            self.metadata_dir / "timestamp.json",
            _signed_bytes(Metadata(timestamp), self._online_for(Timestamp)),
            0o644,
        )
        return timestamp.version

    def _online_for(self, kind: type[Signed]) -> list[Signer]:
        root = _load(self.metadata_dir / "root.json", Root)
        keyids = set(root.signed.roles[kind.type].keyids)
        signers = [s for s in self._online if s.public_key.keyid in keyids]
        if len(signers) < root.signed.roles[kind.type].threshold:
            raise KeyFileError(f"this process does not hold enough {kind.type} keys")
        return signers

    def _staging_paths(self, kind: UpdateKind) -> tuple[Path, Path]:
        base = self._dir / _STAGING_DIR
        return base / f"{kind.role}.json", base / f"{kind.role}.target"

    def _staging_metadata(self, kind: UpdateKind) -> Metadata[Targets] | None:
        path = self._staging_paths(kind)[0]
        if not path.exists():
            return None
        return _load(path, Targets)

    def _describe_pending(self, kind: UpdateKind, staged: Metadata[Targets]) -> PendingRelease:
        delegated = self._delegated_role(_role_of(kind))
        published = self._role(_role_of(kind)).signed.targets
        new = [
            describe_target(path, info.length, info.hashes, info.custom)
            for path, info in staged.signed.targets.items()
            if path not in published
        ]
        if len(new) != 1:
            raise RepositoryStateError(f"the staged {kind.value} release is not one new target")
        signed_by = tuple(k for k in staged.signatures if k in delegated.keyids)
        return PendingRelease(kind, staged.signed.version, new[0], delegated.threshold, signed_by)

    def _propose(self, kind: UpdateKind, name: str, version: int, data: bytes) -> PendingRelease:
        try:
            path = target_path(kind, name, version)
        except ValueError as exc:
            raise RepositoryStateError(str(exc)) from None
        waiting = self.pending(kind)
        if waiting is not None:
            raise RepositoryStateError(
                f"{waiting.target.path} is waiting for signatures; publish or withdraw it first"
            )
        role = self._role(_role_of(kind))
        newest = max((t.version for t in self.published(kind) if t.name == name), default=0)
        if version <= newest:
            raise RepositoryStateError(
                f"{kind.value} {name} v{version} is not newer than published v{newest}"
            )
        info = TargetFile.from_data(path, data, ["sha256"])
        info.unrecognized_fields["custom"] = {"kind": kind.value, "name": name, "version": version}
        targets = role.signed
        targets.version += 1
        targets.expires = self._now() + self._policy.of(_role_of(kind)).expiry
        targets.targets[path] = info
        staged = Metadata(targets)
        metadata_path, target_file = self._staging_paths(kind)
        atomic_write(target_file, data, 0o600)
        atomic_write(metadata_path, staged.to_bytes(), 0o600)
        return self._describe_pending(kind, staged)


def _load(path: Path, kind: type[_S]) -> Metadata[_S]:
    try:
        md: Metadata[Any] = Metadata.from_bytes(path.read_bytes())
    except OSError as exc:
        raise RepositoryStateError(f"cannot read {path}: {exc.strerror}") from None
    except DeserializationError as exc:
        raise RepositoryStateError(f"{path} is not TUF metadata: {exc}") from None
    if not isinstance(md.signed, kind):
        raise RepositoryStateError(f"{path} holds {md.signed.type}, not {kind.type}")
    return cast("Metadata[_S]", md)


def _signed_bytes(md: Metadata[Any], signers: Sequence[Signer]) -> bytes:
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes()
