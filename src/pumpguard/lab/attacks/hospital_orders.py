"""Attacks on EHR auto-programming (issue 7): orders from a host that is not the EHR, replayed,
altered in transit, beyond the hard limits, or for another patient's pump.

The ward's pump server takes IHE PCD PIV orders (``RGV^O15``) on a real MLLP listener on the
loopback interface (``interop.MllpServer``), built in the ward's profile:

* secure: MLLP inside TLS, the EHR authenticated by a certificate of the hospital's CA
  (certificates issued by ``pki`` into the ward's work directory); each order goes through
  ``interop.check_order`` with the server's replay memory (MSH-10 and ORC-2 already seen) and
  its pump-patient association, and only an accepted order pre-fills the pump;
* legacy: plain MLLP from any host, and a pass-through gateway: the order's drug, dose, volume,
  weight and patient are copied into a programme and sent to the pump, nothing else checked.

Either way the pump only pre-fills; its own dose error reduction still checks every programme
against its library, and ``Ward.confirm_at_bedside`` stands for the clinician who confirms a
pre-filled programme without noticing whose order it was (an alert, such as a soft-limit
override, is noticed). ``delivered_ml`` is what follows from that confirmation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from pumpguard.clinical import PumpKind
from pumpguard.devices.infusion import CommandResult, ContinuousProgramme, PumpState
from pumpguard.interop import (
    CodedValue,
    DeliveryError,
    Endpoint,
    Frame,
    InfusionOrder,
    MessageHeader,
    MllpDecoder,
    MllpServer,
    OrderContext,
    OrderControl,
    PeerInfo,
    PivReceiver,
    PumpStatus,
    Quantity,
    TransportProfile,
    build_piv,
    check_order,
    encode_frame,
    parse_ack,
    parse_piv,
    send_message,
)
from pumpguard.lab.attacks.hospital_ward import (
    OTHER_PATIENT_ID,
    PATIENT_ID,
    PUMP_ID,
    SLIP_FACTOR,
    HospitalAttack,
    Outcome,
    Ward,
)
from pumpguard.pki import CertificateAuthority, CertKind, client_tls_context, server_tls_context

__all__ = [
    "OrderBeyondHardLimit",
    "OrderForAnotherPatient",
    "OrderFromUnauthenticatedHost",
    "OrderReplay",
    "OrderTamperedInTransit",
]

_ML = CodedValue("263762", "MDC_DIM_MILLI_L", "MDC")
_KG = CodedValue("263875", "MDC_DIM_KILO_G", "MDC")
_CA_PASSPHRASE = b"ward certificate authority passphrase"
_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class _Credentials:
    """Certificate directories: the pump server's, the EHR's, and the attacker's (none: only
    the hospital's ``ca.pem``; or one from a CA of its own, for server and client)."""

    server: Path
    ehr: Path
    anonymous: Path
    rogue: Path


def _credentials(directory: Path) -> _Credentials:
    hospital = CertificateAuthority.init(directory / "hospital-ca", _CA_PASSPHRASE)
    rogue_ca = CertificateAuthority.init(directory / "rogue-ca", _CA_PASSPHRASE)
    sans = ["localhost", "127.0.0.1"]
    hospital.issue(CertKind.SERVER, "pumpserver", sans=sans).write(directory / "server")
    hospital.issue(CertKind.EHR, "ehr-main", sans=sans).write(directory / "ehr")
    rogue_ca.issue(CertKind.EHR, "ehr-main", sans=sans).write(directory / "rogue")
    hospital_ca = (directory / "server" / "ca.pem").read_bytes()
    (directory / "rogue" / "ca.pem").write_bytes(hospital_ca)
    (directory / "anonymous").mkdir()
    (directory / "anonymous" / "ca.pem").write_bytes(hospital_ca)
    return _Credentials(
        directory / "server", directory / "ehr", directory / "anonymous", directory / "rogue"
    )


@dataclass(frozen=True, slots=True)
class _Delivery:
    """One order as the pump server handled it."""

    control_id: str
    peer: str
    prefilled: ContinuousProgramme | None
    pump: CommandResult | None
    refusal: str | None


class _OrderDesk:
    """The pump server's order intake for the ward's one pump, in the ward's profile."""

    def __init__(self, ward: Ward) -> None:
        self.ward = ward
        self.receiver = PivReceiver(clock=ward.clock, events=ward.events)
        self.deliveries: list[_Delivery] = []
        self._seen_ids: set[str] = set()
        self._seen_placers: set[str] = set()

    async def handle(self, text: str, peer: PeerInfo) -> str | None:
        reception = self.receiver.receive(text, str(peer))
        if reception.order is not None:
            self.deliveries.append(self._route(reception.order, str(peer)))
        return reception.ack

    def _route(self, order: InfusionOrder, peer: str) -> _Delivery:
        if self.ward.secure:
            verdict = check_order(order, self._context())
            self._seen_ids.add(order.control_id)
            if order.control is OrderControl.NEW:
                self._seen_placers.add(order.placer_order_number)
            self.receiver.application_ack(order, verdict, peer)
            programme = verdict.programme
            if verdict.finding is not None or not isinstance(programme, ContinuousProgramme):
                why = verdict.finding.message if verdict.finding else "not continuous"
                return _Delivery(order.control_id, peer, None, None, f"server: {why}")
        else:
            programme = _pass_through(order)
        result = self.ward.prefill(programme)
        prefilled = programme if result.accepted else None
        refusal = None if result.accepted else f"pump: {result.message}"
        return _Delivery(order.control_id, peer, prefilled, result, refusal)

    def _context(self) -> OrderContext:
        pump = self.ward.pump
        state = pump.state
        status = PumpStatus(
            PUMP_ID,
            PumpKind.LVP,
            powered=state is not PumpState.OFF,
            infusing=state in (PumpState.INFUSING, PumpState.PAUSED),
            accepting=not pump.awaiting_confirmation,
            care_area=pump.care_area,
            patient_id=PATIENT_ID,
            patient_weight_kg=self.ward.prescription.weight_kg,
        )
        return OrderContext(
            {PUMP_ID: status},
            pump.library,
            _now(self.ward),
            seen_control_ids=frozenset(self._seen_ids),
            seen_placer_orders=frozenset(self._seen_placers),
        )


def _pass_through(order: InfusionOrder) -> ContinuousProgramme:
    """The legacy gateway: RXG-4's code, RXG-15/16, RXG-5, the weight OBX and PID-3, copied."""
    rate = order.rate
    if rate is None or rate.unit is None or order.volume is None:
        raise ValueError("the ward's orders always carry a rate with its unit and a volume")
    return ContinuousProgramme(
        drug=order.drug.identifier,
        dose=rate.value,
        dose_unit=rate.unit.identifier,
        vtbi_ml=order.volume.value,
        weight_kg=None if order.weight is None else order.weight.value,
        order_id=order.placer_order_number,
        patient_id=order.patient_id,
    )


def _now(ward: Ward) -> datetime:
    return datetime.fromtimestamp(ward.clock.now_ms() / 1000, tz=UTC)


def _order(
    ward: Ward,
    control_id: str,
    placer: str,
    dose: Decimal,
    *,
    control: OrderControl = OrderControl.NEW,
    patient: str = PATIENT_ID,
    weight: Decimal | None = None,
) -> str:
    """A PIV order for the ward's pump, written the way the EHR writes them."""
    rx = ward.prescription
    now = _now(ward)
    order = InfusionOrder(
        header=MessageHeader(control_id, "BCMA", "WARD", "PUMPGUARD", "WARD", now, "AL", "AL"),
        control=control,
        placer_order_number=placer,
        placer_namespace="BCMA",
        patient_id=patient,
        pump_id=PUMP_ID,
        drug=CodedValue(rx.code, rx.drug, "LOCAL"),
        order_time=now,
        volume=Quantity(rx.vtbi_ml, _ML),
        rate=Quantity(dose, CodedValue(rx.dose_unit, "", "UCUM")),
        strength=Quantity(rx.concentration_amount, CodedValue(rx.concentration_unit, "", "UCUM")),
        strength_volume=Quantity(rx.concentration_ml, CodedValue("mL", "", "UCUM")),
        weight=Quantity(rx.weight_kg if weight is None else weight, _KG),
    )
    return build_piv(order)


def _with_rate(text: str, dose: Decimal) -> str:
    """What the attacker in the path does to a cleartext order: RXG-15 rewritten."""
    order = parse_piv(text)
    assert order.rate is not None
    return build_piv(replace(order, rate=replace(order.rate, value=dose)))


class _Network:
    """The ward's order listener and the hosts that talk to it, on the loopback interface."""

    def __init__(self, ward: Ward, desk: _OrderDesk) -> None:
        self.ward = ward
        self.desk = desk
        self.creds = _credentials(ward.workdir / "pki") if ward.secure else None
        profile = TransportProfile.SECURE if ward.secure else TransportProfile.LEGACY
        self.profile = profile
        self.server = MllpServer(
            desk.handle,
            profile=profile,
            tls_context=None if self.creds is None else server_tls_context(self.creds.server),
            on_problem=lambda problem, peer: desk.receiver.answer_problem(problem, str(peer)),
            events=ward.events,
            clock=ward.clock,
            handshake_timeout=_TIMEOUT_S,
        )

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("localhost", self.server.port, tls=self.creds is not None)

    def context(self, who: str) -> ssl.SSLContext | None:
        """``ehr``, ``anonymous`` or ``rogue``; None in the legacy profile (plain MLLP)."""
        if self.creds is None:
            return None
        return client_tls_context(getattr(self.creds, who))

    async def send(self, text: str, who: str, endpoint: Endpoint | None = None) -> str:
        """Send one order as ``who``; the answer, or why nothing came back."""
        try:
            ack = await send_message(
                endpoint or self.endpoint,
                text,
                profile=self.profile,
                tls_context=self.context(who),
                timeout=_TIMEOUT_S,
            )
        except DeliveryError as exc:
            return f"not delivered ({exc})"
        return "no acknowledgement" if ack is None else f"ACK {parse_ack(ack).code}"


async def _intercepting(
    network: _Network, rewrite: Callable[[str], str], seen: list[str]
) -> asyncio.Server:
    """The attacker in the path (ARP or DNS spoofing puts it between EHR and server): it takes
    the EHR's connection (secure: with a certificate of its own CA, the only one it has),
    rewrites the order and delivers it to the server as the EHR (secure: with that same
    certificate), then relays the answer."""
    creds = network.creds
    rogue_server = None
    if creds is not None:
        rogue_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        rogue_server.load_cert_chain(creds.rogue / "cert.pem", creds.rogue / "key.pem")

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if rogue_server is not None:
                await writer.start_tls(rogue_server)
            decoder = MllpDecoder()
            while True:
                data = await asyncio.wait_for(reader.read(65536), _TIMEOUT_S)
                if not data:
                    return
                frames = [f for f in decoder.feed(data) if isinstance(f, Frame)]
                if frames:
                    break
            seen.append(frames[0].text)
            tampered = rewrite(frames[0].text)
            answer = await send_message(
                network.endpoint,
                tampered,
                profile=network.profile,
                tls_context=network.context("rogue"),
                timeout=_TIMEOUT_S,
            )
            if answer is not None:
                writer.write(encode_frame(answer))
                await writer.drain()
        except (OSError, ssl.SSLError, TimeoutError, DeliveryError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(relay, "127.0.0.1", 0)


def _outcome(
    ward: Ward,
    attacker: list[_Delivery],
    evidence: str,
    *,
    prescribed_dose: Decimal | None = None,
    refused_by: str | None = None,
) -> Outcome:
    """The order verdict: did an order of the attacker's pre-fill the pump; then the bedside
    (confirmed without noticing) and the hour that follows, measured."""
    taken = [d.prefilled for d in attacker if d.prefilled is not None]
    refusals = [d.refusal for d in attacker if d.refusal]
    confirmed = ward.confirm_at_bedside()
    harm = ward.measure(confirmed, prescribed_dose=prescribed_dose)
    said = f"; refused: {refusals[0]}" if refusals else ""
    shown = f"{taken[-1].dose} {harm.dose_unit}" if taken else "nothing"
    return Outcome(
        bool(taken),
        f"{evidence}{said}; pump pre-filled with the attacker's order: {shown}; "
        f"confirmed at the bedside: {'-' if confirmed is None else confirmed}",
        harm,
        foreign_commands=len(taken),
        refused_by=None if taken else refused_by,
    )


def _of(desk: _OrderDesk, control_id: str) -> list[_Delivery]:
    return [d for d in desk.deliveries if d.control_id == control_id]


class OrderFromUnauthenticatedHost(HospitalAttack):
    name = "order-unauthenticated-host"
    references = ("CVE-2015-3956", "CVE-2021-33882", "ICSA-15-161-01", "ICSMA-21-294-01")
    description = (
        "a host on the hospital network that is not the EHR sends an order for the ward's "
        "pump: the prescribed drug at its upper soft limit (no alert at the pump); secure, "
        "without a certificate, then with one from its own CA"
    )
    goal = "the pump is pre-filled with an order the EHR never sent"
    control = "mutual-tls"

    def perform(self, ward: Ward) -> Outcome:
        desk = _OrderDesk(ward)
        network = _Network(ward, desk)
        dose = _upper_soft(ward)
        said: list[str] = []

        async def scenario() -> None:
            async with network.server:
                ward.attack_starts()
                text = _order(ward, "ATK-0001", "ORD-ATK1", dose)
                if ward.secure:
                    said.append(f"without a certificate: {await network.send(text, 'anonymous')}")
                    said.append(f"with its own CA's: {await network.send(text, 'rogue')}")
                else:
                    said.append(f"plain MLLP: {await network.send(text, 'anonymous')}")

        asyncio.run(scenario())
        return _outcome(ward, _of(desk, "ATK-0001"), "; ".join(said))


class OrderReplay(HospitalAttack):
    name = "order-replay"
    references = ("NIST SP 1800-8 (changes to prescribed doses)", "ICSMA-20-170-04")
    description = (
        "the EHR starts the infusion and two hours later halves the rate (ORC-1 XO); an hour "
        "after that the first order is sent again, byte for byte (legacy: recorded off the "
        "cleartext wire; secure: re-sent by an interface engine that holds the EHR's "
        "certificate)"
    )
    goal = "the replayed order takes the infusion back to its first rate"
    control = "replay-memory"

    def perform(self, ward: Ward) -> Outcome:
        desk = _OrderDesk(ward)
        network = _Network(ward, desk)
        first_dose = ward.prescription.dose
        current = first_dose / 2
        said: list[str] = []

        async def scenario() -> None:
            async with network.server:
                first = _order(ward, "EHR-0001", "ORD-1001", first_dose)
                said.append(f"order: {await network.send(first, 'ehr')}")
                ward.confirm_at_bedside()
                ward.advance_min(120)
                change = _order(ward, "EHR-0002", "ORD-1001", current, control=OrderControl.CHANGE)
                said.append(f"rate halved: {await network.send(change, 'ehr')}")
                ward.confirm_at_bedside()
                ward.advance_min(60)
                ward.attack_starts()
                sender = "ehr" if ward.secure else "anonymous"
                said.append(f"replay: {await network.send(first, sender)}")

        asyncio.run(scenario())
        replayed = _of(desk, "EHR-0001")[1:]
        return _outcome(ward, replayed, "; ".join(said), prescribed_dose=current)


class OrderTamperedInTransit(HospitalAttack):
    name = "order-tampered-in-transit"
    references = ("CVE-2021-33883", "ICSMA-21-294-01", "ICSMA-20-170-04")
    description = (
        "an attacker in the path between EHR and pump server rewrites the order's rate "
        "(RXG-15) to the drug's upper soft limit (no alert at the pump); secure, it must "
        "terminate TLS with a certificate of its own CA on both sides"
    )
    goal = "the pump is pre-filled with a dose the EHR did not order"
    control = "mutual-tls"

    def perform(self, ward: Ward) -> Outcome:
        desk = _OrderDesk(ward)
        network = _Network(ward, desk)
        dose = _upper_soft(ward)
        said: list[str] = []
        seen: list[str] = []

        async def scenario() -> None:
            async with network.server:
                ward.attack_starts()
                proxy = await _intercepting(network, lambda text: _with_rate(text, dose), seen)
                async with proxy:
                    port = int(proxy.sockets[0].getsockname()[1])
                    via = Endpoint("localhost", port, tls=network.creds is not None)
                    text = _order(ward, "EHR-0001", "ORD-1001", ward.prescription.dose)
                    said.append(
                        f"EHR's order via the attacker: {await network.send(text, 'ehr', via)}"
                    )
                    if ward.secure and not seen:
                        # TLS kept the order from it: it sends the one it wanted the pump to
                        # get, as the EHR, with the certificate of its own CA
                        forged = await network.send(_with_rate(text, dose), "rogue")
                        said.append(f"attacker as the EHR: {forged}")

        asyncio.run(scenario())
        said.append(f"attacker read {len(seen)} order(s)")
        altered = [d for d in _of(desk, "EHR-0001") if _dose_of(d) != ward.prescription.dose]
        return _outcome(ward, altered, "; ".join(said))


def _dose_of(delivery: _Delivery) -> Decimal | None:
    return None if delivery.prefilled is None else delivery.prefilled.dose


class OrderBeyondHardLimit(HospitalAttack):
    name = "order-beyond-hard-limit"
    references = ("NIST SP 1800-8 (changes to prescribed doses)", "IHE PCD PIV ERR 9024")
    description = (
        "an order for ten times the prescribed dose (above the library's hard maximum) "
        "arrives over the EHR's own authenticated channel (a compromised EHR, or a slip "
        "upstream)"
    )
    goal = "the pump is pre-filled with a dose above its hard limit"
    control = "order-check"

    def perform(self, ward: Ward) -> Outcome:
        desk = _OrderDesk(ward)
        network = _Network(ward, desk)
        dose = ward.prescription.dose * SLIP_FACTOR
        said: list[str] = []

        async def scenario() -> None:
            async with network.server:
                ward.attack_starts()
                text = _order(ward, "EHR-0666", "ORD-1666", dose)
                said.append(f"x{SLIP_FACTOR} order: {await network.send(text, 'ehr')}")

        asyncio.run(scenario())
        return _outcome(ward, _of(desk, "EHR-0666"), "; ".join(said), refused_by="pump-ders")


class OrderForAnotherPatient(HospitalAttack):
    name = "order-wrong-patient"
    references = ("NIST SP 1800-8 (changes to prescribed doses)", "IHE PCD PIV ERR 9012")
    description = (
        f"an order for patient {OTHER_PATIENT_ID} (the same drug at the upper soft limit, "
        f"40 % heavier) names the pump of patient {PATIENT_ID} (a wrong pump id in OBX-18, "
        "by error or by an attacker upstream of the pump server)"
    )
    goal = "the pump is pre-filled with another patient's order"
    control = "patient-match"

    def perform(self, ward: Ward) -> Outcome:
        desk = _OrderDesk(ward)
        network = _Network(ward, desk)
        dose = _upper_soft(ward)
        entry = ward.entry
        weight = (ward.prescription.weight_kg * Decimal("1.4")).quantize(Decimal(1))
        if entry.weight_kg is not None:
            weight = min(weight, entry.weight_kg.max_kg)
        said: list[str] = []

        async def scenario() -> None:
            async with network.server:
                ward.attack_starts()
                text = _order(
                    ward, "EHR-0815", "ORD-0815", dose, patient=OTHER_PATIENT_ID, weight=weight
                )
                said.append(f"order for {OTHER_PATIENT_ID}: {await network.send(text, 'ehr')}")

        asyncio.run(scenario())
        return _outcome(ward, _of(desk, "EHR-0815"), "; ".join(said))


def _upper_soft(ward: Ward) -> Decimal:
    limits = ward.entry.continuous
    top = limits.soft_max if limits.soft_max is not None else limits.hard_max
    assert top is not None
    return top
