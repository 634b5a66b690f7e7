"""The simulated EHR inside ``up --demo`` (``start_demo_ehr``): it gets an EHR certificate from
the stack's CA, sends orders to the demo ward over MLLP/TLS, and the stack's answers reach it;
it stops with the stack."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from tests.server.runtime.support import config as stack_config
from tests.server.runtime.support import run

from pumpguard.interop import AckCode
from pumpguard.lab.ehr import start_demo_ehr
from pumpguard.pki import CertKind, read_credential
from pumpguard.server.ehr_gateway import EhrSettings, NurseSettings
from pumpguard.server.runtime import Stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_demo_ehr_sends_orders_and_hears_back(tmp_path: Path) -> None:
    port = _free_port()
    settings = EhrSettings(
        ehr_endpoint=f"mllps://127.0.0.1:{port}",
        nurse=NurseSettings(confirm_after_s=0, reject_probability=0, edit_probability=0),
    )

    async def scenario() -> None:
        stack = await Stack.start(stack_config(tmp_path / "data", None, demo=True, ehr=settings))
        try:
            demo = await start_demo_ehr(stack, port, every_s=0.5)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 90
            while loop.time() < deadline:
                records = demo.ehr.result().records
                answered = [r for r in records if r.ack is not None and r.settled]
                if len(answered) >= 4 and any(r.rrg is not None for r in answered):
                    break
                await demo.ehr.wait_changed(0.5)
            records = demo.ehr.result().records
            assert all(r.delivery_error is None for r in records)
            assert sum(1 for r in records if r.ack is not None) >= 4
            rrgs = [r for r in records if r.rrg is not None]
            assert rrgs, "no RRG^O16 reached the demo EHR"
            assert all(r.rrg.acknowledged_id == r.order.control_id for r in rrgs if r.rrg)
            assert {r.ack.code for r in records if r.ack} <= {AckCode.CA, AckCode.CE, AckCode.CR}
        finally:
            await stack.stop()
        assert demo.task.done()

    run(scenario(), timeout_s=240)
    credential = read_credential(tmp_path / "data" / "ehr")
    assert credential.identity.kind is CertKind.EHR


def test_the_demo_ehr_needs_the_demo_and_an_ehr_port(tmp_path: Path) -> None:
    async def scenario() -> None:
        stack = await Stack.start(stack_config(tmp_path / "data", None))
        try:
            with pytest.raises(ValueError, match="demo and an EHR port"):
                await start_demo_ehr(stack, _free_port())
        finally:
            await stack.stop()

    run(scenario(), timeout_s=120)
