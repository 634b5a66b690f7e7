"""A Mosquitto process for tests, started from a generated configuration on a free port (never
the shared system broker on 1883), and the reason to skip when there is no binary."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MOSQUITTO = (
    os.environ.get("PUMPGUARD_TEST_MOSQUITTO_BIN")
    or shutil.which("mosquitto")
    or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
)

needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None,
    reason="no mosquitto binary (apt install mosquitto, or set PUMPGUARD_TEST_MOSQUITTO_BIN)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_mosquitto(conf: Path, port: int) -> Iterator[None]:
    """Run ``mosquitto -c conf`` until the block ends; fail the test if it does not listen on
    ``port`` within 10 s."""
    assert MOSQUITTO is not None
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"mosquitto exited with {process.returncode}: {output}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("mosquitto did not start listening within 10 s")
                time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)
