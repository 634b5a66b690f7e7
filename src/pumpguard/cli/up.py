"""``pumpguard up``: the pump server, its embedded broker and HTTPS API, in the foreground.

The first run initialises the data directory (CA, server certificates, database, audit key);
later runs open it and keep everything. Ctrl-C (or SIGTERM) stops cleanly and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from pumpguard.cli.common import DataDirOption, err, fail, out
from pumpguard.cli.common import data_dir as resolve_data_dir
from pumpguard.server.runtime import Stack, StackConfig, StackError

__all__ = ["up"]


def _port(option: str, value: int) -> int:
    if not 0 <= value <= 65_535:
        raise fail(f"{option} must be a port number from 0 to 65535, got {value}", 2)
    return value


def _announce(stack: Stack) -> None:
    for notice in stack.notices:
        err.print(f"[yellow]warning:[/] {notice}", highlight=False, soft_wrap=True)
    where = stack.describe()
    out.print("[bold]pumpguard server[/]", highlight=False, soft_wrap=True)
    out.print(f"  HTTPS API      {where['https']}", highlight=False, soft_wrap=True)
    out.print(f"  MQTT (mTLS)    {where['mqtt']}", highlight=False, soft_wrap=True)
    out.print(f"  data           {where['data']}", highlight=False, soft_wrap=True)
    out.print(f"  database       {where['database']}", highlight=False, soft_wrap=True)
    out.print(f"  CA bundle      {where['ca']}", highlight=False, soft_wrap=True)
    out.print(f"  security log   {where['security_events']}", highlight=False, soft_wrap=True)
    out.print(f"  alerts         {where['alerts']}", highlight=False, soft_wrap=True)
    ward = stack.demo
    if ward is not None:
        out.print(
            f"  demo ward      {len(ward.beds)} pumps (ICU, Med-Surg, Oncology), library "
            f"{ward.library.library_id} v{ward.library.version}, roster {ward.roster}",
            highlight=False,
            soft_wrap=True,
        )
        if ward.admin is not None:
            out.print(
                f"  demo admin     username [bold]{ward.admin.username}[/]  password "
                f"[bold]{ward.admin.password}[/]",
                highlight=False,
                soft_wrap=True,
            )
            out.print(f"  demo admin TOTP {ward.admin.totp_uri}", highlight=False, soft_wrap=True)
            out.print(
                "  (shown once: these are stored nowhere in clear)", highlight=False, soft_wrap=True
            )
        else:
            out.print(
                f"  demo admin     {ward.admin_username} (its credentials were printed when "
                "it was created)",
                highlight=False,
                soft_wrap=True,
            )
    out.print(
        f"listening on https {stack.http_port} and mqtts {stack.mqtt_port}; Ctrl-C stops",
        highlight=False,
        soft_wrap=True,
    )


async def _serve(config: StackConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)  # a Ctrl-C while starting stops once started
    try:
        try:
            stack = await Stack.start(config)
        except StackError as exc:
            raise fail(str(exc)) from None
        try:
            _announce(stack)
            await stop.wait()
            out.print("stopping...", highlight=False, soft_wrap=True)
        finally:
            await stack.stop()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    counts = stack.ingest_counts
    out.print(
        f"stopped; this run stored {counts.stored} records, dropped {counts.duplicates} "
        f"duplicates and refused {counts.refused}",
        highlight=False,
        soft_wrap=True,
    )


def up(
    data_dir: DataDirOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    http_port: Annotated[
        int, typer.Option("--http-port", help="HTTPS API port (0 picks a free one).")
    ] = 8443,
    mqtt_port: Annotated[
        int, typer.Option("--mqtt-port", help="MQTT over mutual TLS port (0 picks a free one).")
    ] = 8883,
    demo: Annotated[
        bool, typer.Option("--demo", help="Add a simulated ward of 24 pumps and a demo admin.")
    ] = False,
    ca_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-passphrase-file",
            help="File holding the CA passphrase (default: $PUMPGUARD_CA_PASSPHRASE, else the "
            "stored one; generated and stored on first run if none).",
        ),
    ] = None,
    audit_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--audit-passphrase-file",
            help="File holding the audit key passphrase (default: "
            "$PUMPGUARD_AUDIT_PASSPHRASE, else the stored one).",
        ),
    ] = None,
) -> None:
    """Start the pump server (HTTPS API, embedded MQTT broker, ingest) until Ctrl-C."""
    config = StackConfig(
        data_dir=resolve_data_dir(data_dir),
        host=host.strip() or "127.0.0.1",
        http_port=_port("--http-port", http_port),
        mqtt_port=_port("--mqtt-port", mqtt_port),
        demo=demo,
        ca_passphrase_file=ca_passphrase_file,
        audit_passphrase_file=audit_passphrase_file,
    )
    asyncio.run(_serve(config))
