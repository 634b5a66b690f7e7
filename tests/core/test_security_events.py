from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import pytest

from pumpguard.security_events import (
    Component,
    JsonLinesEventFile,
    SecurityEvent,
    SecurityEventLog,
    SecurityEventSink,
    Severity,
)


class _Codes(StrEnum):
    REPLAY = "link.replay"


def _event(code: str = _Codes.REPLAY, time_ms: int = 5) -> SecurityEvent:
    return SecurityEvent(
        time_ms=time_ms,
        component=Component.LINK,
        code=code,
        severity=Severity.HIGH,
        message="replayed frame dropped",
        attributes={"counter": "7"},
    )


def test_log_is_a_sink_and_keeps_order() -> None:
    log = SecurityEventLog()
    assert isinstance(log, SecurityEventSink)
    log.emit(_event(time_ms=1))
    log.emit(_event(code="link.unknown_sender", time_ms=2))
    assert [e.time_ms for e in log] == [1, 2]
    assert len(log.with_code(_Codes.REPLAY)) == 1
    assert log.codes() == {"link.replay", "link.unknown_sender"}


def test_event_attributes_cannot_be_changed_after_emission() -> None:
    source = {"counter": "7"}
    event = SecurityEvent(
        time_ms=0,
        component=Component.LINK,
        code="link.replay",
        severity=Severity.HIGH,
        message="m",
        attributes=source,
    )
    source["counter"] = "8"
    assert event.attributes["counter"] == "7"
    with pytest.raises(TypeError):
        event.attributes["counter"] = "9"  # type: ignore[index]


@pytest.mark.parametrize("code", ["", " link.replay", "link replay"])
def test_bad_codes_are_refused(code: str) -> None:
    with pytest.raises(ValueError, match="dotted identifier"):
        _event(code=code)


def test_negative_time_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        _event(time_ms=-1)


def test_severity_matches_ocsf_ids() -> None:
    assert [s.value for s in Severity] == [1, 2, 3, 4, 5]


def test_json_lines_journal_round_trips_and_names_a_damaged_line(tmp_path: Path) -> None:
    journal = JsonLinesEventFile(tmp_path / "data" / "security-events.jsonl")
    assert journal.read() == []
    first = _event(time_ms=1)
    second = SecurityEvent(
        time_ms=2,
        component=Component.TRANSPORT,
        code="pki.tls.unknown_ca",
        severity=Severity.HIGH,
        message="foreign CA",
        device_id="PUMP-0001",
        peer="127.0.0.1:5555",
    )
    journal.emit(first)
    journal.emit(second)
    assert journal.read() == [first, second]
    with journal.path.open("a", encoding="utf-8") as handle:
        handle.write('{"time_ms": 3}\n')
    with pytest.raises(ValueError, match=r"security-events.jsonl:3"):
        journal.read()
