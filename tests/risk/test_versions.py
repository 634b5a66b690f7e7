"""Version ordering: PEP 440 releases and vendor formats (letters, leading zeros, prefixes)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version

from pumpguard.risk.versions import VersionError, parse_version


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("9.19", "9.33"),
        ("9.33", "9.33.1"),
        ("9.33.1", "12.1.1"),
        ("9.9", "9.10"),
        ("12.1.1", "12.1.3"),
        ("1.6", "1.6.1"),
        ("8.00.01", "8.1"),
        ("2.4", "2.4A"),
        ("2.4A", "2.4B"),
        ("2.4A", "2.5A"),
        ("2.6A", "2.7A"),
        ("v16", "v16D38"),
        ("v17D19", "v20D29"),
        ("v20D29", "v20D32"),
        ("v22D19", "v22D28"),
        ("L80", "L81"),
        ("028U000061", "028U000093"),
        ("012U000061", "012U000062"),
        ("V14.5", "V14.10"),
        ("1.1.3 Build 10", "1.1.3 Build 11"),
        ("1.2 Build 15", "1.3.0 Build 14"),
    ],
)
def test_vendor_ordering(low: str, high: str) -> None:
    assert parse_version(low) < parse_version(high)
    assert parse_version(high) > parse_version(low)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("8.00.01", "8.0.1"),
        ("1.6", "1.6.0"),
        ("08.1", "8.1"),
        ("5", "5.0"),
        ("V14.5", "14.5"),
        ("version 2.4A", "2.4a"),
        ("v20D29", "20D29"),
        (" 9.33.1 ", "9.33.1"),
        ("SW 1.6", "1.6"),
    ],
)
def test_equal_spellings(a: str, b: str) -> None:
    assert parse_version(a) == parse_version(b)
    assert hash(parse_version(a)) == hash(parse_version(b))


def test_letter_suffix_is_a_later_revision_not_a_pre_release() -> None:
    # PEP 440 reads "2.4a" as an alpha before 2.4; Medtronic's 2.4A comes after 2.4.
    assert Version("2.4a") < Version("2.4")
    assert parse_version("2.4A") > parse_version("2.4")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("L81", "028U000061"),
        ("686E", "028U000061"),
        ("1.1.3 Build 10", "1.1.3 MR Build 11"),
        ("v20D29", "v20U29"),
    ],
)
def test_different_schemes_are_not_comparable(a: str, b: str) -> None:
    first, second = parse_version(a), parse_version(b)
    assert not first.comparable(second)
    assert first != second
    with pytest.raises(VersionError, match="different schemes"):
        _ = first < second


@pytest.mark.parametrize("text", ["", "   ", "v", "version", "n/a?", "1.2#3"])
def test_unreadable_versions(text: str) -> None:
    with pytest.raises(VersionError):
        parse_version(text)


releases = st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=5)


def _text(parts: list[int]) -> str:
    return ".".join(str(p) for p in parts)


@given(releases, releases)
def test_dotted_releases_order_like_packaging(a: list[int], b: list[int]) -> None:
    ours = (parse_version(_text(a)) > parse_version(_text(b))) - (
        parse_version(_text(a)) < parse_version(_text(b))
    )
    theirs = (Version(_text(a)) > Version(_text(b))) - (Version(_text(a)) < Version(_text(b)))
    assert ours == theirs


@given(releases, st.integers(min_value=1, max_value=3), st.integers(min_value=0, max_value=2))
def test_leading_and_trailing_zeros_do_not_matter(parts: list[int], pad: int, zeros: int) -> None:
    plain = parse_version(_text(parts))
    padded = parse_version(".".join(str(p).zfill(pad) for p in parts) + ".0" * zeros)
    assert plain == padded


@given(releases, st.sampled_from("abcdefghjk"))
def test_letter_suffix_sorts_after_its_release(parts: list[int], letter: str) -> None:
    base = parse_version(_text(parts))
    assert parse_version(_text(parts) + letter.upper()) > base


@given(st.lists(st.tuples(releases, st.sampled_from(["", "A", "B", "C"])), min_size=3, max_size=8))
def test_ordering_is_total_and_transitive(items: list[tuple[list[int], str]]) -> None:
    versions = [parse_version(_text(p) + s) for p, s in items]
    ordered = sorted(versions)
    for x, y in itertools.pairwise(ordered):
        assert x <= y
    for x in versions:
        for y in versions:
            assert (x < y) + (x == y) + (x > y) == 1
