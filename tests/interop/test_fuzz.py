"""Property tests: no input makes a parser raise anything but ``Hl7Error``, and every message
the builders write reads back as the model it was built from."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.interop.messages import HARD_DETAIL, NOW, piv

from pumpguard.interop import (
    AckCode,
    Alert,
    AlertPhase,
    CodedValue,
    Hl7Error,
    InfusionOrder,
    MessageHeader,
    OrderControl,
    PcaParameters,
    PumpEvent,
    PumpEventKind,
    Quantity,
    build_alert,
    build_app_ack,
    build_event,
    build_piv,
    parse_ack,
    parse_alert,
    parse_event,
    parse_observations,
    parse_piv,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEEP = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARSERS: list[Callable[[str], object]] = [
    parse_piv,
    parse_ack,
    parse_event,
    parse_alert,
    parse_observations,
]
DELIMITERS = "|^~\\&\r\n"


def _only_hl7_errors(text: str) -> None:
    for parser in PARSERS:
        with contextlib.suppress(Hl7Error):
            parser(text)


@FUZZ
@given(st.text(max_size=400))
def test_random_text_only_raises_hl7_error(text: str) -> None:
    _only_hl7_errors(text)


@FUZZ
@given(st.text(max_size=300).map(lambda t: "MSH|^~\\&|" + t))
def test_random_text_after_a_header_only_raises_hl7_error(text: str) -> None:
    _only_hl7_errors(text)


mutation = st.tuples(
    st.sampled_from(["delete", "insert", "replace", "swap", "duplicate", "truncate"]),
    st.integers(min_value=0),
    st.integers(min_value=0),
    st.text(alphabet=DELIMITERS + "AZ09 .-", min_size=1, max_size=6),
)


def _mutate(text: str, ops: list[tuple[str, int, int, str]]) -> str:
    for op, a, b, insert in ops:
        if not text:
            break
        i, j = a % len(text), b % len(text)
        segments = text.split("\r")
        if op == "delete":
            text = text[:i] + text[i + 1 :]
        elif op == "insert":
            text = text[:i] + insert + text[i:]
        elif op == "replace":
            text = text[:i] + insert + text[i + len(insert) :]
        elif op == "swap":
            x, y = a % len(segments), b % len(segments)
            segments[x], segments[y] = segments[y], segments[x]
            text = "\r".join(segments)
        elif op == "duplicate":
            x = a % len(segments)
            segments.insert(x, segments[x])
            text = "\r".join(segments)
        else:
            text = text[: max(i, j)]
    return text


SEEDS = [
    piv(),
    piv(with_tq1=True),
    build_app_ack(AckCode.AE, "EHR-1", control_id="PG-1", now=NOW, errors=[HARD_DETAIL]),
    build_event(
        PumpEvent(PumpEventKind.DELIVERY_STOP, "PUMP-1", "MRN-1", NOW, "ORD-1", control_id="E1")
    ),
    build_alert(
        Alert("A-1", "PUMP-1", "MRN-1", 196940, "X", "occl", AlertPhase.START, NOW, control_id="A1")
    ),
]


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_messages_only_raise_hl7_error(
    seed: str, ops: list[tuple[str, int, int, str]]
) -> None:
    _only_hl7_errors(_mutate(seed, ops))


awkward = st.sampled_from(["\x00", "\x0b", "\x1c", "\r", "\n", "\t", "é", "€", "µ"])
text = (
    st.text(
        alphabet=st.one_of(st.characters(min_codepoint=32, max_codepoint=126), awkward),
        min_size=1,
        max_size=12,
    )
    .map(str.strip)
    .filter(bool)
)
maybe_text = st.one_of(st.just(""), text)
# IS and ID values (HD.1, EI.2, PL.1, CWE.3) are limited to 20 characters by hl7apy's v2.6 types
short = st.text(alphabet="ABCXYZ0189-_. ", min_size=1, max_size=12).map(str.strip).filter(bool)
maybe_short = st.one_of(st.just(""), short)
numbers = st.decimals(
    min_value=Decimal("-99999"), max_value=Decimal("99999"), places=3, allow_nan=False
)
units = st.one_of(
    st.none(), st.builds(CodedValue, text, maybe_text, st.sampled_from(["MDC", "UCUM", ""]))
)
quantities = st.builds(Quantity, numbers, units)
times = st.builds(
    lambda minutes, offset: (NOW + timedelta(minutes=minutes)).astimezone(
        timezone(timedelta(minutes=offset))
    ),
    st.integers(min_value=-10_000, max_value=10_000),
    st.sampled_from([0, 60, -300, 330]),
)
headers = st.builds(
    MessageHeader,
    text,
    maybe_short,
    maybe_short,
    maybe_short,
    maybe_short,
    times,
    st.sampled_from(["AL", "NE", ""]),
    st.sampled_from(["AL", "ER", "NE", ""]),
)
drugs = st.one_of(
    st.builds(CodedValue, text, maybe_text, maybe_short),
    st.builds(CodedValue, st.just(""), text, maybe_short),
)
pca = st.one_of(
    st.none(),
    st.builds(
        PcaParameters,
        st.one_of(st.none(), quantities),
        st.one_of(st.none(), quantities),
        st.one_of(st.none(), quantities),
        st.one_of(st.none(), numbers),
        quantities,
    ),
)
orders = st.builds(
    InfusionOrder,
    header=headers,
    control=st.sampled_from(list(OrderControl)),
    placer_order_number=text,
    placer_namespace=maybe_short,
    patient_id=text,
    pump_id=text,
    drug=drugs,
    order_time=times,
    volume=st.builds(Quantity, numbers, st.builds(CodedValue, text, maybe_text, maybe_text)),
    rate=st.one_of(st.none(), quantities),
    strength=st.one_of(st.none(), quantities),
    strength_volume=st.one_of(st.none(), quantities),
    route=st.builds(CodedValue, maybe_text, text, st.just("HL70162")),
    device=st.one_of(st.none(), st.builds(CodedValue, text, maybe_text, maybe_short)),
    weight=st.one_of(st.none(), quantities),
    care_area=st.one_of(st.none(), text),
    location=st.one_of(st.none(), short),
    pca=pca,
    patient_family=maybe_text,
    patient_given=maybe_text,
)


@ROUND_TRIP
@given(orders)
def test_any_built_order_parses_back_to_itself(order: InfusionOrder) -> None:
    assert parse_piv(build_piv(order)) == order


@pytest.mark.slow
@DEEP
@given(orders)
def test_any_built_order_parses_back_to_itself_deep(order: InfusionOrder) -> None:
    assert parse_piv(build_piv(order)) == order


@pytest.mark.slow
@DEEP
@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=8))
def test_mutated_messages_only_raise_hl7_error_deep(
    seed: str, ops: list[tuple[str, int, int, str]]
) -> None:
    _only_hl7_errors(_mutate(seed, ops))


@ROUND_TRIP
@given(
    st.sampled_from(list(PumpEventKind)),
    text,
    text,
    times,
    st.one_of(st.none(), text),
    st.one_of(st.none(), st.builds(CodedValue, text, maybe_text, maybe_short)),
    st.one_of(st.none(), numbers),
)
def test_any_built_event_parses_back_to_itself(
    kind: PumpEventKind,
    pump: str,
    patient: str,
    when: datetime,
    placer: str | None,
    drug: CodedValue | None,
    rate: Decimal | None,
) -> None:
    event = PumpEvent(kind, pump, patient, when, placer, drug, rate, control_id="E-1")
    assert parse_event(build_event(event)) == event


def test_the_seeds_are_valid_to_begin_with() -> None:
    parse_piv(SEEDS[0])
    parse_ack(SEEDS[2])
    parse_event(SEEDS[3])
    parse_alert(SEEDS[4])
    assert datetime.now(UTC) > NOW - timedelta(days=36500)
