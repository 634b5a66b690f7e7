"""The pump's update agent: told over MQTT, fetches over HTTPS with mutual TLS, verifies with
TUF, stages, applies by the apply rule, and says what happened.

The server never pushes a library: an ``install-library`` command only names a target path.
The agent fetches it through ``updates.UpdateClient`` (every TUF check and the pump's own
version and content checks) with the pump's certificate, so the repository learns which pump
asks and a pump outside the fleet gets nothing. A verified library goes through
``updates.StagedUpdate`` and ``updates.can_apply``: active at once for new programmes (running
programmes keep the library they were checked against, which the firmware enforces), but never
while a programme is being entered; a staged library is applied at the first tick that allows
it. Every refusal is a security event, and the agent's sink forwards each one to the server
(``forward_to_server``), so a tampered mirror seen by one pump reaches the monitor.

Firmware (``install-firmware``) travels the same path: the verified image is written into the
inactive A/B slot (``state_dir/firmware/slot-a.bin``, ``slot-b.bin``; which slot boots is kept in
``slots.json``), and booted only when ``can_apply`` allows it for firmware, that is on an idle
pump, never while infusing or programming. The booted image then runs its self-test; a failure
switches back to the slot the pump came from, so the running image is never overwritten and the
old version is what the pump keeps reporting. A rollback is a ``updates.local_failure`` event
(attribute ``failure=self-test-failed``) forwarded to the server like every refusal, because a
firmware installed later, at the first idle tick, has no command left to answer.

The acknowledgement's reason is machine-read by the server's roll-out (``parse_install_ack``):
``installed vN``, ``already vN``, ``staged vN: <apply decision>``; a refusal carries the event code
first (``updates.target_hash_mismatch: ...``); a firmware rollback is rejected with
``rolled-back vN: ...`` (N: the version the pump runs again).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pumpguard.clock import Clock
from pumpguard.devices.infusion import CommandSource, InfusionPump, InstallLibrary
from pumpguard.security_events import SecurityEvent, SecurityEventLog, SecurityEventSink
from pumpguard.transport import AckOutcome, CommandMessage, CommandOutcome
from pumpguard.updates import (
    AlreadyInstalled,
    ApplyDecision,
    FirmwareSlots,
    HttpsFetcher,
    Installed,
    Slot,
    StagedUpdate,
    TargetDescription,
    UpdateClient,
    UpdateEvent,
    UpdateKind,
    UpdatePhase,
    UpdateRefused,
    VerifiedUpdate,
    update_event,
)
from pumpguard.updates._files import atomic_write

__all__ = [
    "FIRMWARE_MAGIC",
    "FIRMWARE_PRODUCT",
    "SELF_TEST_FAILED",
    "TARGET_PARAMETER",
    "UPDATE_ROOT_FILE",
    "InstallAck",
    "PumpUpdateAgent",
    "firmware_image",
    "firmware_self_test",
    "firmware_version_text",
    "forward_to_server",
    "parse_firmware_version",
    "parse_install_ack",
    "report_fields",
]

TARGET_PARAMETER = "target"
UPDATE_ROOT_FILE = "update-root.json"
"""The repository's root, written beside a pump's certificate at provisioning: its trust anchor."""

FIRMWARE_PRODUCT = "pumpguard-sim"
"""The firmware product of the simulated pumps: the name their images are signed under."""
FIRMWARE_MAGIC = b"PUMPGUARD-FIRMWARE/1"
"""First bytes of a (simulated) firmware image's header, read by the self-test."""
SELF_TEST_FAILED = "self-test-failed"
"""The ``failure`` attribute of the ``updates.local_failure`` event of a firmware rollback."""

_TEXT_LIMIT = 200
_ATTRIBUTES_LIMIT = 32
_ROLLED_BACK = "rolled-back"


def firmware_version_text(product: str, version: int) -> str:
    """What status telemetry says a pump runs (``pumpguard-sim v2``): product and signed version,
    so the server can compare it with a release without a second field."""
    return f"{product} v{version}"


def parse_firmware_version(text: str | None, product: str) -> int | None:
    """The version in a ``firmware_version_text`` of ``product``, or None for anything else."""
    prefix = f"{product} v"
    if text is None or not text.startswith(prefix) or not text[len(prefix) :].isdigit():
        return None
    return int(text[len(prefix) :])


def firmware_image(product: str, version: int, body: bytes = b"") -> bytes:
    """A simulated firmware image: a header line naming what it is built as, then the code."""
    return FIRMWARE_MAGIC + f" {product} {version}\n".encode("ascii") + body


def firmware_self_test(image: bytes, target: TargetDescription) -> str | None:
    """The booted image's self-test: None when it passes, else what failed.

    A simulated pump has no hardware to exercise, so the test is what a boot loader can check of
    the image itself: the header must be a firmware header naming the product and version the
    image was signed as. A build that signed correctly but was built wrong (another product, a
    stale version, garbage) fails here, after TUF accepted it: exactly the case A/B slots exist
    for."""
    header, newline, _ = image.partition(b"\n")
    if not newline or not header.startswith(FIRMWARE_MAGIC + b" "):
        return "the image has no firmware header"
    expected = f"{target.name} {target.version}".encode("ascii")
    if header[len(FIRMWARE_MAGIC) + 1 :] != expected:
        return "the image's header does not name the signed product and version"
    return None


@dataclass(frozen=True, slots=True)
class InstallAck:
    """What an acknowledgement of ``install-library`` says, read back by the server."""

    version: int | None
    installed: bool
    waiting: ApplyDecision | None
    refusal_code: str | None
    rolled_back: bool = False
    """Firmware only: the new image failed its self-test; ``version`` is the one running again."""


def _ack(outcome: AckOutcome, reason: str) -> CommandOutcome:
    return CommandOutcome(outcome, reason[:_TEXT_LIMIT])


def parse_install_ack(outcome: AckOutcome, reason: str | None) -> InstallAck | None:
    """The meaning of an ``install-library`` acknowledgement, or None when it has none."""
    text = reason or ""
    if outcome is AckOutcome.REJECTED:
        if text.startswith(f"{_ROLLED_BACK} v"):
            number = text[len(_ROLLED_BACK) + 2 :].partition(":")[0]
            return InstallAck(int(number) if number.isdigit() else None, False, None, None, True)
        code, _, _ = text.partition(":")
        return InstallAck(None, False, None, code.strip() or "rejected")
    if outcome is not AckOutcome.ACCEPTED:
        return None
    word, _, rest = text.partition(" v")
    number, _, tail = rest.partition(":")
    if not number.isdigit():
        return None
    version = int(number)
    if word in ("installed", "already"):
        return InstallAck(version, True, None, None)
    if word == "staged":
        try:
            return InstallAck(version, False, ApplyDecision(tail.strip()), None)
        except ValueError:
            return None
    return None


class _Forward:
    def __init__(self, put: Callable[[SecurityEvent], None], local: SecurityEventSink) -> None:
        self._put = put
        self._local = local

    def emit(self, event: SecurityEvent) -> None:
        self._local.emit(event)
        self._put(event)


def forward_to_server(
    put: Callable[[SecurityEvent], None], local: SecurityEventSink
) -> SecurityEventSink:
    """A sink that keeps each event locally and hands it to ``put`` (the pump's outbox)."""
    return _Forward(put, local)


class PumpUpdateAgent:
    """One pump's update agent over ``state_dir`` (trusted metadata, downloads).

    ``tls`` is the pump's own client context (``pki.client_tls_context`` on its credential
    directory). ``bind`` gives the agent the sink its refusals go to; the pump shell binds one
    that forwards them to the server.
    """

    def __init__(
        self,
        state_dir: Path,
        base_url: str,
        tls: ssl.SSLContext,
        *,
        clock: Clock,
        device_id: str,
        trusted_root: bytes | None = None,
        firmware_product: str = FIRMWARE_PRODUCT,
        firmware_version: int = 1,
    ) -> None:
        self._state = Path(state_dir)
        if trusted_root is not None and not (self._state / "metadata" / "root.json").exists():
            UpdateClient.provision(self._state, trusted_root)
        self._base = base_url
        self._tls = tls
        self._clock = clock
        self._device_id = device_id
        self._events: SecurityEventSink | None = None
        self._staged: StagedUpdate | None = None
        self._product = firmware_product
        self._slots = self._load_slots(firmware_version)
        self._staged_firmware: StagedUpdate | None = None

    def bind(self, events: SecurityEventSink) -> None:
        self._events = events

    @property
    def staged(self) -> StagedUpdate | None:
        """A verified library waiting for the apply rule, if any."""
        return self._staged

    @property
    def staged_firmware(self) -> StagedUpdate | None:
        """A verified firmware image in the inactive slot, waiting for an idle pump, if any."""
        return self._staged_firmware

    @property
    def slots(self) -> FirmwareSlots:
        return self._slots

    @property
    def firmware_version(self) -> str:
        """The running firmware as status telemetry reports it (the old one after a rollback)."""
        return firmware_version_text(self._product, self._slots.active_version)

    # -- firmware slots on disk -----------------------------------------------------------

    @property
    def _firmware_dir(self) -> Path:
        return self._state / "firmware"

    def _slot_path(self, slot: Slot) -> Path:
        return self._firmware_dir / f"slot-{slot.value}.bin"

    def _load_slots(self, factory_version: int) -> FirmwareSlots:
        """The slots as the last install left them (a restarted pump boots what it ran), else
        the factory image in slot A."""
        path = self._firmware_dir / "slots.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            inactive = raw["inactive_version"]
            return FirmwareSlots(
                Slot(raw["active"]),
                int(raw["active_version"]),
                None if inactive is None else int(inactive),
            )
        except FileNotFoundError:
            return FirmwareSlots(Slot.A, factory_version)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read the firmware slots {path}: {exc}") from None

    def _save_slots(self) -> None:
        slots = self._slots
        text = json.dumps(
            {
                "active": slots.active.value,
                "active_version": slots.active_version,
                "inactive_version": slots.inactive_version,
            }
        )
        self._firmware_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self._firmware_dir / "slots.json", text.encode("utf-8"), 0o600)

    async def install(self, command: CommandMessage, firmware: InfusionPump) -> CommandOutcome:
        """Handle one ``install-library`` command: fetch, verify, stage, apply if allowed."""
        path = command.parameters.get(TARGET_PARAMETER)
        library = firmware.library
        if path is None:
            return _ack(AckOutcome.REJECTED, f"parameter {TARGET_PARAMETER} is missing")
        if library is None:
            return _ack(AckOutcome.REJECTED, "this pump has no library to update")
        installed = Installed(UpdateKind.DRUG_LIBRARY, library.library_id, library.version)
        outcome = await self._fetch(path, installed)
        if isinstance(outcome, UpdateRefused):
            return _ack(AckOutcome.REJECTED, f"{outcome.code.value}: {outcome.error}")
        if isinstance(outcome, AlreadyInstalled):
            return _ack(AckOutcome.ACCEPTED, f"already v{outcome.target.version}")
        staged = StagedUpdate(outcome, previous_version=library.version)
        staged.stage()
        self._staged = staged
        return self._apply(firmware)

    async def install_firmware(
        self, command: CommandMessage, firmware: InfusionPump
    ) -> CommandOutcome:
        """Handle one ``install-firmware`` command: fetch, verify, write the image into the
        inactive slot, and boot it at once if the pump is idle (else at the first idle tick)."""
        path = command.parameters.get(TARGET_PARAMETER)
        if path is None:
            return _ack(AckOutcome.REJECTED, f"parameter {TARGET_PARAMETER} is missing")
        staged = self._staged_firmware
        if staged is not None and staged.update.target.path == path:
            return self._apply_firmware(firmware)
        installed = Installed(UpdateKind.FIRMWARE, self._product, self._slots.active_version)
        outcome = await self._fetch(path, installed)
        if isinstance(outcome, UpdateRefused):
            return _ack(AckOutcome.REJECTED, f"{outcome.code.value}: {outcome.error}")
        if isinstance(outcome, AlreadyInstalled):
            return _ack(AckOutcome.ACCEPTED, f"already v{outcome.target.version}")
        spare = self._slots.active.other
        try:
            self._firmware_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self._slot_path(spare), outcome.data, 0o600)
        except OSError as exc:
            return _ack(AckOutcome.REJECTED, f"updates.local_failure: cannot write slot: {exc}")
        staged = StagedUpdate(outcome, slots=self._slots)
        staged.stage()
        self._slots = staged.slots or self._slots
        self._save_slots()
        self._staged_firmware = staged
        return self._apply_firmware(firmware)

    async def _fetch(
        self, path: str, installed: Installed
    ) -> VerifiedUpdate | AlreadyInstalled | UpdateRefused:
        if self._events is None:
            raise RuntimeError("bind the agent to a security event sink first")
        seen = SecurityEventLog()  # the fetch runs in a worker thread; emit from this one
        client = UpdateClient(
            self._state,
            HttpsFetcher(self._tls, clock=self._clock, events=seen, device_id=self._device_id),
            clock=self._clock,
            events=seen,
            device_id=self._device_id,
            base_url=self._base,
        )
        try:
            return await asyncio.to_thread(client.fetch, path, installed)
        finally:
            for event in seen:
                self._events.emit(event)

    def tick(self, firmware: InfusionPump) -> None:
        """Apply a staged library, and boot staged firmware, as soon as the apply rule allows."""
        if self._staged is not None:
            self._apply(firmware)
        if self._staged_firmware is not None:
            self._apply_firmware(firmware)

    def _apply_firmware(self, firmware: InfusionPump) -> CommandOutcome:
        """Boot the staged image if the pump is idle, self-test it, keep it or roll back."""
        staged = self._staged_firmware
        assert staged is not None
        target = staged.update.target
        decision = staged.try_apply(
            firmware.state, awaiting_confirmation=firmware.awaiting_confirmation
        )
        if decision is not ApplyDecision.APPLY:
            return _ack(AckOutcome.ACCEPTED, f"staged v{target.version}: {decision.value}")
        self._staged_firmware = None
        booted = staged.slots
        assert booted is not None
        try:
            problem = firmware_self_test(self._slot_path(booted.active).read_bytes(), target)
        except OSError as exc:
            problem = f"the booted slot cannot be read: {exc}"
        phase = staged.self_test(problem is None)
        self._slots = staged.slots or self._slots
        self._save_slots()
        report = staged.report(self._clock.now_ms())
        if phase is UpdatePhase.APPLIED:
            return _ack(AckOutcome.ACCEPTED, f"installed v{target.version}")
        assert self._events is not None
        self._events.emit(
            update_event(
                UpdateEvent.LOCAL_FAILURE,
                f"firmware v{target.version} failed its self-test ({problem}); "
                f"rolled back to v{report.installed_version}",
                time_ms=report.time_ms,
                device_id=self._device_id,
                attributes={
                    "target": target.path,
                    "version": str(target.version),
                    "failure": SELF_TEST_FAILED,
                    "running_version": str(report.installed_version),
                },
            )
        )
        return _ack(
            AckOutcome.REJECTED,
            f"{_ROLLED_BACK} v{report.installed_version}: self-test of v{target.version} "
            f"failed: {problem}",
        )

    def _apply(self, firmware: InfusionPump) -> CommandOutcome:
        staged = self._staged
        assert staged is not None
        version = staged.update.target.version
        decision = staged.try_apply(
            firmware.state, awaiting_confirmation=firmware.awaiting_confirmation
        )
        if decision is not ApplyDecision.APPLY:
            return _ack(AckOutcome.ACCEPTED, f"staged v{version}: {decision.value}")
        self._staged = None
        library = staged.update.library
        assert library is not None
        result = firmware.handle(InstallLibrary(library, CommandSource.SYSTEM))
        if not result.accepted:
            return _ack(AckOutcome.REJECTED, f"updates.local_failure: {result.message}")
        staged.report(self._clock.now_ms())
        return _ack(AckOutcome.ACCEPTED, f"installed v{version}")


def report_fields(event: SecurityEvent) -> dict[str, object]:
    """The fields of a ``transport.SecurityReport`` carrying ``event`` (texts cut to fit)."""
    attributes = {
        key[:64]: str(value)[:_TEXT_LIMIT]
        for key, value in list(event.attributes.items())[:_ATTRIBUTES_LIMIT]
        if str(value)
    }
    return {
        "occurred_at_ms": event.time_ms,
        "component": event.component,
        "code": str(event.code),
        "severity": event.severity,
        "message": (event.message or str(event.code))[:_TEXT_LIMIT],
        "attributes": attributes,
    }
