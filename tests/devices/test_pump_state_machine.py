"""Property tests: random sequences of keypad, auto-programme, remote and patient commands,
sensor faults, power events and clock advances, against every pump kind.

After every step the machine checks, from outside the firmware:

* SR-01 delivered volume never exceeds what was confirmed (the sum of confirmed VTBIs, plus
  KVO at no more than the KVO rate, which the log lets us bound exactly);
* SR-02 the delivering rate never gives more than the running entry's hard maximum, nor more
  than the pump's maximum rate;
* SR-03 the displayed rate and dose are the delivering rate and the dose it really gives;
* SR-04 every change of delivery is in the log: each logged change starts from the rate the
  previous one ended with, volumes between entries add up to rate x time, and the pump is now
  delivering at the rate of the last entry;
* SR-05 the rate only goes up through a keypad confirmation or restart at that instant, the
  patient's own PCA button, or a secondary handing back to its primary;
* SR-06 PCA doses respect the lockout and the rolling one-hour limit.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pumpguard.clinical import PumpKind, flow_to_dose, parse_dose_unit, resolve_entry
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.infusion import (
    AcknowledgeAlarm,
    Cancel,
    Channel,
    Clear,
    CommandSource,
    Confirm,
    ContinuousProgramme,
    EventKind,
    InfusionPump,
    InstallLibrary,
    LogEntry,
    Pause,
    PcaDemand,
    PcaProgramme,
    PowerOff,
    PowerOn,
    Program,
    PumpState,
    Resume,
    SensorChange,
    SensorKind,
    SetCareArea,
    SetMains,
)

from .conftest import make_library

# Mostly commands that can succeed (so that delivery really happens), some that cannot.
SOURCES = st.sampled_from([CommandSource.KEYPAD] * 6 + list(CommandSource))
_EPS = Decimal("1e-18")


def _dec(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=places)


CONTINUOUS = st.one_of(
    st.builds(
        ContinuousProgramme,
        drug=st.sampled_from(["Heparin", "HEP", "heparin"]),
        dose=st.one_of(_dec("10", "25", 3), _dec("2", "40", 3), _dec("0", "80", 3)),
        dose_unit=st.sampled_from(["units/kg/h"] * 5 + ["units/kg/min", "units/h"]),
        vtbi_ml=st.one_of(_dec("0.1", "20", 2), _dec("0", "600", 1)),
        weight_kg=st.one_of(
            _dec("30", "200", 1), _dec("30", "200", 1), st.none(), _dec("1", "300", 1)
        ),
        channel=st.sampled_from([Channel.PRIMARY] * 3 + [Channel.SECONDARY]),
    ),
    st.builds(
        ContinuousProgramme,
        drug=st.sampled_from(["Saline", "NS", "Vancomycin", "Morphine"]),
        dose=st.one_of(
            _dec("0.1", "500", 2), _dec("0.1", "2", 2), _dec("100", "1500", 0), _dec("0", "2000", 2)
        ),
        dose_unit=st.sampled_from(["mL/h", "mg/h"]),
        vtbi_ml=st.one_of(_dec("0.1", "30", 2), _dec("0", "300", 1)),
        channel=st.sampled_from([Channel.PRIMARY] * 2 + [Channel.SECONDARY]),
    ),
)
PCA = st.builds(
    PcaProgramme,
    drug=st.just("Morphine"),
    demand_dose=st.one_of(_dec("0.1", "2", 1), _dec("0", "4", 1)),
    lockout_min=st.one_of(_dec("6", "12", 0), _dec("0", "40", 0)),
    hourly_limit=st.one_of(_dec("2", "8", 1), _dec("0", "12", 1)),
    vtbi_ml=_dec("1", "60", 0),
    basal_rate=st.sampled_from([Decimal(0)] * 3 + [Decimal("0.5"), Decimal(1)]),
    loading_dose=st.sampled_from([Decimal(0)] * 2 + [Decimal(2), Decimal(5)]),
)


class PumpMachine(RuleBasedStateMachine):
    kind = PumpKind.LVP
    care_area = "ICU"

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock(0)
        self.library = make_library()
        self.pump = InfusionPump(self.kind, self.clock, library=self.library)
        self.pump.handle(PowerOn())
        self.pump.handle(SetCareArea(self.care_area))
        self.pending: ContinuousProgramme | PcaProgramme | None = None
        self.running: dict[Channel | None, ContinuousProgramme | PcaProgramme] = {}
        self.confirmed_ml = Decimal(0)
        self.keypad_starts: set[int] = set()
        self.checked = 0
        self.last: LogEntry | None = None
        self.kvo_ml = Decimal(0)
        self.programme_seq = 0

    # ---------------------------------------------------------------- commands

    def _programmes(self) -> st.SearchStrategy[ContinuousProgramme | PcaProgramme]:
        return CONTINUOUS

    @rule(data=st.data(), source=SOURCES)
    def program(self, data: st.DataObject, source: CommandSource) -> None:
        programme = data.draw(self._programmes())
        if self.pump.handle(Program(programme, source)).accepted:
            self.pending = programme

    @rule(data=st.data())
    def program_and_confirm_at_pump(self, data: st.DataObject) -> None:
        """The everyday path: a nurse programmes and confirms (overriding soft limits)."""
        self.program(data, CommandSource.KEYPAD)
        self.confirm(CommandSource.KEYPAD, "clinically indicated")

    @rule(source=SOURCES, reason=st.sampled_from([None, "", "clinically indicated"]))
    def confirm(self, source: CommandSource, reason: str | None) -> None:
        programme = self.pending
        seq = len(self.pump.log)
        if self.pump.handle(Confirm(reason, source)).accepted:
            self.programme_seq = seq
            assert source is CommandSource.KEYPAD
            assert programme is not None
            self.keypad_starts.add(self.clock.now_ms())
            self.confirmed_ml += programme.vtbi_ml
            channel = programme.channel if isinstance(programme, ContinuousProgramme) else None
            self.running[channel] = programme
            self.pending = None

    @rule(source=SOURCES)
    def cancel(self, source: CommandSource) -> None:
        if self.pump.handle(Cancel(source)).accepted:
            self.pending = None

    @rule(source=SOURCES)
    def pause(self, source: CommandSource) -> None:
        self.pump.handle(Pause(source))

    @rule(source=SOURCES)
    def resume(self, source: CommandSource) -> None:
        if self.pump.handle(Resume(source)).accepted:
            assert source is CommandSource.KEYPAD
            self.keypad_starts.add(self.clock.now_ms())

    @rule(source=SOURCES)
    def clear(self, source: CommandSource) -> None:
        if self.pump.handle(Clear(source)).accepted:
            self.running.clear()

    @rule(source=SOURCES)
    def acknowledge(self, source: CommandSource) -> None:
        self.pump.handle(AcknowledgeAlarm(source))

    @rule(
        event=st.sampled_from(
            ["sensor"] * 3 + ["sensor-clear"] * 3 + ["mains-off", "mains-on", "power", "install"]
        ),
        sensor=st.sampled_from(list(SensorKind)),
        version=st.integers(min_value=1, max_value=9),
    )
    def disturb(self, event: str, sensor: SensorKind, version: int) -> None:
        """Faults and hospital life: sensors, power, a new library from the server."""
        if event.startswith("sensor"):
            self.pump.handle(SensorChange(sensor, event == "sensor"))
        elif event.startswith("mains"):
            self.pump.handle(SetMains(event == "mains-on"))
        elif event == "install":
            if self.pump.handle(InstallLibrary(make_library(version))).accepted:
                self.pending = None
        elif self.pump.handle(PowerOff()).accepted:
            self.running.clear()
            self.pending = None
            self.pump.handle(PowerOn())
            self.pump.handle(SetCareArea(self.care_area))

    @rule(
        ms=st.one_of(
            st.integers(0, 5 * MS_PER_MINUTE),
            st.integers(0, MS_PER_HOUR),
            st.integers(0, 24 * MS_PER_HOUR),
        )
    )
    def advance(self, ms: int) -> None:
        self.clock.advance(ms)
        self.pump.tick()

    # ---------------------------------------------------------------- invariants

    def _entry_for(
        self, channel: Channel | None
    ) -> tuple[object, ContinuousProgramme | PcaProgramme]:
        programme = self.running[channel]
        result = resolve_entry(self.library, self.care_area, programme.drug)
        assert result.entry is not None
        return result.entry, programme

    @invariant()
    def display_is_the_engine(self) -> None:
        shown = self.pump.display()
        rate = self.pump.delivering_rate_ml_h
        assert shown.rate_ml_h == rate
        assert rate <= self.pump.model.max_rate_ml_h
        if shown.drug is None:
            return
        channel = shown.channel if self.kind is not PumpKind.PCA else None
        entry, programme = self._entry_for(channel)
        assert shown.drug == programme.drug
        assert shown.dose_unit is not None
        unit = parse_dose_unit(shown.dose_unit)
        concentration = entry.to_concentration()  # type: ignore[attr-defined]
        assert shown.dose == flow_to_dose(rate, unit, concentration, programme.weight_kg)
        hard_max = entry.continuous.hard_max  # type: ignore[attr-defined]
        if shown.state is PumpState.KVO:
            assert isinstance(programme, ContinuousProgramme)
            assert rate <= self.pump.model.kvo_rate_ml_h
            assert shown.dose is not None
            assert shown.dose <= programme.dose
        if shown.state is not PumpState.INFUSING or shown.dose is None:
            return
        if isinstance(programme, ContinuousProgramme):
            assert shown.dose <= programme.dose  # rounding only ever gives less
            assert unit.convert(shown.dose, entry.unit) <= hard_max  # type: ignore[attr-defined]
        else:
            basal = self._basal_ml_h()
            bolus = self.pump.model.pca_bolus_rate_ml_h if rate > basal else Decimal(0)
            assert rate - bolus <= basal

    def _basal_ml_h(self) -> Decimal:
        programme = self.running[None]
        assert isinstance(programme, PcaProgramme)
        entry, _ = self._entry_for(None)
        conc = entry.to_concentration()  # type: ignore[attr-defined]
        return programme.basal_rate / conc.per_ml(conc.unit)

    @invariant()
    def log_accounts_for_every_change(self) -> None:
        entries = list(self.pump.log)
        for entry in entries[self.checked :]:
            if entry.before is None or entry.after is None:
                continue
            last = self.last
            if last is not None:
                assert last.after is not None
                assert entry.before.rate_ml_h == last.after.rate_ml_h, (last, entry)
                expected = (
                    last.after.volume_infused_ml
                    + last.after.rate_ml_h * (entry.time_ms - last.time_ms) / MS_PER_HOUR
                )
                shortfall = expected - entry.before.volume_infused_ml
                assert -_EPS <= shortfall <= last.after.rate_ml_h / MS_PER_HOUR + _EPS, entry
                if last.after.state == PumpState.KVO.value:
                    self.kvo_ml += entry.before.volume_infused_ml - last.after.volume_infused_ml
            self._rate_rises_only_legitimately(entry)
            self.last = entry
        self.checked = len(entries)
        if self.last is not None and self.last.after is not None:
            assert self.pump.delivering_rate_ml_h == self.last.after.rate_ml_h

    def _rate_rises_only_legitimately(self, entry: LogEntry) -> None:
        assert entry.before is not None and entry.after is not None
        if entry.after.rate_ml_h <= entry.before.rate_ml_h:
            return
        if entry.kind is EventKind.PCA_DOSE:
            assert entry.source is CommandSource.PATIENT
        elif entry.source is CommandSource.SYSTEM:
            assert entry.kind is EventKind.DELIVERY_COMPLETE
            assert "primary resumes" in entry.detail
        else:
            assert entry.time_ms in self.keypad_starts, entry

    @invariant()
    def never_more_than_confirmed(self) -> None:
        volume = self.pump.volume_infused_ml
        kvo_now = Decimal(0)
        last = self.last
        if last is not None and last.after is not None and last.after.state == PumpState.KVO.value:
            kvo_now = volume - last.after.volume_infused_ml
        assert volume <= self.confirmed_ml + self.kvo_ml + kvo_now + _EPS

    @invariant()
    def pca_lockout_and_hourly_limit(self) -> None:
        programme = self.running.get(None)
        if not isinstance(programme, PcaProgramme):
            return
        mine = self.pump.log.since(self.programme_seq)
        doses = [e.time_ms for e in mine if e.kind is EventKind.PCA_DOSE]
        starts = [e.time_ms for e in mine if e.kind is EventKind.DELIVERY_START]
        lockout = programme.lockout_min * MS_PER_MINUTE
        for earlier, later in itertools.pairwise(doses):
            assert later - earlier >= lockout
        grants = [(t, programme.demand_dose) for t in doses]
        if programme.loading_dose and starts:
            grants.append((starts[0], programme.loading_dose))
        for t, _ in grants:
            window = sum((d for u, d in grants if t - MS_PER_HOUR < u <= t), Decimal(0))
            assert window + programme.basal_rate <= programme.hourly_limit


class PcaMachine(PumpMachine):
    kind = PumpKind.PCA
    care_area = "Med-Surg"

    def _programmes(self) -> st.SearchStrategy[ContinuousProgramme | PcaProgramme]:
        return PCA

    @precondition(lambda self: None in self.running)
    @rule(source=st.sampled_from([CommandSource.PATIENT] * 4 + [CommandSource.REMOTE]))
    def press(self, source: CommandSource) -> None:
        self.pump.handle(PcaDemand(source))

    @precondition(lambda self: None in self.running)
    @rule(minutes=st.integers(0, 15))
    def press_soon(self, minutes: int) -> None:
        """A patient in pain presses again after a few minutes."""
        self.advance(minutes * MS_PER_MINUTE)
        self.press(CommandSource.PATIENT)

    @precondition(lambda self: None in self.running)
    @rule(minutes=st.integers(0, 15))
    def press_after(self, minutes: int) -> None:
        """A patient in pain presses again after a few minutes."""
        self.advance(minutes * MS_PER_MINUTE)
        self.press(CommandSource.PATIENT)


class SyringeMachine(PumpMachine):
    kind = PumpKind.SYRINGE


_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLvpPump = PumpMachine.TestCase
TestLvpPump.settings = _SETTINGS
TestSyringePump = SyringeMachine.TestCase
TestSyringePump.settings = _SETTINGS
TestPcaPump = PcaMachine.TestCase
TestPcaPump.settings = _SETTINGS
