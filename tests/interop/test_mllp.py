"""MLLP framing: frames whole however the bytes are cut, garbage and oversize reported."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pumpguard.interop import (
    Frame,
    FrameProblem,
    FrameProblemKind,
    MllpDecoder,
    decode_payload,
    encode_frame,
)


def _feed_all(decoder: MllpDecoder, chunks: list[bytes]) -> list[Frame | FrameProblem]:
    out: list[Frame | FrameProblem] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def test_frame_encoding() -> None:
    assert encode_frame("MSH|x\r") == b"\x0bMSH|x\r\x1c\r"
    with pytest.raises(ValueError, match="0x0B"):
        encode_frame("MSH|\x0b")


messages = st.lists(
    st.text(
        alphabet=st.characters(blacklist_characters="\x0b\x1c", blacklist_categories=("Cs",)),
        max_size=200,
    ),
    min_size=1,
    max_size=5,
)


@given(messages, st.lists(st.integers(min_value=0), max_size=20))
def test_frames_survive_any_chunking(texts: list[str], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(t) for t in texts)
    items = _feed_all(MllpDecoder(), _cut(stream, cuts))
    assert [i.text for i in items if isinstance(i, Frame)] == texts
    assert not [i for i in items if isinstance(i, FrameProblem)]


def test_end_block_split_across_reads() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\x0bMSH|a\x1c") == []
    assert decoder.pending
    assert decoder.feed(b"\r") == [Frame(b"MSH|a")]
    assert not decoder.pending


def test_a_lone_fs_inside_a_frame_is_data() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\x0bMSH|a\x1c") == []
    assert decoder.feed(b"b\x1c\r") == [Frame(b"MSH|a\x1cb")]


def test_garbage_between_frames_is_dropped_and_reported() -> None:
    items = MllpDecoder().feed(b"hello\x0bMSH|1\x1c\r\r\n  junk\x0bMSH|2\x1c\r")
    frames = [i for i in items if isinstance(i, Frame)]
    problems = [i for i in items if isinstance(i, FrameProblem)]
    assert [f.payload for f in frames] == [b"MSH|1", b"MSH|2"]
    assert [p.kind for p in problems] == [FrameProblemKind.GARBAGE, FrameProblemKind.GARBAGE]


def test_whitespace_between_frames_is_not_garbage() -> None:
    items = MllpDecoder().feed(b"\x0bMSH|1\x1c\r\r\n\x0bMSH|2\x1c\r")
    assert all(isinstance(i, Frame) for i in items)


def test_oversized_frame_is_discarded_and_the_next_frame_still_read() -> None:
    decoder = MllpDecoder(max_frame=64)
    big = b"\x0bMSH|^~\\&|A|B|C|D|20261121||RGV^O15^RGV_O15|BIG-1|P|2.6|" + b"x" * 200
    items = decoder.feed(big[:50]) + decoder.feed(big[50:]) + decoder.feed(b"\x1c\r")
    (problem,) = items
    assert isinstance(problem, FrameProblem) and problem.kind is FrameProblemKind.OVERSIZED
    assert b"BIG-1" in problem.prefix
    assert decoder.feed(b"\x0bMSH|ok\x1c\r") == [Frame(b"MSH|ok")]


def test_a_new_start_block_truncates_the_unfinished_frame() -> None:
    items = MllpDecoder().feed(b"\x0bMSH|half\x0bMSH|whole\x1c\r")
    assert isinstance(items[0], FrameProblem) and items[0].kind is FrameProblemKind.TRUNCATED
    assert items[0].prefix == b"MSH|half"
    assert items[1] == Frame(b"MSH|whole")


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=10))
def test_arbitrary_bytes_never_raise_and_never_exceed_the_limit(
    data: bytes, cuts: list[int]
) -> None:
    decoder = MllpDecoder(max_frame=256)
    for item in _feed_all(decoder, _cut(data, cuts)):
        if isinstance(item, Frame):
            assert len(item.payload) <= 256
            decode_payload(item.payload)


def test_payloads_that_are_not_utf8_still_decode() -> None:
    assert decode_payload(b"MSH|\xe9") == "MSH|é"
    assert decode_payload("MSH|é".encode()) == "MSH|é"
