from __future__ import annotations

from pathlib import Path

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.rule import SigmaRule

from pumpguard.monitor import GroupBy, Rule, rule_to_sigma, write_sigma_rules
from pumpguard.security_events import Component, Severity


def _rule(rule_id: str = "PG-LINK-001", **kw: object) -> Rule:
    args: dict[str, object] = {
        "rule_id": rule_id,
        "title": "Replay on the insulin link",
        "severity": Severity.HIGH,
        "component": Component.LINK,
        "codes": frozenset({"link.replay", "link.counter_jump"}),
        "rationale": "A replayed frame is never an accident.",
        "technique": "T0855",
        "references": ("CVE-2018-14781",),
    }
    args.update(kw)
    return Rule(**args)  # type: ignore[arg-type]


def test_a_simple_rule_loads_in_pysigma() -> None:
    collection = SigmaCollection.from_yaml(rule_to_sigma(_rule()))
    (rule,) = collection.rules
    assert isinstance(rule, SigmaRule)
    assert rule.title == "Replay on the insulin link"
    assert str(rule.level) == "high"
    assert [str(t) for t in rule.tags] == ["attack.t0855"]
    values = rule.detection.detections["selection"].detection_items[0].value
    assert sorted(str(v) for v in values) == ["link.counter_jump", "link.replay"]


def test_a_threshold_rule_adds_an_event_count_correlation() -> None:
    rule = _rule(threshold=50, window_ms=60_000, group_by=GroupBy.PEER)
    collection = SigmaCollection.from_yaml(rule_to_sigma(rule))
    collection.resolve_rule_references()
    base, corr = collection.rules
    assert isinstance(base, SigmaRule)
    assert isinstance(corr, SigmaCorrelationRule)
    assert corr.condition.count == 50
    assert corr.group_by == ["src_endpoint.name"]
    assert corr.rules[0].rule is base


def test_ids_are_stable_and_distinct() -> None:
    a = yaml.safe_load(rule_to_sigma(_rule()))
    assert a["id"] == yaml.safe_load(rule_to_sigma(_rule()))["id"]
    assert a["id"] != yaml.safe_load(rule_to_sigma(_rule("PG-LINK-002")))["id"]


def test_writing_rules_removes_stale_files(tmp_path: Path) -> None:
    write_sigma_rules((_rule(), _rule("PG-LINK-002")), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pg_link_001.yml", "pg_link_002.yml"]
    write_sigma_rules((_rule(),), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["pg_link_001.yml"]
