"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol): ``0x0B`` message ``0x1C 0x0D``.

The decoder is sans-I/O: it is fed bytes as they arrive and returns whole frames and named
problems, so that the same code serves the asyncio endpoints, tests and fuzzing. It never
raises for bad input and never holds more than ``max_frame`` bytes of one frame: a sender that
streams without an end block is cut off at the limit, and bytes outside any frame are dropped
and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_MAX_FRAME",
    "END_BLOCK",
    "START_BLOCK",
    "Frame",
    "FrameProblem",
    "FrameProblemKind",
    "MllpDecoder",
    "decode_payload",
    "encode_frame",
]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_FRAME = 1 << 20
_PREFIX_KEPT = 512


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete message payload (without the framing bytes)."""

    payload: bytes

    @property
    def text(self) -> str:
        return decode_payload(self.payload)


class FrameProblemKind(StrEnum):
    GARBAGE = "garbage"
    OVERSIZED = "oversized"
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class FrameProblem:
    """Something on the stream that is not a frame; ``prefix`` holds the first bytes of a
    broken frame so that its MSH-10 can be recovered for the rejection."""

    kind: FrameProblemKind
    detail: str
    prefix: bytes = b""

    @property
    def prefix_text(self) -> str:
        return decode_payload(self.prefix)


def decode_payload(payload: bytes) -> str:
    """UTF-8 (what IHE PCD asks for with MSH-18 ``UNICODE UTF-8``), else Latin-1, which reads
    any byte, so decoding never fails and the parser decides what is wrong."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")


def encode_frame(message: str) -> bytes:
    body = message.encode("utf-8")
    if START_BLOCK in body or b"\x1c" in body:
        raise ValueError("a message containing 0x0B or 0x1C cannot be framed in MLLP")
    return START_BLOCK + body + END_BLOCK


class MllpDecoder:
    """Incremental MLLP frame decoder with a frame size limit."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 16:
            raise ValueError("max_frame must allow at least a header")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._inside = False
        self._discarding = False
        self._held_fs = False
        self._garbage = 0
        self._prefix = b""

    @property
    def pending(self) -> bool:
        """A frame has started and not ended: the peer owes us bytes."""
        return self._inside

    def feed(self, data: bytes) -> list[Frame | FrameProblem]:
        out: list[Frame | FrameProblem] = []
        data = bytes(data)
        pos = 0
        while pos < len(data):
            if not self._inside:
                start = data.find(START_BLOCK, pos)
                skipped = data[pos:] if start < 0 else data[pos:start]
                self._garbage += len(skipped) - sum(skipped.count(c) for c in b"\r\n\t ")
                if start < 0:
                    break
                self._flush_garbage(out)
                self._begin()
                pos = start + 1
                continue
            if self._held_fs:
                self._held_fs = False
                if data[pos : pos + 1] == b"\r":
                    pos += 1
                    self._finish(out)
                    continue
                self._take(b"\x1c", out)
            end = data.find(END_BLOCK, pos)
            restart = data.find(START_BLOCK, pos)
            if restart >= 0 and (end < 0 or restart < end):
                self._take(data[pos:restart], out)
                out.append(
                    FrameProblem(
                        FrameProblemKind.TRUNCATED,
                        "a new frame started before the previous one ended",
                        self._prefix or bytes(self._buffer[:_PREFIX_KEPT]),
                    )
                )
                self._inside = False
                self._buffer.clear()
                pos = restart
                continue
            if end < 0:
                chunk = data[pos:]
                if chunk.endswith(b"\x1c"):
                    chunk = chunk[:-1]
                    self._held_fs = True
                self._take(chunk, out)
                break
            self._take(data[pos:end], out)
            pos = end + len(END_BLOCK)
            self._finish(out)
        return out

    def _begin(self) -> None:
        self._inside = True
        self._discarding = False
        self._held_fs = False
        self._buffer.clear()
        self._prefix = b""

    def _finish(self, out: list[Frame | FrameProblem]) -> None:
        self._inside = False
        if self._discarding:
            self._discarding = False
        else:
            out.append(Frame(bytes(self._buffer)))
        self._buffer.clear()

    def _take(self, data: bytes, out: list[Frame | FrameProblem]) -> None:
        if self._discarding or not data:
            return
        if len(self._buffer) + len(data) > self.max_frame:
            self._prefix = bytes((self._buffer + data)[:_PREFIX_KEPT])
            self._buffer.clear()
            self._discarding = True
            out.append(
                FrameProblem(
                    FrameProblemKind.OVERSIZED,
                    f"frame exceeds {self.max_frame} bytes; discarded up to its end block",
                    self._prefix,
                )
            )
            return
        self._buffer += data

    def _flush_garbage(self, out: list[Frame | FrameProblem]) -> None:
        if self._garbage:
            out.append(
                FrameProblem(
                    FrameProblemKind.GARBAGE,
                    f"{self._garbage} byte(s) outside any MLLP frame were dropped",
                )
            )
            self._garbage = 0
