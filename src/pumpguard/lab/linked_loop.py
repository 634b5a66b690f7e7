"""The closed insulin loop over the radio: what the attack catalogue runs its attacks against.

One virtual patient, one CGM transmitter, one AID controller and one insulin pump, as in
``lab.insulin_loop``, except that nothing talks by direct calls: CGM readings, the controller's
commands and the pump's answers travel as frames on a ``RadioMedium``, through the legacy or the
secure endpoints of ``pumpguard.link`` (``build_link``). Everything is seeded and in virtual
time, so the same configuration run twice gives the same patient, minute for minute: an attack
is run on one copy, and its harm is the difference from the untouched twin.

History over the radio: the controller's IOB and its reconciliation of lost answers read the
pump's history (``HistoryQuery``). The link does not encode the IDS record access procedure
(0x2B27/0x2B28) yet, so a history read here is one *status round trip over the radio* (an IDS
Status read, authenticated in the secure profile) and, only when that answer came back, the
pump's log read in place of the record transfer the real procedure would carry in several
frames. A jammed or lost link therefore loses history reads exactly as it loses commands (the
controller stays uncertain and sends nothing new); what is not modelled is an attacker forging
or corrupting history records in transit.

Each minute, in order: the CGM senses and, every 5 minutes, reports over the radio; attack
hooks run; readings that reached the controller's radio go to the controller (secure: through
the app's CGM plausibility gate, ``_plausible``); a meal due is
announced (calculator bolus); the controller runs; the secure endpoints watch for link loss,
and the user answers the pump's link-loss alarm with fingersticks on its keypad; a
legacy meter-remote, when present, reads the pump's status once an hour; frames due in the
minute are delivered; the clock advances and the pump's delivery in that minute goes with the
carbohydrate into the physiology.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from pumpguard.clinical import BasalProfile
from pumpguard.clock import MS_PER_MINUTE, VirtualClock
from pumpguard.devices.controller import AidController, TherapySettings
from pumpguard.devices.insulin import (
    Command,
    CommandResult,
    HistoryQuery,
    HistoryReply,
    InsulinPump,
    MeterGlucose,
    MeterSuspendRule,
    SetTempBasal,
)
from pumpguard.devices.sensors import CgmReading, CgmTransmitter, FingerstickMeter
from pumpguard.lab.insulin_loop import parse_meals, settings_for
from pumpguard.link import (
    LEGACY_RADIO_QUIRKS,
    HandledCommand,
    LegacyPumpEndpoint,
    LegacyRemoteEndpoint,
    LinkProfile,
    LinkSystem,
    RadioMedium,
    Role,
    SecureControllerEndpoint,
    SecurePumpEndpoint,
    build_link,
)
from pumpguard.link.pdu import PduError, encode_command
from pumpguard.monitor import CgmPlausibility
from pumpguard.physiology import Cohort, get_patient
from pumpguard.security_events import Component, SecurityEvent, SecurityEventLog, Severity

__all__ = [
    "CGM_MAX_RATE_MGDL_MIN",
    "DEFAULT_MEALS",
    "KEYPAD_EVERY_MIN",
    "KEYPAD_RESPONSE_MIN",
    "METER_ADDRESS",
    "FloatArray",
    "LinkedLoop",
    "LinkedLoopConfig",
    "LoopEventCode",
    "MinuteHook",
    "RadioPumpLink",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_MEALS = "07:00=45,12:00=70,18:30=80"
METER_ADDRESS = 0x5C0FFE
"""The legacy meter-remote's serial, when the scenario has one."""
_METER_READ_MINUTE = 45
"""Minute of each hour at which the user checks the pump from the meter-remote (legacy)."""

CGM_MAX_RATE_MGDL_MIN = 15.0
"""The secure controller app's CGM rate-of-change limit. The cohort's own CGM readings change
by at most 11.4 mg/dL/min over 5 minutes (30 patients, 2 days, AID, meals of 45/70/80 g, seeds
1 and 2: child#008 after meals), so 15 leaves a margin without false alarms there; the 4
mg/dL/min default of ``monitor.CgmPlausibility`` would alarm after every large meal."""
METER_AGREEMENT_MGDL = 20.0
METER_AGREEMENT_FRACTION = 0.2
"""A CGM reading agrees with a fingerstick within 20 mg/dL or 20 %: a modelling choice, wider
than ISO 15197:2013's meter accuracy (15 mg/dL below 100 mg/dL, 15 % above, for 95 % of
readings) so that meter and sensor error alone rarely break the agreement."""
METER_EVERY_MS = 30 * MS_PER_MINUTE
KEYPAD_RESPONSE_MIN = 10
KEYPAD_EVERY_MIN = 30
"""The user's answer to the pump's link-loss alarm (secure profile): a fingerstick entered on the
pump's keypad 10 minutes after the alarm, then every 30 minutes while it lasts. The pump's
labelling would ask for this; 10 minutes is a modelling choice for someone who hears the alarm
and has a meter at hand (a sleeping patient may answer later: the same run with a later first
fingerstick is a variant the tests try). The pump uses the values only to stop its
limited-mode basal before a low (``MeterSuspendRule``), never to dose."""


class LoopEventCode(StrEnum):
    """What the secure controller app reports about its CGM (component ``device``)."""

    CGM_IMPLAUSIBLE = "controller.cgm.implausible"
    CGM_METER_MISMATCH = "controller.cgm.meter_mismatch"


MinuteHook = Callable[["LinkedLoop", int], None]
"""Called every minute (after the CGM's report, before the controller runs) with the minute."""


@dataclass(frozen=True, slots=True)
class LinkedLoopConfig:
    profile: LinkProfile
    patient: str = "adult#001"
    seed: int = 1
    minutes: int = 32 * 60
    meals: str = DEFAULT_MEALS
    meter_remote: bool = False
    """A legacy meter-remote paired by serial at the pump (the secure profile has none)."""
    loss_rate: float = 0.0
    cgm_max_rate_mgdl_min: float = CGM_MAX_RATE_MGDL_MIN

    def __post_init__(self) -> None:
        if self.minutes < 1:
            raise ValueError("a run lasts at least one minute")


class RadioPumpLink:
    """The controller's ``PumpLink`` over the radio: commands as frames, history as above.

    It also remembers which of the pump endpoint's handled commands came from the controller's
    own calls, so that the rest (what an attacker got the pump to do) can be told apart even
    when the attacker used the controller's address.
    """

    def __init__(
        self,
        endpoint: LegacyRemoteEndpoint | SecureControllerEndpoint,
        pump_endpoint: LegacyPumpEndpoint | SecurePumpEndpoint,
        pump: InsulinPump,
    ) -> None:
        self.endpoint = endpoint
        self.pump_endpoint = pump_endpoint
        self.pump = pump
        self.own: set[int] = set()
        """Indices into the pump endpoint's ``handled`` that the controller caused."""
        self.sent = 0
        self.answered = 0
        self.history_reads = 0
        self.history_lost = 0

    def send(self, command: Command) -> CommandResult | None:
        before = len(self.pump_endpoint.handled)
        reply = self.endpoint.send(_encodable(command))
        self.own.update(range(before, len(self.pump_endpoint.handled)))
        self.sent += 1
        if reply is None:
            return None
        self.answered += 1
        return CommandResult(
            reply.accepted,
            "accepted" if reply.accepted else f"refused over the radio: {reply.code.name}",
            command_id=getattr(command, "command_id", None),
            bolus_id=reply.bolus_id,
        )

    def history(self, query: HistoryQuery) -> HistoryReply | None:
        self.history_reads += 1
        if self.endpoint.read_status() is None:
            self.history_lost += 1
            return None
        return self.pump.history(query)

    def foreign(self) -> list[HandledCommand]:
        """Commands the pump handled that the controller did not send."""
        return [c for i, c in enumerate(self.pump_endpoint.handled) if i not in self.own]


_SFLOAT_SAFE_STEP = Decimal("0.05")


def _encodable(command: Command) -> Command:
    """The command with a rate the radio can carry: an SFLOAT holds 3 significant digits, so a
    rate such as 3.825 U/h (the pump's 0.025 step) is sent as 3.80, the next lower 0.05 step:
    less insulin, never more. The controller should choose such rates itself (a device change
    noted in docs/attacks.md)."""
    if not isinstance(command, SetTempBasal) or command.rate_u_h is None:
        return command
    try:
        encode_command(command)
    except PduError:
        rate = (command.rate_u_h / _SFLOAT_SAFE_STEP).to_integral_value(ROUND_FLOOR)
        return replace(command, rate_u_h=rate * _SFLOAT_SAFE_STEP)
    return command


class LinkedLoop:
    """One patient's closed loop over one radio medium; drive it with ``run_until``."""

    def __init__(self, config: LinkedLoopConfig) -> None:
        self.config = config
        patient = get_patient(config.patient)
        self.clock = VirtualClock(0)
        self.events = SecurityEventLog()
        self.settings: TherapySettings = settings_for(patient)
        self.pump = InsulinPump(
            self.clock,
            BasalProfile.flat(Decimal(str(self.settings.basal_u_h))),
            serial="PUMP-4A1C07",
            meter_rule=MeterSuspendRule(
                self.settings.low_threshold_mgdl, self.settings.target_low_mgdl
            ),
        )
        self.medium = RadioMedium(self.clock, seed=config.seed, loss_rate=config.loss_rate)
        keys = random.Random(config.seed)
        self.link: LinkSystem = build_link(
            config.profile,
            self.medium,
            self.pump,
            sink=self.events,
            random_bytes=keys.randbytes,
            legacy_quirks=LEGACY_RADIO_QUIRKS,
        )
        self.meter: LegacyRemoteEndpoint | None = None
        if config.meter_remote and config.profile is LinkProfile.LEGACY:
            self.meter = LegacyRemoteEndpoint(
                self.medium,
                address=METER_ADDRESS,
                pump_address=self.link.addresses.pump,
                sink=self.events,
                role=Role.METER_REMOTE,
                name="meter-remote",
                position_m=(0.5, 0.5),
            )
            pump_ep = self.link.pump
            assert isinstance(pump_ep, LegacyPumpEndpoint)
            pump_ep.pair_by_serial(METER_ADDRESS, Role.METER_REMOTE)
        self.cgm = CgmTransmitter(self.clock, seed=config.seed, warmup_min=0, serial="CGM-7E5F23")
        self.radio = RadioPumpLink(self.link.controller, self.link.pump, self.pump)
        self.controller = AidController(self.clock, self.radio, self.settings, id_prefix="aid")
        self.controller.keep_decisions = False
        self.controller.limited_mode = True
        """Stale CGM data (link lost, or readings withheld by the plausibility gate) puts the
        pump in its limited mode rather than the full scheduled basal (docs/devices/insulin.md)."""
        self.cohort = Cohort([patient])
        self.carbs = parse_meals(config.meals).carbs(1, config.minutes)[0]
        self.hooks: list[MinuteHook] = []
        self.minute = 0
        n = config.minutes
        self.bg: FloatArray = np.full(n, np.nan)
        """True (model) glucose at the end of each minute."""
        self.insulin_u: FloatArray = np.zeros(n)
        self.pump_charge_uc: FloatArray = np.zeros(n)
        """Charge the pump's radio had drawn by the end of each minute (listening excluded)."""
        self.sent_readings: list[CgmReading] = []
        """What the CGM transmitter reported."""
        self.taken_readings: list[CgmReading] = []
        """What the controller app took from its radio (the CGM's, or anyone's it believed)."""
        self.used_readings: list[CgmReading] = []
        """What the controller's algorithm was given (secure: after the plausibility gate)."""
        self._taken = 0
        self._delivered = float(self.pump.delivered_u)
        self.sensor_offset_mgdl = 0.0
        """What someone tampering with the sensor itself adds to the glucose it measures."""
        self.plausibility: CgmPlausibility | None = None
        if config.profile is LinkProfile.SECURE:
            self.plausibility = CgmPlausibility(
                "controller", max_rate_mgdl_min=config.cgm_max_rate_mgdl_min
            )
        self.fingersticks = FingerstickMeter(self.clock, seed=config.seed, strips=1000)
        self._doubted = False
        self._last_stick_ms: int | None = None
        self.keypad_response_min = KEYPAD_RESPONSE_MIN
        self.keypad_sticks = 0
        """Fingersticks the user entered on the pump's keypad (link-loss alarm)."""
        self._next_keypad_ms: int | None = None

    @property
    def profile(self) -> LinkProfile:
        return self.config.profile

    def step(self) -> None:
        m = self.minute
        if m >= self.config.minutes:
            raise ValueError("the run is over")
        reading = self.cgm.sense(float(self.cohort.bg_mgdl[0]) + self.sensor_offset_mgdl)
        if reading is not None:
            self.sent_readings.append(reading)
            self.link.cgm.report(reading)
        for hook in list(self.hooks):
            hook(self, m)
        self._forward_readings()
        carbs = float(self.carbs[m])
        if carbs > 0:
            self.controller.announce_meal(carbs)
        self.controller.step()
        self._forward_readings()
        pump_ep, controller_ep = self.link.pump, self.link.controller
        if isinstance(pump_ep, SecurePumpEndpoint):
            pump_ep.tick()
        if isinstance(controller_ep, SecureControllerEndpoint):
            controller_ep.tick()
        self._keypad_fingersticks()
        if self.meter is not None and m % 60 == _METER_READ_MINUTE:
            self.meter.read_status()
        end_ms = self.clock.now_ms() + MS_PER_MINUTE
        self.medium.settle(until_us=end_ms * 1000)
        self.clock.advance_to(end_ms)
        delivered = float(self.pump.delivered_u)
        insulin = max(delivered - self._delivered, 0.0)
        self._delivered = delivered
        self.insulin_u[m] = insulin
        self.bg[m] = float(self.cohort.step(carbs, insulin)[0])
        self.pump_charge_uc[m] = self.link.pump.meter.total_uc
        self.minute += 1

    def run_until(self, minute: int) -> None:
        """Run up to (not including) ``minute``, or to the end of the run."""
        stop = min(minute, self.config.minutes)
        while self.minute < stop:
            self.step()

    def run(self) -> None:
        self.run_until(self.config.minutes)

    def _keypad_fingersticks(self) -> None:
        """The user answering the pump's link-loss alarm (``KEYPAD_RESPONSE_MIN``)."""
        pump_ep = self.link.pump
        if not isinstance(pump_ep, SecurePumpEndpoint) or not pump_ep.link_alarm:
            self._next_keypad_ms = None
            return
        now = self.clock.now_ms()
        if self._next_keypad_ms is None:
            self._next_keypad_ms = now + self.keypad_response_min * MS_PER_MINUTE
        if now < self._next_keypad_ms:
            return
        stick = self.fingersticks.measure(float(self.cohort.bg_mgdl[0])).glucose_mgdl
        self.pump.handle(MeterGlucose(Decimal(round(stick))))
        self.keypad_sticks += 1
        self._next_keypad_ms = now + KEYPAD_EVERY_MIN * MS_PER_MINUTE

    def _forward_readings(self) -> None:
        readings = self.link.controller.readings
        now = self.clock.now_ms()
        while self._taken < len(readings):
            taken = readings[self._taken]
            self._taken += 1
            if taken.time_ms > now:
                # Stamped at reception, a few ms into the minute when the CGM's frame waited
                # for other frames on the air (carrier sense); the app takes it now. Left in
                # the future, the controller took it for no reading at all (stale data).
                taken = replace(taken, time_ms=now)
            self.taken_readings.append(taken)
            if self._plausible(taken):
                self.used_readings.append(taken)
                self.controller.receive(taken)

    def _plausible(self, reading: CgmReading) -> bool:
        """The secure app's gate: a reading that moves faster than a body can is doubted, the
        user is asked for a fingerstick (then every 30 minutes), and readings are withheld from
        the algorithm (which then falls back to limited mode, suspended while the fingersticks
        show or predict a low) until one agrees."""
        if self.plausibility is None:
            return True
        if self.plausibility.reading(reading.time_ms, reading.glucose_mgdl):
            self._event(LoopEventCode.CGM_IMPLAUSIBLE, reading, "CGM changed faster than a body")
            self._doubted, self._last_stick_ms = True, None
        if not self._doubted:
            return True
        now = self.clock.now_ms()
        if self._last_stick_ms is not None and now - self._last_stick_ms < METER_EVERY_MS:
            return False
        self._last_stick_ms = now
        stick = self.fingersticks.measure(float(self.cohort.bg_mgdl[0])).glucose_mgdl
        # The algorithm gets the fingerstick too, but may only suspend on it (AidController
        # ``receive_meter``): a patient without a trusted CGM checks and stops insulin for lows.
        self.controller.receive_meter(stick, now)
        gap = abs(reading.glucose_mgdl - stick)
        if gap <= max(METER_AGREEMENT_MGDL, METER_AGREEMENT_FRACTION * stick):
            self._doubted = False
            return True
        self._event(
            LoopEventCode.CGM_METER_MISMATCH,
            reading,
            f"CGM {reading.glucose_mgdl:.0f} vs fingerstick {stick:.0f} mg/dL",
        )
        return False

    def _event(self, code: LoopEventCode, reading: CgmReading, message: str) -> None:
        self.events.emit(
            SecurityEvent(
                time_ms=self.clock.now_ms(),
                component=Component.DEVICE,
                code=code,
                severity=Severity.HIGH,
                message=message,
                device_id="controller",
                attributes={"glucose_mgdl": f"{reading.glucose_mgdl:.0f}"},
            )
        )
