"""docs/server.md states the authorisation tables and event codes the code enforces."""

from __future__ import annotations

import re
from pathlib import Path

from pumpguard.server import ROLE_PERMISSIONS, TRANSITIONS, ServerEventCode
from pumpguard.server.api import ROUTERS, endpoint_permissions

DOC = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()


def rows(first_header: str) -> list[list[str]]:
    lines = DOC.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    table = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        table.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return table


def test_role_table_matches_the_code() -> None:
    documented = {role: set(perms.split(", ")) for role, perms in rows("role")}
    assert documented == {r.value: {p.value for p in ps} for r, ps in ROLE_PERMISSIONS.items()}


def test_endpoint_table_matches_the_routes() -> None:
    documented = {(m, p): perm for m, p, perm in rows("method")}
    actual = {
        k: (v.value if v else "(public)")
        for router in ROUTERS
        for k, v in endpoint_permissions(router).items()
    }
    assert documented == actual


def test_transition_table_matches_the_code() -> None:
    documented = {
        state: (set() if allowed == "(final)" else set(allowed.split(", ")))
        for state, allowed in rows("from")
    }
    assert documented == {s.value: {t.value for t in ts} for s, ts in TRANSITIONS.items()}


def test_every_event_code_is_documented() -> None:
    documented = {code for code, _ in rows("code")}
    assert documented == {c.value for c in ServerEventCode}
    assert all(re.fullmatch(r"server\.[a-z_.]+", c) for c in documented)
