"""The simulated EHR / BCMA: the Infusion Order Programmer of IHE PCD PIV, for ``pumpguard ehr
run``, ``up --demo``, the auto-programming benchmark and the conformance tests.

It writes orders for the ward's patients and pumps as a bar-code medication administration
system would (``interop.build_piv``): valid ones, and ones built to be refused for one stated
reason each, whose expected answer is written from REFERENCE section 4 and HL7 v2.6 tables
0008/0357, never from what the server happens to reply. It sends each order over MLLP inside
mutual TLS with an EHR certificate, reads the ``ACK^O15`` on the same connection, and listens
on its own MLLP/TLS port, where only a pumpguard *server* certificate may connect, for what the
pump server sends back: ``RRG^O16``, IPEC (``ORU^R42``), ACM (``ORU^R40``) and DEC
(``ORU^R01``), each answered with a commit acknowledgement.

Every interval is measured on this process's wall clock, both ends stamped here, except the
pre-fill instant, which is stamped by the pump firmware itself when a pump runs in this process
(``note_prefill``), or read from the server when it reports it. An order is matched to its
``RRG^O16`` by MSA-2 (our MSH-10) and to IPEC events by OBR-2 (our placer order number).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from pumpguard.clinical import (
    DrugEntry,
    DrugLibrary,
    PumpKind,
    dose_to_flow,
    parse_dose_unit,
)
from pumpguard.interop import (
    AckCode,
    AckMessage,
    AppError,
    AppErrorDetail,
    CodedValue,
    DeliveryError,
    Endpoint,
    ErrorSeverity,
    Hl7Error,
    Hl7ErrorCode,
    InfusionOrder,
    MessageHeader,
    MllpServer,
    OrderControl,
    PeerInfo,
    Profile,
    PumpEvent,
    PumpEventKind,
    Quantity,
    Responder,
    TransportProfile,
    build_accept_ack,
    build_piv,
    parse_ack,
    parse_alert,
    parse_event,
    parse_observations,
    send_message,
)
from pumpguard.pki import CertKind, client_tls_context, server_tls_context
from pumpguard.server.demo import WardBed, demo_beds, programme_for

if TYPE_CHECKING:
    from pumpguard.server.runtime import Stack

__all__ = [
    "EHR_APPLICATION",
    "DemoEhr",
    "EhrRun",
    "EhrRunConfig",
    "Expectation",
    "OrderFactory",
    "OrderKind",
    "OrderRecord",
    "PlannedOrder",
    "SimulatedEhr",
    "default_mix",
    "load_roster",
    "percentile",
    "run_ehr",
    "run_orders",
    "start_demo_ehr",
]

EHR_APPLICATION = "PUMPGUARD-EHR"
_FACILITY = "GENERAL"
_ML = CodedValue("263762", "MDC_DIM_MILLI_L", "MDC")
_KG = CodedValue("263875", "MDC_DIM_KILO_G", "MDC")
_WEIGHT_KG = Decimal(70)
_STALE_BY = timedelta(minutes=20)
_UNKNOWN_DRUG = CodedValue("ZZ-UNOBTAINIUM-5", "Unobtainium 5 mg/mL", "LOCAL")

# Clinical dose units to UCUM as an EHR writes them (UCUM: [iU] international unit, ug, meq).
_UCUM = {"units": "[iU]", "milliunits": "m[iU]", "mcg": "ug", "mEq": "meq"}
# The two MDC dimension codes REFERENCE lists for rates.
_MDC_RATES = {
    "mL/h": CodedValue("265266", "MDC_DIM_MILLI_L_PER_HR", "MDC"),
    "mcg/kg/min": CodedValue("265619", "MDC_DIM_MICRO_G_PER_KG_PER_MIN", "MDC"),
}


class OrderKind(StrEnum):
    """What an order is built to test; each erroneous kind carries exactly one fault."""

    VALID = "valid"
    HARD_LIMIT = "hard-limit"
    UNKNOWN_DRUG = "unknown-drug"
    WRONG_UNITS = "wrong-units"
    WRONG_PATIENT = "wrong-patient"
    INFUSING_WITHOUT_XO = "infusing-without-xo"
    STALE = "stale"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Expectation:
    """The answers an order must get: ACK^O15 MSA-1 and ERR-3, RRG^O16 MSA-1 and ERR-5."""

    ack: AckCode
    rrg: AckCode | None = None
    app_error: AppError | None = None
    hl7_error: Hl7ErrorCode | None = None

    def __str__(self) -> str:
        parts = [self.ack.value]
        if self.hl7_error is not None:
            parts.append(str(int(self.hl7_error)))
        if self.rrg is not None:
            parts.append(self.rrg.value)
        if self.app_error is not None:
            parts.append(str(int(self.app_error)))
        return " ".join(parts)


# REFERENCE section 4 (ERR-5 codes) and HL7 v2.6 section 2.9.2 (AE: content refused, AR: the
# receiver cannot take it now); a CE or CR order is not processed, so no RRG^O16 follows.
_EXPECTED = {
    OrderKind.VALID: Expectation(AckCode.CA, AckCode.AA),
    OrderKind.HARD_LIMIT: Expectation(AckCode.CA, AckCode.AE, AppError.HARD_LIMIT),
    OrderKind.UNKNOWN_DRUG: Expectation(AckCode.CA, AckCode.AE, AppError.NO_LIBRARY_MATCH),
    OrderKind.WRONG_UNITS: Expectation(AckCode.CA, AckCode.AE, AppError.UNITS_MISMATCH),
    OrderKind.WRONG_PATIENT: Expectation(AckCode.CA, AckCode.AE, AppError.PATIENT_MISMATCH),
    OrderKind.INFUSING_WITHOUT_XO: Expectation(AckCode.CA, AckCode.AR, AppError.CURRENTLY_INFUSING),
    OrderKind.STALE: Expectation(AckCode.CA, AckCode.AE, AppError.STALE_ORDER),
}


class _Malformed(StrEnum):
    """The malformed orders the simulator rotates through, with their HL7 table 0357 code."""

    MISSING_RXR = "missing-rxr"  # segment sequence error, 100
    MISSING_PLACER = "missing-placer"  # required field missing (ORC-2), 101
    RATE_NOT_NUMBER = "rate-not-a-number"  # data type error (RXG-15 NM), 102
    WRONG_VERSION = "wrong-version"  # unsupported version id (MSH-12), 203: rejected


_MALFORMED_EXPECTED = {
    _Malformed.MISSING_RXR: Expectation(AckCode.CE, hl7_error=Hl7ErrorCode.SEGMENT_SEQUENCE),
    _Malformed.MISSING_PLACER: Expectation(
        AckCode.CE, hl7_error=Hl7ErrorCode.REQUIRED_FIELD_MISSING
    ),
    _Malformed.RATE_NOT_NUMBER: Expectation(AckCode.CE, hl7_error=Hl7ErrorCode.DATA_TYPE),
    _Malformed.WRONG_VERSION: Expectation(AckCode.CR, hl7_error=Hl7ErrorCode.UNSUPPORTED_VERSION),
}


_CHANGE_WHEN_RUNNING = frozenset(
    {
        OrderKind.VALID,
        OrderKind.HARD_LIMIT,
        OrderKind.UNKNOWN_DRUG,
        OrderKind.WRONG_UNITS,
        OrderKind.WRONG_PATIENT,
    }
)


def default_mix() -> dict[OrderKind, float]:
    """Mostly valid orders, as on a real ward, with every fault represented."""
    faults = [k for k in OrderKind if k is not OrderKind.VALID]
    return {OrderKind.VALID: 0.65, **{k: 0.35 / len(faults) for k in faults}}


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """One order as sent: its ER7 text and the answer it must get."""

    kind: OrderKind
    control_id: str
    placer: str
    pump_id: str
    patient_id: str
    drug: str
    control: OrderControl
    text: str
    expected: Expectation
    variant: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.variant}" if self.variant else str(self.kind)


def ucum_rate(dose_unit: str) -> CodedValue:
    """A dose-rate unit as an EHR writes it: MDC where REFERENCE gives a code, else UCUM."""
    if dose_unit in _MDC_RATES:
        return _MDC_RATES[dose_unit]
    parts = [_UCUM.get(p, p) for p in dose_unit.split("/")]
    return CodedValue("/".join(parts), "", "UCUM")


def _segments_edit(text: str, edit: Callable[[list[list[str]]], None]) -> str:
    """Apply ``edit`` to the message as a list of segments of fields (MSH-1 at index 1)."""
    segments = [s.split("|") for s in text.split("\r") if s]
    edit(segments)
    return "\r".join("|".join(s) for s in segments) + "\r"


def _set_field(segments: list[list[str]], name: str, number: int, value: str) -> None:
    """Set field ``number`` of the first ``name`` segment (MSH numbering: MSH-2 is index 1)."""
    for segment in segments:
        if segment[0] == name:
            index = number - 1 if name == "MSH" else number
            while len(segment) <= index:
                segment.append("")
            segment[index] = value
            return
    raise ValueError(f"no {name} segment")


class OrderFactory:
    """Builds the orders; pure (no I/O, no clock): the caller gives ``now`` and the bed."""

    def __init__(
        self,
        library: DrugLibrary,
        beds: Sequence[WardBed] | None = None,
        *,
        seed: int = 1,
        application: str = EHR_APPLICATION,
        facility: str = _FACILITY,
        id_prefix: str = "EHR",
        receiver: tuple[str, str] = ("PUMPGUARD", "PUMPGUARD"),
    ) -> None:
        self.library = library
        self.beds = tuple(beds if beds is not None else demo_beds())
        if not self.beds:
            raise ValueError("the simulated EHR needs at least one bed (pump and patient)")
        self._rng = random.Random(seed)
        self._application = application
        self._facility = facility
        self._receiver = receiver
        # Unique across runs that share a server (its replay memory keeps MSH-10 and ORC-2).
        self._prefix = f"{id_prefix}{seed:x}{time.time_ns() // 1_000_000 % 10**10:010d}"
        self._counter = itertools.count(1)
        self._malformed = itertools.cycle(list(_Malformed))

    def _entries(self, area: str) -> list[DrugEntry]:
        care_area = self.library.care_area(area)
        if care_area is None:
            return []
        return [
            e
            for e in care_area.entries
            if PumpKind.LVP in e.pump_kinds and e.pca is None and e.continuous.hard_max
        ]

    def _next_ids(self) -> tuple[str, str]:
        n = next(self._counter)
        return f"{self._prefix}.{n}", f"ORD-{self._prefix}-{n}"

    def _order(
        self,
        bed: WardBed,
        now: datetime,
        entry: DrugEntry,
        dose: Decimal,
        *,
        control: OrderControl = OrderControl.NEW,
        patient_id: str | None = None,
        dose_unit: str | None = None,
        drug: CodedValue | None = None,
        order_time: datetime | None = None,
        vtbi: Decimal = Decimal(100),
    ) -> InfusionOrder:
        control_id, placer = self._next_ids()
        weight = None
        if "/kg" in entry.dose_unit:
            weight = Quantity(_WEIGHT_KG, _KG)
        concentration = entry.to_concentration()
        strength = strength_volume = None
        if concentration is not None:
            strength = Quantity(concentration.amount, ucum_rate(str(concentration.unit)))
            strength_volume = Quantity(concentration.volume_ml, CodedValue("mL", "", "UCUM"))
        return InfusionOrder(
            header=MessageHeader(
                control_id=control_id,
                sending_application=self._application,
                sending_facility=self._facility,
                receiving_application=self._receiver[0],
                receiving_facility=self._receiver[1],
                sent_at=now,
                accept_ack="AL",
                application_ack="AL",
            ),
            control=control,
            placer_order_number=placer,
            placer_namespace=self._application,
            patient_id=patient_id or bed.mrn,
            pump_id=bed.pump,
            drug=drug or CodedValue(entry.code, entry.name, "LOCAL"),
            order_time=order_time or now,
            volume=Quantity(vtbi, _ML),
            rate=Quantity(dose, ucum_rate(dose_unit or entry.dose_unit)),
            strength=strength,
            strength_volume=strength_volume,
            weight=weight,
            location=bed.care_area,
        )

    def _pick(self, bed: WardBed, drug_code: str | None = None) -> DrugEntry:
        entries = self._entries(bed.care_area)
        if drug_code is not None:
            entries = [e for e in entries if e.code == drug_code] or entries
        if not entries:
            raise ValueError(f"care area {bed.care_area!r} has no continuous LVP entry")
        return self._rng.choice(entries)

    def _typical_dose(self, entry: DrugEntry, bed: WardBed) -> tuple[Decimal, Decimal]:
        """A dose inside the soft limits and a VTBI the pump can finish within the entry's
        maximum duration (a bag that outlasts it is refused, 9024)."""
        programme = programme_for(entry, bed.mrn, self._rng)
        if programme is None:  # an entry with a hard maximum only
            hard_max = entry.continuous.hard_max
            assert hard_max is not None
            dose, vtbi, weight = (
                (Decimal(hard_max) / 4).quantize(Decimal("0.01")),
                Decimal(100),
                None,
            )
        else:
            dose, vtbi, weight = programme.dose, programme.vtbi_ml, programme.weight_kg
        if entry.max_duration_min is not None:
            weight = weight if weight is not None or "/kg" not in entry.dose_unit else _WEIGHT_KG
            rate = dose_to_flow(
                dose, parse_dose_unit(entry.dose_unit), entry.to_concentration(), weight
            )
            longest = rate * Decimal(entry.max_duration_min) / 60 * Decimal("0.9")
            vtbi = min(vtbi, longest.quantize(Decimal("0.1"), rounding=ROUND_DOWN))
        return dose, vtbi

    def build(
        self,
        kind: OrderKind,
        bed: WardBed,
        now: datetime,
        *,
        control: OrderControl = OrderControl.NEW,
        drug_code: str | None = None,
        other_patient: str | None = None,
    ) -> PlannedOrder:
        """One order of ``kind`` for ``bed``, dated ``now`` (``drug_code`` keeps the drug of a
        running infusion for an XO; ``other_patient`` is the MRN a wrong-patient order names).
        ``control`` applies to the content faults; infusing-without-XO is always RE."""
        entry = self._pick(bed, drug_code)
        dose, vtbi = self._typical_dose(entry, bed)
        variant = ""
        expected = _EXPECTED.get(kind)
        if kind is OrderKind.VALID:
            order = self._order(bed, now, entry, dose, control=control, vtbi=vtbi)
        elif kind is OrderKind.HARD_LIMIT:
            hard_max = Decimal(entry.continuous.hard_max or 0)
            over = (hard_max * Decimal("1.5")).quantize(Decimal("0.01"))
            order = self._order(bed, now, entry, over, control=control, vtbi=vtbi)
        elif kind is OrderKind.UNKNOWN_DRUG:
            order = self._order(
                bed, now, entry, dose, control=control, drug=_UNKNOWN_DRUG, vtbi=vtbi
            )
        elif kind is OrderKind.WRONG_UNITS:
            wrong = (
                "mg/h" if entry.dose_unit.split("/")[0] in ("units", "milliunits") else "units/h"
            )
            order = self._order(bed, now, entry, dose, control=control, dose_unit=wrong, vtbi=vtbi)
        elif kind is OrderKind.WRONG_PATIENT:
            others = [b.mrn for b in self.beds if b.mrn != bed.mrn]
            patient = other_patient or (self._rng.choice(others) if others else "MRN-NOBODY")
            order = self._order(
                bed, now, entry, dose, control=control, patient_id=patient, vtbi=vtbi
            )
        elif kind is OrderKind.INFUSING_WITHOUT_XO:
            order = self._order(bed, now, entry, dose, vtbi=vtbi)
        elif kind is OrderKind.STALE:
            order = self._order(bed, now, entry, dose, order_time=now - _STALE_BY, vtbi=vtbi)
        else:
            malformed = next(self._malformed)
            order = self._order(bed, now, entry, dose, vtbi=vtbi)
            return self._malformed_order(order, malformed)
        assert expected is not None
        return PlannedOrder(
            kind,
            order.control_id,
            order.placer_order_number,
            order.pump_id,
            order.patient_id,
            order.drug.identifier,
            order.control,
            build_piv(order),
            expected,
            variant,
        )

    def _malformed_order(self, order: InfusionOrder, variant: _Malformed) -> PlannedOrder:
        text = build_piv(order)
        if variant is _Malformed.MISSING_RXR:
            text = "\r".join(s for s in text.split("\r") if not s.startswith("RXR|"))
        elif variant is _Malformed.MISSING_PLACER:
            text = _segments_edit(text, lambda s: _set_field(s, "ORC", 2, ""))
        elif variant is _Malformed.RATE_NOT_NUMBER:
            text = _segments_edit(text, lambda s: _set_field(s, "RXG", 15, "fast"))
        else:
            text = _segments_edit(text, lambda s: _set_field(s, "MSH", 12, "2.5"))
        return PlannedOrder(
            OrderKind.MALFORMED,
            order.control_id,
            order.placer_order_number,
            order.pump_id,
            order.patient_id,
            order.drug.identifier,
            order.control,
            text,
            _MALFORMED_EXPECTED[variant],
            variant.value,
        )


# -- the running simulator -----------------------------------------------------------------


def _now_ms() -> float:
    return time.time() * 1000


@dataclass
class OrderRecord:
    """What became of one order; times are wall-clock milliseconds since the epoch."""

    order: PlannedOrder
    sent_ms: float
    ack: AckMessage | None = None
    ack_ms: float | None = None
    delivery_error: str | None = None
    rrg: AckMessage | None = None
    rrg_ms: float | None = None
    prefill_ms: float | None = None
    prefill_source: str = ""
    events: list[tuple[PumpEventKind, float]] = field(default_factory=list)

    @property
    def ack_latency_ms(self) -> float | None:
        return None if self.ack_ms is None else self.ack_ms - self.sent_ms

    @property
    def prefill_latency_ms(self) -> float | None:
        return None if self.prefill_ms is None else self.prefill_ms - self.sent_ms

    @property
    def rrg_latency_ms(self) -> float | None:
        return None if self.rrg_ms is None else self.rrg_ms - self.sent_ms

    @property
    def app_error(self) -> AppError | None:
        if self.rrg is None or not self.rrg.app_errors:
            return None
        return self.rrg.app_errors[0]

    @property
    def hl7_error(self) -> Hl7ErrorCode | None:
        if self.ack is None or not self.ack.errors:
            return None
        return self.ack.errors[0].code

    @property
    def settled(self) -> bool:
        """Nothing more is owed: no ACK (delivery failed), a CE/CR, or the RRG^O16 came."""
        if self.ack is None:
            return self.delivery_error is not None
        return self.ack.code is not AckCode.CA or self.rrg is not None

    @property
    def outcome(self) -> str:
        """What was received, in the notation of ``Expectation``."""
        if self.ack is None:
            return "no ACK" if self.delivery_error else "pending"
        got = Expectation(
            self.ack.code,
            self.rrg.code if self.rrg is not None else None,
            self.app_error,
            self.hl7_error if self.ack.code is not AckCode.CA else None,
        )
        return str(got)

    @property
    def matches(self) -> bool:
        return self.outcome == str(self.order.expected)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.order.kind.value,
            "variant": self.order.variant or None,
            "control_id": self.order.control_id,
            "placer": self.order.placer,
            "pump": self.order.pump_id,
            "patient": self.order.patient_id,
            "drug": self.order.drug,
            "orc1": self.order.control.value,
            "expected": str(self.order.expected),
            "outcome": self.outcome,
            "matches": self.matches,
            "ack": None if self.ack is None else self.ack.code.value,
            "hl7_error": None if self.hl7_error is None else int(self.hl7_error),
            "rrg": None if self.rrg is None else self.rrg.code.value,
            "err5": None if self.app_error is None else int(self.app_error),
            "reason": _reason(self),
            "ack_ms": _round(self.ack_latency_ms),
            "prefill_ms": _round(self.prefill_latency_ms),
            "prefill_source": self.prefill_source or None,
            "rrg_ms": _round(self.rrg_latency_ms),
            "events": [kind.value for kind, _ in self.events],
            "delivery_error": self.delivery_error,
            "sent_at_ms": _round(self.sent_ms),
            "ack_at_ms": _round(self.ack_ms),
            "rrg_at_ms": _round(self.rrg_ms),
        }


def _reason(record: OrderRecord) -> str | None:
    for message in (record.rrg, record.ack):
        if message is not None and message.errors:
            return message.errors[0].message or None
    return record.delivery_error


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class EhrRun:
    """All records of one run and the figures over them."""

    records: list[OrderRecord]
    unmatched: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)

    def latencies(self, name: str) -> list[float]:
        values = (getattr(r, f"{name}_latency_ms") for r in self.records)
        return [v for v in values if v is not None]

    def summary(self) -> dict[str, object]:
        accepted = sum(1 for r in self.records if r.rrg is not None and r.rrg.code is AckCode.AA)
        refused: Counter[str] = Counter()
        for r in self.records:
            if r.ack is not None and r.ack.code is not AckCode.CA:
                code = r.hl7_error
                refused[f"{r.ack.code.value} {int(code) if code is not None else '-'}"] += 1
            elif r.rrg is not None and r.rrg.code is not AckCode.AA:
                err5 = r.app_error
                text = f"{int(err5)} {err5.text}" if err5 is not None else "-"
                refused[f"{r.rrg.code.value} {text}"] += 1
        figures: dict[str, object] = {}
        for name in ("ack", "prefill", "rrg"):
            values = self.latencies(name)
            figures[f"{name}_p50_ms"] = _round(percentile(values, 50))
            figures[f"{name}_p99_ms"] = _round(percentile(values, 99))
            figures[f"{name}_count"] = len(values)
        return {
            "orders": len(self.records),
            "accepted": accepted,
            "refused": dict(sorted(refused.items())),
            "no_ack": sum(1 for r in self.records if r.ack is None),
            "rrg_missing": sum(
                1
                for r in self.records
                if r.ack is not None and r.ack.code is AckCode.CA and r.rrg is None
            ),
            "as_expected": sum(1 for r in self.records if r.matches),
            "not_as_expected": sum(1 for r in self.records if not r.matches),
            "by_kind": dict(sorted(Counter(r.order.kind.value for r in self.records).items())),
            **figures,
            "received": dict(sorted(self.received.items())),
            "unmatched": dict(sorted(self.unmatched.items())),
        }


_ACK_PROFILES = {
    "O16": Profile.PIV,
    "R42": Profile.IPEC,
    "R40": Profile.ACM,
    "R01": Profile.DEC,
}

_Incoming = AckMessage | PumpEvent | str | None
"""What a received frame was: an RRG^O16, an IPEC event, a problem to count, or a report."""


class SimulatedEhr:
    """The EHR's two MLLP/TLS ends: a sender of orders and a listener for what comes back.

    ``cert_dir`` holds an EHR credential (``pumpguard pki issue --kind ehr --san ...``): its
    certificate authenticates the orders and serves the listener, whose only allowed peers are
    pumpguard server certificates."""

    def __init__(
        self,
        server: Endpoint,
        cert_dir: Path,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        timeout_s: float = 10.0,
        profile: TransportProfile = TransportProfile.SECURE,
        responder: Responder | None = None,
    ) -> None:
        self.server = server
        self._profile = profile
        self._timeout = timeout_s
        self._client_tls: ssl.SSLContext | None = None
        self._server_tls: ssl.SSLContext | None = None
        if server.tls or profile is TransportProfile.SECURE:
            self._client_tls = client_tls_context(cert_dir)
            self._server_tls = server_tls_context(cert_dir)
        self._listener = MllpServer(
            self._handle,
            profile=profile,
            tls_context=self._server_tls,
            host=listen_host,
            port=listen_port,
            allowed_kinds=frozenset({CertKind.SERVER}),
            on_problem=lambda problem, _peer: None,
        )
        self._responder = responder or Responder(EHR_APPLICATION, _FACILITY)
        self._ack_ids = itertools.count(1)
        self.records: dict[str, OrderRecord] = {}
        self._by_placer: dict[str, OrderRecord] = {}
        self.unmatched: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self._changed = asyncio.Event()
        self.pump_infusing: dict[str, bool] = {}

    @property
    def listen_port(self) -> int:
        return self._listener.port

    async def start(self) -> None:
        await self._listener.start()

    async def close(self) -> None:
        await self._listener.close()

    async def __aenter__(self) -> SimulatedEhr:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- sending -------------------------------------------------------------------------

    async def send(self, order: PlannedOrder) -> OrderRecord:
        """Send one order on a new connection and read its ACK^O15."""
        record = OrderRecord(order, _now_ms())
        self.records[order.control_id] = record
        self._by_placer[order.placer] = record
        try:
            reply = await send_message(
                self.server,
                order.text,
                profile=self._profile,
                tls_context=self._client_tls,
                timeout=self._timeout,
            )
        except DeliveryError as exc:
            record.delivery_error = str(exc)
            self._notify()
            return record
        record.ack_ms = _now_ms()
        if reply is None:
            record.delivery_error = "the server closed the connection without an ACK^O15"
        else:
            try:
                record.ack = await asyncio.to_thread(parse_ack, reply)
            except Hl7Error as exc:
                record.delivery_error = f"unreadable ACK^O15: {exc}"
        self._notify()
        return record

    def note_prefill(self, placer: str, at_ms: float, source: str) -> None:
        """The pump holds this order's programme since ``at_ms`` (stamped by ``source``)."""
        record = self._by_placer.get(placer)
        if record is not None and record.prefill_ms is None:
            record.prefill_ms = at_ms
            record.prefill_source = source
            self._notify()

    def outstanding(self, pump_id: str) -> bool:
        return any(not r.settled for r in self.records.values() if r.order.pump_id == pump_id)

    async def wait_settled(self, timeout_s: float) -> bool:
        """Wait until every order sent has all its answers; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not all(r.settled for r in self.records.values()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self.wait_changed(min(remaining, 0.5))
        return True

    def _notify(self) -> None:
        """Wake every waiter; the next ones wait on a fresh event (no missed change)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def result(self) -> EhrRun:
        return EhrRun(list(self.records.values()), Counter(self.unmatched), Counter(self.received))

    # -- receiving -----------------------------------------------------------------------

    async def _handle(self, text: str, peer: PeerInfo) -> str | None:
        """Stamp the frame, then parse it and build the answer in a worker thread: HL7
        validation is CPU work that would otherwise delay the stamps of the next frames."""
        at_ms = _now_ms()
        fields = text.lstrip("\r\n").split("|", 10)
        message_type = fields[8] if len(fields) > 8 else ""
        self.received[message_type or "?"] += 1
        parsed, answer = await asyncio.to_thread(self._read, text, message_type)
        if isinstance(parsed, AckMessage):
            self._on_rrg(parsed, at_ms)
        elif isinstance(parsed, PumpEvent):
            self._on_event(parsed, at_ms)
        elif isinstance(parsed, str):
            self.unmatched[parsed] += 1
        self._notify()
        return answer

    def _read(
        self, text: str, message_type: str
    ) -> tuple[AckMessage | PumpEvent | str | None, str]:
        kind = message_type.split("^")
        event = kind[1] if len(kind) > 1 else ""
        parsed: AckMessage | PumpEvent | None = None
        try:
            if message_type.startswith("RRG"):
                parsed = parse_ack(text)
            elif message_type.startswith("ORU^R42"):
                parsed = parse_event(text)
            elif message_type.startswith("ORU^R40"):
                parse_alert(text)
            elif message_type.startswith("ORU^R01"):
                parse_observations(text)
            else:
                reason = f"{message_type!r} is not expected"
                return f"unexpected {message_type or 'message'}", self._commit(
                    text, AckCode.CR, event, reason
                )
        except Hl7Error as exc:
            problem = f"malformed {message_type}: {exc.code.name}"
            return problem, self._commit(text, AckCode.CE, event, str(exc))
        return parsed, self._commit(text, AckCode.CA, event)

    def _commit(self, text: str, code: AckCode, event: str, reason: str = "") -> str:
        """The commit acknowledgement the sender waits for on its connection."""
        fields = text.lstrip("\r\n").split("|", 11)
        acknowledged = fields[9] if len(fields) > 9 and fields[9] else None
        errors: tuple[AppErrorDetail, ...] = ()
        if code is not AckCode.CA:
            errors = (
                AppErrorDetail(
                    Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE
                    if code is AckCode.CR
                    else Hl7ErrorCode.SEGMENT_SEQUENCE,
                    ErrorSeverity.ERROR,
                    message=reason or "not understood by the simulated EHR",
                ),
            )
        return build_accept_ack(
            code,
            acknowledged,
            control_id=f"{EHR_APPLICATION}-ACK{next(self._ack_ids)}",
            now=datetime.now(UTC),
            responder=self._responder,
            errors=errors,
            event=event if event.isalnum() and len(event) == 3 else "O16",
            profile=_ACK_PROFILES.get(event),
        )

    def _on_rrg(self, ack: AckMessage, at_ms: float) -> None:
        record = self.records.get(ack.acknowledged_id)
        if record is None:
            self.unmatched["RRG^O16 for an order not sent by this EHR"] += 1
            return
        if record.rrg is not None:
            self.unmatched["second RRG^O16 for one order"] += 1
            return
        record.rrg = ack
        record.rrg_ms = at_ms
        if ack.code is AckCode.AA and record.order.kind is OrderKind.VALID:
            # This server answers AA once the clinician started the order at the pump.
            self.pump_infusing[record.order.pump_id] = True

    def _on_event(self, event: PumpEvent, at_ms: float) -> None:
        if event.kind is PumpEventKind.DELIVERY_START:
            self.pump_infusing[event.pump_id] = True
        elif event.kind in (
            PumpEventKind.DELIVERY_STOP,
            PumpEventKind.DELIVERY_COMPLETE,
            PumpEventKind.PROGRAM_CLEARED,
        ):
            self.pump_infusing[event.pump_id] = False
        record = self._by_placer.get(event.placer_order_number or "")
        if record is None:
            return
        record.events.append((event.kind, at_ms))


# -- a run: which order goes to which pump, at what rate -------------------------------------


@dataclass
class _PumpTrack:
    """What the EHR believes about one pump, from its own orders and the events it got."""

    bed: WardBed
    drug: str | None = None
    free_at: float = 0.0


async def run_orders(
    ehr: SimulatedEhr,
    factory: OrderFactory,
    count: int | None,
    *,
    rate_per_s: float = 5.0,
    mix: Mapping[OrderKind, float] | None = None,
    idle_beds: Sequence[WardBed] | None = None,
    busy_beds: Sequence[WardBed] | None = None,
    settle_timeout_s: float = 30.0,
    pump_wait_s: float = 30.0,
    on_sent: Callable[[OrderRecord], None] | None = None,
    seed: int = 1,
) -> EhrRun:
    """Send ``count`` orders (None: until cancelled) at ``rate_per_s``, one outstanding order
    per pump at most.

    Orders that should reach a pump's check (valid, limits, units, drug, stale, malformed) go
    to ``idle_beds`` (pumps the EHR may program); a valid order for a pump that an order of
    ours started becomes an XO titration of the same drug (so do content faults).
    ``infusing-without-xo`` goes only to a pump the EHR knows to be infusing (an IPEC
    DELIV_START, or an AA for its own order), waiting up to ``pump_wait_s`` for one; ``busy_beds``
    are pumps with their own clinician whose IPEC events make them such candidates."""
    rng = random.Random(seed)
    weights = dict(mix or default_mix())
    kinds = [k for k in weights if weights[k] > 0]
    if not kinds:
        raise ValueError("the order mix gives every kind a zero weight")
    idle = list(idle_beds if idle_beds is not None else [b for b in factory.beds if not b.busy])
    busy = list(busy_beds if busy_beds is not None else [b for b in factory.beds if b.busy])
    if not idle:
        raise ValueError("no idle pump to send orders to")
    tracks = {b.pump: _PumpTrack(b) for b in (*idle, *busy)}
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate_per_s
    start = loop.time()
    sending: list[asyncio.Task[OrderRecord]] = []
    for n in itertools.count() if count is None else range(count):
        delay = start + n * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
        target = await _target(ehr, kind, idle, busy, tracks, rng, loop.time() + pump_wait_s)
        if target is None:
            ehr.unmatched[f"{kind}: no pump free within {pump_wait_s:g} s"] += 1
            continue
        track = tracks[target.pump]
        running = ehr.pump_infusing.get(target.pump, False)
        control = OrderControl.NEW
        drug = None
        if kind in _CHANGE_WHEN_RUNNING and running and track.drug is not None:
            # A pump our order started takes a rate change (XO) of the same drug, so the
            # order reaches the check it was built for instead of stopping at "infusing".
            control, drug = OrderControl.CHANGE, track.drug
        planned = await asyncio.to_thread(
            factory.build, kind, target, datetime.now(UTC), control=control, drug_code=drug
        )
        if kind is OrderKind.VALID:
            track.drug = planned.drug
        task = asyncio.ensure_future(ehr.send(planned))
        if on_sent is not None:
            task.add_done_callback(lambda t: on_sent(t.result()) if not t.cancelled() else None)
        sending.append(task)
        await asyncio.sleep(0)
    if sending:
        await asyncio.gather(*sending)
    await ehr.wait_settled(settle_timeout_s)
    return ehr.result()


async def _target(
    ehr: SimulatedEhr,
    kind: OrderKind,
    idle: list[WardBed],
    busy: list[WardBed],
    tracks: dict[str, _PumpTrack],
    rng: random.Random,
    deadline: float,
) -> WardBed | None:
    loop = asyncio.get_running_loop()
    while True:
        if kind is OrderKind.INFUSING_WITHOUT_XO:
            # Only a pump the EHR knows to be infusing (IPEC, or its own order confirmed):
            # the fault is "RE while infusing", and a guess would test nothing.
            pool = [t.bed for t in tracks.values() if ehr.pump_infusing.get(t.bed.pump)]
        else:
            pool = idle
        free = [b for b in pool if not ehr.outstanding(b.pump)]
        if free:
            return rng.choice(free)
        if loop.time() >= deadline:
            return None
        await ehr.wait_changed(0.2)


def load_roster(path: Path) -> tuple[WardBed, ...]:
    """The ward a running ``up --demo`` wrote (``DATA_DIR/demo/ward.json``): its pumps, care
    areas and patients, so that orders name real beds."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the ward roster {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"the ward roster {path} is not JSON: {exc}") from None
    beds = document.get("beds") if isinstance(document, dict) else None
    if not isinstance(beds, list) or not beds:
        raise ValueError(f"the ward roster {path} lists no beds")
    out = []
    for n, bed in enumerate(beds, 1):
        try:
            out.append(
                WardBed(str(bed["pump"]), str(bed["care_area"]), str(bed["mrn"]), bool(bed["busy"]))
            )
        except (KeyError, TypeError):
            raise ValueError(
                f"bed {n} of the ward roster {path} needs pump, care_area, mrn and busy"
            ) from None
    return tuple(out)


@dataclass(frozen=True)
class EhrRunConfig:
    """One ``pumpguard ehr run``: where the order consumer is, where to listen, how many."""

    server: Endpoint
    cert_dir: Path
    orders: int = 20
    rate_per_s: float = 2.0
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    beds: tuple[WardBed, ...] = ()
    seed: int = 1
    settle_timeout_s: float = 60.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        problems = []
        if self.orders < 1:
            problems.append("--orders must be at least 1")
        if not self.rate_per_s > 0:
            problems.append("--rate must be a positive number of orders per second")
        if not 0 <= self.listen_port <= 65_535:
            problems.append("--listen must be a port number from 0 to 65535")
        if self.settle_timeout_s < 0:
            problems.append("--wait cannot be negative")
        if not self.timeout_s > 0:
            problems.append("the connection timeout must be positive")
        if problems:
            raise ValueError("; ".join(problems))


async def run_ehr(
    config: EhrRunConfig,
    library: DrugLibrary,
    *,
    on_listening: Callable[[int], None] | None = None,
    on_sent: Callable[[OrderRecord], None] | None = None,
) -> EhrRun:
    """Start the listener, send the orders, wait for their answers; the run's records."""
    ehr = SimulatedEhr(
        config.server,
        config.cert_dir,
        listen_host=config.listen_host,
        listen_port=config.listen_port,
        timeout_s=config.timeout_s,
    )
    factory = OrderFactory(library, config.beds or None, seed=config.seed)
    async with ehr:
        if on_listening is not None:
            on_listening(ehr.listen_port)
        return await run_orders(
            ehr,
            factory,
            config.orders,
            rate_per_s=config.rate_per_s,
            settle_timeout_s=config.settle_timeout_s,
            on_sent=on_sent,
            seed=config.seed,
        )


@dataclass
class DemoEhr:
    """The simulated EHR of ``up --demo``: what it sent and got so far (``ehr.result()``)."""

    ehr: SimulatedEhr
    task: asyncio.Task[EhrRun]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        await self.ehr.close()


async def start_demo_ehr(
    stack: Stack, listen_port: int, *, every_s: float = 30.0, seed: int = 1
) -> DemoEhr:
    """Run the simulated EHR inside ``up --demo``: an EHR credential from the stack's CA
    (``DATA_DIR/ehr``, kept across runs), a listener on ``listen_port`` (the stack's
    ``--ehr-endpoint`` must be ``mllps://127.0.0.1:<listen_port>``), and one order for the
    demo ward every ``every_s`` until the stack stops."""
    gateway = stack.ehr
    if gateway is None or stack.demo is None:
        raise ValueError("the simulated EHR needs a stack started with the demo and an EHR port")
    directory = stack.data_dir / "ehr"
    if not (directory / "cert.pem").exists():
        issued = await asyncio.to_thread(
            stack.ca.issue, CertKind.EHR, "ehr-demo", sans=("localhost", "127.0.0.1")
        )
        await asyncio.to_thread(issued.write, directory)
    ehr = SimulatedEhr(
        Endpoint(stack.local_address, gateway.port), directory, listen_port=listen_port
    )
    await ehr.start()
    factory = OrderFactory(stack.demo.library, stack.demo.beds, seed=seed)
    task = asyncio.ensure_future(run_orders(ehr, factory, None, rate_per_s=1 / every_s, seed=seed))
    demo = DemoEhr(ehr, task)
    stack.on_stop(demo.stop)
    return demo
