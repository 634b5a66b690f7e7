"""Distribution without a network: repository creation and its key split, timestamp upkeep,
the acknowledgement grammar, and compliance from statuses and a roll-out record."""

from __future__ import annotations

import hashlib
import json
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from pumpguard.clinical import parse_library
from pumpguard.clock import MS_PER_HOUR, VirtualClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.security_events import SecurityEventLog
from pumpguard.server.ingest import PumpStatusView
from pumpguard.server.library_authoring import ApprovedLibrary
from pumpguard.server.library_distribution import (
    UPDATES_PASSPHRASE_ENV,
    DistributionError,
    LibraryDistribution,
    RolloutPump,
    RolloutSnapshot,
    fleet_compliance,
    key_holder_passphrase,
    open_repository,
)
from pumpguard.server.lifecycle import AssetState
from pumpguard.server.update_agent import parse_install_ack
from pumpguard.transport import AckOutcome
from pumpguard.updates import (
    ApplyDecision,
    FailureReason,
    LagReason,
    PumpRolloutState,
    SigningRole,
    TargetDescription,
    UpdateKind,
)

_DAY_MS = 24 * MS_PER_HOUR


def test_first_start_creates_the_repository_and_splits_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UPDATES_PASSPHRASE_ENV, raising=False)
    clock = VirtualClock(1_800_000_000_000)
    repository, notices = open_repository(tmp_path, clock, SecurityEventLog())
    assert any("key-holders" in n for n in notices)
    for role in (SigningRole.ROOT, SigningRole.TARGETS, SigningRole.DRUG_LIBRARIES):
        holder = key_holder_passphrase(tmp_path, role.key_name(1))
        assert stat.S_IMODE(holder.stat().st_mode) == 0o600
    for role in (SigningRole.SNAPSHOT, SigningRole.TIMESTAMP):
        assert not key_holder_passphrase(tmp_path, role.key_name(1)).exists()
    assert not any(repository.published_dir.rglob("*.pem"))
    reopened, again = open_repository(tmp_path, clock, SecurityEventLog())
    assert again == []
    assert reopened.versions() == repository.versions()
    (tmp_path / "updates" / "passphrase").unlink()
    with pytest.raises(DistributionError, match="online key passphrase"):
        open_repository(tmp_path, clock, SecurityEventLog())


def test_the_timestamp_is_re_signed_before_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UPDATES_PASSPHRASE_ENV, raising=False)
    clock = VirtualClock(1_800_000_000_000)
    repository, _ = open_repository(tmp_path, clock, SecurityEventLog())
    distribution = LibraryDistribution(tmp_path, repository, clock, SecurityEventLog())
    assert distribution.refresh_if_due() == ()
    expires = repository.expires_ms(SigningRole.TIMESTAMP)
    clock.advance(13 * MS_PER_HOUR)
    assert distribution.refresh_if_due() == ("timestamp",)
    assert repository.expires_ms(SigningRole.TIMESTAMP) == expires + 13 * MS_PER_HOUR
    assert distribution.refresh_if_due() == ()
    clock.advance(4 * _DAY_MS)
    assert distribution.refresh_if_due() == ("snapshot",)
    assert repository.expires_ms(SigningRole.SNAPSHOT) == clock.now_ms() + 7 * _DAY_MS
    assert repository.expires_ms(SigningRole.TIMESTAMP) == clock.now_ms() + _DAY_MS


def test_the_install_acknowledgement_grammar() -> None:
    installed = parse_install_ack(AckOutcome.ACCEPTED, "installed v3")
    assert installed is not None and (installed.version, installed.installed) == (3, True)
    staged = parse_install_ack(AckOutcome.ACCEPTED, "staged v3: wait-programming")
    assert staged is not None and staged.waiting is ApplyDecision.WAIT_PROGRAMMING
    refused = parse_install_ack(
        AckOutcome.REJECTED, "updates.target_hash_mismatch: the target file: hash"
    )
    assert refused is not None and refused.refusal_code == "updates.target_hash_mismatch"
    assert parse_install_ack(AckOutcome.ACCEPTED, "status sent") is None
    assert parse_install_ack(AckOutcome.ACCEPTED, "staged v3: nonsense") is None
    assert parse_install_ack(AckOutcome.EXPIRED, None) is None


def _status(ident: str, version: str, *, online: bool = True) -> PumpStatusView:
    return PumpStatusView(
        ident, online, online, "idle", None, 90, "fw", version, 0, AssetState.IN_SERVICE
    )


def test_compliance_names_why_each_pump_lags() -> None:
    target = TargetDescription(
        "drug-libraries/lib-2.json", UpdateKind.DRUG_LIBRARY, "lib", 2, 10, "ab" * 32
    )
    pumps = (
        RolloutPump("P-1", 0, PumpRolloutState.REPORTED, None, "", 1_500, None),
        RolloutPump(
            "P-2",
            0,
            PumpRolloutState.FAILED,
            FailureReason.VERIFICATION_FAILED,
            "updates.rollback: old",
            None,
            LagReason.VERIFICATION_FAILED,
        ),
        RolloutPump("P-3", 1, PumpRolloutState.WAITING, None, "", None, LagReason.HALTED),
        RolloutPump("P-4", 1, PumpRolloutState.WAITING, None, "", None, LagReason.NOT_RELEASED),
        RolloutPump("P-5", 1, PumpRolloutState.NOTIFIED, None, "", None, LagReason.IN_PROGRESS),
    )
    snapshot = RolloutSnapshot(target.path, 2, "halted", 1_000, "x", (), pumps, 2_000)
    statuses = [
        _status("P-1", "2"),
        _status("P-2", "1"),
        _status("P-3", "1"),
        _status("P-4", "1"),
        _status("P-5", "1", online=False),
        _status("P-6", "1"),
    ]
    compliance = fleet_compliance(target, statuses, snapshot, 3_000)
    assert (compliance.on_current, len(compliance.pumps)) == (1, 6)
    assert {p.pump_id: p.lag for p in compliance.laggards()} == {
        "P-2": LagReason.VERIFICATION_FAILED,
        "P-3": LagReason.HALTED,
        "P-4": LagReason.NOT_RELEASED,
        "P-5": LagReason.OFFLINE,
        "P-6": LagReason.NOT_RELEASED,
    }
    assert compliance.time_to_coverage_ms["t50_ms"] is None  # 1 of 6 is not half
    assert RolloutSnapshot.from_json(snapshot.to_json()) == snapshot
    nothing = fleet_compliance(None, statuses, snapshot, 3_000)
    assert nothing.on_current == 0 and nothing.library is None


def _approved(version: int) -> ApprovedLibrary:
    raw = json.loads(EXAMPLE_LIBRARY.read_text(encoding="utf-8"))
    raw["version"] = version
    data = json.dumps(raw).encode("utf-8")
    library = parse_library(json.loads(data, parse_float=Decimal), "test")
    digest = hashlib.sha256(data).hexdigest()
    return ApprovedLibrary(version, library, data, digest, "approver", 0, ("drafter",))


def test_the_newest_approved_library_waits_for_signatures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UPDATES_PASSPHRASE_ENV, raising=False)
    clock = VirtualClock(1_800_000_000_000)
    repository, _ = open_repository(tmp_path, clock, SecurityEventLog())
    distribution = LibraryDistribution(tmp_path, repository, clock, SecurityEventLog())
    staged = distribution.stage_approved(_approved(2))
    assert staged is not None and (staged.target.version, staged.missing) == (2, 2)
    assert distribution.stage_approved(_approved(2)) is None
    newer = distribution.stage_approved(_approved(3))
    assert newer is not None and newer.target.version == 3
    assert distribution.stage_approved(_approved(2)) is None
    assert distribution.stage_approved(None) is None
