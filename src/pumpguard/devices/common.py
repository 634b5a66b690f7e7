"""What every device's firmware shares: alarm priorities and the append-only event log."""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum
from typing import Generic, Protocol, TypeVar

__all__ = ["AlarmPriority", "AppendOnlyLog"]


class AlarmPriority(IntEnum):
    """IEC 60601-1-8 alarm priorities; higher sorts first on the display."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


class _Numbered(Protocol):
    @property
    def seq(self) -> int: ...


E = TypeVar("E", bound=_Numbered)


class AppendOnlyLog(Generic[E]):
    """Entries can be appended and read, never edited or removed; each carries a gapless
    sequence number, so a collector sees any entry it missed. Subclasses build their entries."""

    def __init__(self) -> None:
        self._entries: list[E] = []

    def _next_seq(self) -> int:
        return len(self._entries) + 1

    def _add(self, entry: E) -> E:
        if entry.seq != self._next_seq():
            raise ValueError(f"log entry {entry.seq} out of sequence")
        self._entries.append(entry)
        return entry

    def __iter__(self) -> Iterator[E]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last_seq(self) -> int:
        return len(self._entries)

    def since(self, seq: int) -> tuple[E, ...]:
        """Entries after sequence number ``seq``: what a collector has not yet seen."""
        return tuple(self._entries[max(0, seq) :])
