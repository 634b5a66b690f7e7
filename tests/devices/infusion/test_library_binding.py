"""Property: installing a drug library never changes a running infusion.

Two pumps of the same kind share one clock and receive the same commands; only pump ``a`` is
handed the new library versions (tighter, looser, without the care area, another bag). While a
programme that was running (or paused, or entered) at an install keeps running, the twin
without the install is the reference: after every step the delivering rate, the volume, the
state, the alarms, the display of the running programme and every running programme's library,
entry, rate and hard-limit ceiling must be identical on both pumps, and so must the pump's
answer to every command, titrations and PCA demands included (a titration is checked against
the programme's own library, a PCA demand against the programme's own lockout and hourly limit).

A programme started after an install is checked against the new library, so the twins may
legitimately differ from then on: while they are "diverged" the machine programmes titrations
only, and once the running programmes have ended on both (completed and cleared, cleared, or
switched off) the twin installs the same library and the comparison starts again from equal
pumps.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pumpguard.clinical import PumpKind
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.infusion import (
    AcknowledgeAlarm,
    Cancel,
    Channel,
    Clear,
    Command,
    CommandResult,
    CommandSource,
    Confirm,
    ContinuousProgramme,
    InfusionPump,
    InstallLibrary,
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
)

from .libraries import Variant, variant_library


def _dec(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=places)


HEPARIN = st.builds(
    ContinuousProgramme,
    drug=st.just("Heparin"),
    dose=st.one_of(_dec("1", "70", 1), _dec("14", "26", 1)),
    dose_unit=st.just("units/kg/h"),
    vtbi_ml=_dec("1", "60", 1),
    weight_kg=st.sampled_from([Decimal(80)] * 5 + [Decimal(70)]),
    channel=st.just(Channel.PRIMARY),
)
SALINE = st.builds(
    ContinuousProgramme,
    drug=st.just("Saline"),
    dose=st.one_of(_dec("20", "1000", 0), _dec("90", "320", 0)),
    dose_unit=st.just("mL/h"),
    vtbi_ml=_dec("5", "500", 0),
    channel=st.just(Channel.PRIMARY),
)
VANCOMYCIN = st.builds(
    ContinuousProgramme,
    drug=st.just("Vancomycin"),
    dose=_dec("200", "2100", 0),
    dose_unit=st.just("mg/h"),
    vtbi_ml=_dec("10", "200", 0),
    channel=st.sampled_from([Channel.SECONDARY, Channel.SECONDARY, Channel.PRIMARY]),
)
PCA = st.builds(
    PcaProgramme,
    drug=st.just("Morphine"),
    demand_dose=st.one_of(_dec("0.5", "3", 1), _dec("0.5", "5", 1)),
    lockout_min=st.sampled_from([Decimal(n) for n in (3, 6, 6, 8, 11, 15)]),
    hourly_limit=st.one_of(_dec("4", "10", 0), _dec("2", "15", 0)),
    vtbi_ml=_dec("5", "60", 0),
    basal_rate=st.sampled_from([Decimal(0)] * 3 + [Decimal("0.5")]),
)
VARIANTS = st.sampled_from(list(Variant))
REASONS = st.sampled_from(["clinically indicated"] * 3 + [None])


class BindingMachine(RuleBasedStateMachine):
    kind = PumpKind.LVP
    care_area = "ICU"

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock(0)
        self.version = 7
        first = variant_library(self.version, Variant.SAME)
        self.a = InfusionPump(self.kind, self.clock, serial="PUMP-A", library=first)
        self.b = InfusionPump(self.kind, self.clock, serial="PUMP-B", library=first)
        self.diverged = False
        for pump in (self.a, self.b):
            assert pump.handle(PowerOn()).accepted
            assert pump.handle(SetCareArea(self.care_area)).accepted

    # ---------------------------------------------------------------- helpers

    def _both(self, command: Command) -> CommandResult:
        """The same command to both pumps; their answers must be the same."""
        on_a, on_b = self.a.handle(command), self.b.handle(command)
        assert (on_a.accepted, on_a.rejection, on_a.ders) == (
            on_b.accepted,
            on_b.rejection,
            on_b.ders,
        ), (command, on_a, on_b)
        self._resync()
        return on_a

    def _titrates(self, programme: ContinuousProgramme | PcaProgramme) -> bool:
        """Would this programme titrate ``a``'s running primary (its own library)?"""
        return (
            isinstance(programme, ContinuousProgramme)
            and programme.channel is Channel.PRIMARY
            and self._primary_alone_and_not_complete()
        )

    def _primary_alone_and_not_complete(self) -> bool:
        """A titration needs the primary running (or paused) alone with VTBI left: after its
        VTBI (KVO, paused or not) the same drug is a new bag on the active library."""
        channels = {r.channel for r in self.a.running_programmes()}
        remaining = self.a.display().vtbi_remaining_ml
        return channels == {Channel.PRIMARY} and remaining is not None and remaining > 0

    def _resync(self) -> None:
        """Once no programme runs or waits on either pump, the twin catches up."""
        if not self.diverged:
            return
        for pump in (self.a, self.b):
            if pump.state is not PumpState.IDLE:
                return
        assert self.a.library is not None
        assert self.b.handle(InstallLibrary(self.a.library)).accepted
        if self.a.care_area != self.b.care_area:
            # a library without the care area made ``a`` forget it; the nurse chooses it again
            assert self.a.handle(SetCareArea(self.care_area)).accepted
        assert self.a.care_area == self.b.care_area
        self.diverged = False

    def _programmes(self) -> st.SearchStrategy[ContinuousProgramme | PcaProgramme]:
        return st.one_of(HEPARIN, HEPARIN, SALINE, VANCOMYCIN)

    # ---------------------------------------------------------------- rules

    @rule(data=st.data(), reason=REASONS)
    def program_and_confirm(self, data: st.DataObject, reason: str | None) -> None:
        programme = data.draw(self._programmes())
        if self.diverged and not self._titrates(programme):
            return
        if self._both(Program(programme)).accepted:
            self._both(Confirm(reason))

    @rule(data=st.data(), source=st.sampled_from(list(CommandSource)))
    def program(self, data: st.DataObject, source: CommandSource) -> None:
        programme = data.draw(self._programmes())
        if self.diverged and not self._titrates(programme):
            return
        self._both(Program(programme, source))

    @rule(reason=REASONS)
    def confirm(self, reason: str | None) -> None:
        pending = self.a.awaiting_confirmation
        if self.diverged and pending and not self._titrating_pending():
            self._both(Cancel())
            return
        self._both(Confirm(reason))

    def _titrating_pending(self) -> bool:
        return self._primary_alone_and_not_complete()

    @rule(variant=VARIANTS, source=st.sampled_from([CommandSource.SYSTEM, CommandSource.KEYPAD]))
    def install_on_a_only(self, variant: Variant, source: CommandSource) -> None:
        """The server's new library reaches pump ``a``; ``b`` stays on what it had."""
        had_pending = self.a.awaiting_confirmation
        before = self.a.running_programmes()
        result = self.a.handle(InstallLibrary(variant_library(self.version + 1, variant), source))
        if self.a.state is PumpState.OFF:
            assert not result.accepted
            return
        assert result.accepted, result
        self.version += 1
        self.diverged = True
        assert self.a.running_programmes() == before
        if had_pending:
            assert not self.a.awaiting_confirmation
            assert self.b.handle(Cancel()).accepted
        self._resync()

    @precondition(lambda self: bool(self.a.running_programmes()))
    @rule(variant=VARIANTS)
    def install_under_a_running_programme(self, variant: Variant) -> None:
        """The case that matters, made frequent."""
        self.install_on_a_only(variant, CommandSource.SYSTEM)

    @rule()
    def pause(self) -> None:
        self._both(Pause())

    @rule()
    def resume(self) -> None:
        self._both(Resume())

    @rule()
    def clear(self) -> None:
        self._both(Clear())

    @rule()
    def set_care_area(self) -> None:
        self._both(SetCareArea(self.care_area))

    @rule(sensor=st.sampled_from(list(SensorKind)), active=st.booleans())
    def sensor(self, sensor: SensorKind, active: bool) -> None:
        self._both(SensorChange(sensor, active))
        self._both(AcknowledgeAlarm())

    @rule()
    def power_cycle(self) -> None:
        if self._both(PowerOff()).accepted:
            self._both(PowerOn())
            self._both(SetCareArea(self.care_area))

    @rule(
        ms=st.one_of(
            st.integers(0, 10 * MS_PER_MINUTE),
            st.integers(0, MS_PER_HOUR),
            st.integers(0, 6 * MS_PER_HOUR),
        )
    )
    def advance(self, ms: int) -> None:
        self.clock.advance(ms)
        self.a.tick()
        self.b.tick()
        self._resync()

    # ---------------------------------------------------------------- the property

    @invariant()
    def the_install_changed_nothing_that_runs(self) -> None:
        a, b = self.a, self.b
        assert a.delivering_rate_ml_h == b.delivering_rate_ml_h
        assert a.volume_infused_ml == b.volume_infused_ml
        assert a.state is b.state
        assert a.alarms == b.alarms
        assert a.running_programmes() == b.running_programmes()
        assert a.awaiting_confirmation == b.awaiting_confirmation
        shown_a, shown_b = a.display(), b.display()
        same = {"library_version": None, "care_area": None}
        assert replace(shown_a, **same) == replace(shown_b, **same)
        active = a.library
        assert active is not None
        for running in a.running_programmes():
            assert running.library_version <= active.version

    @invariant()
    def in_sync_means_same_library(self) -> None:
        if not self.diverged:
            assert self.a.library == self.b.library
            assert self.a.care_area == self.b.care_area


class PcaBindingMachine(BindingMachine):
    kind = PumpKind.PCA
    care_area = "Med-Surg"

    def _programmes(self) -> st.SearchStrategy[ContinuousProgramme | PcaProgramme]:
        return PCA

    @precondition(lambda self: bool(self.a.running_programmes()))
    @rule(minutes=st.integers(0, 20))
    def press_after(self, minutes: int) -> None:
        """The patient presses after a while: lockout and hourly limit are the programme's."""
        self.advance(minutes * MS_PER_MINUTE)
        self._both(PcaDemand())

    @precondition(lambda self: bool(self.a.running_programmes()))
    @rule(extra_s=st.integers(0, 90))
    def press_again_as_the_lockout_ends(self, extra_s: int) -> None:
        """The edge a changed lockout would move: a press, then one just after the lockout."""
        (running,) = self.a.running_programmes()
        assert isinstance(running.programme, PcaProgramme)
        self._both(PcaDemand())
        self.advance(int(running.programme.lockout_min * MS_PER_MINUTE) + extra_s * 1000)
        self._both(PcaDemand())


class SyringeBindingMachine(BindingMachine):
    kind = PumpKind.SYRINGE

    def _programmes(self) -> st.SearchStrategy[ContinuousProgramme | PcaProgramme]:
        return st.one_of(HEPARIN.map(lambda p: replace(p, vtbi_ml=min(p.vtbi_ml, Decimal(50)))))


_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLvpLibraryBinding = BindingMachine.TestCase
TestLvpLibraryBinding.settings = _SETTINGS
TestPcaLibraryBinding = PcaBindingMachine.TestCase
TestPcaLibraryBinding.settings = _SETTINGS
TestSyringeLibraryBinding = SyringeBindingMachine.TestCase
TestSyringeLibraryBinding.settings = _SETTINGS
