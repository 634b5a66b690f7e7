"""The legacy profile: what the published attacks on insulin pumps found, reproduced on purpose.

Frames are cleartext with the device serial as address and identity, an opcode, its operand and
a CRC (MiniMed Paradigm/508, Animas Ping, Omnipod Eros: CVE-2019-10964, CVE-2018-10634,
CVE-2016-5084, CVE-2020-10627). There is no freshness: a recorded bolus works again when
replayed (CVE-2018-14781, CVE-2016-5086). Pairing is entering a serial at the pump
(CVE-2016-5085): whoever sends with a paired serial is that device. The pump answers a
broadcast scan with its serial (Barnaby Jack, 2011). What the firmware still enforces (its dose
limits) it enforces for every source; the link adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE
from pumpguard.devices.insulin import (
    Command,
    CommandSource,
    InsulinPump,
)
from pumpguard.devices.sensors import CgmReading
from pumpguard.link._base import Endpoint, HandledCommand, LinkReply
from pumpguard.link.codes import LinkEventCode, Role
from pumpguard.link.energy import NRF52_CLASS, EnergyModel
from pumpguard.link.frames import (
    BROADCAST,
    MAX_FRAME_BYTES,
    FrameError,
    LegacyFrame,
    decode_legacy,
)
from pumpguard.link.medium import IFS_US, RadioMedium
from pumpguard.link.pdu import (
    AppKind,
    CgmMeasurement,
    CpResponse,
    PduError,
    PumpStatusPdu,
    decode_cgm,
    decode_command,
    decode_response,
    decode_status,
    encode_cgm,
    encode_command,
    encode_response,
    encode_status,
    request_opcode,
)
from pumpguard.security_events import SecurityEventSink

__all__ = [
    "LEGACY_RADIO_QUIRKS",
    "NO_QUIRKS",
    "LegacyCgmEndpoint",
    "LegacyPumpEndpoint",
    "LegacyQuirks",
    "LegacyRemoteEndpoint",
]

USER_POWER_CYCLE_MS = 4 * MS_PER_HOUR
"""How long a hung legacy radio stays hung before the user power-cycles the pump: the model's
choice, about the time to the next meal, when the bolus from the phone fails and the user
restarts the pump (the radio has no watchdog; nothing on the pump says the radio is dead)."""


@dataclass(frozen=True, slots=True)
class LegacyQuirks:
    """Firmware bugs of a legacy pump radio, modelled on purpose and only when configured.

    ``radio_hangs_on_bad_length``: the SweynTooth class (Garbelini et al., USENIX ATC 2020;
    CVE-2019-16336 "link layer length overflow", CVE-2019-17519 "LLID deadlock" and their
    siblings): a frame whose length field says more than the radio's buffer holds deadlocks the
    BLE SoC's radio task. Here: a frame addressed to the pump (or broadcast) that is longer than
    ``MAX_FRAME_BYTES`` hangs the pump's radio, silently, until a power cycle
    (``LegacyPumpEndpoint.power_cycle``, done by the user after ``power_cycle_after_ms``). The
    pump's firmware (delivery, limits) runs on: only the radio is dead, so the controller can
    no longer command it and therapy goes on as last programmed. Without the quirk the legacy
    codec refuses such frames and logs them, as the secure one does.
    """

    radio_hangs_on_bad_length: bool = False
    power_cycle_after_ms: int | None = USER_POWER_CYCLE_MS
    """None: the radio stays hung until ``power_cycle`` is called."""


NO_QUIRKS = LegacyQuirks()
LEGACY_RADIO_QUIRKS = LegacyQuirks(radio_hangs_on_bad_length=True)
"""What the catalogue's legacy profile runs with (``lab.linked_loop``)."""


class LegacyPumpEndpoint(Endpoint):
    """A legacy pump's radio: obeys any frame carrying its serial from a paired serial."""

    def __init__(
        self,
        medium: RadioMedium,
        pump: InsulinPump,
        *,
        address: int,
        sink: SecurityEventSink,
        name: str = "pump",
        position_m: tuple[float, float] = (0.0, 0.0),
        range_m: float = 10.0,
        energy: EnergyModel = NRF52_CLASS,
        quirks: LegacyQuirks = NO_QUIRKS,
    ) -> None:
        super().__init__(
            medium,
            name=name,
            address=address,
            role=Role.PUMP,
            sink=sink,
            position_m=position_m,
            range_m=range_m,
            energy=energy,
            device_id=pump.serial,
        )
        self.pump = pump
        self.paired: dict[int, Role] = {}
        self.handled: list[HandledCommand] = []
        """Every command handed to the firmware, in order."""
        self._ids = count(1)
        self.quirks = quirks
        self.hung_since_ms: int | None = None
        """When the radio task hung (``LegacyQuirks.radio_hangs_on_bad_length``), if it is."""
        self.hangs: list[tuple[int, int | None]] = []
        """Every hang: (start ms, end ms or None while it lasts)."""

    @property
    def radio_hung(self) -> bool:
        """The radio task is deadlocked (the power cycle, if it is due, is applied first)."""
        since = self.hung_since_ms
        after = self.quirks.power_cycle_after_ms
        if since is not None and after is not None and self.medium.clock.now_ms() >= since + after:
            self.power_cycle(since + after)
        return self.hung_since_ms is not None

    def power_cycle(self, at_ms: int | None = None) -> None:
        """The user restarts the pump (at ``at_ms``, default now): the radio task runs again.
        Pairings are kept (stored); delivery is not touched (the model's pump keeps its
        therapy across the restart)."""
        if self.hung_since_ms is not None:
            end = self.medium.clock.now_ms() if at_ms is None else at_ms
            self.hangs[-1] = (self.hung_since_ms, end)
        self.hung_since_ms = None

    def pair_by_serial(self, serial: int, role: Role) -> None:
        """The user types a remote's (or controller's, or CGM's) serial into the pump."""
        self.paired[serial] = role

    def on_frame(self, data: bytes, at_us: int) -> None:
        dst = self._dst(data)
        if dst not in (self.address, BROADCAST) or self.radio_hung:
            return
        self.meter.wake()
        self.meter.receive(len(data))
        self.meter.cpu()
        if self.quirks.radio_hangs_on_bad_length and len(data) > MAX_FRAME_BYTES:
            # SweynTooth: the length overruns the buffer and the radio task deadlocks, before
            # any check could log it. The firmware behind it is not touched.
            self.hung_since_ms = at_us // 1000
            self.hangs.append((self.hung_since_ms, None))
            return
        try:
            frame = decode_legacy(data)
        except FrameError as exc:
            self._emit(exc.code, str(exc), at_us)
            return
        reply_at = at_us + IFS_US
        if frame.kind is AppKind.SCAN:
            self._send(LegacyFrame(AppKind.SCAN_REPLY, frame.src, self.address).encode(), reply_at)
            return
        if frame.dst != self.address:
            return
        if frame.src not in self.paired:
            self._emit(
                LinkEventCode.UNKNOWN_SENDER, "frame from a serial not paired", at_us, frame.src
            )
            return
        if frame.kind in (AppKind.COMMAND_REMOTE, AppKind.COMMAND_AUTOMATED):
            self._command(frame, reply_at)
        elif frame.kind is AppKind.STATUS_REQUEST:
            pump = self.pump
            payload = encode_status(pump.state, pump.reservoir_u, bool(pump.alarms))
            self._send(
                LegacyFrame(AppKind.STATUS, frame.src, self.address, payload).encode(), reply_at
            )
        else:
            self._emit(
                LinkEventCode.PDU_INVALID, f"{frame.kind.name} is not for a pump", at_us, frame.src
            )

    def _command(self, frame: LegacyFrame, reply_at: int) -> None:
        source = (
            CommandSource.AUTOMATED
            if frame.kind is AppKind.COMMAND_AUTOMATED
            else CommandSource.REMOTE
        )
        command_id = f"legacy-{next(self._ids)}"
        try:
            request = decode_command(frame.payload, source, command_id)
        except PduError as exc:
            self._emit(LinkEventCode.PDU_INVALID, str(exc), reply_at, frame.src)
            opcode = request_opcode(frame.payload)
            response = CpResponse(opcode, exc.ids_code)
        else:
            result = self.pump.handle(request.command)
            self.handled.append(HandledCommand(reply_at, frame.src, request.command, result))
            response = CpResponse(request.opcode, result.ids_code, result.bolus_id)
        payload = encode_response(response)
        self._send(
            LegacyFrame(AppKind.COMMAND_RESPONSE, frame.src, self.address, payload).encode(),
            reply_at,
        )


class LegacyRemoteEndpoint(Endpoint):
    """A legacy phone controller or meter-remote: sends with its serial, believes any answer
    carrying the pump's serial, and takes CGM readings from any frame with a paired CGM serial."""

    def __init__(
        self,
        medium: RadioMedium,
        *,
        address: int,
        pump_address: int,
        sink: SecurityEventSink,
        role: Role = Role.CONTROLLER,
        name: str = "controller",
        position_m: tuple[float, float] = (0.0, 0.0),
        range_m: float = 10.0,
        energy: EnergyModel = NRF52_CLASS,
    ) -> None:
        super().__init__(
            medium,
            name=name,
            address=address,
            role=role,
            sink=sink,
            position_m=position_m,
            range_m=range_m,
            energy=energy,
        )
        self.pump_address = pump_address
        self.cgm_serials: set[int] = set()
        self.readings: list[CgmReading] = []
        self.found: list[int] = []
        self._reply: LinkReply | None = None
        self._status: PumpStatusPdu | None = None

    def send(self, command: Command) -> LinkReply | None:
        """Send a command and return the answer heard, or None if none came back."""
        kind = (
            AppKind.COMMAND_AUTOMATED
            if command.source is CommandSource.AUTOMATED
            else AppKind.COMMAND_REMOTE
        )
        frame = LegacyFrame(kind, self.pump_address, self.address, encode_command(command))
        self._reply = None
        self._send(frame.encode())
        self.medium.settle()
        reply, self._reply = self._reply, None
        if reply is None:
            return None
        return LinkReply(
            reply.request_opcode, reply.code, reply.bolus_id, getattr(command, "command_id", None)
        )

    def read_status(self) -> PumpStatusPdu | None:
        self._status = None
        frame = LegacyFrame(AppKind.STATUS_REQUEST, self.pump_address, self.address)
        self._send(frame.encode())
        self.medium.settle()
        return self._status

    def scan(self) -> list[int]:
        """Ask every pump in range for its serial (no serial needed)."""
        self.found = []
        self._send(LegacyFrame(AppKind.SCAN, BROADCAST, self.address).encode())
        self.medium.settle()
        return list(self.found)

    def on_frame(self, data: bytes, at_us: int) -> None:
        if self._dst(data) != self.address:
            return
        self.meter.wake()
        self.meter.receive(len(data))
        self.meter.cpu()
        try:
            frame = decode_legacy(data)
        except FrameError as exc:
            self._emit(exc.code, str(exc), at_us)
            return
        try:
            if frame.kind is AppKind.SCAN_REPLY:
                self.found.append(frame.src)
            elif frame.kind is AppKind.CGM_MEASUREMENT and frame.src in self.cgm_serials:
                m = decode_cgm(frame.payload, with_crc=False)
                self.readings.append(
                    CgmReading(at_us // 1000, float(m.glucose_mgdl), m.time_offset_min)
                )
            elif frame.src != self.pump_address:
                self._emit(
                    LinkEventCode.UNKNOWN_SENDER, "frame from an unknown serial", at_us, frame.src
                )
            elif frame.kind is AppKind.COMMAND_RESPONSE:
                r = decode_response(frame.payload)
                self._reply = LinkReply(r.request_opcode, r.code, r.bolus_id)
            elif frame.kind is AppKind.STATUS:
                self._status = decode_status(frame.payload)
        except PduError as exc:
            self._emit(LinkEventCode.PDU_INVALID, str(exc), at_us, frame.src)


class LegacyCgmEndpoint(Endpoint):
    """A legacy CGM transmitter: readings in clear to its receiver, with its serial."""

    def __init__(
        self,
        medium: RadioMedium,
        *,
        address: int,
        receiver_address: int,
        sink: SecurityEventSink,
        name: str = "cgm",
        position_m: tuple[float, float] = (0.0, 0.0),
        range_m: float = 10.0,
        energy: EnergyModel = NRF52_CLASS,
    ) -> None:
        super().__init__(
            medium,
            name=name,
            address=address,
            role=Role.CGM,
            sink=sink,
            position_m=position_m,
            range_m=range_m,
            energy=energy,
        )
        self.receiver_address = receiver_address
        self._start_ms = medium.clock.now_ms()

    def report(self, reading: CgmReading) -> None:
        offset = max(0, (reading.time_ms - self._start_ms) // MS_PER_MINUTE)
        measurement = CgmMeasurement(round(reading.glucose_mgdl), offset)
        payload = encode_cgm(measurement, with_crc=False)
        self._send(
            LegacyFrame(
                AppKind.CGM_MEASUREMENT, self.receiver_address, self.address, payload
            ).encode()
        )
        self.medium.settle()

    def on_frame(self, data: bytes, at_us: int) -> None:
        return
