"""The one place that touches hl7apy: structure validation against HL7 v2.6 and serialising.

hl7apy is untyped and raises many kinds of exception for bad input (ValueError, its own
exceptions, occasionally KeyError or AttributeError), so every call is fenced here and turned
into an ``Hl7Error`` with a location; nothing from the library leaves this module.
"""

from __future__ import annotations

import re
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group, Message
from hl7apy.parser import parse_field, parse_segment, parse_segments
from hl7apy.validation import Validator

from pumpguard.interop._er7 import VERSION, Segment, tokenize
from pumpguard.interop.codes import Hl7ErrorCode
from pumpguard.interop.errors import ErrorLocation, Hl7BuildError, Hl7Error

__all__ = ["serialise", "validate_structure"]

_ENCODING = {
    "FIELD": "|",
    "COMPONENT": "^",
    "REPETITION": "~",
    "ESCAPE": "\\",
    "SUBCOMPONENT": "&",
    "SEGMENT": "\r",
}
_MISSING = re.compile(r"Missing required child (?P<parent>[A-Z0-9_]+)\.(?P<child>[A-Z0-9_]+)")
_FIELD_NAME = re.compile(r"(?P<seg>[A-Z][A-Z0-9]{2})_(?P<pos>\d+)")
_MAX_PASSES = 8


def _segment_error(segments: list[Segment], control_id: str | None) -> Hl7Error | None:
    """Find the first field hl7apy cannot read as its v2.6 data type."""
    for segment in segments:
        text = _segment_er7(segment)
        try:
            parse_segment(
                text,
                version=VERSION,
                encoding_chars=_ENCODING,
                validation_level=VALIDATION_LEVEL.STRICT,
            )
            continue
        except Exception:
            pass
        for position in range(3 if segment.name == "MSH" else 1, len(segment.fields)):
            raw = segment.fields[position]
            if not raw:
                continue
            try:
                parse_field(
                    raw,
                    name=f"{segment.name}_{position}",
                    version=VERSION,
                    encoding_chars=_ENCODING,
                    validation_level=VALIDATION_LEVEL.STRICT,
                )
            except Exception as exc:
                return Hl7Error(
                    f"{segment.name}-{position} is not a valid HL7 v2.6 value ({_short(exc)})",
                    Hl7ErrorCode.DATA_TYPE,
                    location=segment.at(position),
                    control_id=control_id,
                )
        return Hl7Error(
            f"segment {segment.name} is not a valid HL7 v2.6 segment",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=segment.at(),
            control_id=control_id,
        )
    return None


def _segment_er7(segment: Segment) -> str:
    if segment.name == "MSH":
        return "|".join(segment.fields[:1] + segment.fields[2:])
    return "|".join(segment.fields)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _library_structure(structure: str) -> str:
    """HL7 v2.6 defines no ORU_R40 structure; IHE PCD ACM messages follow ORU_R01's."""
    return "ORU_R01" if structure == "ORU_R40" else structure


def _tree(text: str, structure: str) -> Any:
    message = Message(
        _library_structure(structure), version=VERSION, validation_level=VALIDATION_LEVEL.STRICT
    )
    message.children = parse_segments(
        text,
        VERSION,
        _ENCODING,
        VALIDATION_LEVEL.STRICT,
        message.reference,
        True,
    )
    return message


def _find_group(node: Any, name: str) -> list[Any]:
    found: list[Any] = []
    for child in node.children:
        if child.classname == "Group":
            if child.name == name:
                found.append(child)
            found.extend(_find_group(child, name))
    return found


def _find_segments(node: Any, name: str) -> list[Any]:
    found: list[Any] = []
    for child in node.children:
        if child.classname == "Segment" and child.name == name:
            found.append(child)
        elif child.classname in ("Group", "Message"):
            found.extend(_find_segments(child, name))
    return found


def _classify(error: Exception, segments: list[Segment], control_id: str | None) -> Hl7Error:
    text = str(error)
    missing = _MISSING.search(text)
    if missing is not None:
        child = missing["child"]
        field = _FIELD_NAME.fullmatch(child)
        if field is not None:
            seg = field["seg"]
            occurrence = next((s.sequence for s in segments if s.name == seg), 1)
            return Hl7Error(
                f"required field {seg}-{int(field['pos'])} is missing",
                Hl7ErrorCode.REQUIRED_FIELD_MISSING,
                location=ErrorLocation(seg, occurrence, int(field["pos"])),
                control_id=control_id,
            )
        name = child.rsplit("_", 1)[-1] if "_" in child else child
        return Hl7Error(
            f"required segment or group {child} is missing from {missing['parent']}",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=ErrorLocation(name[:3]) if len(name) == 3 else None,
            control_id=control_id,
        )
    return Hl7Error(
        f"the message does not follow the HL7 v2.6 structure: {_short(error)}",
        Hl7ErrorCode.SEGMENT_SEQUENCE,
        control_id=control_id,
    )


def validate_structure(
    structure: str,
    segments: list[Segment],
    control_id: str | None,
    *,
    optional_groups: tuple[tuple[str, str], ...] = (),
    optional_fields: tuple[str, ...] = (),
) -> Any:
    """Check ``text`` against the v2.6 ``structure``; raise ``Hl7Error`` for the first problem.

    ``optional_groups`` lists (parent group, child group) pairs that HL7 v2.6 requires but the
    IHE PCD profile makes optional; a missing one is filled with an empty instance so that
    validation can go on to find real problems.
    """
    joined = "\r".join(_segment_er7(s) for s in segments)
    try:
        tree = _tree(joined, structure)
    except Exception:
        found = _segment_error(segments, control_id)
        if found is not None:
            raise found from None
        raise Hl7Error(
            "the segments do not fit the HL7 v2.6 message structure",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            control_id=control_id,
        ) from None
    for _ in range(_MAX_PASSES):
        try:
            Validator.validate(tree)
            return tree
        except Exception as exc:
            missing = _MISSING.search(str(exc))
            pair = (missing["parent"], missing["child"]) if missing else None
            if pair is not None and pair[1] in optional_fields:
                try:
                    for segment in _find_segments(tree, pair[0]):
                        setattr(segment, pair[1].lower(), "-")
                except Exception:
                    raise _classify(exc, segments, control_id) from None
                continue
            if pair is None or pair not in optional_groups:
                raise _classify(exc, segments, control_id) from None
            try:
                for parent in _find_group(tree, pair[0]):
                    if not any(c.name == pair[1] for c in parent.children):
                        filler = Group(
                            pair[1], version=VERSION, validation_level=VALIDATION_LEVEL.STRICT
                        )
                        parent.add(_fill(filler))
            except Exception:
                raise _classify(exc, segments, control_id) from None
    raise Hl7Error(
        "the message does not validate against HL7 v2.6",
        Hl7ErrorCode.SEGMENT_SEQUENCE,
        control_id=control_id,
    )


def _fill(group: Any) -> Any:
    """Give an inserted group its required first segment, empty, so it validates as present."""
    first = group.reference[1][0]
    group.add_segment(first[0])
    return group


def serialise(text: str, structure: str) -> str:
    """Validate a message we built against the v2.6 structure and return it.

    The text returned is the one validated, not hl7apy's re-serialisation: hl7apy re-escapes
    the backslash of ``\\Xhh\\`` sequences it does not decode, which would change values.
    """
    try:
        validate_structure(structure, tokenize(text, None), None)
    except Hl7Error as exc:
        raise Hl7BuildError(f"built {structure} does not validate: {exc}") from None
    except Exception as exc:
        raise Hl7BuildError(f"built {structure} cannot be checked: {_short(exc)}") from None
    return text
