"""The production path: Mosquitto configured by ``pumpguard pki mosquitto`` carries the fleet's
traffic to a ``Stack`` started with ``broker_url`` (``pumpguard up --broker``)."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from tests.server.runtime.support import (
    provision,
    run,
    running_stack,
    security_events,
    wait_stored,
)
from tests.transport.mosquitto_process import free_port, needs_mosquitto, running_mosquitto
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.devices.infusion import PumpState
from pumpguard.pki import client_tls_context, read_credential
from pumpguard.server.runtime import StackError, parse_broker_url
from pumpguard.transport import (
    Channel,
    MqttClient,
    ReasonCode,
    StatusMessage,
    TransportEvent,
    device_topic,
    encode_message,
)


def _status(device_id: str, seq: int) -> bytes:
    return encode_message(
        StatusMessage(
            device_id=device_id,
            seq=seq,
            sent_at_ms=seq,
            state=PumpState.IDLE,
            battery_percent=70,
            on_mains=True,
            firmware_version="t",
        )
    )


@needs_mosquitto
def test_the_stack_runs_behind_mosquitto_configured_by_the_cli(tmp_path: Path) -> None:
    data, conf_dir, port = tmp_path / "data", tmp_path / "mosquitto", free_port()
    runner = CliRunner()
    init = runner.invoke(app, ["pki", "init", "--data-dir", str(data)])
    assert init.exit_code == 0, init.output
    made = runner.invoke(
        app,
        [
            "pki", "mosquitto", "--data-dir", str(data), "--out", str(conf_dir),
            "--san", "127.0.0.1", "--port", str(port), "--bind", "127.0.0.1",
            "--user", getpass.getuser(),
        ],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    again = runner.invoke(
        app,
        ["pki", "mosquitto", "--data-dir", str(data), "--out", str(conf_dir), "--san", "x"],
    )
    assert again.exit_code == 1 and "--force" in again.output

    async def scenario() -> tuple[int, list[ReasonCode], bool]:
        url = f"mqtts://127.0.0.1:{port}"
        async with running_stack(data, None, broker_url=url) as stack:
            assert stack.broker is None and stack.mqtt_port == port
            creds = await provision(stack, "PUMP-0001")
            pump = MqttClient(
                "127.0.0.1",
                port,
                client_tls_context(creds),
                read_credential(creds).identity,
                connect_timeout_s=10,
            )
            await pump.connect()
            topic = device_topic("PUMP-0001", Channel.TELEMETRY)
            reasons = [await pump.publish(topic, _status("PUMP-0001", n)) for n in (1, 2)]
            # Mosquitto forwards payloads unread: the server's own check refuses the spoof.
            reasons.append(await pump.publish(topic, _status("PUMP-0002", 3)))
            stored = await wait_stored(stack, "PUMP-0001", 2)
            await pump.close()
            spoofed = any(e.code == TransportEvent.PAYLOAD_SPOOFED for e in security_events(stack))
            return stored, reasons, spoofed

    with running_mosquitto(conf_dir / "mosquitto.conf", port):
        stored, reasons, spoofed = run(scenario())
    assert stored == 2
    assert reasons == [ReasonCode.SUCCESS] * 3
    assert spoofed


@pytest.mark.parametrize(
    "url",
    ["mqtt://broker:1883", "mqtts://broker", "mqtts://:8883", "mqtts://b:99999", "mqtts://b:1/x"],
)
def test_a_bad_broker_url_is_refused_by_name(url: str) -> None:
    with pytest.raises(StackError, match=r"mqtts://HOST:PORT|valid port"):
        parse_broker_url(url)


def test_up_refuses_a_bad_broker_url_before_starting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["up", "--data-dir", str(tmp_path), "--broker", "mqtt://plain:1883"]
    )
    assert result.exit_code == 2
    assert "--broker" in result.output and "mqtts://HOST:PORT" in result.output
