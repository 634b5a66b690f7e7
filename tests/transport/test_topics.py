"""Topic matching, filter coverage and the ACL model (one source for both brokers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from pumpguard.pki import CertKind, InvalidIdentError, PeerIdentity
from pumpguard.transport import (
    Access,
    Channel,
    acl_allows,
    device_topic,
    mosquitto_acl_file,
    parse_device_topic,
    topic_matches,
)
from pumpguard.transport.topics import (
    DeviceTopic,
    filter_covers,
    validate_topic_filter,
    validate_topic_name,
)

PUMP1 = PeerIdentity(CertKind.PUMP, "PUMP-0001")
SERVER = PeerIdentity(CertKind.SERVER, "pumpguard-server")

levels = st.sampled_from(["a", "b", "", "$sys", "PUMP-0001"])
topics = st.lists(levels, min_size=1, max_size=4).map("/".join).filter(bool)
filters = st.lists(st.sampled_from(["a", "b", "", "+", "$sys"]), min_size=1, max_size=4).flatmap(
    lambda ls: st.sampled_from(["/".join(ls), "/".join([*ls, "#"])])
)


@given(filters, topics)
def test_matching_agrees_with_an_independent_implementation(topic_filter: str, topic: str) -> None:
    assert topic_matches(topic_filter, topic) == topic_matches_sub(topic_filter, topic)


@given(filters, filters, topics)
def test_a_covering_filter_matches_everything_the_covered_one_does(
    outer: str, inner: str, topic: str
) -> None:
    if filter_covers(outer, inner) and topic_matches(inner, topic):
        assert topic_matches(outer, topic)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("sport/tennis/#", "sport/tennis", True),  # section 4.7.1.2: # includes the parent
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("+", "/finance", False),
        ("#", "$SYS/broker", False),  # section 4.7.2
        ("$SYS/#", "$SYS/broker", True),
    ],
)
def test_examples_from_the_standard(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_invalid_names_and_filters_are_explained() -> None:
    assert validate_topic_name("a/+") == "a topic name must not contain wildcards"
    assert validate_topic_name("") == "the topic name is empty"
    assert validate_topic_filter("a/#/b") == "'#' must be a whole level and the last one"
    assert validate_topic_filter("a/b+") == "'+' must occupy a whole level"
    assert validate_topic_filter("a/+/#") is None


def test_device_topics_round_trip() -> None:
    topic = device_topic("PUMP-0001", Channel.EVENTS)
    assert topic == "pumpguard/v1/devices/PUMP-0001/events"
    assert parse_device_topic(topic) == DeviceTopic("PUMP-0001", Channel.EVENTS)
    assert parse_device_topic("pumpguard/v1/devices/PUMP-0001/other") is None
    assert parse_device_topic("pumpguard/v1/devices/PUMP-0001/events/x") is None


@pytest.mark.parametrize(
    ("identity", "access", "topic", "allowed"),
    [
        (PUMP1, Access.WRITE, "pumpguard/v1/devices/PUMP-0001/telemetry", True),
        (PUMP1, Access.WRITE, "pumpguard/v1/devices/PUMP-0001/events", True),
        (PUMP1, Access.WRITE, "pumpguard/v1/devices/PUMP-0001/acks", True),
        (PUMP1, Access.WRITE, "pumpguard/v1/devices/PUMP-0001/commands", False),
        (PUMP1, Access.WRITE, "pumpguard/v1/devices/PUMP-0002/telemetry", False),
        (PUMP1, Access.READ, "pumpguard/v1/devices/PUMP-0001/commands", True),
        (PUMP1, Access.READ, "pumpguard/v1/devices/PUMP-0002/commands", False),
        (PUMP1, Access.READ, "pumpguard/v1/devices/+/commands", False),
        (PUMP1, Access.READ, "pumpguard/v1/devices/PUMP-0001/telemetry", False),
        (PUMP1, Access.READ, "#", False),
        (SERVER, Access.READ, "pumpguard/v1/devices/+/telemetry", True),
        (SERVER, Access.READ, "pumpguard/v1/devices/PUMP-0001/events", True),
        (SERVER, Access.READ, "pumpguard/v1/devices/+/commands", False),
        (SERVER, Access.READ, "pumpguard/v1/devices/#", False),
        (SERVER, Access.WRITE, "pumpguard/v1/devices/PUMP-0001/commands", True),
        (SERVER, Access.WRITE, "pumpguard/v1/devices/PUMP-0001/telemetry", False),
        (PeerIdentity(CertKind.EHR, "ehr"), Access.READ, "pumpguard/v1/devices/+/events", False),
    ],
)
def test_acl(identity: PeerIdentity, access: Access, topic: str, allowed: bool) -> None:
    assert acl_allows(identity, access, topic) is allowed


def test_mosquitto_acl_file_renders_the_same_rules() -> None:
    text = mosquitto_acl_file(["pumpguard-server"])
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "pattern write pumpguard/v1/devices/%u/telemetry",
        "pattern write pumpguard/v1/devices/%u/events",
        "pattern write pumpguard/v1/devices/%u/acks",
        "pattern read pumpguard/v1/devices/%u/commands",
        "user pumpguard-server",
        "topic read pumpguard/v1/devices/+/telemetry",
        "topic read pumpguard/v1/devices/+/events",
        "topic read pumpguard/v1/devices/+/acks",
        "topic write pumpguard/v1/devices/+/commands",
    ]


def test_acl_file_refuses_ids_that_would_inject_rules() -> None:
    with pytest.raises(InvalidIdentError):
        mosquitto_acl_file(["srv\ntopic readwrite #"])


idents = st.from_regex(r"\A[A-Za-z0-9](?:[A-Za-z0-9._-]{0,10}[A-Za-z0-9])?\Z")


@given(idents, idents, st.sampled_from(list(Channel)))
def test_a_pump_reaches_only_its_own_topics(me: str, other: str, channel: Channel) -> None:
    pump = PeerIdentity(CertKind.PUMP, me)
    topic = device_topic(other, channel)
    mine = me == other
    assert acl_allows(pump, Access.WRITE, topic) is (mine and channel.from_device)
    assert acl_allows(pump, Access.READ, topic) is (mine and not channel.from_device)
    assert acl_allows(SERVER, Access.WRITE, topic) is (not channel.from_device)
    assert acl_allows(SERVER, Access.READ, topic) is channel.from_device


def test_a_leading_wildcard_does_not_cover_dollar_topics() -> None:
    assert not filter_covers("+", "$sys")
    assert not filter_covers("#", "$SYS/broker")
    assert filter_covers("$SYS/#", "$SYS/broker/+")
