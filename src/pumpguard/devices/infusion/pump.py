"""Hospital infusion pump firmware (LVP, syringe, PCA) as a deterministic state machine.

The pump is driven by commands and by a ``Clock``; between commands it integrates delivery
exactly, stopping at the instant a VTBI completes, a PCA dose ends, a reservoir empties or the
battery crosses a threshold. It never sleeps, spawns threads or opens sockets.

Safety properties the firmware keeps whatever the source of a command (and which the
state-machine tests check on random command sequences):

* nothing is delivered that a clinician did not confirm at the pump; an order from the EHR or
  a remote command only *pre-fills* a programme;
* a hard limit of the drug library a programme was checked against cannot be crossed, not even
  with an override; a soft limit needs an override reason, which is logged;
* a running programme is bound to that library for its whole life: a newer library may be
  installed at any time (never an older one, never an invalid one) and becomes the active
  library for every programme started afterwards, while the running programme, its titrations,
  its limits and its PCA lockout and hourly limit stay those of its own library until it is
  completed, cleared or replaced;
* delivery on a programme stops at its VTBI (then only KVO, never above the programmed rate);
* a PCA dose is refused inside the lockout or when it could take the rolling one-hour total
  over the hourly limit;
* a watchdog stops delivery if the delivering rate ever exceeds the pump's maximum or the
  hard-limit rate of the running entry;
* the display is computed from the delivery engine; it has no state of its own, so it cannot
  show one dose while another is delivered (the B. Braun SpaceCom attack, CVE-2021-33885);
* every change to delivery is in the append-only event log with its source, time and the
  delivery state before and after.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from pumpguard.clinical import (
    DersResult,
    DosingError,
    DrugEntry,
    DrugLibrary,
    Finding,
    LibraryError,
    PumpKind,
    UnitError,
    Verdict,
    dose_to_volume,
    flow_to_dose,
    parse_dose_unit,
    parse_library,
)
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, Clock
from pumpguard.devices.infusion._programming import evaluate
from pumpguard.devices.infusion._running import SCALE, ZERO, Infusion, PcaSession
from pumpguard.devices.infusion.alarms import Alarm, AlarmKind
from pumpguard.devices.infusion.commands import (
    AcknowledgeAlarm,
    Cancel,
    Channel,
    Clear,
    Command,
    CommandResult,
    CommandSource,
    Confirm,
    ContinuousProgramme,
    InstallLibrary,
    Pause,
    PcaDemand,
    PcaProgramme,
    PowerOff,
    PowerOn,
    Program,
    Rejection,
    Resume,
    SensorChange,
    SensorKind,
    SetCareArea,
    SetMains,
)
from pumpguard.devices.infusion.log import (
    MDC_EVT_PUMP_DELIV_COMP,
    MDC_EVT_PUMP_DELIV_START,
    MDC_EVT_PUMP_DELIV_STOP,
    MDC_EVT_PUMP_PROG_CLEARED,
    DeliverySnapshot,
    EventKind,
    EventLog,
)
from pumpguard.devices.infusion.model import PumpModel, PumpState
from pumpguard.devices.power import Battery

__all__ = ["Display", "InfusionPump", "RunningProgramme"]

_SENSOR_ALARMS = {
    SensorKind.OCCLUSION: AlarmKind.OCCLUSION,
    SensorKind.AIR_IN_LINE: AlarmKind.AIR_IN_LINE,
    SensorKind.DOOR_OPEN: AlarmKind.DOOR_OPEN,
}


@dataclass(frozen=True, slots=True)
class _Plan:
    """A checked programme waiting for confirmation at the pump."""

    programme: ContinuousProgramme | PcaProgramme
    source: CommandSource
    since_ms: int
    ders: DersResult
    running: Infusion | PcaSession
    library: DrugLibrary
    """What it was checked against: confirmation checks it against the same library only."""


@dataclass(frozen=True, slots=True)
class RunningProgramme:
    """A confirmed programme and the library it was checked against, which it keeps until it
    ends: what a clinician and the server need to see when it is not the active library."""

    channel: Channel | None
    drug: str
    programme: ContinuousProgramme | PcaProgramme
    library_id: str
    library_version: int
    care_area: str
    entry: DrugEntry | None
    rate_ml_h: Decimal
    max_rate_ml_h: Decimal


@dataclass(frozen=True, slots=True)
class Display:
    """What the pump's screen shows, computed from the delivery engine at the instant asked."""

    state: PumpState
    care_area: str | None
    library_version: int | None
    drug: str | None
    channel: Channel | None
    rate_ml_h: Decimal
    dose: Decimal | None
    dose_unit: str | None
    volume_infused_ml: Decimal
    vtbi_remaining_ml: Decimal | None
    alarms: tuple[AlarmKind, ...]
    pending: str | None
    battery_percent: int
    programmes: tuple[RunningProgramme, ...] = ()

    def lines(self) -> list[str]:
        head = (
            f"{self.state.value.upper()}  {self.care_area or '-'}  battery {self.battery_percent}%"
        )
        out = [head]
        if self.drug is not None:
            dose = "" if self.dose is None else f"  {_significant(self.dose)} {self.dose_unit}"
            out.append(f"{self.drug}: {self.rate_ml_h:f} mL/h{dose}")
        out.append(f"infused {self.volume_infused_ml.quantize(Decimal('0.01')):f} mL")
        for running in self.programmes:
            if running.library_version != self.library_version:
                out.append(
                    f"{running.drug} runs on library v{running.library_version}; "
                    f"v{self.library_version} applies to new programmes"
                )
        if self.pending:
            out.append(f"pending: {self.pending}")
        out.extend(f"ALARM {a.priority.name}: {a.text}" for a in self.alarms)
        return out


class InfusionPump:
    """One pump's firmware. Feed it commands with ``handle``; read it with ``display``."""

    def __init__(
        self,
        kind: PumpKind,
        clock: Clock,
        *,
        serial: str = "PUMP-0001",
        library: DrugLibrary | None = None,
        care_area: str | None = None,
        model: PumpModel | None = None,
        self_test_faults: tuple[str, ...] = (),
        mains: bool = True,
    ) -> None:
        self.model = model or PumpModel.for_kind(kind)
        self.serial = serial
        self.log = EventLog()
        self._clock = clock
        self._t = clock.now_ms()
        self._library = library
        self._care_area = care_area
        self._faults = self_test_faults
        self._powered = False
        self._failed = False
        self._paused = False
        self._paused_since = 0
        self._primary: Infusion | None = None
        self._secondary: Infusion | None = None
        self._pca: PcaSession | None = None
        self._kvo = False
        self._pending: _Plan | None = None
        self._sensors: set[SensorKind] = set()
        self._alarms: dict[AlarmKind, Alarm] = {}
        self._volume = ZERO
        self.battery = Battery(self.model.battery_capacity_mah, mains=mains)

    # ------------------------------------------------------------------ reading

    @property
    def kind(self) -> PumpKind:
        return self.model.kind

    @property
    def library(self) -> DrugLibrary | None:
        return self._library

    @property
    def care_area(self) -> str | None:
        return self._care_area

    @property
    def alarms(self) -> tuple[Alarm, ...]:
        return tuple(sorted(self._alarms.values(), key=lambda a: (-a.kind.priority, a.since_ms)))

    @property
    def state(self) -> PumpState:
        self.tick()
        return self._state()

    @property
    def delivering_rate_ml_h(self) -> Decimal:
        """The rate the mechanism is driven at right now: the one source of truth."""
        self.tick()
        return self._rate()

    @property
    def volume_infused_ml(self) -> Decimal:
        self.tick()
        return self._volume / SCALE

    def _state(self) -> PumpState:
        if not self._powered:
            return PumpState.OFF
        if self._failed:
            return PumpState.FAILED
        if self._primary is None and self._pca is None:
            return PumpState.PROGRAMMING if self._pending is not None else PumpState.IDLE
        if self._paused:
            return PumpState.PAUSED
        return PumpState.KVO if self._in_kvo() else PumpState.INFUSING

    def _rate(self) -> Decimal:
        if self._state() not in (PumpState.INFUSING, PumpState.KVO):
            return ZERO
        if self._pca is not None:
            bolus = self.model.pca_bolus_rate_ml_h if self._pca.bolus_active else ZERO
            return self._pca.basal_rate_ml_h + bolus
        if self._secondary is not None:
            return self._secondary.rate_ml_h
        assert self._primary is not None
        if self._kvo:
            return min(self.model.kvo_rate_ml_h, self._primary.rate_ml_h)
        return self._primary.rate_ml_h

    def _in_kvo(self) -> bool:
        """KVO belongs to a completed primary; a secondary or PCA never runs open-ended."""
        return self._kvo and self._secondary is None and self._pca is None

    @property
    def pending_verdict(self) -> Verdict | None:
        return None if self._pending is None else self._pending.ders.verdict

    @property
    def awaiting_confirmation(self) -> bool:
        """A programme (new, titration or secondary) is pre-filled and waits at the pump: the
        update client must not install a library under it (see ``updates.can_apply``)."""
        return self._pending is not None

    def running_programmes(self) -> tuple[RunningProgramme, ...]:
        """Every confirmed programme, paused or not, with the library it runs under."""
        self.tick()
        return self._running_views()

    def _running_views(self) -> tuple[RunningProgramme, ...]:
        running = (self._primary, self._secondary, self._pca)
        return tuple(_running_view(r) for r in running if r is not None)

    def display(self) -> Display:
        """The screen, derived from the delivery engine after catching up with the clock."""
        self.tick()
        rate = self._rate()
        drug, channel, dose, unit, remaining = None, None, None, None, None
        active = self._active()
        if isinstance(active, Infusion):
            drug, channel = active.programme.drug, active.programme.channel
            unit = str(active.unit)
            remaining = max(ZERO, active.remaining_ml)
            dose = flow_to_dose(rate, active.unit, active.concentration, active.programme.weight_kg)
        elif isinstance(active, PcaSession):
            drug, channel = active.programme.drug, None
            unit = str(active.rate_unit)
            remaining = max(ZERO, active.remaining_ml)
            dose = flow_to_dose(
                rate, active.rate_unit, active.concentration, active.programme.weight_kg
            )
        pending = None
        if self._pending is not None:
            pending = _describe(self._pending)
        return Display(
            self._state(),
            self._care_area,
            None if self._library is None else self._library.version,
            drug,
            channel,
            rate,
            dose,
            unit,
            self._volume / SCALE,
            remaining,
            tuple(a.kind for a in self.alarms),
            pending,
            int(self.battery.fraction * 100),
            self._running_views(),
        )

    # ------------------------------------------------------------------ driving

    def tick(self) -> None:
        """Catch up with the clock: integrate delivery and fire timed events up to now."""
        now = self._clock.now_ms()
        while self._t < now:
            until = min(now, self._next_event_ms())
            self._deliver(until - self._t)
            self._t = until
            self._timed_events()

    def handle(self, command: Command) -> CommandResult:
        """Apply one command at the clock's current time and say what became of it."""
        self.tick()
        result = self._dispatch(command)
        if not result.accepted:
            self.log.append(
                self._t,
                EventKind.COMMAND_REJECTED,
                command.source,
                f"{type(command).__name__}: {result.message}",
            )
        return result

    def _dispatch(self, command: Command) -> CommandResult:
        match command:
            case PowerOn():
                return self._power_on(command)
            case SensorChange():
                return self._sensor(command)
            case SetMains():
                return self._mains(command)
        if not self._powered:
            return _refuse(Rejection.POWERED_OFF, "the pump is off")
        if self._failed and not isinstance(command, PowerOff):
            return _refuse(Rejection.SELF_TEST_FAILED, "the pump failed its self test")
        match command:
            case PowerOff():
                return self._power_off(command)
            case SetCareArea():
                return self._set_care_area(command)
            case Program():
                return self._program(command)
            case Confirm():
                return self._confirm(command)
            case Cancel():
                return self._cancel(command)
            case Pause():
                return self._pause(command)
            case Resume():
                return self._resume(command)
            case PcaDemand():
                return self._demand(command)
            case AcknowledgeAlarm():
                return self._acknowledge(command)
            case InstallLibrary():
                return self._install(command)
            case Clear():
                return self._clear(command)
        raise TypeError(f"not a pump command: {command!r}")  # pragma: no cover

    # ------------------------------------------------------------------ delivery engine

    def _active(self) -> Infusion | PcaSession | None:
        if self._pca is not None:
            return self._pca
        return self._secondary if self._secondary is not None else self._primary

    def _snapshot(self) -> DeliverySnapshot:
        active = self._active()
        remaining = ZERO if active is None else max(ZERO, active.remaining_ml)
        channel = active.programme.channel if isinstance(active, Infusion) else None
        return DeliverySnapshot(
            self._state().value,
            None if channel is None else channel.value,
            None if active is None else active.programme.drug,
            self._rate(),
            self._volume / SCALE,
            remaining,
        )

    @contextmanager
    def _changing(
        self, kind: EventKind, source: CommandSource, detail: str = "", code: int | None = None
    ) -> Iterator[None]:
        before = self._snapshot()
        yield
        self.log.append(
            self._t, kind, source, detail, before=before, after=self._snapshot(), mdc_code=code
        )

    def _load_ma(self) -> Decimal:
        return self.model.infusing_draw_ma if self._rate() > 0 else self.model.idle_draw_ma

    def _next_event_ms(self) -> int:
        candidates = [self._clock.now_ms()]
        rate = self._rate()
        active = self._active()
        if rate > 0 and active is not None:
            if isinstance(active, PcaSession):
                if active.bolus_active:
                    bolus_rate = self.model.pca_bolus_rate_ml_h
                    candidates.append(self._t + _ms_for(active.bolus_left, bolus_rate))
                candidates.append(self._t + _ms_for(active.remaining, rate))
            elif not self._in_kvo():
                candidates.append(self._t + _ms_for(active.remaining, rate))
        if self._powered:
            load = self._load_ma()
            for level in (self._low_battery_mah(), ZERO):
                ms = self.battery.ms_until(level, load)
                if ms is not None:
                    candidates.append(self._t + ms)
        if self._pending is not None and AlarmKind.UNCONFIRMED_PROGRAMME not in self._alarms:
            candidates.append(self._pending.since_ms + self.model.unconfirmed_timeout_ms)
        if self._state() is PumpState.PAUSED and AlarmKind.PAUSED_TOO_LONG not in self._alarms:
            candidates.append(self._paused_since + self.model.unconfirmed_timeout_ms)
        if isinstance(active, PcaSession) and rate > 0 and not self._reservoir_low(active):
            spare = active.remaining - active.demand_volume_ml * SCALE
            candidates.append(self._t + _ms_for(spare, rate) + 1)
        return max(self._t + 1, min(candidates))

    def _deliver(self, dt_ms: int) -> None:
        if self._powered:
            self.battery.advance(dt_ms, self._load_ma())
        rate = self._rate()
        if rate <= 0:
            return
        if rate > self._rate_ceiling():
            self._watchdog_stop(rate)
            return
        volume = rate * dt_ms
        active = self._active()
        if isinstance(active, PcaSession):
            bolus = ZERO
            if active.bolus_active:
                bolus = min(active.bolus_left, self.model.pca_bolus_rate_ml_h * dt_ms)
            volume = min(bolus + active.basal_rate_ml_h * dt_ms, active.remaining)
            active.bolus_left -= bolus
            active.used += volume
        elif isinstance(active, Infusion) and not self._in_kvo():
            volume = min(volume, active.remaining)
            active.infused += volume
        self._volume += volume

    def _rate_ceiling(self) -> Decimal:
        active = self._active()
        ceiling = self.model.max_rate_ml_h
        if active is not None:
            ceiling = min(ceiling, active.max_rate_ml_h)
        return ceiling

    def _watchdog_stop(self, rate: Decimal) -> None:
        with self._changing(
            EventKind.DELIVERY_STOP,
            CommandSource.SYSTEM,
            f"watchdog: rate {rate} mL/h above ceiling {self._rate_ceiling()} mL/h",
            MDC_EVT_PUMP_DELIV_STOP,
        ):
            self._failed = True
        self._raise(AlarmKind.SELF_TEST_FAILED, CommandSource.SYSTEM)

    def _timed_events(self) -> None:
        active = self._active()
        if isinstance(active, PcaSession) and self._state() is PumpState.INFUSING:
            if active.bolus_active and active.bolus_left <= 0:
                with self._changing(
                    EventKind.DELIVERY_CHANGE, CommandSource.SYSTEM, "PCA dose delivered"
                ):
                    active.bolus_active = False
            if active.remaining <= 0:
                self._stop(AlarmKind.RESERVOIR_EMPTY)
            elif self._reservoir_low(active):
                self._raise(AlarmKind.RESERVOIR_LOW, CommandSource.SYSTEM)
        elif (
            isinstance(active, Infusion)
            and self._state() is PumpState.INFUSING
            and active.remaining <= 0
        ):
            self._complete(active)
        self._battery_events()
        if (
            self._pending is not None
            and AlarmKind.UNCONFIRMED_PROGRAMME not in self._alarms
            and self._t >= self._pending.since_ms + self.model.unconfirmed_timeout_ms
        ):
            self._raise(AlarmKind.UNCONFIRMED_PROGRAMME, CommandSource.SYSTEM)
        if (
            self._state() is PumpState.PAUSED
            and self._t >= self._paused_since + self.model.unconfirmed_timeout_ms
        ):
            self._raise(AlarmKind.PAUSED_TOO_LONG, CommandSource.SYSTEM)

    @staticmethod
    def _reservoir_low(pca: PcaSession) -> bool:
        """Less than one demand dose left: the patient's next press will be refused."""
        return pca.remaining < pca.demand_volume_ml * SCALE

    def _complete(self, infusion: Infusion) -> None:
        if infusion is self._secondary:
            with self._changing(
                EventKind.DELIVERY_COMPLETE,
                CommandSource.SYSTEM,
                "secondary VTBI complete; primary resumes",
                MDC_EVT_PUMP_DELIV_COMP,
            ):
                self._secondary = None
            self._raise(AlarmKind.SECONDARY_COMPLETE, CommandSource.SYSTEM)
            if self._primary is not None and self._primary.remaining_ml <= 0:
                self._complete(self._primary)
            return
        with self._changing(
            EventKind.DELIVERY_COMPLETE,
            CommandSource.SYSTEM,
            "VTBI complete; KVO" if self.model.kvo_rate_ml_h > 0 else "VTBI complete",
            MDC_EVT_PUMP_DELIV_COMP,
        ):
            self._kvo = True
        self._raise(AlarmKind.VTBI_COMPLETE, CommandSource.SYSTEM)

    def _battery_events(self) -> None:
        if not self._powered or self.battery.mains:
            return
        if self.battery.at_or_below(ZERO):
            self._stop(AlarmKind.BATTERY_DEPLETED)
        elif self.battery.at_or_below(self._low_battery_mah()):
            self._raise(AlarmKind.BATTERY_LOW, CommandSource.SYSTEM)

    def _low_battery_mah(self) -> Decimal:
        """Low battery: less than ``low_battery_minutes`` of infusing left."""
        return self.model.infusing_draw_ma * self.model.low_battery_minutes / 60

    # ------------------------------------------------------------------ alarms

    def _raise(self, kind: AlarmKind, source: CommandSource) -> None:
        if kind in self._alarms:
            return
        self._alarms[kind] = Alarm(kind, self._t)
        self.log.append(
            self._t,
            EventKind.ALARM_ON,
            source,
            f"{kind.priority.name} {kind.text}",
            mdc_code=kind.mdc_code,
        )

    def _stop(self, kind: AlarmKind) -> None:
        """A stopping alarm: halt delivery now (fail safe) and alarm."""
        if self._state() in (PumpState.INFUSING, PumpState.KVO):
            with self._changing(
                EventKind.DELIVERY_STOP,
                CommandSource.SYSTEM,
                f"stopped by {kind.text} alarm",
                MDC_EVT_PUMP_DELIV_STOP,
            ):
                self._pause_now()
                self._drop_bolus()
        self._raise(kind, CommandSource.SYSTEM)

    def _pause_now(self) -> None:
        self._paused = True
        self._paused_since = self._t

    def _drop_bolus(self) -> None:
        """A stopped PCA dose is abandoned, never resumed: the patient can ask again."""
        if self._pca is not None:
            self._pca.bolus_active = False
            self._pca.bolus_left = ZERO

    def _condition_present(self, kind: AlarmKind) -> bool:
        sensor = next((s for s, a in _SENSOR_ALARMS.items() if a is kind), None)
        if sensor is not None:
            return sensor in self._sensors
        if kind is AlarmKind.BATTERY_DEPLETED:
            return self.battery.at_or_below(ZERO) and not self.battery.mains
        if kind is AlarmKind.BATTERY_LOW:
            return self.battery.at_or_below(self._low_battery_mah()) and not self.battery.mains
        if kind is AlarmKind.UNCONFIRMED_PROGRAMME:
            return self._pending is not None
        if kind is AlarmKind.RESERVOIR_EMPTY:
            return self._pca is not None and self._pca.remaining <= 0
        if kind is AlarmKind.RESERVOIR_LOW:
            return self._pca is not None and self._reservoir_low(self._pca)
        if kind is AlarmKind.PAUSED_TOO_LONG:
            return self._state() is PumpState.PAUSED
        if kind is AlarmKind.SELF_TEST_FAILED:
            return self._failed
        return False

    def _stopping_alarm(self) -> AlarmKind | None:
        """What forbids delivery now: a sensor condition present or a latched stopping alarm."""
        present = next((_SENSOR_ALARMS[s] for s in sorted(self._sensors)), None)
        return present or next((k for k in self._alarms if k.stops_delivery), None)

    # ------------------------------------------------------------------ commands

    def _power_on(self, command: PowerOn) -> CommandResult:
        if self._powered:
            return _refuse(Rejection.WRONG_STATE, "the pump is already on")
        if command.source is not CommandSource.KEYPAD:
            return _refuse(Rejection.NOT_AT_PUMP, "the pump is switched on at the pump only")
        self._powered = True
        self._failed = bool(self._faults)
        self.log.append(self._t, EventKind.POWER_ON, command.source)
        detail = "passed" if not self._faults else "failed: " + ", ".join(self._faults)
        self.log.append(self._t, EventKind.SELF_TEST, CommandSource.SYSTEM, detail)
        if self._failed:
            self._raise(AlarmKind.SELF_TEST_FAILED, CommandSource.SYSTEM)
            return _refuse(Rejection.SELF_TEST_FAILED, f"power-on self test {detail}")
        for sensor in sorted(self._sensors):
            self._raise(_SENSOR_ALARMS[sensor], CommandSource.SYSTEM)
        self._battery_events()
        return _ok("self test passed")

    def _power_off(self, command: PowerOff) -> CommandResult:
        if command.source is not CommandSource.KEYPAD:
            return _refuse(Rejection.NOT_AT_PUMP, "the pump is switched off at the pump only")
        if self._state() in (PumpState.INFUSING, PumpState.KVO):
            return _refuse(Rejection.INFUSING, "stop the infusion before switching off")
        with self._changing(EventKind.POWER_OFF, command.source):
            self._powered = False
            self._failed = False
            self._paused = False
            self._kvo = False
            self._primary = self._secondary = self._pca = None
            self._pending = None
            self._alarms.clear()
        return _ok("switched off")

    def _set_care_area(self, command: SetCareArea) -> CommandResult:
        if command.source is not CommandSource.KEYPAD:
            return _refuse(Rejection.NOT_AT_PUMP, "the care area is chosen at the pump only")
        if self._library is None:
            return _refuse(Rejection.NO_LIBRARY, "no drug library installed")
        if self._active() is not None or self._pending is not None:
            return _refuse(Rejection.INFUSING, "the care area cannot change during a programme")
        area = self._library.care_area(command.care_area)
        if area is None:
            known = ", ".join(a.name for a in self._library.care_areas)
            return _refuse(
                Rejection.INVALID,
                f"care area {command.care_area!r} not in library (known: {known})",
            )
        self._care_area = area.name
        self.log.append(self._t, EventKind.CARE_AREA, command.source, area.name)
        return _ok(f"care area {area.name}")

    def _program(self, command: Program) -> CommandResult:
        if command.source in (CommandSource.PATIENT, CommandSource.SYSTEM):
            return _refuse(Rejection.NOT_AT_PUMP, f"a {command.source} cannot program the pump")
        if self._library is None:
            return _refuse(Rejection.NO_LIBRARY, "no drug library installed")
        programme = command.programme
        if self._care_area is None and self._titrated(programme) is None:
            return _refuse(Rejection.NO_CARE_AREA, "choose a care area first")
        pending = self._pending
        if (
            pending is not None
            and pending.source is not command.source
            and command.source is not CommandSource.KEYPAD
        ):
            return _refuse(
                Rejection.WRONG_STATE,
                f"a {pending.source} programme awaits confirmation at the pump; "
                "only the clinician there may replace it",
            )
        refusal = self._programme_fits(programme)
        if refusal is not None:
            return refusal
        try:
            ders, running = self._evaluate_here(programme)
        except UnitError as exc:
            ders, running = DersResult((Finding("unit", Verdict.UNITS_MISMATCH, str(exc)),)), None
        except DosingError as exc:
            return _refuse(Rejection.INVALID, str(exc))
        if ders.verdict.blocks or running is None:
            return CommandResult(False, ders.message, Rejection.DERS_BLOCKED, ders)
        refusal = self._titration_refusal(running)
        if refusal is not None:
            return refusal
        if self._pending is not None:
            self.log.append(self._t, EventKind.PROGRAMME_CANCELLED, command.source, "replaced")
        self._pending = _Plan(programme, command.source, self._t, ders, running, running.library)
        self._alarms.pop(AlarmKind.UNCONFIRMED_PROGRAMME, None)
        self.log.append(
            self._t,
            EventKind.PROGRAMMED,
            command.source,
            f"{programme.drug}: {ders.verdict} ({ders.message}); awaiting confirmation at the pump",
        )
        return CommandResult(True, f"pre-filled, {ders.verdict}: confirm at the pump", None, ders)

    def _programme_fits(
        self, programme: ContinuousProgramme | PcaProgramme
    ) -> CommandResult | None:
        broken = [
            name
            for name in programme.__dataclass_fields__
            if isinstance(value := getattr(programme, name), Decimal) and not value.is_finite()
        ]
        if broken:
            return _refuse(Rejection.INVALID, f"{', '.join(broken)} must be finite numbers")
        if programme.vtbi_ml <= 0 or programme.vtbi_ml > self.model.max_vtbi_ml:
            return _refuse(
                Rejection.INVALID,
                f"VTBI {programme.vtbi_ml} mL outside 0-{self.model.max_vtbi_ml} mL for this pump",
            )
        if programme.weight_kg is not None and programme.weight_kg <= 0:
            return _refuse(Rejection.INVALID, "weight must be positive")
        if isinstance(programme, PcaProgramme):
            if self.kind is not PumpKind.PCA:
                return _refuse(Rejection.UNSUPPORTED, f"a {self.kind} pump cannot run PCA")
            if self._active() is not None:
                return _refuse(Rejection.INFUSING, "a PCA programme is already running")
            numbers = (programme.demand_dose, programme.lockout_min, programme.hourly_limit)
            if min(numbers) <= 0 or programme.basal_rate < 0 or programme.loading_dose < 0:
                return _refuse(Rejection.INVALID, "PCA doses, lockout and limit must be positive")
            return None
        if self.kind is PumpKind.PCA:
            return _refuse(Rejection.UNSUPPORTED, "a PCA pump runs PCA programmes only")
        if programme.dose <= 0:
            return _refuse(Rejection.INVALID, "the dose must be positive")
        if programme.channel is Channel.SECONDARY:
            if self.kind is not PumpKind.LVP:
                return _refuse(Rejection.UNSUPPORTED, "only a large-volume pump has a secondary")
            if self._primary is None or self._kvo or self._secondary is not None:
                return _refuse(Rejection.WRONG_STATE, "a secondary needs a running primary")
        elif self._primary is not None and self._secondary is None:
            if self._primary.programme.drug.casefold() != programme.drug.casefold():
                return _refuse(
                    Rejection.INFUSING, f"{self._primary.programme.drug} is running on this channel"
                )
        elif self._secondary is not None:
            return _refuse(Rejection.INFUSING, "a secondary infusion is running")
        return None

    def _titration_refusal(self, running: Infusion | PcaSession) -> CommandResult | None:
        """A change to the running primary keeps its bag (entry and concentration) and weight:
        anything else is a new infusion, which needs the channel cleared first."""
        current = self._primary
        if not isinstance(running, Infusion) or current is None or self._secondary is not None:
            return None
        if running.programme.channel is not Channel.PRIMARY:
            return None
        same_bag = (
            running.entry is not None
            and current.entry is not None
            and running.entry.code == current.entry.code
            and running.concentration == current.concentration
        )
        if same_bag and running.programme.weight_kg == current.programme.weight_kg:
            return None
        return _refuse(
            Rejection.INFUSING,
            "a titration keeps the running drug, concentration and weight; "
            "clear the channel to start another bag",
        )

    def _titrated(self, programme: ContinuousProgramme | PcaProgramme) -> Infusion | None:
        """The running primary this programme would titrate, if it is one: a primary programme
        while the primary runs (paused or not) with no secondary and its VTBI not complete.
        After completion (KVO) the same drug is a new bag, checked like any new programme."""
        if not isinstance(programme, ContinuousProgramme) or programme.channel is Channel.SECONDARY:
            return None
        if self._primary is None or self._secondary is not None or self._kvo:
            return None
        return self._primary

    def _checked_against(
        self, programme: ContinuousProgramme | PcaProgramme
    ) -> tuple[DrugLibrary, str | None]:
        """A titration is checked against its programme's own library and care area; every
        new programme (new bag, secondary, PCA) against the active library."""
        titrated = self._titrated(programme)
        if titrated is not None:
            return titrated.library, titrated.care_area
        assert self._library is not None
        return self._library, self._care_area

    def _evaluate_here(
        self, programme: ContinuousProgramme | PcaProgramme
    ) -> tuple[DersResult, Infusion | PcaSession | None]:
        library, area = self._checked_against(programme)
        assert area is not None
        return evaluate(self.model, library, area, programme)

    def _confirm(self, command: Confirm) -> CommandResult:
        if command.source is not CommandSource.KEYPAD:
            return _refuse(
                Rejection.NOT_AT_PUMP, "a programme is confirmed by a clinician at the pump only"
            )
        plan = self._pending
        if plan is None:
            return _refuse(Rejection.NOTHING_PENDING, "no programme awaits confirmation")
        misfit = self._programme_fits(plan.programme)
        if misfit is not None:
            return misfit
        library, _ = self._checked_against(plan.programme)
        if library is not plan.library:
            self._pending = None
            self._alarms.pop(AlarmKind.UNCONFIRMED_PROGRAMME, None)
            message = (
                f"{plan.programme.drug} was checked against library v{plan.library.version}, "
                f"which no longer applies to it (v{library.version} does): programme it again"
            )
            self.log.append(self._t, EventKind.PROGRAMME_CANCELLED, command.source, message)
            return _refuse(Rejection.WRONG_STATE, message)
        ders, running = self._evaluate_here(plan.programme)
        if ders.verdict.blocks or running is None:
            self._pending = None
            return CommandResult(False, ders.message, Rejection.DERS_BLOCKED, ders)
        refusal = self._titration_refusal(running)
        if refusal is not None:
            return refusal
        reason = (command.override_reason or "").strip()
        if ders.verdict.is_soft and not reason:
            return CommandResult(
                False,
                f"{ders.message}: a soft-limit override needs a reason",
                Rejection.OVERRIDE_REASON_REQUIRED,
                ders,
            )
        alarm = self._stopping_alarm()
        if alarm is not None:
            return _refuse(Rejection.ALARM_ACTIVE, f"clear the {alarm.text} alarm first")
        if ders.verdict.is_soft:
            self.log.append(
                self._t, EventKind.OVERRIDE, command.source, f"{ders.message}; reason: {reason}"
            )
        starting = self._active() is None
        kind = EventKind.DELIVERY_START if starting or self._paused else EventKind.DELIVERY_CHANGE
        detail = f"{plan.programme.drug} confirmed at the pump ({plan.source} programme)"
        if plan.programme.order_id:
            detail += f", order {plan.programme.order_id}"
        with self._changing(kind, plan.source, detail, MDC_EVT_PUMP_DELIV_START):
            self._pending = None
            self._paused = False
            if isinstance(running, PcaSession):
                self._pca = running
                if running.programme.loading_dose > 0:
                    self._grant(running, running.programme.loading_dose)
            elif running.programme.channel is Channel.SECONDARY:
                self._secondary = running
            else:
                self._primary = running
                self._kvo = False
            for done in (
                AlarmKind.UNCONFIRMED_PROGRAMME,
                AlarmKind.VTBI_COMPLETE,
                AlarmKind.PAUSED_TOO_LONG,
            ):
                self._alarms.pop(done, None)
        return CommandResult(True, f"{kind.value}: {detail}", None, ders)

    def _cancel(self, command: Cancel) -> CommandResult:
        if command.source in (CommandSource.PATIENT, CommandSource.SYSTEM):
            return _refuse(Rejection.NOT_AT_PUMP, f"a {command.source} cannot cancel programmes")
        if self._pending is None:
            return _refuse(Rejection.NOTHING_PENDING, "no programme awaits confirmation")
        keyed_in = self._pending.source is CommandSource.KEYPAD
        if keyed_in and command.source is not CommandSource.KEYPAD:
            return _refuse(
                Rejection.NOT_AT_PUMP, "a programme keyed in at the pump is cancelled there only"
            )
        drug = self._pending.programme.drug
        self._pending = None
        self._alarms.pop(AlarmKind.UNCONFIRMED_PROGRAMME, None)
        self.log.append(self._t, EventKind.PROGRAMME_CANCELLED, command.source, drug)
        return _ok(f"{drug} programme discarded")

    def _pause(self, command: Pause) -> CommandResult:
        if command.source is CommandSource.PATIENT:
            return _refuse(Rejection.NOT_AT_PUMP, "the patient cannot stop the infusion")
        if self._state() not in (PumpState.INFUSING, PumpState.KVO):
            return _refuse(Rejection.WRONG_STATE, f"nothing to pause ({self._state()})")
        with self._changing(
            EventKind.DELIVERY_STOP, command.source, "paused", MDC_EVT_PUMP_DELIV_STOP
        ):
            self._pause_now()
            self._drop_bolus()
        return _ok("paused")

    def _resume(self, command: Resume) -> CommandResult:
        if command.source is not CommandSource.KEYPAD:
            return _refuse(Rejection.NOT_AT_PUMP, "delivery is restarted at the pump only")
        if self._state() is not PumpState.PAUSED:
            return _refuse(Rejection.WRONG_STATE, f"nothing to resume ({self._state()})")
        alarm = self._stopping_alarm()
        if alarm is not None:
            return _refuse(Rejection.ALARM_ACTIVE, f"clear the {alarm.text} alarm first")
        with self._changing(
            EventKind.DELIVERY_START, command.source, "resumed", MDC_EVT_PUMP_DELIV_START
        ):
            self._paused = False
            self._alarms.pop(AlarmKind.PAUSED_TOO_LONG, None)
        return _ok("resumed")

    def _clear(self, command: Clear) -> CommandResult:
        if command.source is not CommandSource.KEYPAD:
            return _refuse(Rejection.NOT_AT_PUMP, "a programme is cleared at the pump only")
        if self._state() not in (PumpState.PAUSED, PumpState.KVO):
            return _refuse(
                Rejection.WRONG_STATE, f"pause the infusion before clearing ({self._state()})"
            )
        with self._changing(
            EventKind.PROGRAMME_CLEARED,
            command.source,
            "programme cleared",
            MDC_EVT_PUMP_PROG_CLEARED,
        ):
            self._primary = self._secondary = self._pca = None
            self._paused = False
            self._kvo = False
            for done in (
                AlarmKind.VTBI_COMPLETE,
                AlarmKind.SECONDARY_COMPLETE,
                AlarmKind.PAUSED_TOO_LONG,
                AlarmKind.RESERVOIR_LOW,
                AlarmKind.RESERVOIR_EMPTY,
            ):
                self._alarms.pop(done, None)
        return _ok("programme cleared")

    def _demand(self, command: PcaDemand) -> CommandResult:
        if command.source is not CommandSource.PATIENT:
            return _refuse(Rejection.NOT_AT_PUMP, "a PCA dose is asked for by the patient's button")
        pca = self._pca
        if pca is None or self._state() is not PumpState.INFUSING:
            return _refuse(Rejection.WRONG_STATE, "no PCA programme is running")
        refusal = self._demand_refusal(pca)
        if refusal is not None:
            self.log.append(self._t, EventKind.PCA_DENIED, command.source, refusal.message)
            return refusal
        with self._changing(
            EventKind.PCA_DOSE,
            command.source,
            f"demand {pca.programme.demand_dose} {pca.programme.dose_unit}",
        ):
            self._grant(pca, pca.programme.demand_dose)
        return _ok("PCA dose started")

    def _demand_refusal(self, pca: PcaSession) -> CommandResult | None:
        programme = pca.programme
        if pca.bolus_active:
            return _refuse(Rejection.LOCKOUT, "a PCA dose is being delivered")
        if pca.grants:
            since = self._t - pca.grants[-1][0]
            lockout = programme.lockout_min * MS_PER_MINUTE
            if since < lockout:
                return _refuse(
                    Rejection.LOCKOUT, f"lockout: {math.ceil((lockout - since) / 1000)} s left"
                )
        window = sum((d for t, d in pca.grants if t > self._t - MS_PER_HOUR), ZERO)
        if window + programme.demand_dose + programme.basal_rate > programme.hourly_limit:
            return _refuse(Rejection.HOURLY_LIMIT, "hourly limit reached")
        if pca.remaining < pca.demand_volume_ml * SCALE:
            return _refuse(Rejection.RESERVOIR_EMPTY, "not enough left in the reservoir")
        return None

    def _grant(self, pca: PcaSession, dose: Decimal) -> None:
        unit = parse_dose_unit(pca.programme.dose_unit)
        volume = dose_to_volume(
            dose, unit, pca.concentration, pca.programme.weight_kg, self.model.volume_step
        )
        pca.grants.append((self._t, dose))
        pca.bolus_left = min(volume * SCALE, pca.remaining)
        pca.bolus_active = pca.bolus_left > 0

    def _acknowledge(self, command: AcknowledgeAlarm) -> CommandResult:
        if command.source is not CommandSource.KEYPAD:
            return _refuse(Rejection.NOT_AT_PUMP, "alarms are acknowledged at the pump only")
        if not self._alarms:
            return _refuse(Rejection.NOTHING_PENDING, "no active alarm")
        cleared = []
        for kind, alarm in list(self._alarms.items()):
            if self._condition_present(kind):
                self._alarms[kind] = Alarm(kind, alarm.since_ms, acknowledged=True)
            else:
                del self._alarms[kind]
                cleared.append(kind.text)
        self.log.append(
            self._t,
            EventKind.ALARM_ACK,
            command.source,
            "cleared: " + (", ".join(cleared) or "none"),
        )
        return _ok("acknowledged")

    def _sensor(self, command: SensorChange) -> CommandResult:
        if command.source is not CommandSource.SYSTEM:
            return _refuse(Rejection.INVALID, "sensor conditions come from the pump's own sensors")
        if command.active:
            self._sensors.add(command.kind)
        else:
            self._sensors.discard(command.kind)
        self.log.append(
            self._t,
            EventKind.SENSOR,
            command.source,
            f"{command.kind} {'on' if command.active else 'off'}",
        )
        if command.active and self._powered and not self._failed:
            self._stop(_SENSOR_ALARMS[command.kind])
        return _ok(f"{command.kind} {'detected' if command.active else 'cleared'}")

    def _mains(self, command: SetMains) -> CommandResult:
        if command.source is not CommandSource.SYSTEM:
            return _refuse(Rejection.INVALID, "mains power is sensed by the pump itself")
        self.battery.mains = command.connected
        self.log.append(
            self._t,
            EventKind.MAINS,
            command.source,
            "connected" if command.connected else "on battery",
        )
        if self._powered:
            self._battery_events()
        return _ok("mains " + ("connected" if command.connected else "disconnected"))

    def _install(self, command: InstallLibrary) -> CommandResult:
        new = command.library
        if command.source not in (CommandSource.SYSTEM, CommandSource.KEYPAD):
            return _refuse(
                Rejection.NOT_AT_PUMP,
                "a drug library is installed by the pump's update client or at the pump only",
            )
        problem = _invalid(new)
        if problem is not None:
            self.log.append(
                self._t,
                EventKind.LIBRARY_REFUSED,
                command.source,
                f"{new.library_id} v{new.version}: invalid ({problem})",
            )
            return _refuse(Rejection.INVALID, f"the library is invalid: {problem}")
        installed = self._library
        if installed is not None and _rolls_back(installed, new):
            self.log.append(
                self._t,
                EventKind.LIBRARY_REFUSED,
                command.source,
                f"{new.library_id} v{new.version}: installed is v{installed.version}",
            )
            return _refuse(
                Rejection.DOWNGRADE,
                f"v{new.version} cannot replace installed v{installed.version} (no rollback)",
            )
        if self._pending is not None:
            self.log.append(
                self._t,
                EventKind.PROGRAMME_CANCELLED,
                command.source,
                f"{self._pending.programme.drug}: discarded, checked against the replaced library",
            )
            self._pending = None
            self._alarms.pop(AlarmKind.UNCONFIRMED_PROGRAMME, None)
        old = self._library
        was = "none" if old is None else f"v{old.version}"
        kept = self._running_views()
        detail = f"{new.library_id} {was} -> v{new.version}, active for new programmes"
        if kept:
            detail += "; running programmes keep their library: " + ", ".join(
                f"{r.channel or 'pca'} {r.drug} {r.library_id} v{r.library_version}" for r in kept
            )
        with self._changing(EventKind.LIBRARY_INSTALLED, command.source, detail):
            self._library = new
            if self._care_area is not None and new.care_area(self._care_area) is None:
                self._care_area = None
        return _ok(f"library {new.library_id} v{new.version} installed ({detail})")


def _invalid(library: DrugLibrary) -> str | None:
    """Validate again what the update client validated: a library object can be built without
    validation (``model_construct``) or corrupted in memory, and the pump trusts no caller."""
    try:
        parse_library(library.model_dump(mode="json"), "installed library")
    except LibraryError as exc:
        return "; ".join(str(issue) for issue in exc.issues)
    except (ValueError, TypeError, AttributeError) as exc:
        return f"cannot be read: {exc}"
    return None


def _running_view(running: Infusion | PcaSession) -> RunningProgramme:
    if isinstance(running, PcaSession):
        channel, rate = None, running.basal_rate_ml_h
    else:
        channel, rate = running.programme.channel, running.rate_ml_h
    return RunningProgramme(
        channel,
        running.programme.drug,
        running.programme,
        running.library.library_id,
        running.library.version,
        running.care_area,
        running.entry,
        rate,
        running.max_rate_ml_h,
    )


def _rolls_back(installed: DrugLibrary, new: DrugLibrary) -> bool:
    """An older version of the same library, or a different document under the same number."""
    if new.library_id != installed.library_id:
        return False
    return new.version < installed.version or (
        new.version == installed.version and new != installed
    )


def _describe(plan: _Plan) -> str:
    """What the clinician confirms: drug, dose, the rate it becomes, VTBI, verdict, origin."""
    programme, running = plan.programme, plan.running
    if isinstance(programme, PcaProgramme):
        what = (
            f"{programme.drug} PCA {programme.demand_dose:f} {programme.dose_unit} "
            f"lockout {programme.lockout_min:f} min, {programme.hourly_limit:f} "
            f"{programme.dose_unit}/h"
        )
    else:
        rate = running.rate_ml_h if isinstance(running, Infusion) else ZERO
        what = f"{programme.drug} {programme.dose:f} {programme.dose_unit} = {rate:f} mL/h"
    return f"{what}, VTBI {programme.vtbi_ml:f} mL ({plan.ders.verdict}, from {plan.source})"


def _ms_for(volume: Decimal, rate_ml_h: Decimal) -> int:
    """Whole milliseconds to deliver ``volume`` (mL x ms/h) at ``rate_ml_h``: rounded up, >= 1."""
    if volume <= 0:
        return 1
    return max(1, math.ceil(volume / rate_ml_h))


def _significant(value: Decimal, digits: int = 3) -> str:
    """Render for a screen: ``digits`` significant figures, half-even (rounding rule 4)."""
    if value == 0:
        return "0"
    exponent = value.adjusted() - digits + 1
    return f"{value.quantize(Decimal(1).scaleb(exponent)).normalize():f}"


def _ok(message: str) -> CommandResult:
    return CommandResult(True, message)


def _refuse(rejection: Rejection, message: str) -> CommandResult:
    return CommandResult(False, message, rejection)
