"""Our detection rules as Sigma rules, so a hospital SIEM can run them without pumpguard.

A rule becomes one Sigma detection rule over the OCSF records we export (field
``metadata.event_code``, product ``pumpguard``, service = the component); a rule with a
threshold adds a Sigma ``event_count`` correlation rule grouped by ``device.uid`` or
``src_endpoint.name``. Ids are UUIDv5 of the rule id, so regenerating never changes them.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from pumpguard.monitor.rules import GroupBy, Rule
from pumpguard.security_events import Severity

__all__ = ["RULESET_DATE", "rule_to_sigma", "sigma_filename", "write_sigma_rules"]

RULESET_DATE = "2026-11-21"
"""When the rule set was first published (Sigma ``date``); ``modified`` follows changes."""

_NAMESPACE = uuid.UUID("6f1c7c52-3f55-5a7e-9d1e-70756d706775")
_LEVEL = {
    Severity.INFORMATIONAL: "informational",
    Severity.LOW: "low",
    Severity.MEDIUM: "medium",
    Severity.HIGH: "high",
    Severity.CRITICAL: "critical",
}
_GROUP_FIELD = {GroupBy.DEVICE: "device.uid", GroupBy.PEER: "src_endpoint.name"}


def _name(rule: Rule) -> str:
    return rule.rule_id.lower().replace("-", "_")


def rule_to_sigma(rule: Rule) -> str:
    """The Sigma YAML document(s) for one rule."""
    base: dict[str, Any] = {
        "title": rule.title,
        "id": str(uuid.uuid5(_NAMESPACE, rule.rule_id)),
        "name": _name(rule),
        "status": "experimental",
        "description": " ".join(rule.rationale.split()),
        "author": "pumpguard",
        "date": RULESET_DATE,
        "logsource": {"product": "pumpguard", "service": str(rule.component)},
        "detection": {
            "selection": {"metadata.event_code": sorted(rule.codes)},
            "condition": "selection",
        },
        "level": _LEVEL[rule.severity],
    }
    if rule.references:
        base["references"] = list(rule.references)
    if rule.technique is not None:
        base["tags"] = [f"attack.{rule.technique.lower()}"]
    documents = [base]
    if rule.threshold > 1:
        correlation: dict[str, Any] = {
            "type": "event_count",
            "rules": [_name(rule)],
            "timespan": f"{max(1, rule.window_ms // 1000)}s",
            "condition": {"gte": rule.threshold},
        }
        if rule.group_by in _GROUP_FIELD:
            correlation["group-by"] = [_GROUP_FIELD[rule.group_by]]
        documents.append(
            {
                "title": f"{rule.title} (at least {rule.threshold})",
                "id": str(uuid.uuid5(_NAMESPACE, rule.rule_id + "/threshold")),
                "status": "experimental",
                "author": "pumpguard",
                "date": RULESET_DATE,
                "correlation": correlation,
                "level": _LEVEL[rule.severity],
            }
        )
    return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True)


def sigma_filename(rule: Rule) -> str:
    return f"{_name(rule)}.yml"


def write_sigma_rules(rules: tuple[Rule, ...], directory: Path) -> list[Path]:
    """Write one file per rule; files of rules that no longer exist are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {sigma_filename(r): rule_to_sigma(r) for r in rules}
    for stale in directory.glob("pg_*.yml"):
        if stale.name not in wanted:
            stale.unlink()
    written = []
    for name, text in sorted(wanted.items()):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
