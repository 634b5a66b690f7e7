"""``pumpguard up`` and ``pumpguard device run`` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.server.runtime.support import provision, run, running_stack, wait_stored
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.cli.device import parse_server_url

_MAIN = "from pumpguard.cli.app import main; main()"
_FREE_PORTS = ("--http-port", "0", "--mqtt-port", "0")


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUMPGUARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["HOME"] = str(tmp_path)
    return env


def _read_until(process: subprocess.Popen[str], marker: str) -> list[str]:
    """Lines of stdout up to the one containing ``marker`` (the test timeout bounds it)."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"the process ended before printing {marker!r}: {''.join(lines)}")


def _up(tmp_path: Path, data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _MAIN, "up", "--data-dir", str(data_dir), *_FREE_PORTS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(tmp_path),
    )


def test_up_starts_says_where_it_listens_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    process = _up(tmp_path, data_dir)
    try:
        shown = "".join(_read_until(process, "listening on"))
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, errors
    assert "https://127.0.0.1:" in shown and "mqtts://127.0.0.1:" in shown
    assert "stopped" in rest
    assert "Traceback" not in errors
    assert (data_dir / "pki" / "ca.pem").exists() and (data_dir / "pumpguard.db").exists()


def test_up_refuses_a_bad_port_without_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["up", "--data-dir", str(tmp_path), "--http-port", "70000"])
    assert result.exit_code == 2
    assert "--http-port" in result.output


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtts://broker.example:8884", ("broker.example", 8884)),
        ("mqtts://127.0.0.1", ("127.0.0.1", 8883)),
        ("mqtts://[::1]:9000", ("::1", 9000)),
    ],
)
def test_server_urls(url: str, expected: tuple[str, int]) -> None:
    assert parse_server_url(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mqtt://127.0.0.1:1883", "plain mqtt is not offered"),
        ("https://127.0.0.1", "mqtts://"),
        ("mqtts://:8883", "no host"),
        ("mqtts://host:99999", "invalid port"),
        ("mqtts://host:8883/topic", "only mqtts://HOST:PORT"),
    ],
)
def test_device_run_refuses_bad_server_urls(tmp_path: Path, url: str, why: str) -> None:
    result = CliRunner().invoke(
        app,
        ["device", "run", "--id", "PUMP-0001", "--cert-dir", str(tmp_path), "--server", url],
    )
    assert result.exit_code == 2
    assert why in result.output


def test_device_run_refuses_missing_or_foreign_credentials(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["device", "run", "--server", "mqtts://127.0.0.1:8883", "--cert-dir", str(tmp_path)]
    missing = runner.invoke(app, [*base, "--id", "PUMP-0001"])
    assert missing.exit_code == 1
    assert "cert.pem" in missing.output and "key.pem" in missing.output

    async def credential() -> None:
        async with running_stack(tmp_path / "data", None) as stack:
            stack.provision_device("PUMP-0002", out_dir=tmp_path)

    run(credential())
    someone_else = runner.invoke(app, [*base, "--id", "PUMP-0001"])
    assert someone_else.exit_code == 1
    assert "PUMP-0002" in someone_else.output


def test_device_run_reports_to_a_live_server_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    async def scenario() -> tuple[int | None, str, int]:
        async with running_stack(tmp_path / "data", None) as stack:
            creds = await provision(stack, "PUMP-0011")
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _MAIN,
                "device",
                "run",
                "--id",
                "PUMP-0011",
                "--cert-dir",
                str(creds),
                "--server",
                f"mqtts://127.0.0.1:{stack.mqtt_port}",
                "--care-area",
                "ICU",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_environment(tmp_path),
            )
            try:
                stored = await wait_stored(stack, "PUMP-0011", 4)
                process.send_signal(signal.SIGINT)
                out, err = await process.communicate()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            return process.returncode, out.decode() + err.decode(), stored

    code, output, stored = run(scenario(), timeout_s=90)
    assert code == 0, output
    assert "connected to mqtts://127.0.0.1:" in output
    assert stored >= 4
