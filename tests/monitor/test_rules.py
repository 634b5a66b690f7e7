from __future__ import annotations

from dataclasses import replace

import pytest

from pumpguard.monitor import Detection, GroupBy, Rule, RuleEngine, RuleError
from pumpguard.monitor.rules import peer_host
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity


def _rule(**kw: object) -> Rule:
    args: dict[str, object] = {
        "rule_id": "PG-LINK-001",
        "title": "Replay on the insulin link",
        "severity": Severity.HIGH,
        "component": Component.LINK,
        "codes": frozenset({"link.replay"}),
        "rationale": "A replayed frame is never an accident.",
        "technique": "T0855",
    }
    args.update(kw)
    return Rule(**args)  # type: ignore[arg-type]


def _event(t: int, code: str = "link.replay", device: str = "PUMP-0001") -> SecurityEvent:
    return SecurityEvent(
        time_ms=t,
        component=Component.LINK,
        code=code,
        severity=Severity.MEDIUM,
        message="replayed frame dropped",
        device_id=device,
        peer="radio-7",
    )


def test_single_event_rule_fires_on_its_code_only() -> None:
    found: list[Detection] = []
    engine = RuleEngine([_rule()], found.append)
    assert isinstance(engine, SecurityEventSink)
    engine.emit(_event(1, code="link.bad_mac"))
    engine.emit(_event(2))
    assert [d.analytic_id for d in found] == ["PG-LINK-001"]
    assert found[0].technique == "T0855"
    assert found[0].device_id == "PUMP-0001"
    assert found[0].evidence[0].time_ms == 2


def test_threshold_counts_per_device_inside_the_window() -> None:
    found: list[Detection] = []
    rule = _rule(threshold=3, window_ms=1_000, codes=frozenset({"link.bad_mac"}))
    engine = RuleEngine([rule], found.append)
    for t in (0, 400, 1_500, 1_700):
        engine.emit(_event(t, code="link.bad_mac"))
    assert found == []
    engine.emit(_event(1_800, code="link.bad_mac", device="PUMP-0002"))
    assert found == []
    engine.emit(_event(1_900, code="link.bad_mac"))
    assert len(found) == 1
    assert "3 events" in found[0].message
    assert len(found[0].evidence) == 3


def test_group_by_peer_counts_across_devices() -> None:
    found: list[Detection] = []
    rule = _rule(threshold=2, window_ms=1_000, group_by=GroupBy.PEER)
    engine = RuleEngine([rule], found.append)
    engine.emit(_event(0, device="PUMP-0001"))
    engine.emit(_event(10, device="PUMP-0002"))
    assert len(found) == 1


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"rule_id": "LINK-1"}, "PG-AREA-NNN"),
        ({"codes": frozenset()}, "no event codes"),
        ({"rationale": " "}, "no rationale"),
        ({"technique": "T59"}, "ATT&CK id"),
        ({"threshold": 0}, "at least 1"),
        ({"threshold": 5}, "positive window"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(RuleError, match=problem):
        _rule(**changes)


def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(RuleError, match="used twice"):
        RuleEngine([_rule(), _rule()], lambda d: None)


def test_group_by_peer_counts_per_host_whatever_the_source_port() -> None:
    """Each TCP connection of one attacker comes from a new port: five probes from one host are
    five from one peer; one probe from each of five hosts is not."""
    found: list[Detection] = []
    rule = _rule(threshold=5, window_ms=60_000, group_by=GroupBy.PEER)
    engine = RuleEngine([rule], found.append)
    for n, peer in enumerate(f"10.0.0.{i}:40000" for i in range(1, 6)):
        engine.emit(replace(_event(n), peer=peer))
    assert found == []
    for n, peer in enumerate(["10.0.0.9:51001", "10.0.0.9:51002", "[fe80::1]:7", "10.0.0.9:9"]):
        engine.emit(replace(_event(100 + n), peer=peer))
    assert found == []
    engine.emit(replace(_event(200), peer="10.0.0.9:51003"))
    engine.emit(replace(_event(201), peer="10.0.0.9:51004"))
    assert len(found) == 1
    assert {e.peer for e in found[0].evidence} >= {"10.0.0.9:51001", "10.0.0.9:51004"}


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("127.0.0.1:59412", "127.0.0.1"),
        ("[::1]:8883", "::1"),
        ("ehr.example:2575", "ehr.example"),
        ("pump:PUMP-0001", "pump:PUMP-0001"),
        ("A1B2C3", "A1B2C3"),
        ("fe80::1", "fe80::1"),
        (None, None),
    ],
)
def test_peer_host(peer: str | None, host: str | None) -> None:
    assert peer_host(peer) == host
