"""The simulated ward of ``pumpguard up --demo``: 24 real pump firmwares over real mTLS MQTT.

Pumps ``PUMP-0001``..``PUMP-0024`` (ICU 0001-0008, Med-Surg 0009-0016, Oncology 0017-0024) are
provisioned like any pump (registered, onboarded, in service, certificate on disk under
``DATA_DIR/devices/``), run the example drug library, and each talks to the embedded broker
through its own ``DeviceLink``. 0001-0004 stay idle unless programmed; the others have a nurse
(``ward_workload``) who programmes an infusion from the library within its limits, confirms it
at the pump, stops it after a few minutes or lets it complete, and starts another later.

The server has no patient registry yet (that comes with the EHR issue): the ward's roster
(pump, care area, patient MRN ``1000NN`` at ``PUMP-00NN``) is written to
``DATA_DIR/demo/ward.json``, and each programme carries its patient's MRN, which the pump's
events report. The demo administrator is created once; its password and TOTP URI are returned
for printing on that first run only.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from pumpguard.clinical import DrugEntry, DrugLibrary, PumpKind, load_library
from pumpguard.clock import SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import (
    AcknowledgeAlarm,
    Cancel,
    Clear,
    Confirm,
    ContinuousProgramme,
    Pause,
    Program,
    PumpState,
)
from pumpguard.pki import CertKind, PeerIdentity
from pumpguard.server.authz import Role
from pumpguard.server.bedside import bedside_nurse
from pumpguard.server.device_runtime import SeqReservation, SimulatedPump, mqtt_connector
from pumpguard.server.errors import AlreadyExists
from pumpguard.server.library_distribution import publish_demo_library, pump_update_agent
from pumpguard.server.users import NewUserCredentials, UserService

if TYPE_CHECKING:
    from pumpguard.server.runtime import Stack

__all__ = [
    "DEMO_ADMIN",
    "DEMO_ANALYST",
    "DemoWard",
    "WardBed",
    "demo_beds",
    "programme_for",
    "start_demo_ward",
    "ward_workload",
]

DEMO_ADMIN = "demo-admin"
DEMO_ANALYST = "demo-analyst"
"""A security analyst: the demo's live attack launcher needs ``attacks.launch``, which an admin
does not hold."""
_AREAS = (("ICU", 1, 8), ("Med-Surg", 9, 16), ("Oncology", 17, 24))
_IDLE = range(1, 5)
_MINUTE_MS = 60_000
_WEIGHT_KG = Decimal(70)
_VTBI_ML = Decimal(100)


@dataclass(frozen=True, slots=True)
class WardBed:
    pump: str
    care_area: str
    mrn: str
    busy: bool


@dataclass
class DemoWard:
    beds: tuple[WardBed, ...]
    library: DrugLibrary
    roster: Path
    admin_username: str
    admin: NewUserCredentials | None
    analyst: NewUserCredentials | None = None
    """None when the account already existed (its credentials were printed then)."""
    analyst_username: str = DEMO_ANALYST
    pumps: list[SimulatedPump] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        for pump in self.pumps:
            await pump.stop()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def demo_beds() -> tuple[WardBed, ...]:
    beds = []
    for area, first, last in _AREAS:
        for number in range(first, last + 1):
            beds.append(
                WardBed(f"PUMP-{number:04d}", area, f"1000{number:02d}", number not in _IDLE)
            )
    return tuple(beds)


def _middle(low: Decimal | None, high: Decimal | None) -> Decimal | None:
    if low is not None and high is not None:
        return (Decimal(low) + Decimal(high)) / 2
    if high is not None:
        return Decimal(high) / 2
    return None


def _clip(value: Decimal, low: Decimal | None, high: Decimal | None) -> Decimal:
    if low is not None and value < low:
        value = Decimal(low)
    if high is not None and value > high:
        value = Decimal(high)
    return value


def programme_for(entry: DrugEntry, mrn: str, rng: random.Random) -> ContinuousProgramme | None:
    """A programme inside the entry's soft limits (no override needed), or None."""
    limits = entry.continuous
    typical = _middle(limits.soft_min, limits.soft_max) or _middle(limits.hard_min, limits.hard_max)
    if typical is None or typical <= 0:
        return None
    dose = (typical * Decimal(rng.uniform(0.8, 1.2))).quantize(Decimal("0.01"))
    dose = _clip(dose, limits.soft_min, limits.soft_max)
    vtbi = _VTBI_ML
    if entry.vtbi_ml is not None:
        low = entry.vtbi_ml.soft_min or entry.vtbi_ml.hard_min
        high = entry.vtbi_ml.soft_max or entry.vtbi_ml.hard_max
        vtbi = _clip(vtbi, low, high)
    weight = None
    if "/kg" in entry.dose_unit:
        weight = _WEIGHT_KG
        if entry.weight_kg is not None:
            weight = _clip(weight, entry.weight_kg.min_kg, entry.weight_kg.max_kg)
    return ContinuousProgramme(
        entry.name,
        dose,
        entry.dose_unit,
        vtbi,
        weight_kg=weight,
        concentration=entry.to_concentration(),
        patient_id=mrn,
    )


def ward_workload(bed: WardBed) -> Callable[[SimulatedPump], None]:
    """The nurse at one bed: programme, confirm, stop after minutes, a pause, again."""

    def act(pump: SimulatedPump) -> None:
        firmware = pump.firmware
        now = pump.clock.now_ms()
        memo = pump.workload_state
        next_at = memo.setdefault("next_at", now + pump.rng.randint(5, 90) * 1000)
        if now < next_at:
            return
        state = firmware.state
        if firmware.alarms:
            firmware.handle(AcknowledgeAlarm())
        if state is PumpState.IDLE:
            _start(pump, bed)
            memo["next_at"] = now + pump.rng.randint(3, 15) * _MINUTE_MS
        elif state is PumpState.INFUSING:
            firmware.handle(Pause())
            memo["next_at"] = now + pump.rng.randint(20, 60) * 1000
        elif state in (PumpState.PAUSED, PumpState.KVO):
            firmware.handle(Clear())
            memo["next_at"] = now + pump.rng.randint(1, 4) * _MINUTE_MS
        elif state is PumpState.PROGRAMMING:
            firmware.handle(Cancel())
            memo["next_at"] = now + _MINUTE_MS
        else:
            memo["next_at"] = now + 5 * _MINUTE_MS

    return act


def _start(pump: SimulatedPump, bed: WardBed) -> None:
    firmware = pump.firmware
    library = firmware.library
    area = None if library is None else library.care_area(bed.care_area)
    if area is None:
        return
    entries = [e for e in area.entries if PumpKind.LVP in e.pump_kinds and e.pca is None]
    pump.rng.shuffle(entries)
    for entry in entries[:3]:
        programme = programme_for(entry, bed.mrn, pump.rng)
        if programme is None:
            continue
        if not firmware.handle(Program(programme)).accepted:
            continue
        if firmware.handle(Confirm()).accepted:
            return
        firmware.handle(Cancel())


async def start_demo_ward(stack: Stack) -> DemoWard:
    """Provision the ward, create the demo admin and analyst, and start the 24 pumps on
    ``stack``."""
    library = load_library(EXAMPLE_LIBRARY)
    beds = demo_beds()
    directories: dict[str, Path] = {}
    for bed in beds:
        directories[bed.pump] = await asyncio.to_thread(
            stack.provision_device, bed.pump, "lvp", location=bed.care_area
        )
    admin = await asyncio.to_thread(_create_account, stack, DEMO_ADMIN, Role.ADMIN)
    analyst = await asyncio.to_thread(_create_account, stack, DEMO_ANALYST, Role.SECURITY_ANALYST)
    roster = stack.data_dir.resolve() / "demo" / "ward.json"
    roster.parent.mkdir(parents=True, exist_ok=True)
    roster.write_text(
        json.dumps(
            {
                "library": {"id": library.library_id, "version": library.version},
                "beds": [
                    {"pump": b.pump, "care_area": b.care_area, "mrn": b.mrn, "busy": b.busy}
                    for b in beds
                ],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    ward = DemoWard(beds, library, roster, DEMO_ADMIN, admin, analyst)
    await publish_demo_library(stack, EXAMPLE_LIBRARY.read_bytes())
    clock = SystemClock()
    host = stack.mqtt_host
    for bed in beds:
        directory = directories[bed.pump]
        pump = SimulatedPump(
            bed.pump,
            PumpKind.LVP,
            mqtt_connector(
                host,
                stack.mqtt_port,
                directory,
                PeerIdentity(CertKind.PUMP, bed.pump),
                events=stack.events,
            ),
            clock=clock,
            events=stack.events,
            library=library,
            care_area=bed.care_area,
            seq=SeqReservation(directory / "outbox-seq"),
            workload=_workload(stack, bed),
            updates=pump_update_agent(stack, bed.pump, directory),
        )
        ward.pumps.append(pump)
        ward.tasks.append(asyncio.ensure_future(pump.run()))
    if stack.ehr is not None:
        for bed in beds:
            stack.ehr.associate(bed.pump, bed.mrn)
    stack.on_stop(ward.stop)
    stack.demo = ward
    return ward


def _workload(stack: Stack, bed: WardBed) -> Callable[[SimulatedPump], None] | None:
    """The ward's nurse, and with an EHR interface the nurse who answers orders at the pump."""
    ward = ward_workload(bed) if bed.busy else None
    if stack.config.ehr is None:
        return ward
    return bedside_nurse(stack.config.ehr.nurse, ward)


def _create_account(stack: Stack, username: str, role: Role) -> NewUserCredentials | None:
    try:
        with stack.store.transaction() as session:
            return UserService(session, stack.store.ctx).create_user(
                username, role, "pumpguard-up-demo"
            )
    except AlreadyExists:
        return None
