"""``pumpguard ehr``: the simulated EHR/BCMA that sends IHE PCD PIV orders to a pump server.

``ehr run`` sends orders (valid ones and ones built to be refused for one reason each) over
MLLP inside TLS with an EHR certificate, listens for the server's ``RRG^O16`` and IPEC/ACM/DEC
messages, and prints what every order got next to what it should have got, with its latencies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from pumpguard.cli.common import DataDirOption, err, fail, out
from pumpguard.cli.common import data_dir as resolve_data_dir

if TYPE_CHECKING:
    from pumpguard.interop import Endpoint
    from pumpguard.server.demo import WardBed

app = typer.Typer(no_args_is_help=True, help="Simulated EHR/BCMA: send PIV orders, read answers.")

_ROSTER = Path("demo") / "ward.json"
_CERT_DIR = "ehr"


def _server(text: str) -> Endpoint:
    from pumpguard.interop import Endpoint

    url = text.strip()
    if "://" not in url:
        url = f"mllps://{url}"
    try:
        endpoint = Endpoint.parse(url)
    except ValueError as exc:
        raise fail(f"--server: {exc} (or give HOST:PORT)", 2) from None
    if not endpoint.tls:
        raise fail("--server: the simulated EHR sends orders only over MLLP in TLS (mllps://)", 2)
    return endpoint


def _ms(value: object) -> str:
    return "-" if value is None else f"{value:,.1f}"


@app.command()
def run(
    server: Annotated[
        str,
        typer.Option("--server", help="The pump server's MLLP/TLS order port: HOST:PORT."),
    ],
    listen: Annotated[
        int,
        typer.Option(
            "--listen",
            help="Port for the server's RRG^O16 and events (the server's --ehr-endpoint).",
        ),
    ],
    orders: Annotated[int, typer.Option("--orders", help="How many orders to send.")] = 20,
    rate: Annotated[float, typer.Option("--rate", help="Orders per second.")] = 2.0,
    listen_host: Annotated[
        str, typer.Option("--listen-host", help="Address to listen on.")
    ] = "127.0.0.1",
    cert_dir: Annotated[
        Path | None,
        typer.Option(
            "--cert-dir",
            help="The EHR credential (cert.pem, key.pem, ca.pem); default DATA_DIR/ehr.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the order mix.")] = 1,
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait for the last answers after sending."),
    ] = 60.0,
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """Send PIV orders for the demo ward's patients and pumps; report what each one got."""
    from pumpguard.clinical import load_library
    from pumpguard.data import EXAMPLE_LIBRARY
    from pumpguard.lab.ehr import EhrRunConfig, load_roster, run_ehr
    from pumpguard.pki import CredentialFilesError, PkiError

    endpoint = _server(server)
    root = resolve_data_dir(data_dir)
    credentials = cert_dir if cert_dir is not None else root / _CERT_DIR
    try:
        config = EhrRunConfig(
            server=endpoint,
            cert_dir=credentials,
            orders=orders,
            rate_per_s=rate,
            listen_host=listen_host,
            listen_port=listen,
            seed=seed,
            settle_timeout_s=wait,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    missing = [n for n in ("cert.pem", "key.pem", "ca.pem") if not (credentials / n).is_file()]
    if missing:
        raise fail(
            f"no EHR credential in {credentials} (missing {', '.join(missing)}): issue one with "
            f"`pumpguard pki issue --kind ehr --id ehr-sim --san localhost --san 127.0.0.1 "
            f"--out {credentials}`"
        )
    roster = root / _ROSTER
    beds: tuple[WardBed, ...] = ()
    if roster.exists():
        try:
            beds = load_roster(roster)
        except ValueError as exc:
            raise fail(str(exc)) from None
    config = dataclasses.replace(config, beds=beds)
    library = load_library(EXAMPLE_LIBRARY)

    def listening(port: int) -> None:
        err.print(
            f"ehr: listening on mllps://{listen_host}:{port}; sending {orders} orders to "
            f"{endpoint} at {rate:g}/s",
            highlight=False,
        )

    try:
        result = asyncio.run(run_ehr(config, library, on_listening=listening))
    except CredentialFilesError as exc:
        raise fail(f"the EHR credential in {credentials} is unusable: {exc}") from None
    except PkiError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot listen on {listen_host}:{listen}: {exc.strerror or exc}") from None
    summary = result.summary()
    if as_json:
        document = {"summary": summary, "orders": [r.as_dict() for r in result.records]}
        typer.echo(json.dumps(document, indent=2))
        return
    table = Table(title=f"simulated EHR: {len(result.records)} orders to {endpoint}")
    for column in ("kind", "pump", "ORC-1", "expected", "got", "ack ms", "prefill ms", "rrg ms"):
        table.add_column(column, justify="right" if column.endswith("ms") else "left")
    table.add_column("reason")
    for record in result.records:
        row = record.as_dict()
        mark = "" if record.matches else " [red]!= expected[/]"
        table.add_row(
            record.order.label,
            record.order.pump_id,
            record.order.control.value,
            str(record.order.expected),
            record.outcome + mark,
            _ms(row["ack_ms"]),
            _ms(row["prefill_ms"]),
            _ms(row["rrg_ms"]),
            str(row["reason"] or ""),
        )
    out.print(table)
    out.print(
        f"{summary['orders']} orders: {summary['accepted']} accepted, refused "
        f"{summary['refused'] or 'none'}; {summary['as_expected']} as expected, "
        f"{summary['not_as_expected']} not; ack p50 {_ms(summary['ack_p50_ms'])} ms, "
        f"rrg p50 {_ms(summary['rrg_p50_ms'])} ms p99 {_ms(summary['rrg_p99_ms'])} ms",
        highlight=False,
        soft_wrap=True,
    )
