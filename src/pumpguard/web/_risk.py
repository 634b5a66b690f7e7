"""The risk page: the risk register of the configured inventory, as ``pumpguard risk assess``
builds it (no questionnaire answers: unanswered questions score with the worse answer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from pumpguard.risk import (
    AdvisoryError,
    AnswerSet,
    InventoryError,
    build_register,
    load_catalogue,
    load_controls,
    load_inventory,
    load_knowledge_base,
    load_questionnaires,
    match_inventory,
    register_json,
    render_html,
)
from pumpguard.web._charts import heat_map

__all__ = ["RiskView", "risk_view"]


@dataclass(frozen=True, slots=True)
class RiskView:
    inventory: Path | None
    problem: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    top: tuple[dict[str, Any], ...] = ()
    heat_svg: str = ""
    report_html: str | None = None


def risk_view(app: FastAPI) -> RiskView:
    inventory = app.state.dashboard.risk_inventory
    if inventory is None:
        return RiskView(None, "no inventory is configured (see docs/dashboard.md)")
    try:
        stamp = inventory.stat().st_mtime_ns
    except OSError as exc:
        return RiskView(inventory, f"cannot read the inventory {inventory}: {exc.strerror}")
    return _assess(inventory, stamp)


@lru_cache(maxsize=4)
def _assess(inventory: Path, _stamp: int) -> RiskView:
    try:
        kb = load_knowledge_base()
        catalogue = load_catalogue()
        questionnaires = load_questionnaires()
        controls = load_controls()
    except (AdvisoryError, ValueError) as exc:
        return RiskView(inventory, f"pumpguard's own risk data is invalid: {exc}")
    try:
        parsed = load_inventory(inventory)
    except InventoryError as exc:
        issues = "; ".join(str(i) for i in exc.issues[:5])
        return RiskView(inventory, f"the inventory {exc.source} is invalid: {issues}")
    report = match_inventory(parsed, kb, catalogue)
    register = build_register(report, kb, catalogue, questionnaires, controls, AnswerSet.empty())
    document = register_json(register, kb)
    by_id = {r["id"]: r for r in document["risks"]}
    top = tuple(by_id[r.id] for r in register.top(10) if r.id in by_id)
    return RiskView(
        inventory,
        summary=document["summary"],
        top=top,
        heat_svg=heat_map("Current risks by likelihood and impact", register.heat_map("current")),
        report_html=render_html(register, kb),
    )
