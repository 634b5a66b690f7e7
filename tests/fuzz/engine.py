"""A small mutation fuzzer for pumpguard's parsers, bounded in time or executions.

It is not coverage-guided (atheris/libFuzzer would be; they are not in the lock): it mutates a
corpus of valid inputs with the classic byte-level operators (bit flips, interesting values,
insertions, deletions, duplicated and spliced chunks, the target's own delimiters) and keeps
every input that produced a new outcome (a new exception type and message prefix, or a new
success shape) as a further seed, so it walks deeper into a parser than uniform random bytes.
A *crash* is any exception outside the target's documented error types; its input is kept.
"""

from __future__ import annotations

import hashlib
import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Crash", "FuzzReport", "FuzzTarget", "fuzz"]

_INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff", b"\x00\x00\x00\x00", b"-1", b"0")


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    call: Callable[[bytes], object]
    """Feeds one input to the parser under test; any return value is fine."""
    expected: tuple[type[BaseException], ...]
    """The errors the parser documents for bad input: anything else is a crash."""
    seeds: Sequence[bytes]
    tokens: Sequence[bytes] = ()
    """Delimiters and keywords of the format, spliced in by the mutator."""
    max_len: int = 1 << 16


@dataclass(frozen=True)
class Crash:
    target: str
    error: str
    where: str
    data: bytes

    @property
    def key(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:16]


@dataclass
class FuzzReport:
    target: str
    executions: int = 0
    seconds: float = 0.0
    corpus: int = 0
    crashes: list[Crash] = field(default_factory=list)

    @property
    def unique_crashes(self) -> list[Crash]:
        seen: dict[tuple[str, str], Crash] = {}
        for crash in self.crashes:
            seen.setdefault((crash.error.split(":")[0], crash.where), crash)
        return list(seen.values())


def _mutate(data: bytes, rng: random.Random, corpus: Sequence[bytes], target: FuzzTarget) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        at = rng.randint(0, len(buf))
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            i = rng.randrange(len(buf))
            buf[i] = rng.randrange(256)
        elif op == 2:
            buf[at:at] = rng.choice(_INTERESTING)
        elif op == 3 and buf:
            end = min(len(buf), at + rng.randint(1, 16))
            del buf[at:end]
        elif op == 4 and buf:
            start = rng.randrange(len(buf))
            chunk = buf[start : start + rng.randint(1, 32)]
            buf[at:at] = chunk * rng.randint(1, 8)
        elif op == 5 and target.tokens:
            buf[at:at] = rng.choice(target.tokens)
        elif op == 6 and corpus:
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            buf = buf[:at] + bytearray(other[cut:])
        elif op == 7:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf[: target.max_len])


def _outcome(target: FuzzTarget, data: bytes) -> tuple[str, Crash | None]:
    try:
        result = target.call(data)
    except target.expected as exc:
        return f"{type(exc).__name__}:{str(exc)[:24]}", None
    except Exception as exc:  # the point of a fuzzer: anything unexpected is the finding
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        crash = Crash(target.name, f"{type(exc).__name__}: {exc}"[:300], where, data)
        return "crash", crash
    return f"ok:{type(result).__name__}", None


def fuzz(
    target: FuzzTarget,
    *,
    seconds: float | None = None,
    executions: int | None = None,
    seed: int = 0,
) -> FuzzReport:
    """Run until either bound is reached (at least one must be given)."""
    if seconds is None and executions is None:
        raise ValueError("give a time or an execution bound")
    rng = random.Random(seed)
    report = FuzzReport(target.name)
    corpus = [bytes(s) for s in target.seeds] or [b""]
    outcomes: set[str] = set()
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else float("inf")
    limit = executions if executions is not None else 1 << 62
    queue = list(corpus)
    while report.executions < limit and time.perf_counter() < deadline:
        data = queue.pop() if queue else _mutate(rng.choice(corpus), rng, corpus, target)
        outcome, crash = _outcome(target, data)
        report.executions += 1
        if crash is not None:
            report.crashes.append(crash)
        elif outcome not in outcomes and len(corpus) < 4096:
            outcomes.add(outcome)
            corpus.append(data)
    report.seconds = time.perf_counter() - start
    report.corpus = len(corpus)
    return report
