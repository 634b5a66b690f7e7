"""EHR auto-programming in the running pump server: PIV orders in over MLLP inside mutual TLS,
pre-fill on the pump over MQTT, the clinician's answer at the pump, ``RRG^O16`` and IPEC, DEC
and ACM reports out (IHE PCD PCD-03, -10, -01, -04).

The path of one order (docs/interop.md has the diagram and the codes):

1. an EHR with an ``ehr`` certificate of the server's CA sends ``RGV^O15``; anything else is
   refused during or right after the handshake, with a security event (``MllpServer``);
2. the order is parsed (``PivReceiver``, in a worker thread), **stored with its message id**
   (a replay is decided by the database, so it survives a restart), and only then answered
   ``ACK^O15`` CA on the same connection; a malformed one is answered CE/CR and goes no further;
3. ``check_order`` judges it against what the server knows of the pump (asset, connection,
   last status, open order, patient) and the drug library **installed on that pump** (the
   version its status reports, as approved on this server); when that library is not known
   the configured one is used and the trail, the audit and a library-related refusal say so;
   a refusal is answered ``RRG^O16`` AE/AR with its ERR-5 code;
4. an accepted order is sent to the pump as a ``prefill-order`` command; the pump re-checks it
   against its own library and only pre-fills: **nothing starts until a clinician confirms at
   the pump** (the firmware refuses a remote start);
5. the pump's events (over MQTT, through the ingest batch hook) tell the confirmation (AA), an
   edit at the pump then a start (AA, trail ``edited-at-pump``), a rejection (AR 9023), or the
   pump's refusal of the pre-fill (its ERR-5 code); then ``RRG^O16`` goes to the EHR endpoint
   on a **new connection per acknowledgement**, as PCD-03 asks;
6. the pump's delivery events become IPEC ``ORU^R42`` (linked to the order by OBR-2), its
   alarms ACM ``ORU^R40`` and its status DEC ``ORU^R01`` (at most one per pump per
   ``observation_every_s``), all on **one kept connection** in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from pumpguard.clinical import (
    DrugLibrary,
    PumpKind,
    UnitError,
    dose_to_flow,
    load_library,
    parse_dose_unit,
)
from pumpguard.clock import SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import AlarmKind, ContinuousProgramme, EventKind, PumpState
from pumpguard.interop import (
    Alert,
    AlertPhase,
    AppError,
    CodedValue,
    DeliveryError,
    Endpoint,
    FrameProblem,
    Hl7Error,
    InfusionOrder,
    MessageHeader,
    MllpConnection,
    MllpServer,
    Observation,
    ObservationReport,
    OrderContext,
    OrderControl,
    OrderFinding,
    OrderVerdict,
    PeerInfo,
    PivReceiver,
    PumpEvent,
    PumpEventKind,
    PumpStatus,
    Quantity,
    TransportProfile,
    build_alert,
    build_event,
    build_observations,
    build_piv,
    check_order,
    parse_ack,
    parse_piv,
    send_message,
)
from pumpguard.interop.adapters import PUMP_STATUS
from pumpguard.interop.codes import Mdc
from pumpguard.pki import CertKind, client_tls_context, reload_crl, server_tls_context
from pumpguard.server.assets import AssetKind, AssetService
from pumpguard.server.errors import NotFound, ServerError
from pumpguard.server.ingest import IngestService
from pumpguard.server.library_authoring import LibraryAuthoring
from pumpguard.server.lifecycle import ADMITTED_STATES
from pumpguard.server.orders import (
    OrderService,
    OrderStatus,
    OrderStep,
)
from pumpguard.transport import (
    AckOutcome,
    CommandAck,
    CommandAction,
    DeviceEvent,
    DeviceMessage,
    StatusMessage,
)

if TYPE_CHECKING:
    from pumpguard.server.runtime import Stack

__all__ = [
    "ORDERS_CLIENT_ID",
    "EhrGateway",
    "EhrSettings",
    "NurseSettings",
]

ORDERS_CLIENT_ID = "pumpguard-orders"
_log = logging.getLogger(__name__)
_EHR_ONLY = frozenset({CertKind.EHR})
_INFUSING = frozenset({"infusing", "paused", "kvo"})
_PUMP_KINDS = {AssetKind.LVP: PumpKind.LVP, AssetKind.SYRINGE: PumpKind.SYRINGE}
_RRG_RETRIES_S = (0.5, 2.0, 5.0)
_STATUS_WAIT_S = 2.0
_SWEEP_S = 1.0
_MAX_QUEUED_REPORTS = 10_000
_ALARMS_BY_TEXT = {kind.text: kind for kind in AlarmKind}
_ALARMS_BY_CODE = {kind.mdc_code: kind for kind in AlarmKind if kind.mdc_code is not None}
_LIBRARY_FINDINGS = frozenset(
    {
        AppError.OUT_OF_RANGE,
        AppError.INVALID_UNITS,
        AppError.UNITS_MISMATCH,
        AppError.NO_LIBRARY_MATCH,
        AppError.WEIGHT_MISMATCH,
        AppError.EXCEEDS_MAXIMUM,
        AppError.CARE_AREA_MISMATCH,
        AppError.HARD_LIMIT,
        AppError.LOCKOUT_MISSING,
        AppError.DOSE_LIMIT_MISSING,
    }
)
"""Refusals that depend on the library's content: under a fallback library, their reason
(ERR-8) says which library decided."""


@dataclass(frozen=True, slots=True)
class NurseSettings:
    """The simulated clinician of ``up --demo`` who answers pre-filled orders at the pump:
    after ``confirm_after_s`` (each order 0.5x-1.5x that, seeded by ``seed``, pump and order),
    rejects with ``reject_probability``, edits the rate (-10%) then starts with
    ``edit_probability``, else confirms as ordered."""

    confirm_after_s: float = 5.0
    reject_probability: float = 0.1
    edit_probability: float = 0.1
    seed: int = 7

    def __post_init__(self) -> None:
        if self.confirm_after_s < 0:
            raise ValueError("confirm_after_s must not be negative")
        for name in ("reject_probability", "edit_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.reject_probability + self.edit_probability > 1:
            raise ValueError("reject_probability + edit_probability must be at most 1")


@dataclass(frozen=True, slots=True)
class EhrSettings:
    """The EHR interface of a ``Stack`` (``StackConfig.ehr``); see the module docstring.

    ``mllp_port`` 0 picks a free port (``Stack.ehr.port`` tells which). Without
    ``ehr_endpoint`` (``mllps://host:port``) orders are still processed and recorded, but no
    ``RRG^O16`` or report is sent. ``legacy`` accepts plain MLLP and sends ``mllp://``, the
    attack surface of cleartext interfaces, never a default. Orders are checked against the
    library the target pump reports installed (an approved version of this server, or
    ``library`` when the versions match); ``library`` (None: the example library, the one the
    demo pumps run) is also the fallback when the pump's library is not known."""

    mllp_port: int = 0
    ehr_endpoint: str | None = None
    legacy: bool = False
    library: DrugLibrary | None = None
    max_order_age_s: float | None = 15 * 60.0
    prefill_timeout_s: float = 30.0
    confirm_timeout_s: float = 15 * 60.0
    observation_every_s: float = 60.0
    nurse: NurseSettings = field(default_factory=NurseSettings)

    def __post_init__(self) -> None:
        if not 0 <= self.mllp_port <= 65_535:
            raise ValueError("the MLLP port must be from 0 to 65535")
        if self.ehr_endpoint is not None:
            endpoint = Endpoint.parse(self.ehr_endpoint)
            if not endpoint.tls and not self.legacy:
                raise ValueError(
                    f"{self.ehr_endpoint}: plain mllp:// is for the legacy profile only; "
                    "use mllps://"
                )
        if self.prefill_timeout_s <= 0 or self.confirm_timeout_s <= 0:
            raise ValueError("the pre-fill and confirmation timeouts must be positive")

    @property
    def profile(self) -> TransportProfile:
        return TransportProfile.LEGACY if self.legacy else TransportProfile.SECURE


@dataclass
class _PumpView:
    """What the pump said last (status and events since this server started)."""

    state: str = "unknown"
    care_area: str | None = None
    alarms: tuple[str, ...] = ()
    drug: str | None = None
    patient_id: str | None = None
    library_version: str | None = None
    rate_ml_h: Decimal | None = None
    volume_ml: Decimal | None = None
    remaining_ml: Decimal | None = None
    observed_ms: int = 0
    reported_ms: int = 0


@dataclass
class _OpenOrder:
    """An order between its pre-fill command and the clinician's answer."""

    order_id: int
    order: InfusionOrder
    peer: str
    created_ms: int
    command_id: str | None = None
    prefilled: bool = False
    edited: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class _LibraryChoice:
    """The library an order is checked against; ``installed`` False when it is the fallback
    because the pump's own library is not known here. ``note`` says which, for the trail."""

    library: DrugLibrary
    installed: bool
    note: str


@dataclass(slots=True)
class _Report:
    """An IPEC, ACM or DEC report waiting to be sent: built once, when its turn comes."""

    build: Callable[[], str]
    text: str | None = None


@dataclass(frozen=True, slots=True)
class _Admitted:
    order_id: int
    verdict: OrderVerdict
    accepted: bool


@dataclass(frozen=True, slots=True)
class _ActiveOrder:
    order_id: int
    placer: str
    patient_id: str


def _now_ms() -> int:
    return SystemClock().now_ms()


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        return None
    return value if value.is_finite() else None


def _prefill_parameters(order: InfusionOrder, programme: ContinuousProgramme) -> dict[str, str]:
    parameters = {
        "drug": programme.drug,
        "dose": format(programme.dose, "f"),
        "dose_unit": programme.dose_unit,
        "vtbi_ml": format(programme.vtbi_ml, "f"),
        "order_id": order.placer_order_number,
        "patient_id": order.patient_id,
    }
    if programme.weight_kg is not None:
        parameters["weight_kg"] = format(programme.weight_kg, "f")
    if programme.care_area is not None:
        parameters["care_area"] = programme.care_area
    if programme.concentration is not None:
        concentration = programme.concentration
        parameters["conc_amount"] = format(concentration.amount, "f")
        parameters["conc_unit"] = str(concentration.unit)
        parameters["conc_volume_ml"] = format(concentration.volume_ml, "f")
    return parameters


def _flow(programme: ContinuousProgramme, verdict: OrderVerdict) -> Decimal | None:
    entry = None if verdict.ders is None else verdict.ders.entry
    if entry is None:
        return None
    try:
        unit = parse_dose_unit(programme.dose_unit)
        conc = programme.concentration or entry.to_concentration()
        return dose_to_flow(programme.dose, unit, conc, programme.weight_kg)
    except (UnitError, ValueError, ArithmeticError):
        return None


class EhrGateway:
    """The EHR side of a running ``Stack``; built and started by ``Stack`` when
    ``StackConfig.ehr`` is set. See the module docstring."""

    def __init__(self, stack: Stack, settings: EhrSettings, client_dir: Path) -> None:
        self._stack = stack
        self.settings = settings
        self.library = settings.library or load_library(EXAMPLE_LIBRARY)
        self._libraries: dict[int, DrugLibrary] = {}
        self._receiver = PivReceiver(events=stack.events, id_prefix="PG")
        self._endpoint = (
            Endpoint.parse(settings.ehr_endpoint) if settings.ehr_endpoint is not None else None
        )
        self._client_tls: ssl.SSLContext | None = None
        if self._endpoint is not None and self._endpoint.tls:
            self._client_tls = client_tls_context(client_dir)
        self._listen_tls: ssl.SSLContext | None = None
        self._server: MllpServer | None = None
        self._views: dict[str, _PumpView] = {}
        self._status_waiters: dict[str, asyncio.Event] = {}
        self._open: dict[str, _OpenOrder] = {}
        self._by_command: dict[str, _OpenOrder] = {}
        self._early_acks: dict[str, CommandAck] = {}
        self._active: dict[str, _ActiveOrder] = {}
        self._alarm_starts: dict[tuple[str, str], str] = {}
        self._patients: dict[str, str] = {}
        self._inbox: asyncio.Queue[Sequence[DeviceMessage]] = asyncio.Queue()
        self._reports: deque[_Report] = deque(maxlen=_MAX_QUEUED_REPORTS)
        self._reports_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.reports_dropped = 0
        self.reports_sent = 0

    # -- life cycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the MLLP listener is not running")
        return self._server.port

    @property
    def endpoint(self) -> Endpoint | None:
        return self._endpoint

    def associate(self, pump_id: str, patient_id: str) -> None:
        """Record which patient a pump is at (the demo ward's roster; an ADT feed later)."""
        self._patients[pump_id] = patient_id

    async def start(self, host: str, listener_dir: Path, crl: Path) -> None:
        await asyncio.to_thread(self._reload_open_orders)
        await asyncio.to_thread(_warm_up, self._receiver)
        tls = None
        if not self.settings.legacy:
            tls = server_tls_context(listener_dir, crl=crl)
            self._listen_tls = tls
            self._stack.tls_contexts["mllp"] = tls
        if self._client_tls is not None:
            self._stack.tls_contexts["ehr-client"] = self._client_tls
        self._server = MllpServer(
            self._on_frame,
            profile=self.settings.profile,
            tls_context=tls,
            host=host,
            port=self.settings.mllp_port,
            on_problem=self._on_problem,
            events=self._stack.events,
        )
        await self._server.start()
        self._loops = [
            asyncio.ensure_future(self._consume()),
            asyncio.ensure_future(self._sweep()),
        ]
        if self._endpoint is not None:
            self._loops.append(asyncio.ensure_future(self._send_reports()))

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._loops, return_exceptions=True)

    def apply_crl(self, crl: Path) -> None:
        if self._listen_tls is not None:
            reload_crl(self._listen_tls, crl)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_report_crash)

    # -- orders in ------------------------------------------------------------------------

    def _on_problem(self, problem: FrameProblem, peer: PeerInfo) -> str | None:
        return self._receiver.answer_problem(problem, str(peer))

    async def _on_frame(self, text: str, peer: PeerInfo) -> str | None:
        """Parse, keep and check the order, start its pre-fill, then answer CA: the CA leaves
        only once the order (and its check) is committed, and the pre-fill does not wait for
        the acknowledgement to be written."""
        who = str(peer)
        reception = await asyncio.to_thread(self._receiver.parse, text, who)
        order = reception.order
        if order is None:
            return reception.ack
        pump_id = order.pump_id
        known = self._views.get(pump_id)
        if known is None or known.observed_ms == 0:  # no status since this server started
            await self._fresh_view(pump_id)
        pending = _OpenOrder(0, order, who, _now_ms())
        reserved = pump_id not in self._open
        if reserved:
            self._open[pump_id] = pending
        view = self._views.get(pump_id)
        snapshot = None if view is None else dataclasses.replace(view)
        try:
            admitted = await asyncio.to_thread(self._admit, order, text, who, snapshot, reserved)
        except BaseException:
            self._close(pump_id, pending)
            raise
        pending.order_id = admitted.order_id
        if not admitted.accepted:
            self._close(pump_id, pending)
        self._spawn(self._after_check(pending, admitted))
        return await asyncio.to_thread(self._receiver.accept_ack, order)

    def _admit(
        self,
        order: InfusionOrder,
        text: str,
        peer: str,
        view: _PumpView | None,
        reserved: bool,
    ) -> _Admitted:
        """One transaction: store the order (claiming its message id), check it, and claim its
        placer number when accepted."""
        ctx = self._stack.store.ctx
        with self._stack.store.transaction() as session:
            service = OrderService(session, ctx)
            choice = self._library_for(session, order.pump_id, view)
            stored = service.record(order, text, peer, choice.note)
            placer_seen = service.placer_seen(order)
            status = self._pump_status(session, order, view, reserved)
            max_age = self.settings.max_order_age_s
            context = OrderContext(
                pumps={} if status is None else {order.pump_id: status},
                library=choice.library,
                now=datetime.now(UTC),
                max_order_age=None if max_age is None else timedelta(seconds=max_age),
                seen_control_ids=frozenset({order.control_id}) if stored.replayed else frozenset(),
                seen_placer_orders=(
                    frozenset({order.placer_order_number}) if placer_seen else frozenset()
                ),
            )
            verdict = _noted(check_order(order, context), choice)
            if verdict.accepted and not isinstance(verdict.programme, ContinuousProgramme):
                verdict = OrderVerdict(_pca_not_supported())
            accepted = service.checked(stored.order_id, order, verdict)
            if not accepted and verdict.accepted:  # the placer number was claimed meanwhile
                seen = frozenset({order.placer_order_number})
                verdict = check_order(
                    order, replace(context, max_order_age=None, seen_placer_orders=seen)
                )
            if accepted and isinstance(verdict.programme, ContinuousProgramme):
                flow = _flow(verdict.programme, verdict)
                if flow is not None:
                    service.set_rate(stored.order_id, flow)
            return _Admitted(stored.order_id, verdict, accepted)

    async def _after_check(self, pending: _OpenOrder, admitted: _Admitted) -> None:
        order = pending.order
        if not admitted.accepted:
            verdict, peer = admitted.verdict, pending.peer
            await self._deliver_rrg(
                pending.order_id, lambda: self._receiver.application_ack(order, verdict, peer)
            )
            return
        programme = admitted.verdict.programme
        assert isinstance(programme, ContinuousProgramme)
        async with pending.lock:
            try:
                command_id = await self._stack.send_command(
                    order.pump_id,
                    CommandAction.PREFILL_ORDER,
                    _prefill_parameters(order, programme),
                    expires_in_s=self.settings.prefill_timeout_s,
                )
            except Exception as exc:  # not connected, the pump did not take the PUBLISH
                self._close(order.pump_id, pending)
                reason = f"the pre-fill was not delivered: {exc}"
                await self._fail(pending, AppError.OFFLINE, reason)
                return
            pending.command_id = command_id
            self._by_command[command_id] = pending
            await asyncio.to_thread(
                self._write, lambda s: s.prefill_sent(pending.order_id, command_id)
            )
        early = self._early_acks.pop(command_id, None)
        if early is not None:
            await self._on_ack(early)

    async def _note(self, order_id: int, step: OrderStep, detail: str) -> None:
        await asyncio.to_thread(self._write, lambda s: s.note(order_id, step, detail))

    def _write(self, action: Callable[[OrderService], object]) -> None:
        with self._stack.store.transaction() as session:
            action(OrderService(session, self._stack.store.ctx))

    def _library_for(
        self, session: Session, pump_id: str, view: _PumpView | None
    ) -> _LibraryChoice:
        """The library installed on the pump, by the version its last status reported (or the
        stored one): an approved version of this server's library, else the configured
        library if its version matches; otherwise the configured library as a fallback."""
        ctx = self._stack.store.ctx
        fallback = self.library
        reported = view.library_version if view is not None else None
        if reported is None:
            with contextlib.suppress(NotFound):
                reported = IngestService(session, ctx).status(pump_id).library_version
        version = int(reported) if reported is not None and reported.isdecimal() else None
        if version is None:
            return _LibraryChoice(
                fallback,
                False,
                f"checked against the configured library {_named(fallback)}: the library "
                f"installed on {pump_id} is not known",
            )
        library = self._libraries.get(version)
        problem = f"this server holds no approved v{version}"
        if library is None:
            try:
                library = LibraryAuthoring(session, ctx).approved(version).library
                self._libraries[version] = library  # an approved version never changes
            except ServerError as exc:  # none, not approved, or altered since its approval
                problem = str(exc)
                if fallback.version == version:
                    library = fallback
        if library is None:
            return _LibraryChoice(
                fallback,
                False,
                f"checked against the configured library {_named(fallback)}: {pump_id} "
                f"reports library v{version} and {problem}",
            )
        return _LibraryChoice(
            library, True, f"checked against {_named(library)}, installed on {pump_id}"
        )

    def _pump_status(
        self, session: Session, order: InfusionOrder, view: _PumpView | None, reserved: bool
    ) -> PumpStatus | None:
        """What ``check_order`` needs: the asset (known, admitted, kind), its connection and
        last state from the database, and from its last status its care area, alarms and
        patient; ``reserved`` False when another order for the pump is open."""
        ctx = self._stack.store.ctx
        pump_id = order.pump_id
        try:
            asset = AssetService(session, ctx).get(pump_id)
        except NotFound:
            return None
        kind = _PUMP_KINDS.get(asset.kind)
        if asset.state not in ADMITTED_STATES or kind is None:
            return None
        try:
            stored = IngestService(session, ctx).status(pump_id)
            online, stored_state = stored.online, stored.state
        except NotFound:
            online, stored_state = False, "unknown"
        state = view.state if view is not None and view.state != "unknown" else stored_state
        stopping = any(
            (alarm := _ALARMS_BY_TEXT.get(text)) is not None and alarm.stops_delivery
            for text in (view.alarms if view is not None else ())
        )
        infusing = state in _INFUSING
        patient = self._patients.get(pump_id)
        if patient is None and infusing and view is not None:
            patient = view.patient_id
        return PumpStatus(
            pump_id=pump_id,
            kind=kind,
            online=online,
            powered=state != PumpState.OFF.value,
            infusing=infusing,
            accepting=reserved and state != PumpState.PROGRAMMING.value and not stopping,
            care_area=None if view is None else view.care_area,
            patient_id=patient,
            running_drug=None if view is None else view.drug,
        )

    async def _fresh_view(self, pump_id: str) -> _PumpView | None:
        """No status seen since this server started: ask the pump, wait a little."""
        waiter = self._status_waiters.setdefault(pump_id, asyncio.Event())
        try:
            await self._stack.send_command(pump_id, CommandAction.REQUEST_STATUS, expires_in_s=5)
        except Exception:  # not connected: nothing will come
            return self._views.get(pump_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), _STATUS_WAIT_S)
        return self._views.get(pump_id)

    def _close(self, pump_id: str, pending: _OpenOrder) -> None:
        if self._open.get(pump_id) is pending:
            del self._open[pump_id]
        if pending.command_id is not None:
            self._by_command.pop(pending.command_id, None)

    def _reload_open_orders(self) -> None:
        """After a restart, orders still waiting for the pump are picked up again, so the
        clinician's later answer is still reported."""
        with self._stack.store.transaction() as session:
            views = OrderService(session, self._stack.store.ctx).open_orders()
        for view in views:
            try:
                order = parse_piv(view.message)
            except Hl7Error:
                continue
            pending = _OpenOrder(
                view.id,
                order,
                view.peer,
                view.received_at_ms,
                command_id=view.command_id,
                prefilled=view.status is OrderStatus.PREFILLED,
            )
            self._open[view.pump_id] = pending
            if view.command_id is not None:
                self._by_command[view.command_id] = pending

    # -- the pump's answers (ingest hook) ---------------------------------------------------

    def on_batch(self, messages: Sequence[DeviceMessage]) -> None:
        """Called by the ingest loop once a batch is stored; never blocks it."""
        self._inbox.put_nowait(messages)

    async def _consume(self) -> None:
        while True:
            batch = await self._inbox.get()
            for message in batch:
                try:
                    await self._on_message(message)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _log.exception("order gateway failed on a message of %s", message.device_id)

    async def _on_message(self, message: DeviceMessage) -> None:
        if isinstance(message, CommandAck):
            await self._on_ack(message)
        elif isinstance(message, StatusMessage):
            self._on_status(message)
        elif isinstance(message, DeviceEvent):
            await self._on_event(message)

    async def _on_ack(self, ack: CommandAck) -> None:
        pending = self._by_command.get(ack.command_id)
        if pending is None:
            open_order = self._open.get(ack.device_id)
            if open_order is not None and open_order.command_id is None:
                self._early_acks[ack.command_id] = ack
            return
        async with pending.lock:
            if pending.prefilled or self._open.get(ack.device_id) is not pending:
                return
            if ack.outcome is AckOutcome.ACCEPTED:
                pending.prefilled = True
                detail = ack.reason or "pre-filled; awaiting confirmation at the pump"
                at_ms = ack.sent_at_ms
                await asyncio.to_thread(
                    self._write, lambda s: s.prefilled(pending.order_id, detail, at_ms)
                )
                return
            self._close(ack.device_id, pending)
            error = _app_error(ack.err_code)
            reason = f"the pump refused the pre-fill ({ack.outcome.value}): {ack.reason or '-'}"
            await self._fail(pending, error, reason, OrderStep.PREFILL_REFUSED)

    def _on_status(self, status: StatusMessage) -> None:
        view = self._views.setdefault(status.device_id, _PumpView())
        view.state = status.state.value
        view.care_area = status.care_area
        view.alarms = status.active_alarms
        view.library_version = status.library_version
        programme = status.programme
        view.drug = None if programme is None else programme.drug
        view.rate_ml_h = None if programme is None else programme.rate_ml_h
        view.volume_ml = None if programme is None else programme.volume_infused_ml
        view.remaining_ml = None if programme is None else programme.vtbi_remaining_ml
        view.observed_ms = status.sent_at_ms
        if view.state not in _INFUSING:
            view.patient_id = None
        waiter = self._status_waiters.pop(status.device_id, None)
        if waiter is not None:
            waiter.set()
        self._observe(status.device_id, view, status.sent_at_ms)

    async def _on_event(self, event: DeviceEvent) -> None:
        pump_id = event.device_id
        view = self._views.setdefault(pump_id, _PumpView())
        attributes = event.attributes
        if "patient_id" in attributes:
            view.patient_id = attributes["patient_id"]
        if "state" in attributes:
            view.state = attributes["state"]
        pending = self._open.get(pump_id)
        if pending is not None and pending.prefilled:
            await self._clinician(pending, event)
        self._report_event(event)

    async def _clinician(self, pending: _OpenOrder, event: DeviceEvent) -> None:
        """What the clinician did at the pump with the pre-filled order."""
        order = pending.order
        tagged = event.attributes.get("order_id")
        ours = tagged is None or tagged == order.placer_order_number
        source = event.attributes.get("source", "")
        async with pending.lock:
            if self._open.get(event.device_id) is not pending:
                return
            if event.event is EventKind.PROGRAMMED and source == "keypad" and ours:
                pending.edited = True
                await asyncio.to_thread(
                    self._write,
                    lambda s: s.finish(
                        pending.order_id,
                        OrderStatus.PREFILLED,
                        OrderStep.EDITED_AT_PUMP,
                        f"edited at the pump: {event.summary}",
                        actor=f"pump:{event.device_id}",
                    ),
                )
            elif event.event in (EventKind.DELIVERY_START, EventKind.DELIVERY_CHANGE):
                self._close(event.device_id, pending)
                if not ours:
                    await self._fail(
                        pending,
                        AppError.REJECTED_BY_USER,
                        "the clinician started another programme instead of the order",
                        OrderStep.REJECTED,
                        OrderStatus.REJECTED,
                    )
                    return
                edited = pending.edited or source == "keypad"
                status = OrderStatus.EDITED if edited else OrderStatus.CONFIRMED
                detail = f"started at the pump{' after edits' if edited else ''}: {event.summary}"
                await asyncio.to_thread(
                    self._write,
                    lambda s: s.finish(
                        pending.order_id,
                        status,
                        OrderStep.CONFIRMED,
                        detail,
                        actor=f"pump:{event.device_id}",
                    ),
                )
                self._active[event.device_id] = _ActiveOrder(
                    pending.order_id, order.placer_order_number, order.patient_id
                )
                self._spawn(
                    self._deliver_rrg(
                        pending.order_id, lambda: self._receiver.outcome_ack(order, None)
                    )
                )
            elif event.event is EventKind.PROGRAMME_CANCELLED and event.summary != "replaced":
                self._close(event.device_id, pending)
                await self._fail(
                    pending,
                    AppError.REJECTED_BY_USER,
                    f"rejected by the clinician at the pump: {event.summary}",
                    OrderStep.REJECTED,
                    OrderStatus.REJECTED,
                )

    async def _fail(
        self,
        pending: _OpenOrder,
        error: AppError,
        reason: str,
        step: OrderStep = OrderStep.FAILED,
        status: OrderStatus = OrderStatus.FAILED,
    ) -> None:
        await asyncio.to_thread(
            self._write,
            lambda s: s.finish(pending.order_id, status, step, reason, app_error=int(error)),
        )
        order = pending.order
        self._spawn(
            self._deliver_rrg(
                pending.order_id, lambda: self._receiver.outcome_ack(order, error, reason)
            )
        )

    async def _sweep(self) -> None:
        """Orders the pump never answered: not delivered in time (AR 9007), or not confirmed
        at the pump in time (AR 9017); the pump keeps its own unconfirmed-programme alarm."""
        while True:
            await asyncio.sleep(_SWEEP_S)
            now = _now_ms()
            for pump_id, pending in list(self._open.items()):
                age_s = (now - pending.created_ms) / 1000
                if not pending.prefilled and age_s > self.settings.prefill_timeout_s:
                    self._close(pump_id, pending)
                    await self._fail(
                        pending, AppError.OFFLINE, f"the pump did not answer within {age_s:.0f} s"
                    )
                elif pending.prefilled and age_s > self.settings.confirm_timeout_s:
                    self._close(pump_id, pending)
                    await self._fail(
                        pending,
                        AppError.CANNOT_ACCEPT,
                        f"not confirmed at the pump within {self.settings.confirm_timeout_s:.0f} s",
                    )

    # -- acknowledgements and reports out -----------------------------------------------------

    async def _deliver_rrg(self, order_id: int, build: Callable[[], str | None]) -> None:
        """One ``RRG^O16`` on a new connection (PCD-03), retried a few times. It is built (and
        validated by the HL7 library, tens of milliseconds of CPU) in a worker thread: on the
        event loop it would hold up every other order and pump for that long."""
        rrg = await asyncio.to_thread(build)
        if rrg is None:
            await asyncio.to_thread(
                self._write,
                lambda s: s.note(order_id, OrderStep.RRG_SENT, "not sent: MSH-16 did not ask"),
            )
            return
        endpoint = self._endpoint
        if endpoint is None:
            await asyncio.to_thread(
                self._write,
                lambda s: s.note(order_id, OrderStep.RRG_FAILED, "no EHR endpoint configured"),
            )
            return
        code = rrg.split("\r")[1].split("|")[1] if "\rMSA|" in rrg else "?"
        problem = ""
        reply: str | None = None
        for pause in (*_RRG_RETRIES_S, None):
            try:
                reply = await send_message(
                    endpoint,
                    rrg,
                    profile=self.settings.profile,
                    tls_context=self._client_tls,
                    peer_kinds=_EHR_ONLY,
                )
                break
            except DeliveryError as exc:
                problem = str(exc)
            if pause is None:
                await self._note(order_id, OrderStep.RRG_FAILED, problem)
                return
            await asyncio.sleep(pause)
        detail = f"EHR answered {await asyncio.to_thread(_ack_text, reply)}"
        await asyncio.to_thread(self._write, lambda s: s.acknowledged(order_id, code, detail))

    def _queue_report(self, build: Callable[[], str]) -> None:
        """Queue a report to be built and sent in turn: its data is captured now, the HL7
        message is built by the sender in a worker thread, never on the event loop."""
        if self._endpoint is None:
            return
        if len(self._reports) == self._reports.maxlen:
            self.reports_dropped += 1
        self._reports.append(_Report(build))
        self._reports_ready.set()

    async def _send_reports(self) -> None:
        """IPEC, DEC and ACM in the order they happened, on one kept connection."""
        assert self._endpoint is not None
        connection = MllpConnection(
            self._endpoint,
            profile=self.settings.profile,
            tls_context=self._client_tls,
            peer_kinds=_EHR_ONLY,
        )
        pause = 0.5
        try:
            while True:
                while not self._reports:
                    self._reports_ready.clear()
                    await self._reports_ready.wait()
                head = self._reports[0]
                if head.text is None:
                    try:
                        head.text = await asyncio.to_thread(head.build)
                    except (Hl7Error, ValueError) as exc:
                        _log.warning("a report could not be built: %s", exc)
                        self._drop(head)
                        continue
                try:
                    await connection.exchange(head.text)
                except DeliveryError as exc:
                    _log.warning("reports to the EHR held back: %s", exc)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 30.0)
                    continue
                pause = 0.5
                self._drop(head)
                self.reports_sent += 1
        finally:
            await connection.close()

    def _drop(self, report: _Report) -> None:
        """Remove a report from the head of the queue unless the queue, being full, already
        dropped it meanwhile."""
        if self._reports and self._reports[0] is report:
            self._reports.popleft()

    def _report_event(self, event: DeviceEvent) -> None:
        pump_id = event.device_id
        attributes = event.attributes
        code = attributes.get("mdc_code")
        kind = PumpEventKind.from_code(code) if code is not None else None
        if kind is not None:
            active = self._active.get(pump_id)
            placer = attributes.get("order_id")
            if placer is None and active is not None:
                placer = active.placer
            patient = attributes.get("patient_id") or self._patient_of(pump_id)
            if kind is PumpEventKind.PROGRAM_CLEARED:
                self._active.pop(pump_id, None)
            if patient:
                drug = attributes.get("drug")
                report = PumpEvent(
                    kind=kind,
                    pump_id=pump_id,
                    patient_id=patient,
                    occurred_at=_when(event.occurred_at_ms),
                    placer_order_number=placer,
                    drug=CodedValue(drug, drug, "") if drug else None,
                    rate_ml_h=_decimal(attributes.get("rate_ml_h")),
                    volume_delivered_ml=_decimal(attributes.get("volume_infused_ml")),
                    vtbi_remaining_ml=_decimal(attributes.get("vtbi_remaining_ml")),
                    control_id=self._receiver.next_control_id(),
                )
                self._queue_report(lambda: build_event(report))
                if active is not None and placer == active.placer:
                    order_id = active.order_id
                    self._spawn(
                        asyncio.to_thread(
                            self._write,
                            lambda s: s.note(order_id, OrderStep.EVENT_SENT, f"IPEC {kind.value}"),
                        )
                    )
            return
        if event.event is EventKind.ALARM_ON and code is not None:
            alarm = _ALARMS_BY_CODE.get(int(code)) if code.isdigit() else None
            if alarm is not None:
                alert_id = f"{pump_id}.{event.log_seq}"
                self._alarm_starts[(pump_id, alarm.text)] = alert_id
                self._alert(pump_id, alarm, alert_id, AlertPhase.START, event.occurred_at_ms)
        elif event.event is EventKind.ALARM_ACK:
            cleared = event.summary.removeprefix("cleared: ").split(", ")
            for text in cleared:
                alarm = _ALARMS_BY_TEXT.get(text.strip())
                start = self._alarm_starts.pop((pump_id, text.strip()), None)
                if alarm is not None and alarm.mdc_code is not None and start is not None:
                    self._alert(pump_id, alarm, start, AlertPhase.END, event.occurred_at_ms)

    def _alert(
        self, pump_id: str, alarm: AlarmKind, alert_id: str, phase: AlertPhase, at_ms: int
    ) -> None:
        patient = self._patient_of(pump_id)
        if not patient or alarm.mdc_code is None:
            return
        alert = Alert(
            alert_id=alert_id,
            pump_id=pump_id,
            patient_id=patient,
            code=alarm.mdc_code,
            ref=alarm.mdc_ref,
            text=alarm.text,
            phase=phase,
            occurred_at=_when(at_ms),
            priority=alarm.priority.name.lower(),
            state="inactive" if phase is AlertPhase.END else "active",
            control_id=self._receiver.next_control_id(),
        )
        self._queue_report(lambda: build_alert(alert))

    def _observe(self, pump_id: str, view: _PumpView, at_ms: int) -> None:
        if self._endpoint is None:
            return
        if at_ms - view.reported_ms < self.settings.observation_every_s * 1000:
            return
        patient = self._patient_of(pump_id)
        if not patient:
            return
        view.reported_ms = at_ms
        when = _when(at_ms)
        ml = CodedValue(str(int(Mdc.DIM_ML)), "MDC_DIM_MILLI_L", "MDC")
        ml_h = CodedValue(str(int(Mdc.DIM_ML_PER_H)), "MDC_DIM_MILLI_L_PER_HR", "MDC")
        state = PUMP_STATUS.get(PumpState(view.state), "pump-status-standby")
        observations = [
            Observation(int(Mdc.PUMP_STAT), "MDC_PUMP_STAT", state, None, "1.1.1.1", when)
        ]
        for code, ref, value, unit, path in (
            (Mdc.FLOW_FLUID_PUMP, "MDC_FLOW_FLUID_PUMP", view.rate_ml_h, ml_h, "1.1.1.2"),
            (Mdc.VOL_FLUID_DELIV_TOTAL, "MDC_VOL_FLUID_DELIV_TOTAL", view.volume_ml, ml, "1.1.1.3"),
            (
                Mdc.VOL_FLUID_TBI_REMAIN,
                "MDC_VOL_FLUID_TBI_REMAIN",
                view.remaining_ml,
                ml,
                "1.1.1.4",
            ),
        ):
            if value is not None:
                observations.append(Observation(int(code), ref, value, unit, path, when))
        if view.drug:
            observations.append(
                Observation(int(Mdc.DRUG_LABEL), "", view.drug, None, "1.1.1.5", when)
            )
        if view.care_area:
            observations.append(
                Observation(int(Mdc.LIBRARY_CARE_AREA), "", view.care_area, None, "1.0.0.1", when)
            )
        if view.library_version:
            observations.append(
                Observation(
                    int(Mdc.LIBRARY_VERSION), "", view.library_version, None, "1.0.0.2", when
                )
            )
        report = ObservationReport(
            pump_id, patient, tuple(observations), control_id=self._receiver.next_control_id()
        )
        self._queue_report(lambda: build_observations(report))

    def _patient_of(self, pump_id: str) -> str | None:
        active = self._active.get(pump_id)
        if active is not None:
            return active.patient_id
        view = self._views.get(pump_id)
        return self._patients.get(pump_id) or (view.patient_id if view is not None else None)

    # -- for tests, the bench and the CLI -----------------------------------------------------

    def describe(self) -> Mapping[str, str]:
        shown = "" if self._endpoint is None else str(self._endpoint)
        scheme = "mllp" if self.settings.legacy else "mllps"
        return {"mllp": f"{scheme}://{self._stack.config.host}:{self.port}", "ehr": shown}


def _warm_up(receiver: PivReceiver) -> None:
    """hl7apy loads the v2.6 structures on first use (1.3 s measured here): pay that at start,
    not on the first order."""
    now = datetime.now(UTC)
    name = "PUMPGUARD"
    order = InfusionOrder(
        header=MessageHeader("WARM-UP", name, name, name, name, now),
        control=OrderControl.NEW,
        placer_order_number="WARM-UP",
        placer_namespace=name,
        patient_id="WARM-UP",
        pump_id="WARM-UP",
        drug=CodedValue("WARM-UP", "warm-up", "LOCAL"),
        order_time=now,
        volume=Quantity(Decimal(1), CodedValue("mL", "", "UCUM")),
        rate=Quantity(Decimal(1), CodedValue("mL/h", "", "UCUM")),
    )
    parsed = receiver.parse(build_piv(order)).order
    if parsed is not None:
        receiver.accept_ack(parsed)


def _app_error(code: int | None) -> AppError:
    if code is None:
        return AppError.CANNOT_ACCEPT
    try:
        return AppError(code)
    except ValueError:
        return AppError.CANNOT_ACCEPT


def _named(library: DrugLibrary) -> str:
    return f"{library.library_id} v{library.version}"


def _noted(verdict: OrderVerdict, choice: _LibraryChoice) -> OrderVerdict:
    """A refusal that the library decided, under a fallback library, says so in its reason."""
    finding = verdict.finding
    if choice.installed or finding is None or finding.app_error not in _LIBRARY_FINDINGS:
        return verdict
    return replace(verdict, finding=replace(finding, message=f"{finding.message} ({choice.note})"))


def _pca_not_supported() -> OrderFinding:
    return OrderFinding(AppError.CANNOT_ACCEPT, "PCA orders are not pre-filled by this server yet")


def _busy(pump_id: str) -> OrderFinding:
    return OrderFinding(
        AppError.CANNOT_ACCEPT, f"pump {pump_id} has another order awaiting confirmation"
    )


def _ack_text(reply: str | None) -> str:
    if reply is None:
        return "nothing"
    try:
        ack = parse_ack(reply)
    except Hl7Error as exc:
        return f"with an unreadable acknowledgement ({exc})"
    return str(ack.code)


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("order gateway task failed", exc_info=task.exception())
