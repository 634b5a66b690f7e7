"""The pump side: fetch and verify one update with python-tuf's ngclient, or say exactly why not.

``UpdateClient.fetch`` runs the TUF client workflow (root, timestamp, snapshot, targets,
delegated role, target file) through any ``FetcherInterface``, then the pump's own checks: the
target is of the kind and for the library or product the pump runs, its signed version is newer
than the installed one, and a drug library validates. The outcome is a value; a refusal carries a
specific ``UpdateError`` and the ``SecurityEvent`` already emitted for it.

Time: ngclient reads the wall clock once, when an ``Updater`` is built, into the trusted set's
``reference_time``, and has no parameter for it. The client builds a fresh ``Updater`` for every
fetch and sets that attribute from its ``Clock`` before refreshing, so expiry (freeze attacks)
follows virtual time. This touches ngclient internals; ``tests/updates`` has a test that fails
if a python-tuf upgrade stops honouring it.

Naming a refusal: ngclient raises a few broad exception types. The client records which file it
fetched last and what it received, and compares the served metadata with the versions it
trusted before the fetch: going backwards from what the pump already trusted is a rollback;
disagreeing with what the newer parent metadata says is mix-and-match.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, unquote

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, Signed, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from pumpguard.clinical.library import DrugLibrary, LibraryError, parse_library
from pumpguard.clock import Clock
from pumpguard.security_events import SecurityEvent, SecurityEventSink
from pumpguard.updates.errors import (
    InvalidTargetError,
    LocalFailureError,
    TargetRollbackError,
    UnknownTargetError,
    UpdateError,
    error_for,
)
from pumpguard.updates.events import UpdateEvent, update_event
from pumpguard.updates.fetchers import LOCAL_BASE_URL
from pumpguard.updates.repository import METADATA_DIR, TARGETS_DIR, ms_to_datetime
from pumpguard.updates.targets import TargetDescription, UpdateKind, describe_target

__all__ = [
    "AlreadyInstalled",
    "FetchOutcome",
    "Installed",
    "UpdateClient",
    "UpdateRefused",
    "VerifiedUpdate",
]

_TARGET = "target"


@dataclass(frozen=True, slots=True)
class Installed:
    """What the pump runs: the library id or firmware product, and its version (None: nothing)."""

    kind: UpdateKind
    name: str
    version: int | None


@dataclass(frozen=True, slots=True)
class VerifiedUpdate:
    """A target that passed every check; ``library`` is the parsed drug library, if one."""

    target: TargetDescription
    data: bytes
    library: DrugLibrary | None


@dataclass(frozen=True, slots=True)
class AlreadyInstalled:
    """The signed target is the version the pump already runs: nothing to do."""

    target: TargetDescription


@dataclass(frozen=True, slots=True)
class UpdateRefused:
    """The update was refused; ``event`` has already been emitted."""

    target_path: str
    error: UpdateError
    event: SecurityEvent

    @property
    def code(self) -> UpdateEvent:
        return self.error.code


FetchOutcome = VerifiedUpdate | AlreadyInstalled | UpdateRefused


@dataclass(frozen=True, slots=True)
class _Trusted:
    """Versions the pump trusted before this fetch, read from its own metadata cache."""

    versions: dict[str, int]
    snapshot_in_timestamp: int | None
    in_snapshot: dict[str, int]


class _RecordingFetcher(FetcherInterface):
    """Passes downloads through and remembers the last URL and bytes, to name a refusal."""

    def __init__(self, inner: FetcherInterface) -> None:
        self._inner = inner
        self.last_url: str | None = None
        self.last_data = bytearray()

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.last_url = url
        self.last_data = bytearray()
        return self._record(self._inner.fetch(url))

    def _record(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.last_data += chunk
            yield chunk


class UpdateClient:
    """One pump's update client over ``state_dir`` (its trusted metadata and downloads).

    ``provision`` installs the trust anchor (the repository's root) once, at manufacture or
    enrolment; after that the client only ever trusts roots that chain from it.
    """

    def __init__(
        self,
        state_dir: Path,
        fetcher: FetcherInterface,
        *,
        clock: Clock,
        events: SecurityEventSink,
        device_id: str,
        base_url: str = LOCAL_BASE_URL,
    ) -> None:
        self._state = Path(state_dir)
        if not (self._metadata / "root.json").exists():
            raise LocalFailureError(
                f"{state_dir} holds no trusted root; provision the client first"
            )
        self._fetcher = fetcher
        self._clock = clock
        self._events = events
        self._device_id = device_id
        self._base = base_url if base_url.endswith("/") else f"{base_url}/"

    @staticmethod
    def provision(state_dir: Path, root: bytes) -> None:
        """Install ``root`` as the trust anchor; it must be root metadata signed by itself."""
        try:
            md = Metadata[Root].from_bytes(root)
        except DeserializationError as exc:
            raise LocalFailureError(f"the trust anchor is not TUF metadata: {exc}") from None
        if not isinstance(md.signed, Root):
            raise LocalFailureError(f"the trust anchor is {md.signed.type} metadata, not root")
        try:
            md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
        except tuf_errors.UnsignedMetadataError as exc:
            raise LocalFailureError(f"the trust anchor is not signed by itself: {exc}") from None
        metadata = Path(state_dir) / METADATA_DIR
        if metadata.exists():
            shutil.rmtree(metadata)
        metadata.mkdir(parents=True)
        (metadata / "root.json").write_bytes(root)

    @property
    def _metadata(self) -> Path:
        return self._state / METADATA_DIR

    @property
    def trusted_root_version(self) -> int:
        md = Metadata[Root].from_bytes((self._metadata / "root.json").read_bytes())
        return md.signed.version

    def fetch(self, target_path: str, installed: Installed) -> FetchOutcome:
        """Fetch and verify ``target_path`` as a newer version of what ``installed`` describes."""
        try:
            return self._fetch(target_path, installed)
        except UpdateError as exc:
            return self._refuse(target_path, exc, _TARGET, None)
        except OSError as exc:
            failure = LocalFailureError(f"the pump's update state is unusable: {exc}")
            return self._refuse(target_path, failure, _TARGET, exc)

    def _fetch(self, target_path: str, installed: Installed) -> FetchOutcome:
        kind = installed.kind
        if not target_path.startswith(kind.prefix):
            raise InvalidTargetError(
                f"{target_path} is not a {kind.value} path (expected {kind.prefix}...)"
            )
        trusted = self._trusted_before()
        recorder = _RecordingFetcher(self._fetcher)
        try:
            updater = Updater(
                str(self._metadata),
                f"{self._base}{METADATA_DIR}/",
                str(self._state / "downloads"),
                f"{self._base}{TARGETS_DIR}/",
                recorder,
                bootstrap=None,
            )
            updater._trusted_set.reference_time = ms_to_datetime(self._clock.now_ms())
            info = updater.get_targetinfo(target_path)
        except Exception as exc:
            return self._refuse_tuf(target_path, exc, recorder, trusted)
        if info is None:
            raise UnknownTargetError(
                f"{target_path} is not in the signed metadata of the {kind.role} role"
            )
        if self._listed_by_top_level_targets(target_path):
            raise InvalidTargetError(
                f"{target_path} is signed by the top-level targets role, not by the "
                f"{kind.role} role it is delegated to"
            )
        try:
            target = describe_target(info.path, info.length, info.hashes, info.custom)
        except ValueError as exc:
            raise InvalidTargetError(str(exc)) from None
        if target.kind is not kind or target.name != installed.name:
            raise InvalidTargetError(
                f"{target_path} is signed as {target.kind.value} {target.name}, "
                f"but this pump runs {kind.value} {installed.name}"
            )
        if installed.version is not None and target.version < installed.version:
            raise TargetRollbackError(
                f"{target_path} is v{target.version}, older than installed v{installed.version}"
            )
        if installed.version == target.version:
            return AlreadyInstalled(target)
        download = self._state / "downloads" / quote(info.path, "")
        try:
            updater.download_target(info, str(download))
            data = download.read_bytes()
        except Exception as exc:
            return self._refuse_tuf(target_path, exc, recorder, trusted)
        finally:
            with contextlib.suppress(OSError):
                download.unlink()
        library = _check_library(target, data) if kind is UpdateKind.DRUG_LIBRARY else None
        self._events.emit(
            update_event(
                UpdateEvent.VERIFIED,
                f"{target.path} verified",
                time_ms=self._clock.now_ms(),
                device_id=self._device_id,
                peer=self._base,
                attributes={"target": target.path, "version": str(target.version)},
            )
        )
        return VerifiedUpdate(target, data, library)

    def _listed_by_top_level_targets(self, target_path: str) -> bool:
        """Our top-level targets role only delegates. ngclient would accept a target it lists
        itself (it is searched first), which would bypass the delegated role's threshold."""
        try:
            data = (self._metadata / "targets.json").read_bytes()
        except OSError as exc:
            raise LocalFailureError(f"cannot read the trusted targets metadata: {exc}") from None
        signed = _unverified(data)
        return not isinstance(signed, Targets) or target_path in signed.targets

    def _refuse(
        self, target_path: str, error: UpdateError, role: str, cause: BaseException | None
    ) -> UpdateRefused:
        attributes = {"target": target_path, "role": role}
        if cause is not None:
            attributes["error"] = type(cause).__name__
        event = update_event(
            error.code,
            f"update refused ({error.code.value}): {error}",
            time_ms=self._clock.now_ms(),
            device_id=self._device_id,
            peer=self._base,
            attributes=attributes,
        )
        self._events.emit(event)
        return UpdateRefused(target_path, error, event)

    def _refuse_tuf(
        self,
        target_path: str,
        exc: Exception,
        recorder: _RecordingFetcher,
        trusted: _Trusted,
    ) -> UpdateRefused:
        role = self._role_of(recorder.last_url)
        code = _classify(exc, role, bytes(recorder.last_data), trusted)
        detail = str(exc) or type(exc).__name__
        where = "the target file" if role == _TARGET else f"{role} metadata"
        return self._refuse(target_path, error_for(code, f"{where}: {detail}"), role, exc)

    def _role_of(self, url: str | None) -> str:
        prefix = f"{self._base}{METADATA_DIR}/"
        if url is None or not url.startswith(prefix):
            return _TARGET
        name = unquote(url[len(prefix) :]).removesuffix(".json")
        version, dot, rest = name.partition(".")
        return rest if dot and version.isdigit() else name

    def _trusted_before(self) -> _Trusted:
        versions: dict[str, int] = {}
        snapshot_in_timestamp: int | None = None
        in_snapshot: dict[str, int] = {}
        for path in self._metadata.glob("*.json"):
            signed = _unverified(path.read_bytes())
            if signed is None:
                continue
            versions[unquote(path.stem)] = signed.version
            if isinstance(signed, Timestamp):
                snapshot_in_timestamp = signed.snapshot_meta.version
            elif isinstance(signed, Snapshot):
                in_snapshot = {n.removesuffix(".json"): m.version for n, m in signed.meta.items()}
        return _Trusted(versions, snapshot_in_timestamp, in_snapshot)


def _unverified(data: bytes) -> Signed | None:
    """Metadata read only to name a refusal, never to trust it."""
    try:
        signed: Signed = Metadata.from_bytes(data).signed
        return signed
    except Exception:
        return None


def _classify(exc: Exception, role: str, served: bytes, trusted: _Trusted) -> UpdateEvent:
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return UpdateEvent.FREEZE
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return _version_problem(role, served, trusted)
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return UpdateEvent.TARGET_HASH_MISMATCH if role == _TARGET else UpdateEvent.MIX_AND_MATCH
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return UpdateEvent.TARGET_HASH_MISMATCH if role == _TARGET else UpdateEvent.ENDLESS_DATA
    if isinstance(exc, tuf_errors.DownloadError):
        return UpdateEvent.REPOSITORY_UNAVAILABLE
    if isinstance(exc, tuf_errors.RepositoryError | ValueError | KeyError | TypeError):
        return UpdateEvent.MALFORMED_METADATA
    return UpdateEvent.LOCAL_FAILURE


def _version_problem(role: str, served: bytes, trusted: _Trusted) -> UpdateEvent:
    signed = _unverified(served)
    if signed is None:
        return UpdateEvent.MIX_AND_MATCH
    if signed.version < trusted.versions.get(role, 0):
        return UpdateEvent.ROLLBACK
    if isinstance(signed, Timestamp) and signed.snapshot_meta.version < (
        trusted.snapshot_in_timestamp or 0
    ):
        return UpdateEvent.ROLLBACK
    if isinstance(signed, Snapshot) and any(
        meta.version < trusted.in_snapshot.get(name.removesuffix(".json"), 0)
        for name, meta in signed.meta.items()
    ):
        return UpdateEvent.ROLLBACK
    return UpdateEvent.MIX_AND_MATCH


def _check_library(target: TargetDescription, data: bytes) -> DrugLibrary:
    """A signed library must still validate, and say inside what its signers said outside."""
    try:
        raw = json.loads(data.decode("utf-8"), parse_float=Decimal)
        library = parse_library(raw, target.path)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidTargetError(f"{target.path} is signed but is not JSON: {exc}") from None
    except LibraryError as exc:
        raise InvalidTargetError(f"{target.path} is signed but does not validate: {exc}") from None
    if library.library_id != target.name or library.version != target.version:
        raise InvalidTargetError(
            f"{target.path} is signed as {target.name} v{target.version} but holds "
            f"{library.library_id} v{library.version}"
        )
    return library
