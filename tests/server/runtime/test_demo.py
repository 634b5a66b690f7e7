"""``pumpguard up --demo``: the ward the issue describes, over real mTLS MQTT."""

from __future__ import annotations

import json
from pathlib import Path

from tests.server.runtime.support import run, running_stack, wait_stored

from pumpguard.server import AssetService, AssetState, IngestService, Role, UserService
from pumpguard.server.demo import DEMO_ADMIN, DEMO_ANALYST, demo_beds


def test_the_demo_ward_layout() -> None:
    beds = demo_beds()
    assert [b.pump for b in beds] == [f"PUMP-{n:04d}" for n in range(1, 25)]
    assert {b.care_area for b in beds[:8]} == {"ICU"}
    assert {b.care_area for b in beds[8:16]} == {"Med-Surg"}
    assert {b.care_area for b in beds[16:]} == {"Oncology"}
    assert [b.mrn for b in beds] == [str(100000 + n) for n in range(1, 25)]
    assert [b.busy for b in beds[:5]] == [False, False, False, False, True]


def test_the_demo_ward_reports_through_the_broker(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        async with running_stack(data_dir, None, demo=True) as stack:
            ward = stack.demo
            assert ward is not None and ward.admin is not None
            assert ward.admin.username == DEMO_ADMIN and ward.admin.totp_uri.startswith("otpauth")
            for bed in ward.beds:  # power-on, self-test, care-area, first status
                await wait_stored(stack, bed.pump, 4)
            with stack.store.transaction() as session:
                assets = AssetService(session, stack.store.ctx).list_assets()
                statuses = IngestService(session, stack.store.ctx).statuses()
                users = UserService(session, stack.store.ctx).list_users()
            assert {a.ident: (a.state, a.location) for a in assets} == {
                b.pump: (AssetState.IN_SERVICE, b.care_area) for b in ward.beds
            }
            assert len(statuses) == 24 and all(s.connected for s in statuses)
            assert sorted((u.username, u.role) for u in users) == [
                (DEMO_ADMIN, Role.ADMIN),
                (DEMO_ANALYST, Role.SECURITY_ANALYST),
            ]
            assert ward.analyst is not None and ward.analyst.username == DEMO_ANALYST
            roster = json.loads(ward.roster.read_text())
            assert roster["beds"][0] == {
                "pump": "PUMP-0001",
                "care_area": "ICU",
                "mrn": "100001",
                "busy": False,
            }
        async with running_stack(data_dir, None, demo=True) as again:
            assert again.demo is not None  # each account is created once
            assert again.demo.admin is None and again.demo.analyst is None

    run(scenario(), timeout_s=180)
