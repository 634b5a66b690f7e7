"""ER7 (pipe-and-hat) text: the header checks done before any library sees the message, a
reader for fields of segments already validated, and escaping for values we write.

The header is checked by hand because the answer to a bad header decides everything else: the
delimiters, the version and the message type must be known before a structure can be chosen,
and a control id must be recovered, if at all possible, so that the rejection can echo it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from pumpguard.interop.codes import Hl7ErrorCode
from pumpguard.interop.errors import ErrorLocation, Hl7Error

FIELD_SEP = "|"
ENCODING = "^~\\&"
COMPONENT_SEP = "^"
REPETITION_SEP = "~"
ESCAPE = "\\"
SUBCOMPONENT_SEP = "&"
VERSION = "2.6"
MAX_MESSAGE_CHARS = 1_000_000
# Bounds well above any IHE PCD message, far below what makes hl7apy slow: its parser is
# quadratic in repetitions and subcomponents, so a 200 kB field could hold a worker for minutes.
MAX_SEGMENTS = 200
MAX_ELEMENTS = 4000
MAX_SEGMENT_CHARS = 65_536
MAX_FIELDS = 100
MAX_REPETITIONS = 16
MAX_COMPONENTS = 32
MAX_SUBCOMPONENTS = 16

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_DTM = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<frac>\d{1,4}))?(?P<tz>[+-]\d{4})?"
)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_ESCAPES = {"F": FIELD_SEP, "S": COMPONENT_SEP, "T": SUBCOMPONENT_SEP, "R": REPETITION_SEP}
_ESCAPES["E"] = ESCAPE


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: its id, its occurrence among segments of that id, and its raw fields
    (``fields[n]`` is field n; for MSH, field 1 is the field separator itself)."""

    name: str
    sequence: int
    fields: tuple[str, ...]

    def raw(self, index: int) -> str:
        return self.fields[index] if 0 < index < len(self.fields) else ""

    def reps(self, index: int) -> list[str]:
        raw = self.raw(index)
        return raw.split(REPETITION_SEP) if raw else []

    def component(self, index: int, component: int = 1, repetition: int = 1) -> str:
        reps = self.reps(index)
        if len(reps) < repetition:
            return ""
        parts = reps[repetition - 1].split(COMPONENT_SEP)
        if len(parts) < component:
            return ""
        return unescape(parts[component - 1].split(SUBCOMPONENT_SEP)[0])

    def components(self, index: int, repetition: int = 1) -> tuple[str, ...]:
        reps = self.reps(index)
        if len(reps) < repetition:
            return ()
        return tuple(
            unescape(p.split(SUBCOMPONENT_SEP)[0]) for p in reps[repetition - 1].split("^")
        )

    def at(self, field: int | None = None, component: int | None = None) -> ErrorLocation:
        return ErrorLocation(self.name, self.sequence, field, None, component)


def escape(text: str) -> str:
    """Escape delimiters (HL7 v2.6 2.7.4) and write control characters as ``\\Xhh\\``, so
    that a value can never end a field, a segment or an MLLP frame."""
    out = text.replace(ESCAPE, "\\E\\")
    for code, char in (("F", FIELD_SEP), ("S", COMPONENT_SEP), ("T", SUBCOMPONENT_SEP)):
        out = out.replace(char, f"\\{code}\\")
    out = out.replace(REPETITION_SEP, "\\R\\")
    if any(ord(c) < 32 or ord(c) == 127 for c in out):
        out = "".join(f"\\X{ord(c):02X}\\" if ord(c) < 32 or ord(c) == 127 else c for c in out)
    return out


def unescape(text: str) -> str:
    if ESCAPE not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        end = text.find(ESCAPE, i + 1) if char == ESCAPE else -1
        if end == -1:
            out.append(char)
            i += 1
            continue
        body = text[i + 1 : end]
        if body in _ESCAPES:
            out.append(_ESCAPES[body])
        elif body.startswith("X") and len(body) > 1:
            try:
                out.append(bytes.fromhex(body[1:]).decode("latin-1"))
            except ValueError:
                out.append(text[i : end + 1])
        else:
            out.append(text[i : end + 1])
        i = end + 1
    return "".join(out)


def split_segments(text: str) -> list[str]:
    """Segments end with CR; LF and CRLF are tolerated as separators on input, since they are
    what text files and some interface engines produce."""
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return [line for line in lines if line.strip()]


def recover_control_id(text: str) -> str | None:
    """MSH-10 from anything that starts like a header, even a broken one."""
    if not text.startswith("MSH") or len(text) < 4:
        return None
    sep = text[3]
    if sep.isalnum() or sep in "\r\n ":
        return None
    first = text.replace("\n", "\r").split("\r", 1)[0]
    fields = first.split(sep)
    if len(fields) > 9:
        value = fields[9].strip()
        if value and len(value) <= 199 and value.isprintable():
            return value
    return None


def _check_bounds(segment: Segment, control_id: str | None) -> int:
    """Refuse a segment beyond the bounds; return how many elements hl7apy would build."""

    def refuse(what: str, field: int | None = None) -> Hl7Error:
        return Hl7Error(
            f"{segment.name} has {what}",
            Hl7ErrorCode.DATA_TYPE if field is not None else Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=segment.at(field),
            control_id=control_id,
        )

    if len(segment.fields) > MAX_FIELDS + 1:
        raise refuse(f"{len(segment.fields) - 1} fields (at most {MAX_FIELDS})")
    elements = len(segment.fields)
    for position, raw in enumerate(segment.fields[2 if segment.name == "MSH" else 1 :]):
        field = position + (2 if segment.name == "MSH" else 1)
        reps = raw.split(REPETITION_SEP)
        if len(reps) > MAX_REPETITIONS:
            raise refuse(
                f"{len(reps)} repetitions in field {field} (at most {MAX_REPETITIONS})", field
            )
        for rep in reps:
            parts = rep.split(COMPONENT_SEP)
            if len(parts) > MAX_COMPONENTS:
                raise refuse(f"{len(parts)} components in field {field}", field)
            if any(p.count(SUBCOMPONENT_SEP) >= MAX_SUBCOMPONENTS for p in parts):
                raise refuse(f"too many subcomponents in field {field}", field)
            elements += len(parts) + rep.count(SUBCOMPONENT_SEP)
    return elements


def tokenize(text: str, control_id: str | None) -> list[Segment]:
    """Split a message whose header has been checked into segments and fields, within the
    bounds above."""
    counts: dict[str, int] = {}
    segments: list[Segment] = []
    lines = split_segments(text)
    if len(lines) > MAX_SEGMENTS:
        raise Hl7Error(
            f"the message has {len(lines)} segments (at most {MAX_SEGMENTS})",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            control_id=control_id,
        )
    elements = 0
    for index, line in enumerate(lines):
        name = line[:3]
        if _SEGMENT_ID.fullmatch(name) is None or (len(line) > 3 and line[3] != FIELD_SEP):
            # the broken line is the tail of the previous segment's field: point there
            where = segments[-1].at(len(segments[-1].fields) - 1) if segments else None
            raise Hl7Error(
                f"segment {index + 1} does not start with a segment id and a field separator "
                f"({line[:12]!r}); a segment separator inside a field would do this",
                Hl7ErrorCode.SEGMENT_SEQUENCE,
                location=where or ErrorLocation("MSH"),
                control_id=control_id,
            )
        counts[name] = counts.get(name, 0) + 1
        if len(line) > MAX_SEGMENT_CHARS:
            raise Hl7Error(
                f"segment {name} is {len(line)} characters long (at most {MAX_SEGMENT_CHARS})",
                Hl7ErrorCode.SEGMENT_SEQUENCE,
                location=ErrorLocation(name, counts[name]),
                control_id=control_id,
            )
        if name == "MSH":
            fields = ("MSH", FIELD_SEP, *line[4:].split(FIELD_SEP))
        else:
            fields = (name, *line[4:].split(FIELD_SEP)) if len(line) > 3 else (name,)
        segment = Segment(name, counts[name], fields)
        elements += _check_bounds(segment, control_id)
        if elements > MAX_ELEMENTS:
            raise Hl7Error(
                f"the message has more than {MAX_ELEMENTS} fields and components",
                Hl7ErrorCode.SEGMENT_SEQUENCE,
                location=segment.at(),
                control_id=control_id,
            )
        segments.append(segment)
    return segments


def check_header(
    text: object,
    expected_type: tuple[str, str],
    structures: tuple[str, ...],
    profile: str | None,
) -> tuple[list[Segment], str]:
    """Check the envelope of an incoming message and return its segments and MSH-10."""
    if not isinstance(text, str):
        raise Hl7Error("the message is not text", Hl7ErrorCode.SEGMENT_SEQUENCE, reject=True)
    if len(text) > MAX_MESSAGE_CHARS:
        raise Hl7Error(
            f"the message is {len(text)} characters long (at most {MAX_MESSAGE_CHARS})",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            reject=True,
            control_id=recover_control_id(text),
        )
    text = text.lstrip("\r\n")
    control_id = recover_control_id(text)
    if not text.startswith("MSH"):
        raise Hl7Error(
            "the message does not start with an MSH segment",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=ErrorLocation("MSH"),
            reject=True,
        )
    if text[3:8] != FIELD_SEP + ENCODING:
        raise Hl7Error(
            f"MSH-1 and MSH-2 must be '|' and '^~\\&' (IHE PCD TF-2 B.1), got {text[3:8]!r}",
            Hl7ErrorCode.DATA_TYPE,
            location=ErrorLocation("MSH", 1, 1 if text[3:4] != FIELD_SEP else 2),
            reject=True,
            control_id=control_id,
        )
    if "\x00" in text:
        raise Hl7Error(
            "the message contains a NUL character",
            Hl7ErrorCode.DATA_TYPE,
            reject=True,
            control_id=control_id,
        )
    segments = tokenize(text, control_id)
    msh = segments[0]
    if not control_id:
        raise Hl7Error(
            "MSH-10 (message control id) is missing or unreadable",
            Hl7ErrorCode.REQUIRED_FIELD_MISSING,
            location=msh.at(10),
            reject=True,
        )
    control_id = msh.component(10)
    message_type = msh.components(9)
    code, event = (*message_type, "", "")[:2]
    structure = message_type[2] if len(message_type) > 2 else ""
    if not code:
        raise Hl7Error(
            "MSH-9 (message type) is missing",
            Hl7ErrorCode.REQUIRED_FIELD_MISSING,
            location=msh.at(9),
            reject=True,
            control_id=control_id,
        )
    if code != expected_type[0]:
        raise Hl7Error(
            f"message type {code!r} is not supported here (expected {expected_type[0]})",
            Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            location=msh.at(9, 1),
            reject=True,
            control_id=control_id,
        )
    if event != expected_type[1]:
        raise Hl7Error(
            f"trigger event {event!r} is not supported here (expected {expected_type[1]})",
            Hl7ErrorCode.UNSUPPORTED_EVENT,
            location=msh.at(9, 2),
            reject=True,
            control_id=control_id,
        )
    if structure and structure not in structures:
        raise Hl7Error(
            f"message structure {structure!r} is not {' or '.join(structures)}",
            Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            location=msh.at(9, 3),
            reject=True,
            control_id=control_id,
        )
    processing = msh.component(11)
    if processing not in ("P", "D", "T"):
        raise Hl7Error(
            f"processing id {processing!r} is not P, D or T",
            Hl7ErrorCode.UNSUPPORTED_PROCESSING_ID,
            location=msh.at(11),
            reject=True,
            control_id=control_id,
        )
    version = msh.component(12)
    if version != VERSION:
        raise Hl7Error(
            f"version {version!r} is not supported (IHE PCD uses HL7 {VERSION})",
            Hl7ErrorCode.UNSUPPORTED_VERSION,
            location=msh.at(12),
            reject=True,
            control_id=control_id,
        )
    if profile is not None and not any(
        profile in msh.components(21, r) for r in range(1, len(msh.reps(21)) + 1)
    ):
        got = msh.raw(21) or "nothing"
        raise Hl7Error(
            f"MSH-21 must name the IHE PCD profile {profile}, got {got!r}",
            Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            location=msh.at(21),
            reject=True,
            control_id=control_id,
        )
    parse_dtm(msh.raw(7), msh.at(7), control_id, required=True)
    return segments, control_id


def parse_dtm(
    raw: str, where: ErrorLocation, control_id: str | None, *, required: bool = False
) -> datetime | None:
    """An HL7 DTM; without an offset it is read as UTC (PCD senders are asked to send one)."""
    text = unescape(raw.split(COMPONENT_SEP)[0]).strip()
    if not text:
        if required:
            raise Hl7Error(
                "a required date/time is missing",
                Hl7ErrorCode.REQUIRED_FIELD_MISSING,
                location=where,
                control_id=control_id,
            )
        return None
    match = _DTM.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        tz = UTC
        if match["tz"]:
            sign = -1 if match["tz"][0] == "-" else 1
            minutes = int(match["tz"][1:3]) * 60 + int(match["tz"][3:5])
            tz = timezone(sign * timedelta(minutes=minutes))
        frac = match["frac"] or ""
        return datetime(
            int(match["y"]),
            int(match["mo"] or 1),
            int(match["d"] or 1),
            int(match["h"] or 0),
            int(match["mi"] or 0),
            int(match["s"] or 0),
            int(frac.ljust(6, "0")) if frac else 0,
            tzinfo=tz,
        )
    except (ValueError, OverflowError):
        raise Hl7Error(
            f"{text!r} is not an HL7 date/time (YYYYMMDDHHMMSS[+ZZZZ])",
            Hl7ErrorCode.DATA_TYPE,
            location=where,
            control_id=control_id,
        ) from None


def format_dtm(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return when.strftime("%Y%m%d%H%M%S") + f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def parse_number(raw: str, where: ErrorLocation, control_id: str | None) -> Decimal | None:
    text = unescape(raw).strip()
    if not text:
        return None
    if _NUMBER.fullmatch(text) is None:
        raise Hl7Error(
            f"{text[:40]!r} is not a number",
            Hl7ErrorCode.DATA_TYPE,
            location=where,
            control_id=control_id,
        )
    try:
        return Decimal(text)
    except InvalidOperation:
        raise Hl7Error(
            f"{text[:40]!r} is not a number",
            Hl7ErrorCode.DATA_TYPE,
            location=where,
            control_id=control_id,
        ) from None


def format_number(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def segment_text(name: str, fields: dict[int, str]) -> str:
    """One segment from ``{position: already-escaped value}``; absent positions stay empty."""
    last = max(fields, default=0)
    return FIELD_SEP.join([name, *(fields.get(i, "") for i in range(1, last + 1))])


def join_segments(segments: Iterator[str] | list[str]) -> str:
    return "\r".join(segments) + "\r"
