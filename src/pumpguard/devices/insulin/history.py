"""Pump history for controllers, and the rule for a command whose confirmation was lost.

A command sent over a radio can be lost on the way to the pump, or its confirmation on the way
back. From the sender's side the two look the same, and for a bolus the difference is a dose.
AndroidAPS users of Omnipod pods met exactly this: a bolus whose confirmation was lost is in an
*uncertain* state, and retrying it as a new bolus can give it twice. The rule here:

1. every command from a phone or a controller carries a ``command_id`` the sender generates;
   the pump keeps the outcome of each id (the last ``history_capacity`` of them) and answers a
   repeated id with the original outcome without acting again;
2. a sender that lost a confirmation asks for the history of that id (``HistoryQuery``) and
   passes the answer to ``reconcile`` with the log sequence number it had seen before sending;
3. it acts on the ``Reconciliation``: the outcome found, or, if the pump never saw the command,
   it resends **the same command with the same id** (safe even if the first copy is only late);
   if the pump's memory no longer reaches back that far the outcome is unknown, and the sender
   must not resend: it counts the whole dose as delivered (for IOB) and asks the user.

A sender never issues a new command id for a dose whose fate it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from pumpguard.devices.insulin.commands import Command, CommandResult, CommandSource
from pumpguard.devices.insulin.log import BolusStatus, BolusView, LogEntry

__all__ = [
    "CommandRecord",
    "HistoryQuery",
    "HistoryReply",
    "Outcome",
    "Reconciliation",
    "reconcile",
]


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Log entries after ``since_seq`` and/or what became of ``command_id``."""

    since_seq: int | None = None
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command with an id, as the pump handled it."""

    command_id: str
    command: Command
    source: CommandSource
    seq: int
    """The last log sequence number before the pump handled it."""
    time_ms: int
    result: CommandResult


@dataclass(frozen=True, slots=True)
class HistoryReply:
    now_ms: int
    last_seq: int
    complete_since_seq: int
    """The pump remembers every command it handled while its log was at this sequence number or
    later: a command sent after its sender saw this number is either here or never arrived."""
    entries: tuple[LogEntry, ...]
    command: CommandRecord | None
    bolus: BolusView | None
    """The bolus the queried command created, as it stands now."""


class Outcome(StrEnum):
    NOT_RECEIVED = "not-received"
    UNKNOWN = "unknown"
    REFUSED = "refused"
    APPLIED = "applied"
    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Reconciliation:
    outcome: Outcome
    delivered_u: Fraction | None
    """Insulin the command has delivered so far, where it is a bolus and known."""
    resend_same_id: bool
    message: str


def reconcile(reply: HistoryReply, command_id: str, seq_before_send: int) -> Reconciliation:
    """What became of ``command_id``, sent when the sender had seen log up to ``seq_before_send``.

    ``reply`` must answer ``HistoryQuery(command_id=command_id)``.
    """
    record = reply.command
    if record is None or record.command_id != command_id:
        if reply.complete_since_seq <= seq_before_send:
            return Reconciliation(
                Outcome.NOT_RECEIVED,
                Fraction(0),
                True,
                "the pump never received it: resend the same command with the same id",
            )
        return Reconciliation(
            Outcome.UNKNOWN,
            None,
            False,
            "the pump no longer remembers commands that old: do not resend; count the whole "
            "dose as delivered and ask the user",
        )
    result = record.result
    if not result.accepted:
        return Reconciliation(
            Outcome.REFUSED, Fraction(0), False, f"refused by the pump: {result.message}"
        )
    if result.bolus_id is None:
        return Reconciliation(Outcome.APPLIED, None, False, result.message)
    bolus = reply.bolus
    if bolus is None or bolus.bolus_id != result.bolus_id:
        return Reconciliation(
            Outcome.UNKNOWN,
            None,
            False,
            f"bolus {result.bolus_id} was accepted but is no longer in the pump's history: "
            "count it as delivered in full",
        )
    outcome = {
        BolusStatus.PENDING: Outcome.PENDING,
        BolusStatus.DELIVERING: Outcome.DELIVERING,
        BolusStatus.COMPLETED: Outcome.DELIVERED,
        BolusStatus.CANCELLED: Outcome.CANCELLED,
    }[bolus.status]
    return Reconciliation(
        outcome,
        bolus.delivered_u,
        False,
        f"bolus {bolus.bolus_id} {bolus.status}: {bolus.delivered_u} of {bolus.amount_u} U",
    )
