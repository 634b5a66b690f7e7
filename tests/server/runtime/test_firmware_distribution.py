"""Firmware travels the drug library's path, end to end on a real stack: two firmware key
holders sign an image, the server publishes it and rolls it out with ``install-firmware``, each
pump fetches over HTTPS with its certificate, verifies with TUF, writes the inactive A/B slot,
boots it only when idle, self-tests it and rolls back when the test fails; the status telemetry
says which firmware really runs, and a rollback or a tampered image halts the roll-out."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.server.runtime.support import (
    logged_in_api,
    provision,
    run,
    running_stack,
    wait_for_event,
)
from typer.testing import CliRunner

from pumpguard.cli.app import app as cli
from pumpguard.clinical import PumpKind, load_library
from pumpguard.clock import SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import Clear, Confirm, Pause, Program, PumpState
from pumpguard.pki import CertKind, PeerIdentity
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import Role
from pumpguard.server.demo import programme_for
from pumpguard.server.device_runtime import SimulatedPump, mqtt_connector
from pumpguard.server.ingest import IngestService, PumpStatusView
from pumpguard.server.library_distribution import (
    FleetCompliance,
    LibraryDistribution,
    key_holder_passphrase,
    pump_update_agent,
    sign_release,
)
from pumpguard.server.runtime import Stack
from pumpguard.server.update_agent import FIRMWARE_PRODUCT, firmware_image
from pumpguard.updates import (
    LagReason,
    RolloutPlan,
    Slot,
    UpdateEvent,
    UpdateKind,
)

PumpTask = tuple[SimulatedPump, "asyncio.Task[None]"]


def _firmware(stack: Stack) -> LibraryDistribution:
    assert stack.distribution is not None and stack.distribution.firmware is not None
    return stack.distribution.firmware


def _sign(stack: Stack, key: str) -> None:
    passphrase = key_holder_passphrase(stack.data_dir, key).read_bytes().strip()
    sign_release(
        stack.data_dir, SystemClock(), key, passphrase, SecurityEventLog(), UpdateKind.FIRMWARE
    )


def _publish(stack: Stack, version: int, image: bytes) -> None:
    firmware = _firmware(stack)
    firmware.propose_firmware(FIRMWARE_PRODUCT, version, image)
    _sign(stack, "firmware-1")
    _sign(stack, "firmware-2")
    firmware.publish()


async def _pump(stack: Stack, ident: str) -> PumpTask:
    directory = await provision(stack, ident)
    pump = SimulatedPump(
        ident,
        PumpKind.LVP,
        mqtt_connector(
            stack.local_address, stack.mqtt_port, directory, PeerIdentity(CertKind.PUMP, ident)
        ),
        clock=SystemClock(),
        events=SecurityEventLog(),
        library=load_library(EXAMPLE_LIBRARY),
        care_area="ICU",
        status_every_s=1.0,
        updates=pump_update_agent(stack, ident, directory),
    )
    pump.power_on()
    return pump, asyncio.ensure_future(pump.run())


def _start_infusion(pump: SimulatedPump) -> None:
    library = pump.firmware.library
    assert library is not None
    area = library.care_area("ICU")
    assert area is not None
    entry = next(e for e in area.entries if e.name == "Heparin")
    programme = programme_for(entry, "100001", random.Random(1))
    assert programme is not None
    assert pump.firmware.handle(Program(programme)).accepted
    assert pump.firmware.handle(Confirm()).accepted
    assert pump.firmware.state is PumpState.INFUSING


def _statuses(stack: Stack) -> dict[str, PumpStatusView]:
    with stack.store.transaction() as session:
        return {s.device_id: s for s in IngestService(session, stack.store.ctx).statuses()}


async def _compliance(stack: Stack) -> FleetCompliance:
    statuses = await asyncio.to_thread(_statuses, stack)
    return _firmware(stack).compliance(list(statuses.values()))


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        await asyncio.sleep(0.05)


async def _halted(stack: Stack) -> None:
    async def check() -> bool:
        snapshot = _firmware(stack).snapshot()
        return snapshot is not None and snapshot.phase == "halted"

    await _until(check)


def _state(pump: SimulatedPump) -> PumpState:
    """Read afresh (a type checker keeps the state an earlier assert narrowed it to)."""
    return pump.firmware.state


async def _stop(*pumps: PumpTask) -> None:
    for pump, _ in pumps:
        await pump.stop()
    await asyncio.gather(*(task for _, task in pumps), return_exceptions=True)


def test_a_signed_image_installs_when_idle_and_waits_for_an_infusion_to_end(
    tmp_path: Path,
) -> None:
    image = tmp_path / "pumpguard-sim-2.bin"
    image.write_bytes(firmware_image(FIRMWARE_PRODUCT, 2, b"\x00new code" * 100))
    runner = CliRunner()

    async def scenario() -> None:
        async with running_stack(tmp_path / "data", None) as stack:
            base = ["--data-dir", str(stack.data_dir)]
            idle = await _pump(stack, "PUMP-0601")
            busy = await _pump(stack, "PUMP-0602")
            _start_infusion(busy[0])

            proposed = runner.invoke(
                cli,
                [
                    *("updates", "propose", str(image), "--kind", "firmware"),
                    *("--product", FIRMWARE_PRODUCT, "--version", "2"),
                    *base,
                ],
            )
            assert proposed.exit_code == 0, proposed.output
            assert "firmware/pumpguard-sim-2.bin" in proposed.output
            for key in ("firmware-1", "drug-libraries-1", "firmware-2"):
                signed = runner.invoke(
                    cli,
                    [
                        *("updates", "sign", "--kind", "firmware", "--key", key),
                        *("--passphrase-file", str(key_holder_passphrase(stack.data_dir, key))),
                        *base,
                    ],
                )
                # a pharmacist's key is not delegated to sign firmware
                assert signed.exit_code == (1 if key.startswith("drug") else 0), signed.output
            published = runner.invoke(cli, ["updates", "publish", "--kind", "firmware", *base])
            assert published.exit_code == 0, published.output

            _firmware(stack).start_rollout(
                ["PUMP-0601", "PUMP-0602"],
                RolloutPlan((0.5,), success_share=1.0, min_observation_ms=0, soak_ms=600_000),
            )

            async def idle_reports_v2() -> bool:
                status = (await asyncio.to_thread(_statuses, stack)).get("PUMP-0601")
                return status is not None and status.firmware_version == "pumpguard-sim v2"

            await _until(idle_reports_v2)
            assert idle[0].updates is not None
            assert idle[0].updates.slots.active is Slot.B

            async def busy_waits() -> bool:
                compliance = await _compliance(stack)
                lags = {p.pump_id: p.lag for p in compliance.pumps}
                return lags.get("PUMP-0602") is LagReason.INFUSING

            await _until(busy_waits)
            await asyncio.sleep(1.5)  # more ticks: an infusing pump never boots the image
            pump = busy[0]
            assert pump.firmware.state is PumpState.INFUSING
            assert pump.updates is not None and pump.updates.staged_firmware is not None
            assert pump.updates.firmware_version == "pumpguard-sim v1"

            assert pump.firmware.handle(Pause()).accepted
            await asyncio.sleep(1.5)  # paused is not idle either
            assert pump.updates.firmware_version == "pumpguard-sim v1"
            assert pump.firmware.handle(Clear()).accepted
            assert _state(pump) is PumpState.IDLE

            async def both_report() -> bool:
                return (await _compliance(stack)).on_current == 2

            await _until(both_report)
            assert pump.updates.firmware_version == "pumpguard-sim v2"
            final = await _compliance(stack)
            assert final.kind is UpdateKind.FIRMWARE and final.share_on_current == 1.0
            assert final.time_to_coverage_ms["t100_ms"] is not None
            await _stop(idle, busy)

    run(scenario(), timeout_s=120)


def test_an_image_failing_its_self_test_rolls_back_and_halts_the_api_rollout(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", None) as stack:
            canary = await _pump(stack, "PUMP-0701")
            rest = await _pump(stack, "PUMP-0702")
            # Signed correctly as v2, but built wrong: its header names another version.
            _publish(stack, 2, firmware_image(FIRMWARE_PRODUCT, 7, b"broken build"))
            async with logged_in_api(stack, "biomed-1", Role.BIOMED) as (http, auth):
                releases = await http.get("/api/v1/deployment/firmware/releases", headers=auth)
                assert [t["path"] for t in releases.json()["published"]] == [
                    "firmware/pumpguard-sim-2.bin"
                ]
                started = await http.post(
                    "/api/v1/deployment/firmware/rollouts",
                    json={"canary_share": 0.5, "min_observation_s": 0, "soak_s": 1800},
                    headers=auth,
                )
                assert started.status_code == 200, started.text
                assert started.json()["waves"] == [["PUMP-0701"], ["PUMP-0702"]]

                event = await wait_for_event(
                    stack, UpdateEvent.LOCAL_FAILURE.value, device_id="PUMP-0701"
                )
                assert event.attributes["failure"] == "self-test-failed"
                assert event.attributes["reported_by"] == "device"
                await _halted(stack)
                current = await http.get(
                    "/api/v1/deployment/firmware/rollouts/current", headers=auth
                )
                assert current.json()["phase"] == "halted"

                async def canary_reports_v1() -> bool:
                    body = (
                        await http.get("/api/v1/deployment/firmware/compliance", headers=auth)
                    ).json()
                    lags = {
                        p["pump_id"]: (p["lag"], p["firmware_version"]) for p in body["laggards"]
                    }
                    return lags == {
                        "PUMP-0701": ("self-test-failed", "pumpguard-sim v1"),
                        "PUMP-0702": ("halted", "pumpguard-sim v1"),
                    }

                await _until(canary_reports_v1)
            assert canary[0].updates is not None
            assert canary[0].updates.slots.active is Slot.A  # booted B, came back to A
            assert canary[0].updates.slots.active_version == 1
            await asyncio.sleep(1.5)  # two roll-out loop turns: the halt holds
            assert rest[0].updates is not None
            assert rest[0].updates.slots.inactive_version is None  # never notified
            with stack.store.transaction() as session:
                actions = [e.action for e in stack.store.ctx.audit(session).entries(limit=1000)]
            assert actions.count("firmware.rollout.started") == 1
            await _stop(canary, rest)

    run(scenario(), timeout_s=120)


def test_a_tampered_image_is_refused_and_halts_the_rollout(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", None) as stack:
            canary = await _pump(stack, "PUMP-0801")
            other = await _pump(stack, "PUMP-0802")
            _publish(stack, 2, firmware_image(FIRMWARE_PRODUCT, 2, b"good code"))
            firmware = _firmware(stack)
            stored = next(firmware.repository.targets_dir.rglob("*.pumpguard-sim-2.bin"))
            stored.write_bytes(stored.read_bytes().replace(b"good", b"evil"))

            firmware.start_rollout(
                ["PUMP-0801", "PUMP-0802"],
                RolloutPlan((0.5,), success_share=1.0, min_observation_ms=0, soak_ms=600_000),
            )
            event = await wait_for_event(
                stack, UpdateEvent.TARGET_HASH_MISMATCH.value, device_id="PUMP-0801"
            )
            assert event.attributes["reported_by"] == "device"
            await _halted(stack)
            compliance = await _compliance(stack)
            assert {p.pump_id: p.lag for p in compliance.pumps} == {
                "PUMP-0801": LagReason.VERIFICATION_FAILED,
                "PUMP-0802": LagReason.HALTED,
            }
            for pump, _ in (canary, other):
                assert pump.updates is not None
                assert pump.updates.firmware_version == "pumpguard-sim v1"
                assert pump.updates.slots.inactive_version is None  # nothing was written
            await _stop(canary, other)

    run(scenario(), timeout_s=120)
