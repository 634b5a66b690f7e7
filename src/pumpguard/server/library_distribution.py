"""Signed drug-library distribution from the pump server: the TUF repository in the data
directory, its HTTPS listener for pumps, the staged roll-out and fleet compliance.

Trust split (``docs/updates.md``): the repository is created at first start like the CA, each
key in its own encrypted file. The server process unlocks only the online snapshot and
timestamp keys (one passphrase, found like the CA's: file, ``PUMPGUARD_UPDATES_PASSPHRASE``,
else generated and stored 0600 for a lab). The root, targets, ``drug-libraries`` and firmware
keys each get their own generated passphrase, written once to ``updates/key-holders/`` for the
operator to hand to the key holders; the server never reads those files (the demo does, and
says so). So publishing a library needs two pharmacists' keys, applied by them with
``pumpguard updates sign``; the server then only re-lists and re-dates what they signed.

Pumps reach ``published/`` on a listener of its own (``--updates-port``,
``server.update_listener``): pump certificates from the server's CA only.

The roll-out (``updates.Rollout``) is driven here: each released wave gets an
``install-library`` command on each pump's own command topic, and the pumps' acknowledgements,
status telemetry and forwarded security events move each pump along. Compliance joins that with
the pumps' stored status; ``rollout.json`` keeps the last state for ``pumpguard library status``.

Firmware travels the same path with a second ``LibraryDistribution`` of kind ``firmware``
(``LibraryDistribution.firmware``): the same repository and listener, its own roll-out
(``rollout-firmware.json``) whose waves get ``install-firmware``; a pump is on the release when
its status reports that firmware version, and a pump whose new image failed its self-test
(acknowledged ``rolled-back``, or its forwarded ``updates.local_failure`` event with
``failure=self-test-failed`` when it booted the image later) fails the roll-out, which halts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pumpguard.clock import Clock, SystemClock
from pumpguard.pki import (
    PkiError,
    client_tls_context,
    generate_passphrase,
    resolve_passphrase,
    store_passphrase,
)
from pumpguard.security_events import SecurityEvent, SecurityEventSink
from pumpguard.server.ingest import PumpStatusView
from pumpguard.server.library_authoring import ApprovedLibrary, LibraryAuthoring
from pumpguard.server.lifecycle import AssetState
from pumpguard.server.store import Store
from pumpguard.server.update_agent import (
    SELF_TEST_FAILED,
    TARGET_PARAMETER,
    UPDATE_ROOT_FILE,
    PumpUpdateAgent,
    parse_firmware_version,
    parse_install_ack,
)
from pumpguard.server.update_listener import UpdateListener
from pumpguard.transport import (
    CommandAck,
    CommandAction,
    DeviceMessage,
    SecurityReport,
    StatusMessage,
)
from pumpguard.updates import (
    FailureReason,
    LagReason,
    PendingRelease,
    PumpRolloutState,
    RepositoryError,
    RepositoryPolicy,
    Rollout,
    RolloutError,
    RolloutPhase,
    RolloutPlan,
    SigningRole,
    TargetDescription,
    UpdateEvent,
    UpdateKind,
    UpdateRepository,
    load_signer,
)
from pumpguard.updates._files import atomic_write

if TYPE_CHECKING:
    from pumpguard.server.runtime import Stack

__all__ = [
    "FIRMWARE_ROLLOUT_FILE",
    "KEY_HOLDERS_DIR",
    "ROLLOUT_FILE",
    "UPDATES_DIR",
    "UPDATES_PASSPHRASE_ENV",
    "DistributionError",
    "FleetCompliance",
    "LibraryDistribution",
    "Notify",
    "PumpCompliance",
    "RolloutSnapshot",
    "fleet_compliance",
    "key_holder_passphrase",
    "open_repository",
    "publish_demo_library",
    "pump_update_agent",
    "read_repository",
    "read_rollout_snapshot",
    "sign_release",
    "sign_with_demo_keys",
    "start_distribution",
    "updates_dir",
]

UPDATES_DIR = "updates"
KEY_HOLDERS_DIR = "key-holders"
ROLLOUT_FILE = "rollout.json"
FIRMWARE_ROLLOUT_FILE = "rollout-firmware.json"
UPDATES_PASSPHRASE_ENV = "PUMPGUARD_UPDATES_PASSPHRASE"
_ONLINE = (SigningRole.SNAPSHOT, SigningRole.TIMESTAMP)
_LOOP_S = 0.5
_RENOTIFY_MS = 5_000
_REMEMBERED_REPORTS = 10_000
_log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, str]], Awaitable[str]]
"""Sends an ``install-library`` (or ``install-firmware``) command to one pump; returns its
command id, raises if the pump did not take it (offline)."""


class DistributionError(Exception):
    """A distribution operation refused: nothing to publish, no roll-out, a roll-out running."""


def updates_dir(data_dir: Path) -> Path:
    return data_dir / UPDATES_DIR


def key_holder_passphrase(data_dir: Path, key_name: str) -> Path:
    """Where first start left the generated passphrase of one offline key, for its holder."""
    return updates_dir(data_dir) / KEY_HOLDERS_DIR / f"{key_name}.passphrase"


def read_repository(data_dir: Path, clock: Clock) -> UpdateRepository:
    """The repository without any key: to read what is published and what waits, or to add a
    key holder's signature with a key the caller unlocks."""
    return UpdateRepository(updates_dir(data_dir), clock, RepositoryPolicy(), (), None)


def open_repository(
    data_dir: Path,
    clock: Clock,
    events: SecurityEventSink,
    passphrase_file: Path | None = None,
) -> tuple[UpdateRepository, list[str]]:
    """Open the server's repository with its online keys, creating it on first start."""
    directory = updates_dir(data_dir)
    notices: list[str] = []
    try:
        resolved = resolve_passphrase(directory, passphrase_file, env_var=UPDATES_PASSPHRASE_ENV)
        if (directory / "published" / "metadata" / "root.json").exists():
            if resolved is None:
                raise DistributionError(
                    f"the update repository in {directory} needs the online key passphrase: "
                    f"give --updates-passphrase-file or set {UPDATES_PASSPHRASE_ENV}"
                )
            online = resolved.value
            return (
                UpdateRepository.open(
                    directory, clock=clock, passphrase_for=lambda _n: online, events=events
                ),
                notices,
            )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if resolved is None:
            online = generate_passphrase()
            stored = store_passphrase(directory, online)
            notices.append(
                f"generated the update repository's online key passphrase and stored it in "
                f"{stored}: fine for a lab only"
            )
        else:
            online = resolved.value
        holders: dict[str, bytes] = {}

        def passphrase_for(name: str) -> bytes:
            if any(name.startswith(f"{role.value}-") for role in _ONLINE):
                return online
            holders[name] = generate_passphrase()
            atomic_write(key_holder_passphrase(data_dir, name), holders[name] + b"\n", 0o600)
            return holders[name]

        repository = UpdateRepository.create(
            directory, clock=clock, passphrase_for=passphrase_for, events=events
        )
        notices.append(
            f"created the update repository in {directory}; the passphrases of its "
            f"{len(holders)} offline keys are in {directory / KEY_HOLDERS_DIR}: hand each to "
            "its key holder and delete the file (two drug-library key holders sign a release)"
        )
        return repository, notices
    except (PkiError, RepositoryError) as exc:
        raise DistributionError(
            f"cannot open the update repository in {directory}: {exc}"
        ) from None


def sign_release(
    data_dir: Path,
    clock: Clock,
    key_name: str,
    passphrase: bytes,
    events: SecurityEventSink,
    kind: UpdateKind = UpdateKind.DRUG_LIBRARY,
) -> PendingRelease:
    """One key holder's signature on the release of ``kind`` waiting in the repository."""
    directory = updates_dir(data_dir)
    repository = UpdateRepository(directory, clock, RepositoryPolicy(), (), events)
    signer = load_signer(repository.keys_dir, key_name, passphrase)
    return repository.approve(kind, signer)


def sign_with_demo_keys(data_dir: Path, distribution: LibraryDistribution) -> None:
    """DEMO ONLY: sign the waiting library with the first two drug-library keys, reading their
    holders' passphrase files, which a real server never does (``docs/updates.md``)."""
    for index in (1, 2):
        name = SigningRole.DRUG_LIBRARIES.key_name(index)
        passphrase = key_holder_passphrase(data_dir, name).read_bytes().rstrip(b"\r\n")
        sign_release(data_dir, SystemClock(), name, passphrase, distribution.events)


async def publish_demo_library(stack: Stack, library_json: bytes) -> None:
    """DEMO ONLY: publish the ward's library, signed with two demo keys, on the first run."""
    distribution = stack.distribution
    if distribution is None or distribution.latest_library() is not None:
        return

    def publish() -> None:
        assert distribution is not None
        if distribution.pending() is None:
            distribution.propose(library_json)
        sign_with_demo_keys(stack.data_dir, distribution)
        distribution.publish()

    await asyncio.to_thread(publish)


def pump_update_agent(stack: Stack, ident: str, cert_dir: Path) -> PumpUpdateAgent | None:
    """The update agent of a pump provisioned by ``stack`` (None without a repository)."""
    if stack.distribution is None:
        return None
    return PumpUpdateAgent(
        cert_dir / "updates",
        f"https://{stack.local_address}:{stack.updates_port}/",
        client_tls_context(cert_dir),
        clock=SystemClock(),
        device_id=ident,
        trusted_root=(cert_dir / UPDATE_ROOT_FILE).read_bytes(),
    )


async def start_distribution(stack: Stack, listener_dir: Path, crl: Path) -> LibraryDistribution:
    """Open (or create) the repository, listen for pumps, and run the roll-out loop until the
    stack stops. Raises ``DistributionError`` naming what failed."""
    config = stack.config
    clock = SystemClock()
    repository, notices = await asyncio.to_thread(
        open_repository,
        stack.data_dir,
        clock,
        stack.events,
        config.updates_passphrase_file,
    )
    stack.notices.extend(notices)
    distribution = LibraryDistribution(stack.data_dir, repository, clock, stack.events)
    try:
        await distribution.listener.serve(config.host, config.updates_port, listener_dir, crl)
    except OSError as exc:
        raise DistributionError(
            f"cannot listen for updates on {config.host}:{config.updates_port}: {exc.strerror}"
        ) from None

    firmware = LibraryDistribution(
        stack.data_dir,
        repository,
        clock,
        stack.events,
        kind=UpdateKind.FIRMWARE,
        listener=distribution.listener,
    )
    distribution.firmware = firmware

    async def notify(device_id: str, parameters: dict[str, str]) -> str:
        return await stack.send_command(device_id, CommandAction.INSTALL_LIBRARY, parameters)

    async def notify_firmware(device_id: str, parameters: dict[str, str]) -> str:
        return await stack.send_command(device_id, CommandAction.INSTALL_FIRMWARE, parameters)

    task = asyncio.ensure_future(distribution.run(notify, stack.store))
    task.set_name("pumpguard-updates")
    firmware_task = asyncio.ensure_future(firmware.run(notify_firmware, stack.store))
    firmware_task.set_name("pumpguard-firmware-updates")

    async def stop() -> None:
        for running in (task, firmware_task):
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        await distribution.listener.stop()

    stack.on_stop(stop)
    return distribution


# ---------------------------------------------------------------------------- compliance


@dataclass(frozen=True, slots=True)
class RolloutPump:
    """One pump's place in the roll-out, as kept in ``rollout.json``."""

    pump_id: str
    wave: int
    state: PumpRolloutState
    failure: FailureReason | None
    detail: str
    applied_ms: int | None
    lag: LagReason | None


@dataclass(frozen=True, slots=True)
class RolloutSnapshot:
    """The roll-out as it last stood: what the API shows and the CLI reads back."""

    target: str
    version: int
    phase: str
    started_ms: int | None
    halt_reason: str | None
    waves: tuple[tuple[str, ...], ...]
    pumps: tuple[RolloutPump, ...]
    at_ms: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> RolloutSnapshot:
        raw = json.loads(text)
        return cls(
            target=str(raw["target"]),
            version=int(raw["version"]),
            phase=str(raw["phase"]),
            started_ms=raw["started_ms"],
            halt_reason=raw["halt_reason"],
            waves=tuple(tuple(str(p) for p in wave) for wave in raw["waves"]),
            pumps=tuple(
                RolloutPump(
                    pump_id=str(p["pump_id"]),
                    wave=int(p["wave"]),
                    state=PumpRolloutState(p["state"]),
                    failure=FailureReason(p["failure"]) if p["failure"] else None,
                    detail=str(p["detail"]),
                    applied_ms=p["applied_ms"],
                    lag=LagReason(p["lag"]) if p["lag"] else None,
                )
                for p in raw["pumps"]
            ),
            at_ms=int(raw["at_ms"]),
        )


def _rollout_file(kind: UpdateKind) -> str:
    return FIRMWARE_ROLLOUT_FILE if kind is UpdateKind.FIRMWARE else ROLLOUT_FILE


def read_rollout_snapshot(
    data_dir: Path, kind: UpdateKind = UpdateKind.DRUG_LIBRARY
) -> RolloutSnapshot | None:
    """The last saved roll-out of ``kind`` (each kind has its own, they run independently)."""
    path = updates_dir(data_dir) / _rollout_file(kind)
    try:
        return RolloutSnapshot.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DistributionError(f"{path} is not a roll-out record: {exc}") from None


@dataclass(frozen=True, slots=True)
class PumpCompliance:
    pump_id: str
    library_version: str | None
    online: bool
    state: str
    on_current: bool
    lag: LagReason | None
    detail: str
    firmware_version: str | None = None
    """The running firmware the pump reports (shown for firmware compliance)."""


@dataclass(frozen=True, slots=True)
class FleetCompliance:
    """The fleet against the newest published library: who runs it, who lags and why."""

    library: str | None
    version: int | None
    at_ms: int
    pumps: tuple[PumpCompliance, ...]
    rollout_phase: str | None
    time_to_coverage_ms: dict[str, int | None]
    kind: UpdateKind = UpdateKind.DRUG_LIBRARY

    @property
    def on_current(self) -> int:
        return sum(1 for p in self.pumps if p.on_current)

    @property
    def share_on_current(self) -> float:
        return self.on_current / len(self.pumps) if self.pumps else 0.0

    def laggards(self) -> tuple[PumpCompliance, ...]:
        return tuple(p for p in self.pumps if not p.on_current)

    def by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for pump in self.laggards():
            key = pump.lag.value if pump.lag is not None else "unknown"
            counts[key] = counts.get(key, 0) + 1
        return counts


_COVERAGE = (("t50_ms", 0.5), ("t95_ms", 0.95), ("t100_ms", 1.0))


def fleet_compliance(
    target: TargetDescription | None,
    statuses: Sequence[PumpStatusView],
    snapshot: RolloutSnapshot | None,
    now_ms: int,
    kind: UpdateKind = UpdateKind.DRUG_LIBRARY,
) -> FleetCompliance:
    """Join the pumps' reported status with the roll-out of ``target`` (the newest release of
    ``kind``).

    A pump is on the current release when its status telemetry reports that version (the
    library version, or for firmware the running firmware, ``<product> vN``). A laggard
    is offline (stored status), failed (the roll-out's verification or self-test failure),
    halted, not yet notified (no roll-out of this version reached it), or waiting for the apply
    rule or for its report (the roll-out's own reason).
    """
    rollout = snapshot if snapshot is not None and target is not None else None
    if rollout is not None and target is not None and rollout.target != target.path:
        rollout = None
    in_rollout = {p.pump_id: p for p in rollout.pumps} if rollout is not None else {}
    rows: list[PumpCompliance] = []
    applied: list[int] = []
    for status in statuses:
        if status.asset_state not in (None, AssetState.IN_SERVICE):
            continue
        version = status.library_version
        on_current = target is not None and _reports(
            kind, target, status.library_version, status.firmware_version
        )
        entry = in_rollout.get(status.device_id)
        lag: LagReason | None = None
        detail = ""
        if not on_current:
            if entry is not None and entry.failure is not None:
                lag, detail = LagReason(entry.failure.value), entry.detail
            elif entry is not None and entry.lag is LagReason.HALTED:
                lag = LagReason.HALTED
            elif not status.online:
                lag = LagReason.OFFLINE
            elif entry is None or entry.state is PumpRolloutState.WAITING:
                lag = LagReason.NOT_RELEASED
            else:
                lag = entry.lag or LagReason.IN_PROGRESS
        if entry is not None and entry.applied_ms is not None:
            applied.append(entry.applied_ms)
        rows.append(
            PumpCompliance(
                status.device_id,
                version,
                status.online,
                status.state,
                on_current,
                lag,
                detail,
                status.firmware_version,
            )
        )
    coverage: dict[str, int | None] = {}
    started = rollout.started_ms if rollout is not None else None
    applied.sort()
    for name, share in _COVERAGE:
        needed = max(1, math.ceil(share * len(rows)))
        coverage[name] = (
            applied[needed - 1] - started
            if started is not None and rows and len(applied) >= needed
            else None
        )
    return FleetCompliance(
        library=target.name if target is not None else None,
        version=target.version if target is not None else None,
        at_ms=now_ms,
        pumps=tuple(rows),
        rollout_phase=rollout.phase if rollout is not None else None,
        time_to_coverage_ms=coverage,
        kind=kind,
    )


def _reports(
    kind: UpdateKind,
    target: TargetDescription,
    library_version: str | None,
    firmware_version: str | None,
) -> bool:
    """Whether a pump's status says it runs ``target``."""
    if kind is UpdateKind.FIRMWARE:
        return parse_firmware_version(firmware_version, target.name) == target.version
    return library_version == str(target.version)


# ---------------------------------------------------------------------------- the service


class LibraryDistribution:
    """The server's side of distribution of one kind of release; see the module docstring.

    Thread-safe: API handlers run in worker threads, the ingest hook and the roll-out loop on
    the event loop; one lock guards the roll-out. The drug-library instance owns the listener
    and re-emits the pumps' security events; ``firmware`` is the firmware instance it passes
    every batch on to.
    """

    def __init__(
        self,
        data_dir: Path,
        repository: UpdateRepository,
        clock: Clock,
        events: SecurityEventSink,
        *,
        kind: UpdateKind = UpdateKind.DRUG_LIBRARY,
        listener: UpdateListener | None = None,
    ) -> None:
        self.kind = kind
        self.firmware: LibraryDistribution | None = None
        self.data_dir = data_dir
        self.repository = repository
        self._clock = clock
        self.events = events
        self._lock = threading.RLock()
        self._rollout: Rollout | None = None
        self._members: frozenset[str] = frozenset()
        self._commands: dict[str, str] = {}
        self._unnotified: dict[str, int] = {}
        self._reports: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.listener = listener or UpdateListener(repository.published_dir, clock, events)
        self._staging_failed: set[str] = set()

    # -- releases -------------------------------------------------------------------------

    def latest_library(self) -> TargetDescription | None:
        """The newest published release of this instance's kind (a firmware image for the
        firmware instance)."""
        published = self.repository.published(self.kind)
        return max(published, key=lambda t: t.version) if published else None

    def pending(self) -> PendingRelease | None:
        return self.repository.pending(self.kind)

    def propose_firmware(self, product: str, version: int, image: bytes) -> PendingRelease:
        """Stage a firmware image for the two firmware key holders' signatures."""
        return self.repository.propose_firmware(product, version, image)

    def propose(self, library_json: bytes) -> PendingRelease:
        """Stage an approved library for the key holders' signatures (the authoring hook)."""
        return self.repository.propose_drug_library(library_json)

    def stage_approved(self, approved: ApprovedLibrary | None) -> PendingRelease | None:
        """Stage the newest approved library for signatures, unless it is already published or
        waiting; an older release still waiting is withdrawn (its signatures are for a library
        the pharmacy has since replaced). Returns what was staged, if anything."""
        if approved is None or approved.sha256 in self._staging_failed:
            return None
        version = approved.library.version
        newest = self.latest_library()
        if newest is not None and newest.version >= version:
            return None
        waiting = self.pending()
        if waiting is not None:
            if waiting.target.version >= version:
                return None
            self.repository.withdraw(UpdateKind.DRUG_LIBRARY)
        try:
            staged = self.propose(approved.canonical)
        except RepositoryError as exc:
            self._staging_failed.add(approved.sha256)
            _log.error("approved library v%s cannot be staged for signing: %s", version, exc)
            return None
        _log.info("approved library v%s waits for its key holders' signatures", version)
        return staged

    def _stage_from(self, store: Store) -> None:
        with store.transaction() as session:
            approved = LibraryAuthoring(session, store.ctx).latest_approved()
        self.stage_approved(approved)

    def publish(self) -> TargetDescription:
        """Publish the waiting release; refused (and logged) below its threshold."""
        return self.repository.publish(self.kind)

    def refresh_if_due(self) -> tuple[str, ...]:
        """Re-sign the timestamp (and snapshot) once half their validity has passed, so pumps
        never see expired metadata from a healthy server; return what was re-signed."""
        now = self._clock.now_ms()
        policy = RepositoryPolicy()
        done: list[str] = []
        snapshot_left = self.repository.expires_ms(SigningRole.SNAPSHOT) - now
        if snapshot_left < _ms(policy.snapshot.expiry) // 2:
            self.repository.refresh_snapshot()
            done.append("snapshot")
        timestamp_left = self.repository.expires_ms(SigningRole.TIMESTAMP) - now
        if not done and timestamp_left < _ms(policy.timestamp.expiry) // 2:
            self.repository.refresh_timestamp()
            done.append("timestamp")
        return tuple(done)

    # -- roll-out -------------------------------------------------------------------------

    def start_rollout(self, pump_ids: Sequence[str], plan: RolloutPlan) -> RolloutSnapshot:
        """Roll the newest published release out to ``pump_ids`` (canary wave first)."""
        target = self.latest_library()
        if target is None:
            what = "firmware image" if self.kind is UpdateKind.FIRMWARE else "drug library"
            raise DistributionError(f"no {what} is published yet")
        with self._lock:
            current = self._rollout
            if current is not None and current.phase in (
                RolloutPhase.PLANNED,
                RolloutPhase.ROLLING_OUT,
            ):
                raise DistributionError(
                    f"the roll-out of {current.target.path} is still running; halt it first"
                )
            try:
                rollout = Rollout(plan, target, list(pump_ids))
            except RolloutError as exc:
                raise DistributionError(str(exc)) from None
            rollout.start(self._clock.now_ms())
            self._rollout = rollout
            self._members = frozenset(pump_ids)
            self._commands.clear()
            self._unnotified.clear()
            return self._save()

    def halt(self, reason: str) -> RolloutSnapshot:
        with self._lock:
            if self._rollout is None:
                raise DistributionError("no roll-out to halt")
            try:
                self._rollout.halt(reason, self._clock.now_ms())
            except RolloutError as exc:
                raise DistributionError(str(exc)) from None
            self._unnotified.clear()
            return self._save()

    def snapshot(self) -> RolloutSnapshot | None:
        with self._lock:
            if self._rollout is None:
                return read_rollout_snapshot(self.data_dir, self.kind)
            return self._snapshot(self._rollout)

    def compliance(self, statuses: Sequence[PumpStatusView]) -> FleetCompliance:
        return fleet_compliance(
            self.latest_library(), statuses, self.snapshot(), self._clock.now_ms(), self.kind
        )

    def _snapshot(self, rollout: Rollout) -> RolloutSnapshot:
        now = self._clock.now_ms()
        lags = {lag.pump_id: lag.reason for lag in rollout.compliance(now).laggards}
        return RolloutSnapshot(
            target=rollout.target.path,
            version=rollout.target.version,
            phase=rollout.phase.value,
            started_ms=rollout.started_ms,
            halt_reason=rollout.halt_reason,
            waves=tuple(wave.pump_ids for wave in rollout.waves),
            pumps=tuple(
                RolloutPump(
                    s.pump_id,
                    s.wave,
                    s.state,
                    s.failure,
                    s.detail,
                    s.applied_ms,
                    lags.get(s.pump_id),
                )
                for s in rollout.statuses()
            ),
            at_ms=now,
        )

    def _save(self) -> RolloutSnapshot:
        assert self._rollout is not None
        snapshot = self._snapshot(self._rollout)
        atomic_write(
            updates_dir(self.data_dir) / _rollout_file(self.kind),
            snapshot.to_json().encode("utf-8"),
            0o600,
        )
        return snapshot

    # -- what pumps say -------------------------------------------------------------------

    def observe(self, messages: Sequence[DeviceMessage]) -> None:
        """Called with every stored batch: acks, status and forwarded security events."""
        changed = False
        with self._lock:
            rollout = self._rollout
            now = self._clock.now_ms()
            for message in messages:
                if isinstance(message, SecurityReport) and self.kind is UpdateKind.DRUG_LIBRARY:
                    self._reemit(message)
                    continue
                if rollout is None or message.device_id not in self._members:
                    continue
                changed |= self._follow(rollout, message, now)
            if changed:
                self._save()
        if self.firmware is not None:
            self.firmware.observe(messages)

    def _follow(self, rollout: Rollout, message: DeviceMessage, now: int) -> bool:
        pump = message.device_id
        try:
            if isinstance(message, SecurityReport):
                return self._rolled_back(rollout, message, now)
            if isinstance(message, StatusMessage):
                rollout.set_online(pump, True, now)
                state = rollout.status(pump).state
                if (
                    _reports(
                        self.kind,
                        rollout.target,
                        message.library_version,
                        message.firmware_version,
                    )
                    and state is not PumpRolloutState.WAITING
                    and not state.runs_release
                    and state is not PumpRolloutState.FAILED
                ):
                    rollout.record(pump, PumpRolloutState.REPORTED, now)
                    return True
                return False
            if isinstance(message, CommandAck) and self._commands.get(message.command_id) == pump:
                ack = parse_install_ack(message.outcome, message.reason)
                if ack is None or rollout.status(pump).state.runs_release:
                    return False
                if ack.rolled_back:
                    rollout.fail(pump, FailureReason.SELF_TEST_FAILED, message.reason or "", now)
                elif ack.refusal_code is not None:
                    rollout.fail(pump, FailureReason.VERIFICATION_FAILED, message.reason or "", now)
                elif ack.installed:
                    rollout.record(pump, PumpRolloutState.APPLIED, now)
                else:
                    rollout.record(pump, PumpRolloutState.STAGED, now, waiting=ack.waiting)
                return True
        except RolloutError as exc:
            _log.debug("roll-out ignores a report of %s: %s", pump, exc)
        return False

    def _rolled_back(self, rollout: Rollout, report: SecurityReport, now: int) -> bool:
        """A pump says the released image failed its self-test after it booted it (at the first
        idle moment, long after the command was answered): a failure of this roll-out."""
        attributes = report.attributes
        if (
            report.code != UpdateEvent.LOCAL_FAILURE.value
            or attributes.get("failure") != SELF_TEST_FAILED
            or attributes.get("target") != rollout.target.path
            or rollout.status(report.device_id).state is PumpRolloutState.FAILED
        ):
            return False
        rollout.fail(report.device_id, FailureReason.SELF_TEST_FAILED, report.message, now)
        return True

    def _reemit(self, report: SecurityReport) -> None:
        key = (report.device_id, report.seq)
        if key in self._reports:
            return
        self._reports[key] = None
        while len(self._reports) > _REMEMBERED_REPORTS:
            self._reports.popitem(last=False)
        attributes = dict(report.attributes)
        attributes["reported_by"] = "device"
        self.events.emit(
            SecurityEvent(
                time_ms=report.occurred_at_ms,
                component=report.component,
                code=report.code,
                severity=report.severity,
                message=report.message,
                device_id=report.device_id,
                peer=f"pump:{report.device_id}",
                attributes=attributes,
            )
        )

    # -- the loop -------------------------------------------------------------------------

    async def run(self, notify: Notify, store: Store) -> None:
        """Stage newly approved libraries (approved through the API or the CLI), promote
        waves, send notifications, re-sign the timestamp; until cancelled."""
        while True:
            try:
                if self.kind is UpdateKind.DRUG_LIBRARY:
                    await asyncio.to_thread(self.refresh_if_due)
                    await asyncio.to_thread(self._stage_from, store)
                await self.step(notify)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("the library distribution loop failed; retrying")
            await asyncio.sleep(_LOOP_S)

    async def step(self, notify: Notify) -> None:
        with self._lock:
            rollout = self._rollout
            if rollout is None:
                return
            now = self._clock.now_ms()
            rollout.tick(now)
            actions = rollout.take_actions()
            for pump in actions.notify:
                self._unnotified[pump] = 0
            due = [p for p, at in self._unnotified.items() if at <= now]
            target = rollout.target
            if actions.notify or actions.cancel:
                self._save()
        changed = False
        for pump in due:
            try:
                command_id = await notify(pump, {TARGET_PARAMETER: target.path})
            except Exception as exc:
                with self._lock:
                    if pump in self._unnotified:
                        self._unnotified[pump] = now + _RENOTIFY_MS
                        with contextlib.suppress(RolloutError):
                            rollout.set_online(pump, False, now)
                _log.info("%s not notified of %s yet: %s", pump, target.path, exc)
                continue
            with self._lock:
                if self._rollout is not rollout or pump not in self._unnotified:
                    continue
                del self._unnotified[pump]
                self._commands[command_id] = pump
                with contextlib.suppress(RolloutError):
                    if rollout.status(pump).state is PumpRolloutState.RELEASED:
                        rollout.record(pump, PumpRolloutState.NOTIFIED, now)
                        changed = True
        if changed:
            with self._lock:
                self._save()


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)
