"""A library installed while programmes run: active for new programmes, never for running ones.

Heparin 100 units/mL at 80 kg: 1 unit/kg/h = 0.8 mL/h. In v7 (the device-test library) its
limits are soft 10-25, hard 2-40 units/kg/h; the tight v8 makes them soft 8-15, hard 5-20; the
loose v8 soft 5-45, hard 1-60.
"""

from __future__ import annotations

from decimal import Decimal

from tests.devices.conftest import KG80, PumpFactory, make_library

from pumpguard.clinical import PumpKind, Verdict
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.infusion import (
    Channel,
    Clear,
    CommandSource,
    Confirm,
    ContinuousProgramme,
    EventKind,
    InfusionPump,
    InstallLibrary,
    Pause,
    PcaDemand,
    PcaProgramme,
    Program,
    PumpState,
    Rejection,
)

from .libraries import Variant, variant_library

REASON = "clinically indicated"


def heparin(dose: str, vtbi: str = "250") -> ContinuousProgramme:
    return ContinuousProgramme("Heparin", Decimal(dose), "units/kg/h", Decimal(vtbi), KG80)


def start(pump: InfusionPump, programme: ContinuousProgramme | PcaProgramme) -> None:
    assert pump.handle(Program(programme)).accepted
    assert pump.handle(Confirm(REASON)).accepted


def versions(pump: InfusionPump) -> list[int]:
    return [r.library_version for r in pump.running_programmes()]


def test_a_running_infusion_keeps_its_rate_limits_and_library(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin("22"))
    before = pump.running_programmes()
    rate = pump.delivering_rate_ml_h
    assert pump.handle(InstallLibrary(variant_library(8, Variant.TIGHT))).accepted
    assert pump.library is not None and pump.library.version == 8
    assert pump.running_programmes() == before
    assert pump.delivering_rate_ml_h == rate == Decimal("17.6")
    assert before[0].max_rate_ml_h == Decimal(32)  # v7's 40 units/kg/h, not v8's 20
    assert pump.state is PumpState.INFUSING


def test_a_titration_is_checked_against_the_programmes_own_library(
    make_pump: PumpFactory,
) -> None:
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(InstallLibrary(variant_library(8, Variant.TIGHT))).accepted
    titration = pump.handle(Program(heparin("30")))
    assert titration.accepted and titration.ders is not None
    assert titration.ders.verdict is Verdict.SOFT_HIGH  # v7; v8 would say hard-high
    assert pump.handle(Confirm(REASON)).accepted
    assert pump.delivering_rate_ml_h == Decimal(24)
    assert versions(pump) == [7]


def test_a_looser_library_does_not_loosen_a_running_programme(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(InstallLibrary(variant_library(8, Variant.LOOSE))).accepted
    refused = pump.handle(Program(heparin("50")))
    assert refused.rejection is Rejection.DERS_BLOCKED
    assert refused.ders is not None and refused.ders.verdict is Verdict.HARD_HIGH
    assert pump.delivering_rate_ml_h == Decimal("14.4")


def test_a_new_bag_after_clearing_is_checked_against_the_active_library(
    make_pump: PumpFactory,
) -> None:
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(InstallLibrary(variant_library(8, Variant.TIGHT))).accepted
    assert pump.handle(Pause()).accepted
    assert pump.handle(Clear()).accepted
    refused = pump.handle(Program(heparin("30")))
    assert refused.ders is not None and refused.ders.verdict is Verdict.HARD_HIGH
    start(pump, heparin("12"))
    assert versions(pump) == [8]
    assert pump.running_programmes()[0].max_rate_ml_h == Decimal(16)


def test_after_the_vtbi_the_same_drug_is_a_new_bag_on_the_active_library(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump()
    start(pump, heparin("18", vtbi="1"))
    clock.advance(MS_PER_HOUR)
    assert pump.state is PumpState.KVO
    assert pump.handle(InstallLibrary(variant_library(8, Variant.TIGHT))).accepted
    refused = pump.handle(Program(heparin("30")))
    assert refused.ders is not None and refused.ders.verdict is Verdict.HARD_HIGH


def test_a_secondary_started_later_uses_the_active_library(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, ContinuousProgramme("Saline", Decimal(80), "mL/h", Decimal(500)))
    assert pump.handle(InstallLibrary(variant_library(8, Variant.TIGHT))).accepted
    vanc = ContinuousProgramme(
        "Vancomycin", Decimal(1000), "mg/h", Decimal(100), channel=Channel.SECONDARY
    )
    refused = pump.handle(Program(vanc))
    assert refused.ders is not None and refused.ders.verdict is Verdict.HARD_HIGH  # v7: soft
    start(
        pump,
        ContinuousProgramme(
            "Vancomycin", Decimal(450), "mg/h", Decimal(100), channel=Channel.SECONDARY
        ),
    )
    assert [(r.channel, r.library_version) for r in pump.running_programmes()] == [
        (Channel.PRIMARY, 7),
        (Channel.SECONDARY, 8),
    ]


def test_a_running_secondary_keeps_its_library(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, ContinuousProgramme("Saline", Decimal(80), "mL/h", Decimal(500)))
    vanc = ContinuousProgramme(
        "Vancomycin", Decimal(1200), "mg/h", Decimal(200), channel=Channel.SECONDARY
    )
    start(pump, vanc)
    rate = pump.delivering_rate_ml_h
    assert pump.handle(InstallLibrary(variant_library(8, Variant.TIGHT))).accepted
    assert pump.delivering_rate_ml_h == rate == Decimal(240)
    assert versions(pump) == [7, 7]


def test_pca_lockout_and_hourly_limit_stay_the_programmes(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """v7 allows a 6 min lockout and 8 mg/h; the tight v8 needs 10 min and at most 5 mg/h."""
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    morphine = PcaProgramme("Morphine", Decimal(1), Decimal(6), Decimal(8), Decimal(30))
    start(pump, morphine)
    assert pump.handle(PcaDemand()).accepted
    assert pump.handle(InstallLibrary(variant_library(8, Variant.TIGHT))).accepted
    for _ in range(7):
        clock.advance(6 * MS_PER_MINUTE)
        assert pump.handle(PcaDemand()).accepted
    clock.advance(6 * MS_PER_MINUTE)
    assert pump.handle(PcaDemand()).rejection is Rejection.HOURLY_LIMIT  # 8 mg in the hour
    assert versions(pump) == [7]
    assert pump.handle(Pause()).accepted and pump.handle(Clear()).accepted
    refused = pump.handle(Program(morphine))
    assert refused.ders is not None and refused.ders.verdict.blocks


def test_status_and_screen_show_both_versions(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(InstallLibrary(variant_library(8, Variant.SAME))).accepted
    shown = pump.display()
    assert shown.library_version == 8
    assert [(r.drug, r.library_id, r.library_version) for r in shown.programmes] == [
        ("Heparin", "device-tests", 7)
    ]
    assert "Heparin runs on library v7; v8 applies to new programmes" in shown.lines()


def test_the_log_records_the_install_with_both_versions(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(InstallLibrary(variant_library(8, Variant.TIGHT))).accepted
    entry = [e for e in pump.log if e.kind is EventKind.LIBRARY_INSTALLED][-1]
    assert "device-tests v7 -> v8" in entry.detail
    assert "primary Heparin device-tests v7" in entry.detail
    assert entry.before is not None and entry.before == entry.after
    assert entry.source is CommandSource.SYSTEM


def test_install_discards_a_pending_titration_and_nothing_else(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(Program(heparin("20"))).accepted
    assert pump.awaiting_confirmation and pump.state is PumpState.INFUSING
    assert pump.handle(InstallLibrary(variant_library(8, Variant.SAME))).accepted
    assert not pump.awaiting_confirmation
    assert pump.delivering_rate_ml_h == Decimal("14.4")
    cancelled = [e for e in pump.log if e.kind is EventKind.PROGRAMME_CANCELLED][-1]
    assert "replaced library" in cancelled.detail


def test_a_pending_programme_is_never_confirmed_against_another_library(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """A titration pre-filled against the programme's v7, whose programme is then cleared,
    would start as a new programme on v8: refused, to be entered again."""
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(InstallLibrary(variant_library(8, Variant.TIGHT))).accepted
    assert pump.handle(Program(heparin("14"))).accepted
    assert pump.handle(Pause()).accepted and pump.handle(Clear()).accepted
    refused = pump.handle(Confirm(REASON))
    assert refused.rejection is Rejection.WRONG_STATE
    assert "v7" in refused.message and "v8" in refused.message
    assert pump.state is PumpState.IDLE
    clock.advance(MS_PER_HOUR)
    assert pump.volume_infused_ml < 1


def test_a_titration_works_under_a_library_without_the_care_area(
    make_pump: PumpFactory,
) -> None:
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(InstallLibrary(variant_library(8, Variant.NO_ICU))).accepted
    assert pump.care_area is None
    start(pump, heparin("20"))
    assert pump.delivering_rate_ml_h == Decimal(16)
    assert pump.handle(Pause()).accepted and pump.handle(Clear()).accepted
    assert pump.handle(Program(heparin("20"))).rejection is Rejection.NO_CARE_AREA


def test_an_older_or_invalid_library_is_refused_mid_infusion(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(InstallLibrary(make_library(6))).rejection is Rejection.DOWNGRADE
    broken = make_library(9).model_copy(update={"care_areas": []})  # skips validation
    refused = pump.handle(InstallLibrary(broken))
    assert refused.rejection is Rejection.INVALID
    assert pump.library is not None and pump.library.version == 7
    assert versions(pump) == [7]
    details = [e.detail for e in pump.log if e.kind is EventKind.LIBRARY_REFUSED]
    assert "installed is v7" in details[0] and "invalid" in details[1]


def test_a_powered_off_pump_installs_nothing(clock: VirtualClock) -> None:
    pump = InfusionPump(PumpKind.LVP, clock, library=make_library())
    assert pump.handle(InstallLibrary(make_library(8))).rejection is Rejection.POWERED_OFF
