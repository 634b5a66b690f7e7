"""``pumpguard ehr run``: bad flags are usage errors (exit 2) that name the flag; missing or
broken inputs are exit 1 with what to do; a run against an order consumer prints JSON records."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.clinical import PumpKind, load_library
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.interop import (
    MllpServer,
    OrderContext,
    PeerInfo,
    PivReceiver,
    PumpStatus,
    TransportProfile,
    check_order,
)
from pumpguard.pki import CertificateAuthority, CertKind, server_tls_context
from pumpguard.server.demo import demo_beds

runner = CliRunner()
PASSPHRASE = b"correct horse battery staple"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["ehr", "run", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "nowhere", "--listen", "0"], "--server"),
        (["--server", "mllp://127.0.0.1:2575", "--listen", "0"], "only over MLLP in TLS"),
        (["--server", "https://127.0.0.1:2575", "--listen", "0"], "scheme must be mllps"),
        (["--server", "127.0.0.1:2575", "--listen", "70000"], "--listen must be a port"),
        (["--server", "127.0.0.1:2575", "--listen", "0", "--rate", "0"], "--rate must be"),
        (["--server", "127.0.0.1:2575", "--listen", "0", "--orders", "0"], "--orders must be"),
        (["--server", "127.0.0.1:2575", "--listen", "0", "--rate", "x"], "--rate"),
        (["--listen", "0"], "--server"),
        (["--server", "127.0.0.1:2575", "--listen", "0", "--wait", "-1"], "--wait cannot be"),
    ],
)
def test_bad_flags_are_usage_errors(args: list[str], message: str) -> None:
    code, output = _run(*args)
    assert code == 2, output
    assert message in output


def test_a_missing_credential_says_how_to_issue_one(tmp_path: Path) -> None:
    code, output = _run("--server", "127.0.0.1:2575", "--listen", "0", "--data-dir", str(tmp_path))
    assert code == 1
    assert "no EHR credential" in output and "pki issue --kind ehr" in output


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ehr-cli-pki")
    ca = CertificateAuthority.init(root / "ca", PASSPHRASE)
    sans = ("localhost", "127.0.0.1")
    ca.issue(CertKind.SERVER, "pumpserver", sans=sans, also_client=True).write(root / "server")
    ca.issue(CertKind.EHR, "ehr-sim", sans=sans).write(root / "data" / "ehr")
    return {"server": root / "server", "data": root / "data"}


def test_a_broken_roster_is_refused(creds: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "demo").mkdir(parents=True)
    (data / "demo" / "ward.json").write_text("{not json")
    code, output = _run(
        "--server",
        "127.0.0.1:2575",
        "--listen",
        "0",
        "--data-dir",
        str(data),
        "--cert-dir",
        str(creds["data"] / "ehr"),
    )
    assert code == 1
    assert "ward roster" in output and "not JSON" in output


@pytest.fixture
def consumer(creds: dict[str, Path]) -> Iterator[int]:
    """An order consumer that only commits (ACK^O15), in a thread of its own."""
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    port: list[int] = []
    library = load_library(EXAMPLE_LIBRARY)
    pumps = {b.pump: PumpStatus(b.pump, PumpKind.LVP, care_area=b.care_area) for b in demo_beds()}

    async def serve() -> None:
        receiver = PivReceiver()

        async def handle(text: str, peer: PeerInfo) -> str | None:
            reception = receiver.receive(text, str(peer))
            if reception.order is not None:
                check_order(reception.order, OrderContext(pumps, library, datetime.now(UTC)))
            return reception.ack

        server = MllpServer(
            handle,
            profile=TransportProfile.SECURE,
            tls_context=server_tls_context(creds["server"]),
        )
        async with server:
            port.append(server.port)
            stop.append(asyncio.Event())
            ready.set()
            await stop[0].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    assert ready.wait(10)
    yield port[0]
    loop.call_soon_threadsafe(stop[0].set)
    thread.join(10)
    loop.close()


def test_a_run_prints_one_json_record_per_order(creds: dict[str, Path], consumer: int) -> None:
    code, output = _run(
        "--server",
        f"localhost:{consumer}",
        "--listen",
        "0",
        "--data-dir",
        str(creds["data"]),
        "--orders",
        "4",
        "--rate",
        "20",
        "--wait",
        "1",
        "--json",
    )
    assert code == 0, output
    document = json.loads(output[output.index("{") :])
    records = document["orders"]
    assert len(records) == 4
    for record in records:
        assert record["ack"] in ("CA", "CE", "CR")
        assert record["ack_ms"] is not None and record["ack_ms"] >= 0
        if record["ack"] == "CA":
            # This consumer never sends an RRG^O16: the run reports it missing, not invented.
            assert record["rrg"] is None and record["rrg_ms"] is None
            assert not record["matches"]
    summary = document["summary"]
    assert summary["orders"] == 4 and summary["no_ack"] == 0
    assert summary["rrg_missing"] == sum(1 for r in records if r["ack"] == "CA")
