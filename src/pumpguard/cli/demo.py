"""``pumpguard demo``: a ward shift in virtual time on the embedded example library.

Everything shown is computed by the real firmware and the real dose error reduction check; the
script only decides who presses which button when.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pumpguard.cli.common import out
from pumpguard.cli.library import open_library
from pumpguard.clinical import PumpKind
from pumpguard.clock import MS_PER_MINUTE, VirtualClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import (
    AcknowledgeAlarm,
    CommandResult,
    CommandSource,
    Confirm,
    ContinuousProgramme,
    InfusionPump,
    PcaDemand,
    PcaProgramme,
    PowerOn,
    Program,
    Resume,
    SensorChange,
    SensorKind,
    SetCareArea,
)
from pumpguard.devices.infusion.commands import Command


@dataclass
class _Step:
    minute: int
    pump: str
    what: str
    result: CommandResult


def demo(
    library_file: Annotated[
        Path | None, typer.Option("--library", help="Drug library (default: embedded example).")
    ] = None,
) -> None:
    """Run a scripted ward shift (ICU and Med-Surg) and show what the pumps did and refused."""
    library = open_library(library_file or EXAMPLE_LIBRARY)
    out.print(
        f"[bold]pumpguard demo[/]: drug library {library.library_id} v{library.version}, "
        f"{len(library.care_areas)} care areas, {sum(1 for _ in library.entries())} entries",
        highlight=False,
    )
    clock = VirtualClock()
    pumps = {
        "LVP-ICU-1": InfusionPump(PumpKind.LVP, clock, serial="LVP-ICU-1", library=library),
        "LVP-ICU-2": InfusionPump(PumpKind.LVP, clock, serial="LVP-ICU-2", library=library),
        "PCA-MS-3": InfusionPump(PumpKind.PCA, clock, serial="PCA-MS-3", library=library),
    }
    steps: list[_Step] = []

    def act(pump: str, what: str, command: Command) -> None:
        result = pumps[pump].handle(command)
        steps.append(_Step(clock.now_ms() // MS_PER_MINUTE, pump, what, result))

    def at(minute: int) -> None:
        clock.advance_to(minute * MS_PER_MINUTE)

    for name, area in (("LVP-ICU-1", "ICU"), ("LVP-ICU-2", "ICU"), ("PCA-MS-3", "Med-Surg")):
        act(name, "power on, self test", PowerOn())
        act(name, f"nurse selects care area {area}", SetCareArea(area))
    kg80 = Decimal(80)
    heparin = ContinuousProgramme(
        "Heparin", Decimal(18), "units/kg/h", Decimal(250), weight_kg=kg80, order_id="ORD-1001"
    )
    act(
        "LVP-ICU-1",
        "EHR order pre-fills heparin 18 units/kg/h",
        Program(heparin, CommandSource.AUTO_PROGRAMME),
    )
    act("LVP-ICU-1", "remote 'confirm' attempt", Confirm(source=CommandSource.REMOTE))
    act("LVP-ICU-1", "nurse confirms at the pump", Confirm())
    norepi = ContinuousProgramme(
        "Norepinephrine", Decimal("0.05"), "mcg/kg/min", Decimal(250), weight_kg=kg80
    )
    act("LVP-ICU-2", "nurse programmes norepinephrine 0.05 mcg/kg/min", Program(norepi))
    act("LVP-ICU-2", "nurse confirms", Confirm())
    morphine = PcaProgramme(
        "Morphine", Decimal(1), Decimal(10), Decimal(4), Decimal(30), loading_dose=Decimal(2)
    )
    act("PCA-MS-3", "PCA morphine 1 mg, lockout 10 min, 4 mg/h, load 2 mg", Program(morphine))
    act("PCA-MS-3", "nurse confirms (loading dose starts)", Confirm())
    at(30)
    tampered = ContinuousProgramme(
        "Heparin", Decimal(100), "units/kg/h", Decimal(250), weight_kg=kg80
    )
    act(
        "LVP-ICU-1",
        "tampered order: heparin 100 units/kg/h",
        Program(tampered, CommandSource.AUTO_PROGRAMME),
    )
    for minute in (31, 34, 45, 58):
        at(minute)
        act("PCA-MS-3", "patient presses the PCA button", PcaDemand())
    at(60)
    left = pumps["LVP-ICU-2"].display().vtbi_remaining_ml or Decimal(0)
    titrate = ContinuousProgramme(
        "Norepinephrine", Decimal("1.5"), "mcg/kg/min", left, weight_kg=kg80
    )
    act("LVP-ICU-2", "titrate to 1.5 mcg/kg/min (above soft max)", Program(titrate))
    act("LVP-ICU-2", "confirm without a reason", Confirm())
    act("LVP-ICU-2", "confirm with a reason", Confirm(override_reason="MAP < 60 despite fluids"))
    for minute in (70, 81, 92):
        at(minute)
        act("PCA-MS-3", "patient presses the PCA button", PcaDemand())
    at(120)
    act("LVP-ICU-1", "occlusion sensed", SensorChange(SensorKind.OCCLUSION, True))
    act("LVP-ICU-1", "restart while occluded", Resume())
    at(125)
    act("LVP-ICU-1", "line unkinked", SensorChange(SensorKind.OCCLUSION, False))
    act("LVP-ICU-1", "nurse acknowledges the alarm", AcknowledgeAlarm())
    act("LVP-ICU-1", "nurse restarts", Resume())
    at(240)

    table = Table(title="what happened")
    for column in ("min", "pump", "action", "outcome"):
        table.add_column(column)
    for step in steps:
        outcome = "[green]accepted[/]" if step.result.accepted else "[red]refused[/]"
        code = step.result.err_code
        detail = step.result.message + (f" (ERR {code})" if code else "")
        table.add_row(str(step.minute), step.pump, step.what, f"{outcome} {detail}")
    out.print(table)

    screens = Table(title="pump screens at minute 240 (computed from the delivery engine)")
    for column in ("pump", "state", "screen", "delivered", "log entries"):
        screens.add_column(column)
    for name, pump in pumps.items():
        shown = pump.display()
        screens.add_row(
            name,
            shown.state.value,
            "\n".join(shown.lines()[1:]),
            f"{pump.volume_infused_ml.quantize(Decimal('0.01'))} mL",
            str(len(pump.log)),
        )
    out.print(screens)
    refused = sum(1 for s in steps if not s.result.accepted)
    out.print(
        f"{len(steps)} commands, {refused} refused by the pumps' own checks.", highlight=False
    )
