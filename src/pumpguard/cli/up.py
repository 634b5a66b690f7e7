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
from pumpguard.server.alert_export import (
    MONITORING_FILE,
    ExportConfigError,
    MonitoringConfig,
    parse_syslog,
    parse_webhook,
)
from pumpguard.server.ehr_gateway import EhrSettings, NurseSettings
from pumpguard.server.runtime import Stack, StackConfig, StackError, parse_broker_url
from pumpguard.web import add_dashboard

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
    dashboard = where["https"].removesuffix("api/v1/docs")
    out.print(f"  dashboard      {dashboard}", highlight=False, soft_wrap=True)
    out.print(f"  MQTT (mTLS)    {where['mqtt']}", highlight=False, soft_wrap=True)
    out.print(f"  updates (mTLS) {where['updates']}", highlight=False, soft_wrap=True)
    out.print(f"  data           {where['data']}", highlight=False, soft_wrap=True)
    out.print(f"  database       {where['database']}", highlight=False, soft_wrap=True)
    out.print(f"  CA bundle      {where['ca']}", highlight=False, soft_wrap=True)
    out.print(f"  security log   {where['security_events']}", highlight=False, soft_wrap=True)
    out.print(f"  alerts         {where['alerts']}", highlight=False, soft_wrap=True)
    if stack.ehr is not None:
        ehr = stack.ehr.describe()
        out.print(f"  orders (MLLP)  {ehr['mllp']}", highlight=False, soft_wrap=True)
        out.print(
            f"  EHR endpoint   {ehr['ehr'] or '(none: acknowledgements and reports not sent)'}",
            highlight=False,
            soft_wrap=True,
        )
    ward = stack.demo
    if ward is not None:
        out.print(
            f"  demo ward      {len(ward.beds)} pumps (ICU, Med-Surg, Oncology), library "
            f"{ward.library.library_id} v{ward.library.version}, roster {ward.roster}",
            highlight=False,
            soft_wrap=True,
        )
        accounts = (
            ("demo admin", ward.admin_username, ward.admin),
            ("demo analyst", ward.analyst_username, ward.analyst),
        )
        for label, username, created in accounts:
            if created is None:
                out.print(
                    f"  {label:<14} {username} (its credentials were printed when it was created)",
                    highlight=False,
                    soft_wrap=True,
                )
                continue
            out.print(
                f"  {label:<14} username [bold]{created.username}[/]  password "
                f"[bold]{created.password}[/]",
                highlight=False,
                soft_wrap=True,
            )
            out.print(f"  {'':<14} TOTP {created.totp_uri}", highlight=False, soft_wrap=True)
        if ward.admin is not None or ward.analyst is not None:
            out.print(
                "  (shown once: stored nowhere in clear; the analyst may launch live attacks; "
                "a TOTP code: pumpguard admin totp --uri URI)",
                highlight=False,
                soft_wrap=True,
            )
    out.print(
        f"listening on https {stack.http_port}, mqtts {stack.mqtt_port} and updates "
        f"{stack.updates_port}; Ctrl-C stops",
        highlight=False,
        soft_wrap=True,
    )


async def _serve(config: StackConfig, demo_ehr_port: int | None = None) -> None:
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
            if demo_ehr_port is not None:
                from pumpguard.lab.ehr import start_demo_ehr

                await start_demo_ehr(stack, demo_ehr_port)
            _announce(stack)
            if demo_ehr_port is not None:
                out.print(
                    f"  demo EHR       listening on mllps {demo_ehr_port}; sends an order every "
                    "30 s",
                    highlight=False,
                    soft_wrap=True,
                )
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
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            help="Use this external MQTT broker (Mosquitto set up with `pumpguard pki "
            "mosquitto`), mqtts://HOST:PORT, instead of the embedded one; "
            "--mqtt-port is then unused.",
        ),
    ] = None,
    updates_port: Annotated[
        int,
        typer.Option(
            "--updates-port",
            help="Port where pumps fetch signed updates over mutual TLS (0 picks a free one).",
        ),
    ] = 8444,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Add a simulated ward of 24 pumps and a demo admin, and let the dashboard "
            "launch live attacks at this server.",
        ),
    ] = False,
    mllp_port: Annotated[
        int | None,
        typer.Option(
            "--mllp-port",
            help="Listen for EHR infusion orders (IHE PCD PIV) over MLLP in mutual TLS on this "
            "port (0 picks a free one); only an ehr certificate of this server's CA may send.",
        ),
    ] = None,
    ehr_endpoint: Annotated[
        str | None,
        typer.Option(
            "--ehr-endpoint",
            help="Where RRG^O16 acknowledgements and IPEC/DEC/ACM reports go, e.g. "
            "mllps://ehr.example:2575.",
        ),
    ] = None,
    legacy_mllp: Annotated[
        bool,
        typer.Option(
            "--legacy-mllp",
            help="Plain MLLP without TLS (the legacy profile, for attack demonstrations only).",
        ),
    ] = False,
    demo_ehr_port: Annotated[
        int | None,
        typer.Option(
            "--demo-ehr-port",
            help="Demo: run the simulated EHR/BCMA listening on this port for RRG^O16 and "
            "reports; it sends an order for the demo ward every 30 s (needs --demo; implies "
            "--mllp-port 0 and --ehr-endpoint mllps://127.0.0.1:PORT unless given).",
        ),
    ] = None,
    nurse_delay: Annotated[
        float,
        typer.Option(
            "--nurse-delay",
            help="Demo: seconds the simulated nurse takes to answer an order at the pump.",
        ),
    ] = 5.0,
    nurse_reject: Annotated[
        float,
        typer.Option(
            "--nurse-reject",
            help="Demo: probability that the simulated nurse rejects an order at the pump.",
        ),
    ] = 0.1,
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
    updates_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--updates-passphrase-file",
            help="File holding the update repository's online key passphrase (default: "
            "$PUMPGUARD_UPDATES_PASSPHRASE, else the stored one).",
        ),
    ] = None,
    syslog: Annotated[
        list[str] | None,
        typer.Option(
            "--syslog",
            help="Forward alerts to this syslog collector, HOST:PORT, RFC 5424 over TLS "
            "(repeatable; also [[syslog]] in DATA_DIR/monitoring.toml).",
        ),
    ] = None,
    syslog_ca: Annotated[
        Path | None,
        typer.Option(
            "--syslog-ca", help="CA file to verify --syslog collectors (default: system)."
        ),
    ] = None,
    cef_file: Annotated[
        Path | None, typer.Option("--cef-file", help="Append every alert change as a CEF line.")
    ] = None,
    ocsf_file: Annotated[
        Path | None,
        typer.Option("--ocsf-file", help="Append every alert change as OCSF JSON (one per line)."),
    ] = None,
    webhook: Annotated[
        list[str] | None,
        typer.Option("--webhook", help="POST every alert change as OCSF JSON here (repeatable)."),
    ] = None,
    webhook_ca: Annotated[
        Path | None, typer.Option("--webhook-ca", help="CA file to verify https --webhook URLs.")
    ] = None,
) -> None:
    """Start the pump server (HTTPS API, embedded MQTT broker, ingest) until Ctrl-C."""
    if demo_ehr_port is not None:
        if not demo:
            raise fail("--demo-ehr-port needs --demo", 2)
        wanted = f"mllps://127.0.0.1:{_port('--demo-ehr-port', demo_ehr_port)}"
        if demo_ehr_port == 0:
            raise fail("--demo-ehr-port needs a fixed port (the EHR endpoint names it)", 2)
        if ehr_endpoint is not None and ehr_endpoint.strip() != wanted:
            raise fail(f"--demo-ehr-port {demo_ehr_port} needs --ehr-endpoint {wanted}", 2)
        if legacy_mllp:
            raise fail("the simulated EHR speaks MLLP over TLS; drop --legacy-mllp", 2)
        ehr_endpoint, mllp_port = wanted, 0 if mllp_port is None else mllp_port
    ehr = _ehr_settings(mllp_port, ehr_endpoint, legacy_mllp, nurse_delay, nurse_reject)
    if broker is not None:
        try:
            parse_broker_url(broker.strip())
        except StackError as exc:
            raise fail(f"--broker: {exc}", 2) from None
    directory = resolve_data_dir(data_dir)
    try:
        monitoring = MonitoringConfig.load(directory / MONITORING_FILE, directory).with_flags(
            syslog=tuple(parse_syslog(t, syslog_ca) for t in syslog or ()),
            webhooks=tuple(parse_webhook(u, webhook_ca) for u in webhook or ()),
            cef_file=cef_file,
            ocsf_file=ocsf_file,
        )
    except ExportConfigError as exc:
        raise fail(str(exc), 2) from None
    config = StackConfig(
        data_dir=directory,
        host=host.strip() or "127.0.0.1",
        http_port=_port("--http-port", http_port),
        mqtt_port=_port("--mqtt-port", mqtt_port),
        broker_url=None if broker is None else broker.strip(),
        updates_port=_port("--updates-port", updates_port),
        updates_passphrase_file=updates_passphrase_file,
        demo=demo,
        ca_passphrase_file=ca_passphrase_file,
        audit_passphrase_file=audit_passphrase_file,
        ehr=ehr,
        monitoring=monitoring,
        app_hooks=(add_dashboard,),
        live_attacks=demo,
    )
    asyncio.run(_serve(config, demo_ehr_port))


def _ehr_settings(
    mllp_port: int | None,
    endpoint: str | None,
    legacy: bool,
    nurse_delay: float,
    nurse_reject: float,
) -> EhrSettings | None:
    if mllp_port is None:
        if endpoint is not None or legacy:
            raise fail("--ehr-endpoint and --legacy-mllp need --mllp-port", 2)
        return None
    try:
        nurse = NurseSettings(confirm_after_s=nurse_delay, reject_probability=nurse_reject)
        return EhrSettings(
            mllp_port=_port("--mllp-port", mllp_port),
            ehr_endpoint=endpoint.strip() if endpoint is not None else None,
            legacy=legacy,
            nurse=nurse,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
