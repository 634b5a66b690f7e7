"""The MQTT 5 codec: round trips, byte-exact known encodings, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from pumpguard.transport import QoS, ReasonCode
from pumpguard.transport.codec import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketDecoder,
    PacketError,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    decode_packet,
    encode_packet,
)

text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=30,
)
packet_ids = st.integers(1, 0xFFFF)
blobs = st.binary(max_size=64)
user_props = st.lists(st.tuples(text, text), max_size=3).map(tuple)

publish_props = st.builds(
    Properties,
    payload_format_indicator=st.none() | st.sampled_from([0, 1]),
    message_expiry_interval=st.none() | st.integers(0, 2**32 - 1),
    content_type=st.none() | text,
    correlation_data=st.none() | blobs,
    user_properties=user_props,
)
connect_props = st.builds(
    Properties,
    session_expiry_interval=st.none() | st.integers(0, 2**32 - 1),
    receive_maximum=st.none() | st.integers(1, 0xFFFF),
    maximum_packet_size=st.none() | st.integers(1, 2**32 - 1),
    request_problem_information=st.none() | st.sampled_from([0, 1]),
    user_properties=user_props,
)
reason_props = st.builds(Properties, reason_string=st.none() | text, user_properties=user_props)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.sampled_from(list(QoS)))
    return Publish(
        topic=draw(text.filter(bool)),
        payload=draw(blobs),
        qos=qos,
        packet_id=None if qos is QoS.AT_MOST_ONCE else draw(packet_ids),
        retain=draw(st.booleans()),
        dup=False if qos is QoS.AT_MOST_ONCE else draw(st.booleans()),
        properties=draw(publish_props),
    )


packets: st.SearchStrategy[Packet] = st.one_of(
    st.builds(
        Connect,
        client_id=text,
        keep_alive=st.integers(0, 0xFFFF),
        clean_start=st.booleans(),
        username=st.none() | text,
        password=st.none() | blobs,
        will=st.none()
        | st.builds(
            Will, topic=text, payload=blobs, qos=st.sampled_from(list(QoS)), retain=st.booleans()
        ),
        properties=connect_props,
    ),
    st.builds(
        ConnAck,
        reason=st.sampled_from([ReasonCode.SUCCESS, ReasonCode.NOT_AUTHORIZED]),
        session_present=st.booleans(),
        properties=st.builds(
            Properties,
            maximum_qos=st.none() | st.sampled_from([0, 1]),
            assigned_client_identifier=st.none() | text,
            server_keep_alive=st.none() | st.integers(0, 0xFFFF),
        ),
    ),
    publishes(),
    st.builds(
        PubAck,
        packet_id=packet_ids,
        reason=st.sampled_from(
            [ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS, ReasonCode.NOT_AUTHORIZED]
        ),
        properties=reason_props,
    ),
    st.builds(
        Subscribe,
        packet_id=packet_ids,
        subscriptions=st.lists(
            st.builds(
                Subscription,
                topic_filter=text,
                qos=st.sampled_from(list(QoS)),
                no_local=st.booleans(),
                retain_as_published=st.booleans(),
                retain_handling=st.integers(0, 2),
            ),
            min_size=1,
            max_size=4,
        ).map(tuple),
    ),
    st.builds(
        SubAck,
        packet_id=packet_ids,
        reasons=st.lists(
            st.sampled_from([ReasonCode.GRANTED_QOS_1, ReasonCode.NOT_AUTHORIZED]), min_size=1
        ).map(tuple),
        properties=reason_props,
    ),
    st.builds(
        Unsubscribe, packet_id=packet_ids, topic_filters=st.lists(text, min_size=1).map(tuple)
    ),
    st.builds(
        UnsubAck,
        packet_id=packet_ids,
        reasons=st.lists(
            st.sampled_from([ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED]), min_size=1
        ).map(tuple),
    ),
    st.just(PingReq()),
    st.just(PingResp()),
    st.builds(
        Disconnect,
        reason=st.sampled_from([ReasonCode.SUCCESS, ReasonCode.MALFORMED_PACKET]),
        properties=reason_props,
    ),
)


@given(packets)
def test_every_packet_round_trips(packet: Packet) -> None:
    assert decode_packet(encode_packet(packet)) == packet


@given(st.lists(packets, min_size=1, max_size=5), st.integers(1, 17))
def test_the_stream_decoder_reassembles_packets_split_anywhere(
    batch: list[Packet], chunk: int
) -> None:
    stream = b"".join(encode_packet(p) for p in batch)
    decoder = PacketDecoder()
    decoded: list[Packet] = []
    for start in range(0, len(stream), chunk):
        decoded += decoder.feed(stream[start : start + chunk])
    assert decoded == batch
    assert decoder.pending_bytes == 0


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    decoder = PacketDecoder(max_packet_size=1024)
    error: PacketError | None = None
    try:
        list(decoder.feed(data))
    except PacketError as exc:
        error = exc
    if error is not None:
        assert error.reason.is_failure


@given(packets, st.data())
def test_corrupted_packets_decode_or_fail_cleanly(packet: Packet, data: st.DataObject) -> None:
    raw = bytearray(encode_packet(packet))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] = data.draw(st.integers(0, 255))
    error: PacketError | None = None
    try:
        list(PacketDecoder().feed(bytes(raw)))
    except PacketError as exc:
        error = exc
    if error is not None:
        assert str(error)


def test_known_encodings() -> None:
    # OASIS MQTT 5.0: PINGREQ is C0 00 (3.12), PINGRESP D0 00 (3.13)
    assert encode_packet(PingReq()) == b"\xc0\x00"
    assert encode_packet(PingResp()) == b"\xd0\x00"
    # a QoS 1 PUBLISH to "a/b", id 10, no properties, payload "hi"
    assert encode_packet(Publish("a/b", b"hi", QoS.AT_LEAST_ONCE, 10)) == (
        b"\x32\x0a\x00\x03a/b\x00\x0a\x00hi"
    )
    # a short PUBACK (remaining length 2) means reason 0x00 (section 3.4.2.1)
    assert decode_packet(b"\x40\x02\x00\x07") == PubAck(7)


def test_properties_agree_with_an_independent_implementation() -> None:
    ours = Properties(
        session_expiry_interval=3600,
        receive_maximum=20,
        maximum_packet_size=65536,
        user_properties=(("site", "icu"),),
    )
    theirs = PahoProperties(PacketTypes.CONNECT)
    theirs.SessionExpiryInterval = 3600
    theirs.ReceiveMaximum = 20
    theirs.MaximumPacketSize = 65536
    theirs.UserProperty = ("site", "icu")
    # fixed header (2) + protocol name (6) + version (1) + flags (1) + keep alive (2)
    ours_on_the_wire = encode_packet(Connect("c", properties=ours))[12:]
    unpacked, length = PahoProperties(PacketTypes.CONNECT).unpack(ours_on_the_wire)
    assert (unpacked.SessionExpiryInterval, unpacked.ReceiveMaximum) == (3600, 20)
    assert unpacked.MaximumPacketSize == 65536
    assert unpacked.UserProperty == [("site", "icu")]
    assert length == len(bytes(theirs.pack()))
    header = b"\x00\x04MQTT\x05\x02\x00\x3c"
    body = header + bytes(theirs.pack()) + b"\x00\x01c"
    decoded = decode_packet(bytes([0x10, len(body)]) + body)
    assert decoded == Connect("c", properties=ours)


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (b"\x00\x00", ReasonCode.MALFORMED_PACKET, "reserved control packet type"),
        (b"\xc1\x00", ReasonCode.MALFORMED_PACKET, "flags"),
        (b"\x82\x00", ReasonCode.MALFORMED_PACKET, "SUBSCRIBE packet identifier"),
        (b"\x36\x00", ReasonCode.MALFORMED_PACKET, "QoS 3"),
        (b"\x38\x05\x00\x01a\x00\x00", ReasonCode.MALFORMED_PACKET, "DUP"),
        (b"\x30\x80\x80\x80\x80\x01", ReasonCode.MALFORMED_PACKET, "longer than 4 bytes"),
        (b"\x30\x80\x00", ReasonCode.MALFORMED_PACKET, "shortest form"),
        (b"\x30\x05\x00\x02\xc3\x28\x00", ReasonCode.MALFORMED_PACKET, "UTF-8"),
        (b"\x30\x05\x00\x02a\x00\x00", ReasonCode.MALFORMED_PACKET, "U+0000"),
        (b"\x30\x06\x00\x01a\x02\x63\x00", ReasonCode.MALFORMED_PACKET, "unknown property"),
        (
            b"\x30\x09\x00\x01a\x05\x01\x01\x01\x01\x00",
            ReasonCode.PROTOCOL_ERROR,
            "appears twice",
        ),
        (b"\x30\x07\x00\x01a\x03\x21\x00\x01", ReasonCode.PROTOCOL_ERROR, "not allowed"),
        (b"\x32\x05\x00\x01a\x00\x00", ReasonCode.PROTOCOL_ERROR, "identifier 0"),
        (b"\xe0\x02\x00\x00\x00", ReasonCode.MALFORMED_PACKET, "does not match"),
        (b"\x40\x03\x00\x01\x42", ReasonCode.MALFORMED_PACKET, "unknown reason code"),
        (b"\x50\x02\x00\x01", ReasonCode.PROTOCOL_ERROR, "not supported"),
        (
            b"\x10\x0a\x00\x04MQTT\x04\x02\x00\x3c",
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
            "not MQTT 5",
        ),
        (b"\x10\x0b\x00\x04MQTT\x05\x03\x00\x3c\x00", ReasonCode.MALFORMED_PACKET, "reserved"),
    ],
)
def test_malformed_packets_are_named(raw: bytes, reason: ReasonCode, words: str) -> None:
    with pytest.raises(PacketError) as refused:
        decode_packet(raw)
    assert refused.value.reason is reason
    assert words in str(refused.value)


def test_an_oversized_packet_is_refused_before_it_is_buffered() -> None:
    decoder = PacketDecoder(max_packet_size=100)
    with pytest.raises(PacketError) as refused:
        list(decoder.feed(b"\x30\xff\x7f"))
    assert refused.value.reason is ReasonCode.PACKET_TOO_LARGE


def test_encoder_refuses_packets_no_peer_should_get() -> None:
    with pytest.raises(ValueError, match="packet identifier"):
        encode_packet(Publish("a", b"", QoS.AT_LEAST_ONCE))
    with pytest.raises(ValueError, match="QoS 0"):
        encode_packet(Publish("a", b"", QoS.AT_MOST_ONCE, packet_id=3))
    with pytest.raises(ValueError, match="U\\+0000"):
        encode_packet(Publish("a\x00b", b""))
