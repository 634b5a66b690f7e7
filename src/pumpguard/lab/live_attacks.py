"""Live attacks: a network adversary against the endpoints of a running ``Stack``.

The attack catalogue (``lab.attacks``) measures each attack in virtual time on a ward of its
own. The entries here do what an attacker on the hospital network does to the *running*
server, through its real listeners: MLLP in TLS for orders, MQTT in TLS for pumps, HTTPS for
the API. Nothing is simulated on the server side and nothing is decided here: a step is
"blocked" only when the live system refused it (a failed handshake, a refused order as the
server stored it, an HTTP 401), and the alerts listed are those the live monitor stored after
the launch, looked up in the alert store for a bounded time.

What an attacker brings is its own: a certificate authority of its own (made on the spot, in
a temporary directory), no certificate at all, or, for the insider entries, the EHR's genuine
credential (``DATA_DIR/ehr``, which ``pumpguard up --demo --demo-ehr-port`` issues to the
simulated EHR): a compromised interface engine or a stolen key, where only the server's own
checks stand between the attacker and a pump.

Live attacks change the live system: orders are recorded, accounts are locked, alerts raised.
``StackConfig.live_attacks`` (on with ``up --demo``, off by default) decides whether the
dashboard may launch them; this module does not check it, the caller does.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import secrets
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pumpguard.clinical import load_library
from pumpguard.clock import SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.interop import (
    AckCode,
    AppError,
    DeliveryError,
    Endpoint,
    TransportProfile,
    parse_ack,
    parse_piv,
    send_message,
)
from pumpguard.lab.ehr import OrderFactory, OrderKind
from pumpguard.pki import CertificateAuthority, CertKind, PeerIdentity, client_tls_context
from pumpguard.security_events import JsonLinesEventFile
from pumpguard.server import SECURITY_EVENTS_FILE
from pumpguard.server.alert_store import AlertQuery, AlertStore
from pumpguard.server.demo import DEMO_ADMIN, WardBed
from pumpguard.server.errors import NotFound
from pumpguard.server.ingest import IngestService
from pumpguard.server.orders import OPEN_STATUSES, OrderService, OrderStatus, OrderStep, OrderView
from pumpguard.server.runtime import Stack
from pumpguard.server.users import UserService
from pumpguard.transport import MqttClient

__all__ = [
    "LIVE_ATTACKS",
    "LiveAttack",
    "LiveAttackError",
    "LiveAttackResult",
    "LiveStep",
    "RaisedAlert",
    "get_live_attack",
    "launch_live",
]

_EHR_DIR = "ehr"  # under the data directory, where ``start_demo_ehr`` keeps its credential
_TIMEOUT_S = 10.0
_POLL_S = 0.1
_GUESSES = ("Winter2026!", "Password1!", "pumpguard", "Welcome123", "Hospital2026", "admin")
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")
_RRG_STEPS = frozenset({OrderStep.RRG_SENT.value, OrderStep.RRG_FAILED.value})
_CONTROLS = {
    AppError.HARD_LIMIT: "order-check",
    AppError.PATIENT_MISMATCH: "patient-match",
    AppError.STALE_ORDER: "replay-memory",
}


class LiveAttackError(Exception):
    """The attack cannot run against this stack (no such attack, no MLLP listener, no EHR
    credential, nothing to replay), said in words the dashboard can show."""


@dataclass(frozen=True, slots=True)
class LiveStep:
    """One thing the attacker sent and what the live system did with it."""

    sent: str
    answer: str
    blocked_by: str | None
    """The control that refused it, named as in the catalogue; None when it got through."""
    code: str | None = None
    """The protocol's own word for the answer: TLS alert, MSA-1 and ERR-5, HTTP status."""


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    alert_id: str
    analytic_id: str
    title: str
    count: int


@dataclass(frozen=True, slots=True)
class LiveAttackResult:
    name: str
    surface: str
    target: str
    started_ms: int
    steps: tuple[LiveStep, ...]
    alerts: tuple[RaisedAlert, ...]
    expected_rules: tuple[str, ...]
    events: tuple[str, ...] = ()
    """The security event codes the server logged from the launch until the alerts were
    found (or the wait ended); on a busy server, others' events of that moment too."""

    @property
    def blocked(self) -> bool:
        return bool(self.steps) and all(s.blocked_by is not None for s in self.steps)

    @property
    def alerted(self) -> bool:
        return bool(self.alerts)


@dataclass(frozen=True, slots=True)
class _Kit:
    """The stack under attack and the attacker's scratch directory."""

    stack: Stack
    workdir: Path


_Perform = Callable[[_Kit], Awaitable[list[LiveStep]]]


@dataclass(frozen=True, slots=True)
class LiveAttack:
    name: str
    """The catalogue entry's name where one matches (``lab_entry``), else a name of its own."""
    surface: str
    description: str
    control: str
    rules: tuple[str, ...]
    """The monitor rules whose alerts the attack should raise (others may fire too)."""
    lab_entry: str | None
    _perform: _Perform = field(repr=False)
    _needs: Callable[[Stack], str | None] = field(repr=False)

    def problem(self, stack: Stack) -> str | None:
        """Why the attack cannot run against ``stack``, or None."""
        return self._needs(stack)


# ---------------------------------------------------------------- what a stack must offer


def _needs_mllp(stack: Stack) -> str | None:
    if stack.ehr is None:
        return (
            "this server has no MLLP order listener (`pumpguard up --demo --demo-ehr-port PORT` "
            "starts one)"
        )
    if stack.ehr.settings.legacy:
        return "the MLLP listener runs the legacy profile (plain MLLP): nothing to refuse"
    return None


def _ehr_dir(stack: Stack) -> Path:
    return stack.data_dir / _EHR_DIR


def _needs_ehr_credential(stack: Stack) -> str | None:
    problem = _needs_mllp(stack)
    if problem is not None:
        return problem
    if not (_ehr_dir(stack) / "cert.pem").is_file():
        return (
            f"no EHR credential in {_ehr_dir(stack)} to play the insider with "
            "(`pumpguard up --demo --demo-ehr-port PORT` issues one to the simulated EHR)"
        )
    return None


def _needs_ward(stack: Stack) -> str | None:
    problem = _needs_ehr_credential(stack)
    if problem is not None:
        return problem
    if stack.demo is None:
        return "this server runs no demo ward whose pumps and patients an order could name"
    return None


def _needs_nothing(_stack: Stack) -> str | None:
    return None


# ---------------------------------------------------------------- the attacker's tools


def _ca_pem(stack: Stack) -> bytes:
    return (stack.ca.directory / "ca.pem").read_bytes()


def _own_ca_credential(kit: _Kit, kind: CertKind, ident: str) -> Path:
    """A certificate naming ``ident`` from a CA the attacker made itself; it trusts the
    hospital's CA for the server's side (the public ``ca.pem``), as any client can."""
    ca = CertificateAuthority.init(kit.workdir / "own-ca", secrets.token_bytes(16))
    directory = kit.workdir / f"own-{kind.value}"
    ca.issue(kind, ident).write(directory)
    (directory / "ca.pem").write_bytes(_ca_pem(kit.stack))
    return directory


def _no_certificate(kit: _Kit) -> Path:
    directory = kit.workdir / "anonymous"
    directory.mkdir(exist_ok=True)
    (directory / "ca.pem").write_bytes(_ca_pem(kit.stack))
    return directory


def _tls_code(problem: str) -> str:
    found = _SSL_REASON.search(problem)
    return found.group(1) if found else "connection closed"


def _mllp(stack: Stack) -> Endpoint:
    assert stack.ehr is not None
    return Endpoint(stack.local_address, stack.ehr.port)


async def _send_order(endpoint: Endpoint, text: str, cert_dir: Path) -> tuple[str | None, str]:
    """The ACK^O15 text, or None and why nothing came back."""
    try:
        reply = await send_message(
            endpoint,
            text,
            profile=TransportProfile.SECURE,
            tls_context=client_tls_context(cert_dir),
            timeout=_TIMEOUT_S,
        )
    except DeliveryError as exc:
        return None, str(exc)
    return reply, "" if reply is not None else "closed without an acknowledgement"


def _factory(stack: Stack) -> OrderFactory:
    ward = stack.demo
    beds = ward.beds if ward is not None else None
    library = ward.library if ward is not None else load_library(EXAMPLE_LIBRARY)
    return OrderFactory(library, beds, seed=secrets.randbelow(2**16), id_prefix="ATK")


def _newest_order_id(stack: Stack) -> int:
    newest = 0
    with stack.store.transaction() as session:
        service = OrderService(session, stack.store.ctx)
        while batch := service.list_orders(after_id=newest, limit=1000):
            newest = batch[-1].id
    return newest


def _newest_ehr_order(stack: Stack) -> OrderView | None:
    """The last order the server received from an EHR other than this module's."""
    found: OrderView | None = None
    after = 0
    with stack.store.transaction() as session:
        service = OrderService(session, stack.store.ctx)
        while batch := service.list_orders(after_id=after, limit=1000):
            after = batch[-1].id
            for view in batch:
                if not view.control_id.startswith("ATK") and view.message:
                    found = view
        return None if found is None else service.get(found.id)


def _stored_order(stack: Stack, after_id: int, control_id: str) -> OrderView | None:
    with stack.store.transaction() as session:
        service = OrderService(session, stack.store.ctx)
        for view in service.list_orders(after_id=after_id, limit=1000):
            if view.control_id == control_id:
                return service.get(view.id)
    return None


async def _settled_order(stack: Stack, after_id: int, control_id: str) -> OrderView | None:
    """The order as the server stored it, once its RRG^O16 left (or failed to), bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _TIMEOUT_S
    view = None
    while loop.time() < deadline:
        view = await asyncio.to_thread(_stored_order, stack, after_id, control_id)
        if (
            view is not None
            and view.status not in OPEN_STATUSES
            and any(s.step in _RRG_STEPS for s in view.trail)
        ):
            return view
        await asyncio.sleep(_POLL_S)
    return view


def _order_step(sent: str, ack: str | None, problem: str, view: OrderView | None) -> LiveStep:
    """What the server did with an order an EHR credential delivered: the ACK^O15 on the
    connection, then its check as stored (status, ERR-5) and the RRG^O16 it sent the EHR."""
    if ack is None:
        return LiveStep(sent, f"not delivered: {problem}", "mutual-tls", _tls_code(problem))
    accept = parse_ack(ack).code
    if accept is not AckCode.CA:
        return LiveStep(sent, f"ACK^O15 {accept}: not accepted", "hl7-validation", str(accept))
    if view is None:
        return LiveStep(sent, "ACK^O15 CA; the server stored no such order", None, str(accept))
    if view.status is OrderStatus.REFUSED and view.app_error is not None:
        error = AppError(view.app_error)
        rrg = view.ack_code or ("AR" if error.rejects else "AE")
        delivered = "sent to the EHR" if view.ack_code else "not delivered to any EHR"
        answer = (
            f"ACK^O15 {accept}; refused by the server's check: {view.reason}; "
            f"RRG^O16 {rrg} ERR-5 {int(error)} ({error.text}), {delivered}"
        )
        return LiveStep(sent, answer, _CONTROLS.get(error, "order-check"), f"{rrg} {int(error)}")
    answer = f"ACK^O15 {accept}; order {view.status} (not refused by the server's check)"
    return LiveStep(sent, answer, None, f"{accept} {view.status}")


async def _insider_order(kit: _Kit, sent: str, text: str, control_id: str) -> LiveStep:
    stack = kit.stack
    baseline = await asyncio.to_thread(_newest_order_id, stack)
    ack, problem = await _send_order(_mllp(stack), text, _ehr_dir(stack))
    view = None if ack is None else await _settled_order(stack, baseline, control_id)
    return _order_step(sent, ack, problem, view)


def _idle_bed(stack: Stack) -> WardBed:
    """A ward bed whose pump can take a new order now (online, idle, no order open), so that
    the order reaches the check it was built for; else any bed (and the server says why not).
    Beds with a ward nurse come first: the demo EHR sends its own orders to the others."""
    assert stack.demo is not None
    beds = {b.pump: b for b in stack.demo.beds}
    with stack.store.transaction() as session:
        statuses = IngestService(session, stack.store.ctx).statuses()
        busy = {o.pump_id for o in OrderService(session, stack.store.ctx).open_orders()}
    idle = [
        beds[s.device_id]
        for s in statuses
        if s.device_id in beds and s.device_id not in busy and s.online and s.state == "idle"
    ]
    preferred = [b for b in idle if b.busy] or idle
    if not preferred:  # nothing reported yet, or every pump busy: the server will say
        preferred = [b for b in stack.demo.beds if b.busy and b.pump not in busy]
    return secrets.choice(preferred or list(stack.demo.beds))


# ---------------------------------------------------------------- the attacks


async def _unauthenticated_host(kit: _Kit) -> list[LiveStep]:
    stack = kit.stack
    factory = _factory(stack)
    bed = factory.beds[0]
    planned = factory.build(OrderKind.VALID, bed, datetime.now(UTC))
    steps = []
    for label, cert_dir in (
        ("without a client certificate", _no_certificate(kit)),
        (
            "with an EHR certificate from the attacker's own CA",
            _own_ca_credential(kit, CertKind.EHR, "ehr-main"),
        ),
    ):
        sent = f"PIV order {planned.control_id} for {bed.pump} over MLLP/TLS {label}"
        ack, problem = await _send_order(_mllp(stack), planned.text, cert_dir)
        if ack is None:
            steps.append(
                LiveStep(sent, f"not delivered: {problem}", "mutual-tls", _tls_code(problem))
            )
        else:
            code = parse_ack(ack).code
            steps.append(LiveStep(sent, f"answered ACK^O15 {code}", None, str(code)))
    return steps


async def _rogue_pump(kit: _Kit) -> list[LiveStep]:
    stack = kit.stack
    ident = stack.demo.beds[0].pump if stack.demo is not None else "PUMP-0001"
    directory = _own_ca_credential(kit, CertKind.PUMP, ident)
    client = MqttClient(
        stack.mqtt_host,
        stack.mqtt_port,
        client_tls_context(directory),
        PeerIdentity(CertKind.PUMP, ident),
        connect_timeout_s=_TIMEOUT_S,
    )
    sent = f"MQTT CONNECT as {ident} with a certificate from the attacker's own CA"
    try:
        connack = await client.connect()
    except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
        problem = str(exc) or type(exc).__name__
        return [LiveStep(sent, f"refused: {problem}", "mutual-tls", _tls_code(problem))]
    await client.close()
    code = f"CONNACK {connack.reason.name}"
    if connack.reason.is_failure:
        return [LiveStep(sent, f"{code}: refused by the broker", "broker-acl", code)]
    return [LiveStep(sent, f"{code}: connected as {ident}", None, code)]


async def _beyond_hard_limit(kit: _Kit) -> list[LiveStep]:
    stack = kit.stack
    bed = await asyncio.to_thread(_idle_bed, stack)
    factory = _factory(stack)
    planned = factory.build(OrderKind.HARD_LIMIT, bed, datetime.now(UTC))
    rate = parse_piv(planned.text).rate
    area = factory.library.care_area(bed.care_area)
    unit = next((e.dose_unit for e in area.entries if e.code == planned.drug), "") if area else ""
    sent = (
        f"PIV order {planned.control_id} for {bed.pump}: {planned.drug} at "
        f"{'?' if rate is None else rate.value} {unit}, 1.5 x the library's hard maximum, "
        "with the EHR's own certificate"
    )
    return [await _insider_order(kit, sent, planned.text, planned.control_id)]


async def _wrong_patient(kit: _Kit) -> list[LiveStep]:
    stack = kit.stack
    assert stack.demo is not None
    bed = await asyncio.to_thread(_idle_bed, stack)
    other = next(b for b in stack.demo.beds if b.mrn != bed.mrn)
    planned = _factory(stack).build(
        OrderKind.WRONG_PATIENT, bed, datetime.now(UTC), other_patient=other.mrn
    )
    sent = (
        f"PIV order {planned.control_id} for {bed.pump} (patient {bed.mrn}) naming patient "
        f"{other.mrn}, with the EHR's own certificate"
    )
    return [await _insider_order(kit, sent, planned.text, planned.control_id)]


async def _replay(kit: _Kit) -> list[LiveStep]:
    stack = kit.stack
    original = await asyncio.to_thread(_newest_ehr_order, stack)
    if original is None:
        raise LiveAttackError(
            "the server has received no EHR order yet to replay (the demo EHR sends one every 30 s)"
        )
    sent = (
        f"order {original.control_id} for {original.pump_id} (received "
        f"{datetime.fromtimestamp(original.received_at_ms / 1000, UTC):%H:%M:%S} UTC) "
        "sent again byte for byte, with the EHR's own certificate"
    )
    return [await _insider_order(kit, sent, original.message, original.control_id)]


def _login(host: str, port: int, context: ssl.SSLContext, body: bytes) -> int:
    connection = http.client.HTTPSConnection(host, port, timeout=_TIMEOUT_S, context=context)
    try:
        connection.request("POST", "/api/v1/auth/login", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _locked_until(stack: Stack, username: str) -> int | None:
    with stack.store.transaction() as session:
        try:
            return UserService(session, stack.store.ctx).get_user(username).locked_until_ms
        except NotFound:
            return None


async def _password_guessing(kit: _Kit) -> list[LiveStep]:
    stack = kit.stack
    username = stack.demo.admin_username if stack.demo is not None else DEMO_ADMIN
    context = ssl.create_default_context(cadata=_ca_pem(stack).decode("ascii"))
    statuses = []
    for guess in _GUESSES:
        body = json.dumps({"username": username, "password": guess, "totp": "000000"})
        statuses.append(
            await asyncio.to_thread(
                _login, stack.local_address, stack.http_port, context, body.encode()
            )
        )
    sent = (
        f"{len(_GUESSES)} guesses of {username}'s password (with code 000000) to "
        "POST /api/v1/auth/login"
    )
    shown = ", ".join(str(s) for s in statuses)
    if 200 in statuses:
        return [LiveStep(sent, f"HTTP {shown}: a guess was accepted", None, "HTTP 200")]
    locked = await asyncio.to_thread(_locked_until, stack, username)
    now = SystemClock().now_ms()
    if locked is None:
        lock = f"no account {username!r} exists, so none was locked"
    elif locked > now:
        until = datetime.fromtimestamp(locked / 1000, UTC)
        lock = f"account {username} locked until {until:%H:%M:%S} UTC"
    else:
        lock = f"account {username} not locked"
    control = "login-lockout" if locked is not None and locked > now else "authentication"
    return [LiveStep(sent, f"HTTP {shown}; {lock}", control, f"HTTP {statuses[-1]}")]


LIVE_ATTACKS: tuple[LiveAttack, ...] = (
    LiveAttack(
        name="order-unauthenticated-host",
        surface="MLLP/TLS",
        description=(
            "a host that is not the EHR sends an infusion order to the live MLLP port, first "
            "without a client certificate, then with an EHR certificate from its own CA"
        ),
        control="mutual-tls",
        rules=("PG-TLS-001",),
        lab_entry="order-unauthenticated-host",
        _perform=_unauthenticated_host,
        _needs=_needs_mllp,
    ),
    LiveAttack(
        name="rogue-pump",
        surface="MQTT/TLS",
        description=(
            "a device connects to the live broker as a ward pump with a certificate from the "
            "attacker's own CA, to publish false reports or read the pump's commands"
        ),
        control="mutual-tls",
        rules=("PG-TLS-001",),
        lab_entry=None,
        _perform=_rogue_pump,
        _needs=_needs_nothing,
    ),
    LiveAttack(
        name="order-beyond-hard-limit",
        surface="MLLP/TLS",
        description=(
            "with the EHR's genuine certificate (a compromised interface engine or a stolen "
            "key), an order for a ward pump at 1.5 times the library's hard maximum"
        ),
        control="order-check",
        rules=("PG-HL7-003",),
        lab_entry="order-beyond-hard-limit",
        _perform=_beyond_hard_limit,
        _needs=_needs_ward,
    ),
    LiveAttack(
        name="order-wrong-patient",
        surface="MLLP/TLS",
        description=(
            "with the EHR's genuine certificate, an order for one ward pump that names the "
            "patient of another bed"
        ),
        control="patient-match",
        rules=("PG-HL7-002",),
        lab_entry="order-wrong-patient",
        _perform=_wrong_patient,
        _needs=_needs_ward,
    ),
    LiveAttack(
        name="order-replay",
        surface="MLLP/TLS",
        description=(
            "the newest order the server received from the EHR, sent again byte for byte "
            "with the EHR's genuine certificate (an order recorded by an insider)"
        ),
        control="replay-memory",
        rules=("PG-HL7-002",),
        lab_entry="order-replay",
        _perform=_replay,
        _needs=_needs_ehr_credential,
    ),
    LiveAttack(
        name="password-guessing",
        surface="HTTPS",
        description=(
            f"{len(_GUESSES)} common passwords tried against the demo administrator's account "
            "on the login API; the account is locked for a minute (doubling with each later "
            "lockout until a successful login)"
        ),
        control="login-lockout",
        rules=("PG-AUTH-001", "PG-AUTH-002"),
        lab_entry=None,
        _perform=_password_guessing,
        _needs=_needs_nothing,
    ),
)


def get_live_attack(name: str) -> LiveAttack:
    for attack in LIVE_ATTACKS:
        if attack.name == name:
            return attack
    known = ", ".join(a.name for a in LIVE_ATTACKS)
    raise LiveAttackError(f"no live attack is called {name!r} (known: {known})")


def _raised(stack: Stack, since_ms: int, rules: tuple[str, ...]) -> list[RaisedAlert]:
    stack.flush_alerts()
    with stack.store.transaction() as session:
        alerts = AlertStore(session, stack.store.ctx).search(AlertQuery(since_ms=since_ms))
    return [
        RaisedAlert(a.alert_id, a.analytic_id, a.title, a.count)
        for a in alerts
        if a.analytic_id in rules
    ]


async def _wait_for_alerts(
    stack: Stack, since_ms: int, rules: tuple[str, ...], wait_s: float
) -> list[RaisedAlert]:
    """The alerts of ``rules`` seen since ``since_ms``, once every rule has one or ``wait_s``
    passed: the monitor's rules run as events arrive, the stack stores them every 0.25 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        found = await asyncio.to_thread(_raised, stack, since_ms, rules)
        if {a.analytic_id for a in found} >= set(rules) or loop.time() >= deadline:
            return found
        await asyncio.sleep(_POLL_S)


def _logged(stack: Stack, since_ms: int) -> tuple[str, ...]:
    journal = JsonLinesEventFile(stack.data_dir / SECURITY_EVENTS_FILE)
    for _ in range(3):
        try:
            events = journal.read()
        except ValueError:  # a line being appended right now
            time.sleep(_POLL_S)
            continue
        return tuple(sorted({e.code for e in events if e.time_ms >= since_ms}))
    return ()


async def launch_live(stack: Stack, name: str, *, alert_wait_s: float = 10.0) -> LiveAttackResult:
    """Run the live attack ``name`` against ``stack`` and report what the system did.

    Raises ``LiveAttackError`` when it cannot run against this stack."""
    attack = get_live_attack(name)
    problem = attack.problem(stack)
    if problem is not None:
        raise LiveAttackError(f"{name} cannot run here: {problem}")
    started = SystemClock().now_ms()
    with tempfile.TemporaryDirectory(prefix="pumpguard-attacker-") as scratch:
        steps = await attack._perform(_Kit(stack, Path(scratch)))
    alerts = await _wait_for_alerts(stack, started, attack.rules, alert_wait_s)
    events = await asyncio.to_thread(_logged, stack, started)
    targets = {
        "MLLP/TLS": lambda: f"mllps://{stack.local_address}:{stack.ehr.port if stack.ehr else 0}",
        "MQTT/TLS": lambda: f"mqtts://{stack.mqtt_host}:{stack.mqtt_port}",
        "HTTPS": lambda: f"https://{stack.local_address}:{stack.http_port}/api/v1/auth/login",
    }
    return LiveAttackResult(
        attack.name,
        attack.surface,
        targets[attack.surface](),
        started,
        tuple(steps),
        tuple(alerts),
        attack.rules,
        events,
    )
