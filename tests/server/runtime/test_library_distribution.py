"""Signed drug-library distribution end to end, on a real stack: two key holders sign, the
server publishes, pumps are told over MQTT, fetch over HTTPS with their certificates, verify
with TUF and report; tampering, a missing certificate and a halt each stop what they must."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tests.server.runtime.support import (
    logged_in_api,
    provision,
    run,
    running_stack,
    wait_for_event,
)
from typer.testing import CliRunner, Result

from pumpguard.cli.app import app as cli
from pumpguard.clinical import PumpKind, load_library
from pumpguard.clock import SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import Confirm, Program, PumpState
from pumpguard.pki import CertKind, PeerIdentity, client_tls_context
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
from pumpguard.server.update_agent import UPDATE_ROOT_FILE
from pumpguard.updates import (
    HttpsFetcher,
    Installed,
    LagReason,
    RolloutPlan,
    ThresholdNotMetError,
    UpdateClient,
    UpdateEvent,
    UpdateKind,
    UpdateRefused,
)

LIBRARY_ID = "pumpguard-example"


def _library(version: int) -> bytes:
    raw = json.loads(EXAMPLE_LIBRARY.read_text(encoding="utf-8"))
    raw["version"] = version
    return json.dumps(raw, indent=1).encode("utf-8")


def _said(result: Result) -> str:
    """CLI output with the console's line wrapping undone."""
    return " ".join(result.output.split())


def _base_url(stack: Stack) -> str:
    return f"https://{stack.local_address}:{stack.updates_port}/"


def _distribution(stack: Stack) -> LibraryDistribution:
    assert stack.distribution is not None
    return stack.distribution


def _sign(stack: Stack, key: str) -> None:
    passphrase = key_holder_passphrase(stack.data_dir, key).read_bytes().strip()
    sign_release(stack.data_dir, SystemClock(), key, passphrase, SecurityEventLog())


def _publish_signed(stack: Stack, version: int) -> None:
    distribution = _distribution(stack)
    distribution.propose(_library(version))
    _sign(stack, "drug-libraries-1")
    _sign(stack, "drug-libraries-3")
    distribution.publish()


async def _pump(stack: Stack, ident: str) -> tuple[SimulatedPump, asyncio.Task[None]]:
    directory = await provision(stack, ident)
    clock = SystemClock()
    agent = pump_update_agent(stack, ident, directory)
    pump = SimulatedPump(
        ident,
        PumpKind.LVP,
        mqtt_connector(
            stack.local_address, stack.mqtt_port, directory, PeerIdentity(CertKind.PUMP, ident)
        ),
        clock=clock,
        events=SecurityEventLog(),
        library=load_library(EXAMPLE_LIBRARY),
        care_area="ICU",
        status_every_s=1.0,
        updates=agent,
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


def _statuses(stack: Stack) -> list[PumpStatusView]:
    with stack.store.transaction() as session:
        return IngestService(session, stack.store.ctx).statuses()


async def _compliance(stack: Stack) -> FleetCompliance:
    statuses = await asyncio.to_thread(_statuses, stack)
    return _distribution(stack).compliance(statuses)


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        await asyncio.sleep(0.05)


async def _stop(*pumps: tuple[SimulatedPump, asyncio.Task[None]]) -> None:
    for pump, _ in pumps:
        await pump.stop()
    await asyncio.gather(*(task for _, task in pumps), return_exceptions=True)


def test_two_key_holders_publish_and_two_pumps_install_over_mtls(
    tmp_path: Path, database_url: str | None
) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", database_url) as stack:
            distribution = _distribution(stack)
            idle = await _pump(stack, "PUMP-0101")
            busy = await _pump(stack, "PUMP-0102")
            _start_infusion(busy[0])

            distribution.propose(_library(2))
            _sign(stack, "drug-libraries-1")
            with pytest.raises(ThresholdNotMetError):
                distribution.publish()  # one key holder cannot publish alone
            _sign(stack, "drug-libraries-3")
            assert distribution.publish().version == 2

            snapshot = distribution.start_rollout(
                ["PUMP-0101", "PUMP-0102"],
                RolloutPlan((0.5,), success_share=1.0, min_observation_ms=0, soak_ms=600_000),
            )
            assert snapshot.waves == (("PUMP-0101",), ("PUMP-0102",))

            async def both_report() -> bool:
                return (await _compliance(stack)).on_current == 2

            await _until(both_report)
            for pump, _ in (idle, busy):
                assert pump.firmware.library is not None
                assert pump.firmware.library.version == 2
            running = busy[0].firmware.running_programmes()
            assert [r.library_version for r in running] == [1]  # kept its library
            assert busy[0].firmware.state is PumpState.INFUSING

            async def reports_programme_library() -> bool:
                status = {s.device_id: s for s in await asyncio.to_thread(_statuses, stack)}
                text = status["PUMP-0102"].programme or ""
                return "checked against library v1" in text

            await _until(reports_programme_library)
            final = await _compliance(stack)
            assert final.share_on_current == 1.0
            assert final.time_to_coverage_ms["t100_ms"] is not None
            assert distribution.snapshot() is not None
            for pump, _ in (idle, busy):
                assert isinstance(pump.events, SecurityEventLog)
                assert UpdateEvent.VERIFIED in pump.events.codes()
            await _stop(idle, busy)

    run(scenario(), timeout_s=120)


def test_a_tampered_library_is_refused_reported_and_halts_the_rollout(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", None) as stack:
            distribution = _distribution(stack)
            canary = await _pump(stack, "PUMP-0201")
            other = await _pump(stack, "PUMP-0202")
            _publish_signed(stack, 2)
            target = next(distribution.repository.targets_dir.rglob("*.pumpguard-example-2.json"))
            data = bytearray(target.read_bytes())
            data[data.index(b'"Heparin"') + 1] ^= 0x20  # "heparin": same length, other hash
            target.write_bytes(bytes(data))

            distribution.start_rollout(
                ["PUMP-0201", "PUMP-0202"],
                # the canary must apply (or fail) before the next wave: with no soak time
                # the wave would go out on the next loop turn whatever the canary did yet
                RolloutPlan((0.5,), success_share=0.5, min_observation_ms=0, soak_ms=60_000),
            )
            event = await wait_for_event(
                stack, UpdateEvent.TARGET_HASH_MISMATCH.value, device_id="PUMP-0201"
            )
            assert event.attributes["reported_by"] == "device"

            async def halted() -> bool:
                snapshot = distribution.snapshot()
                return snapshot is not None and snapshot.phase == "halted"

            await _until(halted)
            assert canary[0].firmware.library is not None
            assert canary[0].firmware.library.version == 1  # kept its library
            compliance = await _compliance(stack)
            reasons = {p.pump_id: p.lag for p in compliance.pumps}
            assert reasons == {
                "PUMP-0201": LagReason.VERIFICATION_FAILED,
                "PUMP-0202": LagReason.HALTED,
            }
            await asyncio.sleep(1.5)  # two roll-out loop turns: the halt holds
            assert other[0].firmware.library is not None
            assert other[0].firmware.library.version == 1
            await _stop(canary, other)

    run(scenario(), timeout_s=120)


def test_only_pumps_with_certificates_from_our_ca_fetch(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", None) as stack:
            _publish_signed(stack, 2)
            pump_dir = await provision(stack, "PUMP-0301")
            root = (pump_dir / UPDATE_ROOT_FILE).read_bytes()
            anonymous = tmp_path / "anonymous"
            anonymous.mkdir()
            (anonymous / "ca.pem").write_bytes((pump_dir / "ca.pem").read_bytes())
            server_cert = stack.data_dir / "server" / "ingest"
            outcomes = []
            for name, cert_dir in (("anonymous", anonymous), ("server", server_cert)):
                state = tmp_path / f"state-{name}"
                UpdateClient.provision(state, root)
                client = UpdateClient(
                    state,
                    HttpsFetcher(client_tls_context(cert_dir)),
                    clock=SystemClock(),
                    events=SecurityEventLog(),
                    device_id="PUMP-0301",
                    base_url=_base_url(stack),
                )
                installed = Installed(UpdateKind.DRUG_LIBRARY, LIBRARY_ID, 1)
                outcomes.append(
                    await asyncio.to_thread(
                        client.fetch, f"drug-libraries/{LIBRARY_ID}-2.json", installed
                    )
                )
            assert all(isinstance(o, UpdateRefused) for o in outcomes)
            assert [o.code for o in outcomes if isinstance(o, UpdateRefused)] == [
                UpdateEvent.REPOSITORY_UNAVAILABLE,
                UpdateEvent.REPOSITORY_UNAVAILABLE,
            ]
            await wait_for_event(stack, "pki.tls.no_client_cert", component="updates")
            await wait_for_event(stack, "pki.tls.wrong_purpose", component="updates")

    run(scenario(), timeout_s=60)


def test_a_rollout_through_the_api_is_halted_before_the_rest_of_the_fleet(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", None) as stack:
            canary = await _pump(stack, "PUMP-0401")
            rest = await _pump(stack, "PUMP-0402")
            _publish_signed(stack, 2)
            async with logged_in_api(stack, "biomed-1", Role.BIOMED) as (http, auth):
                started = await http.post(
                    "/api/v1/deployment/rollouts",
                    json={"canary_share": 0.5, "min_observation_s": 600, "soak_s": 1800},
                    headers=auth,
                )
                assert started.status_code == 200, started.text
                assert started.json()["waves"] == [["PUMP-0401"], ["PUMP-0402"]]

                async def canary_reports() -> bool:
                    return (await _compliance(stack)).on_current == 1

                await _until(canary_reports)
                halted = await http.post(
                    "/api/v1/deployment/rollouts/current/halt",
                    json={"reason": "complaint from ICU"},
                    headers=auth,
                )
                assert halted.status_code == 200, halted.text
                assert halted.json()["phase"] == "halted"
                compliance = await http.get("/api/v1/deployment/compliance", headers=auth)
                body = compliance.json()
                assert (body["pumps"], body["on_current"]) == (2, 1)
                assert [(p["pump_id"], p["lag"]) for p in body["laggards"]] == [
                    ("PUMP-0402", "halted")
                ]
                again = await http.post(
                    "/api/v1/deployment/rollouts/current/halt",
                    json={"reason": "twice"},
                    headers=auth,
                )
                assert again.status_code == 422
            with stack.store.transaction() as session:
                actions = [e.action for e in stack.store.ctx.audit(session).entries(limit=1000)]
            assert actions.count("library.rollout.started") == 1
            assert actions.count("library.rollout.halted") == 1
            assert rest[0].firmware.library is not None
            assert rest[0].firmware.library.version == 1
            await _stop(canary, rest)

    run(scenario(), timeout_s=120)


def test_key_holders_sign_with_the_cli_and_library_status_reports_the_fleet(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"

    async def fleet_on_v1() -> None:
        async with running_stack(data, None) as stack:
            pump = await _pump(stack, "PUMP-0501")

            async def reported() -> bool:
                statuses = await asyncio.to_thread(_statuses, stack)
                return any(s.library_version == "1" for s in statuses)

            await _until(reported)
            await _stop(pump)

    run(fleet_on_v1(), timeout_s=60)
    runner = CliRunner()
    library = tmp_path / "v2.json"
    library.write_bytes(_library(2))
    base = ["--data-dir", str(data)]

    def key_file(name: str) -> str:
        return str(key_holder_passphrase(data, name))

    proposed = runner.invoke(cli, ["updates", "propose", str(library), *base])
    assert proposed.exit_code == 0, proposed.output
    assert "0 of 2 signatures" in _said(proposed)
    first = ["updates", "sign", "--key", "drug-libraries-2", "--passphrase-file"]
    signed = runner.invoke(cli, [*first, key_file("drug-libraries-2"), *base])
    assert signed.exit_code == 0, signed.output
    twice = runner.invoke(cli, [*first, key_file("drug-libraries-2"), *base])
    assert twice.exit_code == 1 and "different key holder" in _said(twice)
    early = runner.invoke(cli, ["updates", "publish", *base])
    assert early.exit_code == 1 and "1 of the 2 signatures" in _said(early)
    wrong = runner.invoke(
        cli,
        [
            "updates",
            "sign",
            "--key",
            "drug-libraries-3",
            "--passphrase-file",
            key_file("drug-libraries-1"),
            *base,
        ],
    )
    assert wrong.exit_code == 1 and "does not decrypt" in _said(wrong)
    second = [
        "updates",
        "sign",
        "--key",
        "drug-libraries-3",
        "--passphrase-file",
        key_file("drug-libraries-3"),
    ]
    assert runner.invoke(cli, [*second, *base]).exit_code == 0
    published = runner.invoke(cli, ["updates", "publish", *base])
    assert published.exit_code == 0, published.output
    status = runner.invoke(cli, ["library", "status", "--json", *base])
    assert status.exit_code == 0, status.output
    body = json.loads(status.output)
    assert (body["library"], body["version"], body["pumps"], body["on_current"]) == (
        LIBRARY_ID,
        2,
        1,
        0,
    )
    assert body["laggards"][0]["lag"] in ("offline", "not-released")
    text = runner.invoke(cli, ["library", "status", *base])
    assert text.exit_code == 0 and "0 of 1 pumps" in _said(text)
