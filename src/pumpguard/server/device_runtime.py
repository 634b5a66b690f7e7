"""One pump's firmware in real time behind a ``DeviceLink``: what ``pumpguard device run`` and
the simulated ward of ``pumpguard up --demo`` both run.

The firmware (``devices.infusion.InfusionPump``) stays a state machine driven by a clock; this
shell ticks it once a second, forwards every new entry of its event log as a ``DeviceEvent``,
sends a ``StatusMessage`` every ``status_every_s`` and on request, and executes commands
received on the pump's command topic through the firmware's own door (``CommandSource.REMOTE``),
so a remote command can never do what the firmware refuses from the network (start, resume).

Sequence numbers must keep increasing across restarts of the pump, or the server would see a
restarted pump's first messages as conflicting resends. ``SeqReservation`` persists an upper
bound in blocks (one small write per thousand messages); a restart continues above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pumpguard.clinical import Concentration, DrugLibrary, PumpKind, parse_amount_unit
from pumpguard.clock import Clock
from pumpguard.devices.infusion import (
    CommandResult,
    CommandSource,
    ContinuousProgramme,
    InfusionPump,
    LogEntry,
    Pause,
    PowerOn,
    Program,
    Resume,
    SetCareArea,
)
from pumpguard.pki import PeerIdentity, client_tls_context
from pumpguard.security_events import SecurityEvent, SecurityEventSink
from pumpguard.server.update_agent import (
    FIRMWARE_PRODUCT,
    PumpUpdateAgent,
    firmware_version_text,
    forward_to_server,
    report_fields,
)
from pumpguard.transport import (
    AckOutcome,
    CommandAction,
    CommandMessage,
    CommandOutcome,
    Connector,
    DeviceEvent,
    DeviceLink,
    MessageHandler,
    MqttClient,
    Outbox,
    OutboxFullError,
    ProgrammeSummary,
    SecurityReport,
    Session,
    StatusMessage,
)

__all__ = [
    "FIRMWARE_VERSION",
    "ConnectionReport",
    "SeqReservation",
    "SimulatedPump",
    "Workload",
    "mqtt_connector",
]

FIRMWARE_VERSION = firmware_version_text(FIRMWARE_PRODUCT, 1)
"""The factory firmware a pump reports (one with an update agent reports its running slot)."""
_TICK_S = 1.0
_SEQ_BLOCK = 1000
_TEXT_LIMIT = 200

Workload = Callable[["SimulatedPump"], None]
"""Called once a tick with the pump: the (simulated) clinician deciding what to press."""

ConnectionReport = Callable[[str, BaseException | None], None]
"""Told ``"connected"`` (None) or ``"unreachable"`` (the error) by ``mqtt_connector``."""


class SeqReservation:
    """Persists the highest sequence number a pump may have used (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._reserved = int(path.read_text(encoding="ascii").strip() or "0")
        except FileNotFoundError:
            self._reserved = 0
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the sequence state {path}: {exc}") from None
        self.first_seq = self._reserved + 1
        self._write(self.first_seq + _SEQ_BLOCK - 1)

    def keep_ahead_of(self, next_seq: int) -> None:
        if next_seq + _SEQ_BLOCK // 2 > self._reserved:
            self._write(next_seq + _SEQ_BLOCK - 1)

    def _write(self, reserved: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(f"{reserved}\n", encoding="ascii")
        os.replace(temporary, self.path)
        self._reserved = reserved


def mqtt_connector(
    host: str,
    port: int,
    cert_dir: Path,
    identity: PeerIdentity,
    *,
    events: SecurityEventSink | None = None,
    report: ConnectionReport | None = None,
) -> Connector:
    """Connect as the pump whose credential is in ``cert_dir`` (raises ``CredentialFilesError``
    at once when the files are missing or do not belong together)."""
    tls = client_tls_context(cert_dir)

    async def connect(handler: MessageHandler) -> Session:
        client = MqttClient(host, port, tls, identity, on_message=handler, events=events)
        try:
            await client.connect()
        except BaseException as exc:
            if report is not None and isinstance(exc, Exception):
                report("unreachable", exc)
            raise
        if report is not None:
            report("connected", None)
        return client

    return connect


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    if not text or not text.isprintable():
        return None
    return text[:_TEXT_LIMIT]


def _outcome(result: CommandResult) -> CommandOutcome:
    if result.accepted:
        return CommandOutcome(AckOutcome.ACCEPTED, _text(result.message))
    return CommandOutcome(AckOutcome.REJECTED, _text(result.message), result.err_code)


def _decimal(parameters: dict[str, str], name: str, required: bool = True) -> Decimal | None:
    raw = parameters.get(name)
    if raw is None:
        if required:
            raise ValueError(f"parameter {name} is missing")
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"parameter {name} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"parameter {name} must be a positive number")
    return value


class SimulatedPump:
    """One pump: firmware, outbox, link; see the module docstring."""

    def __init__(
        self,
        ident: str,
        kind: PumpKind,
        connect: Connector,
        *,
        clock: Clock,
        events: SecurityEventSink,
        library: DrugLibrary | None = None,
        care_area: str | None = None,
        seq: SeqReservation | None = None,
        status_every_s: float = 10.0,
        workload: Workload | None = None,
        retry_s: float = 1.0,
        max_retry_s: float = 60.0,
        rng: random.Random | None = None,
        updates: PumpUpdateAgent | None = None,
    ) -> None:
        self.ident = ident
        self.clock = clock
        self.events = events
        self.firmware = InfusionPump(kind, clock, serial=ident, library=library)
        self.rng = rng or random.Random(ident)
        self._care_area = care_area
        self._seq = seq
        self.outbox = Outbox(ident, clock, next_seq=seq.first_seq if seq is not None else 1)
        self.link = DeviceLink(
            self.outbox,
            connect,
            self._execute,
            clock=clock,
            events=events,
            retry_s=retry_s,
            max_retry_s=max_retry_s,
        )
        self._status_every_ms = int(status_every_s * 1000)
        self._workload = workload
        self._forwarded = 0
        self._last_status_ms: int | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.workload_state: dict[str, int] = {}
        self.pending_order: str | None = None
        """The order id of a programme pre-filled from the network, until answered."""
        self.pending_programme: ContinuousProgramme | None = None
        self.updates = updates
        if updates is not None:
            updates.bind(forward_to_server(self._report_security_event, events))

    # -- life cycle -----------------------------------------------------------------------

    def power_on(self) -> None:
        """Switch on (self test) and select the care area, as a nurse would at the bedside."""
        self.firmware.handle(PowerOn())
        if self._care_area is not None:
            self.firmware.handle(SetCareArea(self._care_area))

    async def run(self) -> None:
        """Run the firmware and the link until ``stop``."""
        if self.firmware.log.last_seq == 0:
            self.power_on()
        link = asyncio.ensure_future(self.link.run())
        try:
            while not self._stopping.is_set():
                self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), _TICK_S)
                if link.done():
                    link.result()
        finally:
            await self.link.stop()
            link.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link

    async def stop(self) -> None:
        self._stopping.set()

    def step(self) -> None:
        """One tick: the workload acts, then new log entries and a due status are queued."""
        if self._workload is not None:
            self._workload(self)
        self.firmware.tick()
        if self.updates is not None:
            self.updates.tick(self.firmware)
        self.forward_events()
        now = self.clock.now_ms()
        if self._last_status_ms is None or now - self._last_status_ms >= self._status_every_ms:
            self.send_status()
        if self._seq is not None:
            self._seq.keep_ahead_of(self.outbox.next_seq)

    # -- reporting ------------------------------------------------------------------------

    def send_status(self) -> None:
        display = self.firmware.display()
        running = display.programmes[0] if display.programmes else None
        programme = None
        if display.drug is not None or display.state.value in ("infusing", "paused", "kvo"):
            programme = ProgrammeSummary(
                channel=display.channel.value if display.channel is not None else None,
                drug=_text(display.drug),
                rate_ml_h=display.rate_ml_h,
                volume_infused_ml=display.volume_infused_ml.quantize(Decimal("0.0001")),
                vtbi_remaining_ml=(display.vtbi_remaining_ml or Decimal(0)).quantize(
                    Decimal("0.0001")
                ),
                library_version=None if running is None else str(running.library_version),
            )
        self.link.put(
            StatusMessage,
            state=display.state,
            care_area=_text(display.care_area),
            programme=programme,
            battery_percent=max(0, min(100, display.battery_percent)),
            on_mains=self.firmware.battery.mains,
            active_alarms=tuple(a.value for a in display.alarms)[:32],
            firmware_version=(
                FIRMWARE_VERSION if self.updates is None else self.updates.firmware_version
            ),
            library_version=(
                None if display.library_version is None else str(display.library_version)
            ),
        )
        self._last_status_ms = self.clock.now_ms()

    def _report_security_event(self, event: SecurityEvent) -> None:
        """What the pump refused reaches the server too (buffered while offline)."""
        with contextlib.suppress(OutboxFullError):
            self.link.put(SecurityReport, **report_fields(event))

    def forward_events(self) -> None:
        for entry in self.firmware.log.since(self._forwarded):
            self.link.put(
                DeviceEvent,
                event=entry.kind,
                log_seq=entry.seq,
                occurred_at_ms=entry.time_ms,
                summary=_text(entry.detail) or entry.kind.value,
                attributes=self._attributes(entry),
            )
            self._forwarded = entry.seq
        if self.pending_order is not None and not self.firmware.awaiting_confirmation:
            self.pending_order = self.pending_programme = None

    def _attributes(self, entry: LogEntry) -> dict[str, str]:
        attributes = {"source": entry.source.value}
        if entry.mdc_code is not None:
            attributes["mdc_code"] = str(entry.mdc_code)
        after = entry.after
        if after is not None:
            attributes["state"] = after.state
            attributes["rate_ml_h"] = f"{after.rate_ml_h:f}"
            attributes["volume_infused_ml"] = f"{after.volume_infused_ml:f}"
            attributes["vtbi_remaining_ml"] = f"{after.vtbi_remaining_ml:f}"
            drug = _text(after.drug)
            if drug is not None:
                attributes["drug"] = drug
        for running in self.firmware.running_programmes():
            patient = _text(running.programme.patient_id)
            if patient is not None:
                attributes["patient_id"] = patient
                break
        order: str | None
        if entry.mdc_code is None and self.pending_order is not None:
            order = self.pending_order
        else:
            order = next(
                (
                    r.programme.order_id
                    for r in self.firmware.running_programmes()
                    if r.programme.order_id
                ),
                None,
            )
        if _text(order) is not None:
            attributes["order_id"] = str(_text(order))
        return attributes

    # -- commands -------------------------------------------------------------------------

    async def _execute(self, command: CommandMessage) -> CommandOutcome:
        action = command.action
        if action is CommandAction.REQUEST_STATUS:
            self.send_status()
            return CommandOutcome(AckOutcome.ACCEPTED, "status sent")
        if action is CommandAction.PAUSE:
            outcome = _outcome(self.firmware.handle(Pause(CommandSource.REMOTE)))
        elif action is CommandAction.RESUME:
            outcome = _outcome(self.firmware.handle(Resume(CommandSource.REMOTE)))
        elif action is CommandAction.PREFILL_ORDER:
            outcome = self._prefill(dict(command.parameters))
        elif action is CommandAction.INSTALL_LIBRARY and self.updates is not None:
            outcome = await self.updates.install(command, self.firmware)
        elif action is CommandAction.INSTALL_FIRMWARE and self.updates is not None:
            outcome = await self.updates.install_firmware(command, self.firmware)
        else:
            return CommandOutcome(
                AckOutcome.REJECTED, f"{action.value} is not supported by this pump yet"
            )
        self.forward_events()
        return outcome

    def _prefill(self, parameters: dict[str, str]) -> CommandOutcome:
        """Pre-fill a programme for the clinician to confirm at the pump (never started)."""
        try:
            drug = _text(parameters.get("drug"))
            unit = _text(parameters.get("dose_unit"))
            if drug is None or unit is None:
                raise ValueError("parameters drug and dose_unit are required")
            dose = _decimal(parameters, "dose")
            vtbi = _decimal(parameters, "vtbi_ml")
            weight = _decimal(parameters, "weight_kg", required=False)
            concentration = None
            amount = _decimal(parameters, "conc_amount", required=False)
            if amount is not None:
                volume = _decimal(parameters, "conc_volume_ml")
                assert volume is not None
                amount_unit = parse_amount_unit(parameters.get("conc_unit") or "")
                concentration = Concentration(amount, amount_unit, volume)
        except ValueError as exc:  # UnitError and DosingError too
            return CommandOutcome(AckOutcome.REJECTED, str(exc))
        assert dose is not None and vtbi is not None
        order_id = _text(parameters.get("order_id"))
        programme = ContinuousProgramme(
            drug,
            dose,
            unit,
            vtbi,
            weight_kg=weight,
            concentration=concentration,
            care_area=_text(parameters.get("care_area")),
            order_id=order_id,
            patient_id=_text(parameters.get("patient_id")),
        )
        source = CommandSource.AUTO_PROGRAMME if order_id else CommandSource.REMOTE
        result = self.firmware.handle(Program(programme, source))
        if result.accepted:
            self.pending_order, self.pending_programme = order_id, programme
        return _outcome(result)
