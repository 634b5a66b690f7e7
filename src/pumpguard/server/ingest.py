"""Event ingestion from pumps: idempotent by (device, sequence), fast in batches.

Pumps number every record and buffer while offline, then resend everything not acknowledged;
the server therefore sees the same record more than once and must store it exactly once. The
unique (device_id, seq) constraint and ``INSERT ... ON CONFLICT DO NOTHING`` make that a
property of the database, so several ingest workers can run side by side. A resent record
whose content differs from the stored one is a conflict: the first stays, the event is reported.

``EventRecord`` is this package's own shape; the transport's message schemas map onto it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, select, update
from sqlalchemy.orm import Session

from pumpguard.security_events import Severity
from pumpguard.server._sql import in_values, insert_rows_ignoring_conflicts
from pumpguard.server.context import ServerContext
from pumpguard.server.errors import InvalidInput, NotFound, ServerEventCode
from pumpguard.server.lifecycle import ADMITTED_STATES, AssetState
from pumpguard.server.models import AssetRow, PumpEventRow, PumpStatusRow

__all__ = [
    "CONNECTION_KIND",
    "STATUS_KIND",
    "EventRecord",
    "IngestResult",
    "IngestService",
    "PumpStatusView",
    "RejectedRecord",
    "StatusReport",
    "StoredEvent",
]

STATUS_KIND = "status"
CONNECTION_KIND = "connection"
_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_STATE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_DEVICE = re.compile(r"[A-Z0-9][A-Z0-9-]{1,63}")
_MAX_BODY = 65_536
_MAX_SEQ = 2**63 - 1
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class EventRecord:
    device_id: str
    seq: int
    sent_at_ms: int
    kind: str
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    device_id: str
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class IngestResult:
    """``accepted`` were stored now; ``duplicates`` were already stored (identical or not).
    ``stored`` are the records stored now, in (device, seq) order: what live detection sees,
    so a resent copy is never judged twice."""

    accepted: int
    duplicates: int
    conflicts: int
    rejected: tuple[RejectedRecord, ...]
    stored: tuple[EventRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The body of a ``status`` record."""

    state: str
    programme: str | None = None
    battery_pct: int | None = None
    firmware_version: str | None = None
    library_version: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> StatusReport:
        unknown = set(body) - {
            "state",
            "programme",
            "battery_pct",
            "firmware_version",
            "library_version",
        }
        if unknown:
            raise InvalidInput(f"status has unknown fields: {', '.join(sorted(unknown))}")
        state = body.get("state")
        if not isinstance(state, str) or not _STATE.fullmatch(state):
            raise InvalidInput(
                "status.state must be a lower-case identifier of at most 32 characters"
            )
        battery = body.get("battery_pct")
        if battery is not None and (
            not isinstance(battery, int) or isinstance(battery, bool) or not 0 <= battery <= 100
        ):
            raise InvalidInput("status.battery_pct must be an integer from 0 to 100")
        texts: dict[str, str | None] = {}
        for name, limit in (("programme", 255), ("firmware_version", 64), ("library_version", 64)):
            value = body.get(name)
            if value is not None and (
                not isinstance(value, str) or len(value) > limit or not value.isprintable()
            ):
                raise InvalidInput(f"status.{name} must be at most {limit} printable characters")
            texts[name] = value
        return cls(
            state=state,
            programme=texts["programme"],
            battery_pct=battery,
            firmware_version=texts["firmware_version"],
            library_version=texts["library_version"],
        )


@dataclass(frozen=True, slots=True)
class PumpStatusView:
    device_id: str
    online: bool
    connected: bool
    state: str
    programme: str | None
    battery_pct: int | None
    firmware_version: str | None
    library_version: str | None
    last_seen_ms: int
    asset_state: AssetState | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    device_id: str
    seq: int
    sent_at_ms: int
    received_at_ms: int
    kind: str
    body: dict[str, Any]


def _body_text(body: Mapping[str, Any]) -> str:
    return json.dumps(
        dict(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _content(record: EventRecord) -> tuple[int, str, str]:
    return (record.sent_at_ms, record.kind, _body_text(record.body))


def _same(a: EventRecord, b: EventRecord) -> bool:
    return _content(a) == _content(b)


def _problem(record: EventRecord) -> str | None:
    if not isinstance(record.device_id, str) or not _DEVICE.fullmatch(record.device_id):
        return "device_id is not a valid asset identifier"
    if isinstance(record.seq, bool) or not isinstance(record.seq, int):
        return "seq must be an integer"
    if not 0 <= record.seq <= _MAX_SEQ:
        return "seq out of range"
    if isinstance(record.sent_at_ms, bool) or not isinstance(record.sent_at_ms, int):
        return "sent_at_ms must be an integer"
    if not 0 <= record.sent_at_ms <= _MAX_SEQ:
        return "sent_at_ms out of range"
    if not isinstance(record.kind, str) or not _KIND.fullmatch(record.kind):
        return "kind must be a short lower-case identifier"
    if not isinstance(record.body, Mapping):
        return "body must be an object"
    try:
        text = _body_text(record.body)
    except (TypeError, ValueError):
        return "body is not JSON"
    if len(text) > _MAX_BODY:
        return f"body larger than {_MAX_BODY} bytes"
    if record.kind == STATUS_KIND:
        try:
            StatusReport.from_body(record.body)
        except InvalidInput as exc:
            return str(exc)
    if record.kind == CONNECTION_KIND and not isinstance(record.body.get("connected"), bool):
        return "connection.connected must be true or false"
    return None


class IngestService:
    def __init__(self, session: Session, ctx: ServerContext) -> None:
        self._session = session
        self._ctx = ctx

    def _reject(
        self,
        rejected: list[RejectedRecord],
        record: EventRecord,
        reason: str,
        code: ServerEventCode,
    ) -> None:
        seq = record.seq if isinstance(record.seq, int) and not isinstance(record.seq, bool) else -1
        rejected.append(RejectedRecord(str(record.device_id)[:64], seq, reason))
        severity = Severity.MEDIUM if code is ServerEventCode.INGEST_MALFORMED else Severity.HIGH
        self._ctx.emit(
            code,
            severity,
            f"event {seq} from {str(record.device_id)[:64]!r} rejected: {reason}",
            device_id=str(record.device_id)[:64],
            attributes={"seq": str(seq), "kind": str(record.kind)[:64]},
        )

    def ingest(self, records: Sequence[EventRecord]) -> IngestResult:
        """Store each new record once; update pump status from the newest status records."""
        now = self._ctx.clock.now_ms()
        rejected: list[RejectedRecord] = []
        valid: list[EventRecord] = []
        for record in records:
            problem = _problem(record)
            if problem is None:
                valid.append(record)
            else:
                self._reject(rejected, record, problem, ServerEventCode.INGEST_MALFORMED)
        devices = {r.device_id for r in valid}
        states = (
            {
                ident: AssetState(state)
                for ident, state in self._session.execute(
                    select(AssetRow.ident, AssetRow.state).where(
                        in_values(self._session, AssetRow.ident, devices)
                    )
                )
            }
            if devices
            else {}
        )
        admitted: list[EventRecord] = []
        for record in valid:
            state = states.get(record.device_id)
            if state is None:
                self._reject(
                    rejected, record, "unknown device", ServerEventCode.INGEST_UNKNOWN_DEVICE
                )
            elif state not in ADMITTED_STATES:
                self._reject(
                    rejected,
                    record,
                    f"device is {state}, not admitted",
                    ServerEventCode.INGEST_DEVICE_NOT_ADMITTED,
                )
            else:
                admitted.append(record)
        unique: dict[tuple[str, int], EventRecord] = {}
        in_batch_duplicates = in_batch_conflicts = 0
        for record in admitted:
            key = (record.device_id, record.seq)
            first = unique.get(key)
            if first is None:
                unique[key] = record
                continue
            in_batch_duplicates += 1
            if not _same(first, record):
                in_batch_conflicts += 1
                self._conflict(record)
        rows = [
            {
                "device_id": r.device_id,
                "seq": r.seq,
                "sent_at_ms": r.sent_at_ms,
                "received_at_ms": now,
                "kind": r.kind,
                "body": _body_text(r.body),
            }
            for r in sorted(unique.values(), key=lambda r: (r.device_id, r.seq))
        ]
        table = cast(Table, PumpEventRow.__table__)
        inserted: set[tuple[str, int]] = set()
        for start in range(0, len(rows), _CHUNK):
            returned = insert_rows_ignoring_conflicts(
                self._session,
                table,
                rows[start : start + _CHUNK],
                ["device_id", "seq"],
                returning=("device_id", "seq"),
            )
            inserted.update((str(d), int(s)) for d, s in returned)
        resent = [r for k, r in unique.items() if k not in inserted]
        conflicts = self._check_resent(resent)
        self._update_status([unique[k] for k in inserted], {r.device_id for r in admitted}, now)
        return IngestResult(
            accepted=len(inserted),
            duplicates=len(resent) + in_batch_duplicates,
            conflicts=conflicts + in_batch_conflicts,
            rejected=tuple(rejected),
            stored=tuple(unique[k] for k in sorted(inserted)),
        )

    def _check_resent(self, resent: list[EventRecord]) -> int:
        conflicts = 0
        for start in range(0, len(resent), _CHUNK):
            chunk = resent[start : start + _CHUNK]
            stored = {
                (d, s): (sent, kind, body)
                for d, s, sent, kind, body in self._session.execute(
                    select(
                        PumpEventRow.device_id,
                        PumpEventRow.seq,
                        PumpEventRow.sent_at_ms,
                        PumpEventRow.kind,
                        PumpEventRow.body,
                    ).where(
                        in_values(
                            self._session, PumpEventRow.device_id, {r.device_id for r in chunk}
                        ),
                        in_values(self._session, PumpEventRow.seq, {r.seq for r in chunk}),
                    )
                )
            }
            for record in chunk:
                if stored.get((record.device_id, record.seq)) != _content(record):
                    conflicts += 1
                    self._conflict(record)
        return conflicts

    def _conflict(self, record: EventRecord) -> None:
        self._ctx.emit(
            ServerEventCode.INGEST_SEQUENCE_CONFLICT,
            Severity.HIGH,
            f"{record.device_id} resent event {record.seq} with different content; "
            "the first copy is kept",
            device_id=record.device_id,
            attributes={"seq": str(record.seq)},
        )

    def _update_status(self, new: list[EventRecord], seen: set[str], now: int) -> None:
        """A few set-wise statements per batch, whatever its number of pumps.

        Rows are locked in device order first, so two workers whose batches share pumps
        wait for each other instead of deadlocking; a status update applies only when it is
        newer than the stored one, checked in its own WHERE clause.
        """
        if not seen:
            return
        newest: dict[str, EventRecord] = {}
        connection: dict[str, EventRecord] = {}
        for record in new:
            if record.kind == STATUS_KIND:
                target = newest
            elif record.kind == CONNECTION_KIND:
                target = connection
            else:
                continue
            best = target.get(record.device_id)
            if best is None or (record.sent_at_ms, record.seq) > (best.sent_at_ms, best.seq):
                target[record.device_id] = record
        devices = sorted(seen)
        table = cast(Table, PumpStatusRow.__table__)
        connection_ = self._session.connection()
        insert_rows_ignoring_conflicts(
            self._session,
            table,
            [
                {
                    "device_id": device,
                    "connected": False,
                    "state": "unknown",
                    "status_sent_at_ms": 0,
                    "last_seen_ms": 0,
                }
                for device in devices
            ],
            ["device_id"],
        )
        for start in range(0, len(devices), _CHUNK):
            chunk = devices[start : start + _CHUNK]
            connection_.execute(
                select(table.c.device_id)
                .where(in_values(self._session, table.c.device_id, chunk))
                .order_by(table.c.device_id)
                .with_for_update()
            ).all()
            connection_.execute(
                update(table)
                .where(in_values(self._session, table.c.device_id, chunk))
                .values(
                    connected=True,
                    last_seen_ms=case(
                        (table.c.last_seen_ms < now, now), else_=table.c.last_seen_ms
                    ),
                )
            )
        gone = sorted(d for d, r in connection.items() if r.body.get("connected") is False)
        if gone:
            connection_.execute(
                update(table)
                .where(in_values(self._session, table.c.device_id, gone))
                .values(connected=False)
            )
        if newest:
            reports = []
            for device in sorted(newest):
                record = newest[device]
                report = StatusReport.from_body(record.body)
                reports.append(
                    {
                        "b_device": device,
                        "b_sent": record.sent_at_ms,
                        "state": report.state,
                        "programme": report.programme,
                        "battery_pct": report.battery_pct,
                        "firmware_version": report.firmware_version,
                        "library_version": report.library_version,
                        "status_sent_at_ms": record.sent_at_ms,
                    }
                )
            connection_.execute(
                update(table)
                .where(
                    table.c.device_id == bindparam("b_device"),
                    table.c.status_sent_at_ms <= bindparam("b_sent"),
                )
                .values(
                    state=bindparam("state"),
                    programme=bindparam("programme"),
                    battery_pct=bindparam("battery_pct"),
                    firmware_version=bindparam("firmware_version"),
                    library_version=bindparam("library_version"),
                    status_sent_at_ms=bindparam("status_sent_at_ms"),
                ),
                reports,
            )

    def _view(self, row: PumpStatusRow, asset_state: str | None, now: int) -> PumpStatusView:
        online = (
            row.connected and now - row.last_seen_ms <= self._ctx.settings.pump_offline_after_ms
        )
        return PumpStatusView(
            device_id=row.device_id,
            online=online,
            connected=row.connected,
            state=row.state,
            programme=row.programme,
            battery_pct=row.battery_pct,
            firmware_version=row.firmware_version,
            library_version=row.library_version,
            last_seen_ms=row.last_seen_ms,
            asset_state=AssetState(asset_state) if asset_state else None,
        )

    def statuses(self) -> list[PumpStatusView]:
        now = self._ctx.clock.now_ms()
        query = (
            select(PumpStatusRow, AssetRow.state)
            .outerjoin(AssetRow, AssetRow.ident == PumpStatusRow.device_id)
            .order_by(PumpStatusRow.device_id)
        )
        return [self._view(row, state, now) for row, state in self._session.execute(query)]

    def status(self, device_id: str) -> PumpStatusView:
        if not _DEVICE.fullmatch(device_id):  # cannot exist; PostgreSQL refuses NUL in a query
            raise NotFound(f"no status reported by {device_id!r}")
        now = self._ctx.clock.now_ms()
        found = self._session.execute(
            select(PumpStatusRow, AssetRow.state)
            .outerjoin(AssetRow, AssetRow.ident == PumpStatusRow.device_id)
            .where(PumpStatusRow.device_id == device_id)
        ).first()
        if found is None:
            raise NotFound(f"no status reported by {device_id!r}")
        return self._view(found[0], found[1], now)

    def events(
        self,
        device_id: str | None = None,
        kind: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[StoredEvent]:
        """Stored events in arrival order, paged by id (pass the last id seen as ``after_id``)."""
        if (device_id is not None and not _DEVICE.fullmatch(device_id)) or (
            kind is not None and not _KIND.fullmatch(kind)
        ):
            return []
        query = (
            select(PumpEventRow)
            .where(PumpEventRow.id > after_id)
            .order_by(PumpEventRow.id)
            .limit(limit)
        )
        if device_id is not None:
            query = query.where(PumpEventRow.device_id == device_id)
        if kind is not None:
            query = query.where(PumpEventRow.kind == kind)
        return [
            StoredEvent(
                id=r.id,
                device_id=r.device_id,
                seq=r.seq,
                sent_at_ms=r.sent_at_ms,
                received_at_ms=r.received_at_ms,
                kind=r.kind,
                body=json.loads(r.body),
            )
            for r in self._session.scalars(query)
        ]
