"""How a controller reaches its pump, and the client logic shared by every controller.

``PumpLink`` is what a radio would be: ``send`` returns the pump's answer, or ``None`` when the
answer (or the command) was lost; ``history`` likewise. ``DirectLink`` calls the pump directly
(the lab has no radio yet). ``PumpClient`` owns the rules for talking to a pump:

* every command carries a fresh command id (``<prefix>-<n>``);
* a command whose answer was lost is *uncertain*: the client issues nothing new until it has
  asked the pump's history what became of it (``devices.insulin.reconcile``) and acted on the
  answer: resend the same command with the same id if the pump never got it, else take the
  outcome; if the pump cannot tell any more, a bolus counts as fully delivered for IOB and an
  alert is raised; never a new id for a dose of unknown fate;
* insulin on board is rebuilt from the pump's log (``InsulinHistory``), read with a cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pumpguard.clinical import RAPID_ACTING_ADULT, InsulinCurve
from pumpguard.clock import Clock
from pumpguard.devices.controller.iob import InsulinHistory
from pumpguard.devices.insulin import (
    Bolus,
    Command,
    CommandResult,
    HistoryQuery,
    HistoryReply,
    InsulinPump,
    Outcome,
    TempBasalView,
    reconcile,
)

__all__ = ["DirectLink", "PumpClient", "PumpLink"]


class PumpLink(Protocol):
    def send(self, command: Command) -> CommandResult | None: ...

    def history(self, query: HistoryQuery) -> HistoryReply | None: ...


class DirectLink:
    """A link that never loses anything: direct calls on the pump object."""

    def __init__(self, pump: InsulinPump) -> None:
        self.pump = pump

    def send(self, command: Command) -> CommandResult | None:
        return self.pump.handle(command)

    def history(self, query: HistoryQuery) -> HistoryReply | None:
        return self.pump.history(query)


@dataclass(slots=True)
class _Uncertain:
    command: Command
    command_id: str
    seq_before: int
    sent_ms: int


class PumpClient:
    """Command ids, reconciliation of lost answers, and IOB from the pump's history."""

    def __init__(
        self,
        clock: Clock,
        link: PumpLink,
        *,
        id_prefix: str,
        curve: InsulinCurve = RAPID_ACTING_ADULT,
    ) -> None:
        self.clock = clock
        self.link = link
        self.id_prefix = id_prefix
        self.insulin = InsulinHistory(curve, clock.now_ms())
        self.alerts: list[str] = []
        self.results: list[CommandResult] = []
        self._next_id = 1
        self._seen_seq = 0
        self._uncertain: _Uncertain | None = None
        self.temp: TempBasalView | None = None
        """The temp basal running as of the last history read."""
        self.bolus_active = False
        self.delivering = True

    @property
    def uncertain(self) -> bool:
        return self._uncertain is not None

    def sync(self) -> bool:
        """Read the pump's log since the cursor; False if the history could not be read."""
        reply = self.link.history(HistoryQuery(since_seq=self._seen_seq))
        if reply is None:
            return False
        self.insulin.ingest(reply.entries)
        for entry in reply.entries:
            if entry.after is not None:
                self.temp = entry.after.temp
                self.bolus_active = entry.after.bolus is not None
                self.delivering = entry.after.suspended_by is None
        self._seen_seq = reply.last_seq
        # A temp basal that ran out between entries is over even if no entry says so yet.
        if self.temp is not None and self.temp.end_ms <= reply.now_ms:
            self.temp = None
        return True

    def iob_u(self) -> float:
        return self.insulin.iob_u(self.clock.now_ms())

    def send(self, command: Command) -> CommandResult | None:
        """Send a command built by ``make`` with a fresh id; None if its fate is uncertain."""
        if self._uncertain is not None and not self.resolve():
            return None
        command_id = getattr(command, "command_id", None)
        assert command_id is not None, "build commands with next_id()"
        seq_before = self._seen_seq
        result = self.link.send(command)
        if result is None:
            self._uncertain = _Uncertain(command, command_id, seq_before, self.clock.now_ms())
            self.resolve()
            return None
        self.results.append(result)
        return result

    def next_id(self) -> str:
        value = f"{self.id_prefix}-{self._next_id:06d}"
        self._next_id += 1
        return value

    def resolve(self) -> bool:
        """Try to settle the uncertain command; True when nothing is uncertain any more."""
        pending = self._uncertain
        if pending is None:
            return True
        reply = self.link.history(HistoryQuery(command_id=pending.command_id))
        if reply is None:
            return False
        found = reconcile(reply, pending.command_id, pending.seq_before)
        if found.resend_same_id:
            result = self.link.send(pending.command)
            if result is None:
                return False
            self.results.append(result)
        elif found.outcome is Outcome.UNKNOWN:
            if isinstance(pending.command, Bolus):
                self.insulin.assume_delivered(pending.sent_ms, float(pending.command.amount_u))
            self.alerts.append(f"command {pending.command_id}: {found.message}")
        self._uncertain = None
        self.sync()
        return True
