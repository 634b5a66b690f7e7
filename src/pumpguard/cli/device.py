"""``pumpguard device run``: one pump's firmware in real time against a pump server.

The same device loop as the simulated ward of ``pumpguard up --demo``: status every 10 s, every
event of the pump's log, commands from the server executed through the firmware. While the
server is unreachable the pump keeps running, buffers what it would send and retries with a
growing delay; everything buffered is sent once it is back.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from pumpguard.cli.common import err, fail, out
from pumpguard.cli.library import open_library
from pumpguard.clinical import PumpKind
from pumpguard.clock import SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.pki import (
    CA_BUNDLE_FILE,
    CERT_FILE,
    KEY_FILE,
    PkiError,
    client_tls_context,
    read_credential,
)
from pumpguard.security_events import JsonLinesEventFile, SecurityEvent
from pumpguard.server.device_runtime import SeqReservation, SimulatedPump, mqtt_connector
from pumpguard.server.update_agent import UPDATE_ROOT_FILE, PumpUpdateAgent
from pumpguard.updates import UpdateError

__all__ = ["app", "parse_server_url"]

app = typer.Typer(no_args_is_help=True, help="Run a pump against a pump server.")

_DEFAULT_MQTTS_PORT = 8883


def parse_server_url(url: str) -> tuple[str, int]:
    """``mqtts://HOST[:PORT]`` -> (host, port); ``ValueError`` saying what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme != "mqtts":
        raise ValueError(
            f"--server must be an mqtts:// URL (MQTT over TLS), got {url!r}"
            + (" (plain mqtt is not offered)" if parts.scheme == "mqtt" else "")
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"--server takes only mqtts://HOST:PORT, got {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"--server names no host: {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"--server has an invalid port: {url!r}") from None
    return host, port if port is not None else _DEFAULT_MQTTS_PORT


class _Reporter:
    """Says when the link comes up or cannot, once per change, not once per retry."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._last: str | None = None
        self.failures = 0

    def __call__(self, what: str, error: BaseException | None) -> None:
        if what == "connected":
            self.failures = 0
            if self._last != "connected":
                out.print(f"connected to {self._where}", highlight=False, soft_wrap=True)
        else:
            self.failures += 1
            if self._last != "unreachable":
                reason = f"{type(error).__name__}: {error}" if error is not None else "unknown"
                err.print(
                    f"[yellow]cannot reach {self._where}[/] ({reason}); buffering and "
                    "retrying with backoff (up to 60 s between attempts)",
                    highlight=False,
                    soft_wrap=True,
                )
        self._last = what


class _StderrEvents:
    """Without --events-file, the operator sees the pump's security events on stderr."""

    def emit(self, event: SecurityEvent) -> None:
        err.print(f"security event {event.code}: {event.message}", highlight=False, markup=False)


async def _run(pump: SimulatedPump) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.ensure_future(pump.run())
    try:
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await pump.stop()
        await asyncio.gather(task, return_exceptions=True)
    pending = len(pump.outbox.pending)
    out.print(
        f"stopped {pump.ident}; {pending} message(s) were still waiting for the server",
        highlight=False,
        soft_wrap=True,
    )


@app.command("run")
def run(
    ident: Annotated[str, typer.Option("--id", help="Pump id, as in its certificate.")],
    cert_dir: Annotated[
        Path, typer.Option("--cert-dir", help="Directory with cert.pem, key.pem and ca.pem.")
    ],
    server: Annotated[str, typer.Option("--server", help="mqtts://HOST:PORT of the broker.")],
    kind: Annotated[
        PumpKind, typer.Option("--kind", case_sensitive=False, help="lvp, syringe or pca.")
    ] = PumpKind.LVP,
    care_area: Annotated[
        str | None, typer.Option("--care-area", help="Care area selected at power-on.")
    ] = None,
    library_file: Annotated[
        Path | None, typer.Option("--library", help="Drug library (default: embedded example).")
    ] = None,
    status_every: Annotated[
        float, typer.Option("--status-every", help="Seconds between status reports.")
    ] = 10.0,
    state_file: Annotated[
        Path | None,
        typer.Option(
            "--state-file",
            help="Where the pump keeps its message sequence across restarts "
            "(default: CERT_DIR/outbox-seq).",
        ),
    ] = None,
    events_file: Annotated[
        Path | None,
        typer.Option("--events-file", help="Append the pump's security events here (JSON lines)."),
    ] = None,
    updates: Annotated[
        str | None,
        typer.Option(
            "--updates",
            help="https://HOST:PORT/ of the update repository (needs CERT_DIR/update-root.json).",
        ),
    ] = None,
) -> None:
    """Run one pump's firmware in real time against the server at --server."""
    try:
        host, port = parse_server_url(server)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    if not 1.0 <= status_every <= 3600.0:
        raise fail("--status-every must be between 1 and 3600 seconds", 2)
    missing = [
        name for name in (CERT_FILE, KEY_FILE, CA_BUNDLE_FILE) if not (cert_dir / name).is_file()
    ]
    if missing:
        raise fail(f"{cert_dir} has no {', '.join(missing)} (see `pumpguard pki issue`)")
    try:
        identity = read_credential(cert_dir).identity
    except PkiError as exc:
        raise fail(str(exc)) from None
    if identity.ident != ident:
        raise fail(f"the certificate in {cert_dir} belongs to {identity}, not {ident}")
    library = open_library(library_file or EXAMPLE_LIBRARY)
    if care_area is not None and library.care_area(care_area) is None:
        known = ", ".join(a.name for a in library.care_areas)
        raise fail(f"care area {care_area!r} is not in the library (known: {known})", 2)
    events = JsonLinesEventFile(events_file) if events_file is not None else None
    reporter = _Reporter(f"mqtts://{host}:{port}")
    try:
        connect = mqtt_connector(host, port, cert_dir, identity, events=events, report=reporter)
        seq = SeqReservation(state_file or cert_dir / "outbox-seq")
    except (PkiError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    clock = SystemClock()
    agent = _update_agent(updates, cert_dir, ident, clock) if updates is not None else None
    pump = SimulatedPump(
        ident,
        kind,
        connect,
        clock=clock,
        events=events if events is not None else _StderrEvents(),
        library=library,
        care_area=care_area,
        seq=seq,
        status_every_s=status_every,
        updates=agent,
    )
    out.print(
        f"{ident} ({kind.value}) powered on; reporting to mqtts://{host}:{port}, status every "
        f"{status_every:g} s; Ctrl-C stops",
        highlight=False,
        soft_wrap=True,
    )
    asyncio.run(_run(pump))


def _update_agent(url: str, cert_dir: Path, ident: str, clock: SystemClock) -> PumpUpdateAgent:
    """The pump's update agent, trusting the root written at provisioning."""
    if not url.startswith("https://"):
        raise fail(f"--updates must be an https:// URL, got {url!r}", 2)
    try:
        root = (cert_dir / UPDATE_ROOT_FILE).read_bytes()
        return PumpUpdateAgent(
            cert_dir / "updates",
            url,
            client_tls_context(cert_dir),
            clock=clock,
            device_id=ident,
            trusted_root=root,
        )
    except OSError as exc:
        raise fail(f"cannot read the update trust root: {exc}") from None
    except (PkiError, UpdateError) as exc:
        raise fail(f"cannot start the update agent: {exc}") from None
