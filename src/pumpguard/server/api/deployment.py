"""Drug library and firmware publication, roll-out and fleet compliance endpoints.

Publishing here only completes what two drug-library key holders signed
(``pumpguard updates sign``): the server holds the online snapshot and timestamp keys and
nothing else, so a stolen biomed session can roll out or halt what is signed, never sign.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from pumpguard.server.api.deps import DbSession, Require, store_of
from pumpguard.server.assets import AssetKind, AssetService
from pumpguard.server.audit import AuditAction
from pumpguard.server.authz import Permission
from pumpguard.server.errors import InvalidInput, NotFound
from pumpguard.server.ingest import IngestService
from pumpguard.server.library_distribution import (
    DistributionError,
    FleetCompliance,
    LibraryDistribution,
    RolloutSnapshot,
)
from pumpguard.server.lifecycle import AssetState
from pumpguard.server.users import Principal
from pumpguard.updates import (
    NothingPendingError,
    RepositoryError,
    RolloutPlan,
    RolloutPlanError,
    TargetDescription,
    UpdateKind,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["deployment"])

LibraryReader = Annotated[Principal, Depends(Require(Permission.LIBRARY_READ))]
LibraryDeployer = Annotated[Principal, Depends(Require(Permission.LIBRARY_DEPLOY))]

_PUMP_KINDS = (AssetKind.LVP, AssetKind.SYRINGE, AssetKind.PCA)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetOut(BaseModel):
    path: str
    name: str
    version: int
    length: int
    sha256: str


class PendingOut(BaseModel):
    target: TargetOut
    threshold: int
    signatures: int


class ReleasesOut(BaseModel):
    published: list[TargetOut]
    pending: PendingOut | None


class RolloutIn(_In):
    canary_share: float = Field(0.05, gt=0, lt=1, strict=True)
    pumps: list[str] | None = Field(None, max_length=100_000)
    success_share: float = Field(0.25, gt=0, le=1, strict=True)
    min_observation_s: int = Field(600, ge=0, le=7 * 86_400, strict=True)
    soak_s: int = Field(1800, ge=0, le=30 * 86_400, strict=True)


class HaltIn(_In):
    reason: str = Field(min_length=1, max_length=500, strict=True)


class RolloutPumpOut(BaseModel):
    pump_id: str
    wave: int
    state: str
    failure: str | None
    detail: str
    applied_ms: int | None
    lag: str | None


class RolloutOut(BaseModel):
    target: str
    version: int
    phase: str
    started_ms: int | None
    halt_reason: str | None
    waves: list[list[str]]
    pumps: list[RolloutPumpOut]


class PumpComplianceOut(BaseModel):
    pump_id: str
    library_version: str | None
    firmware_version: str | None = None
    online: bool
    state: str
    on_current: bool
    lag: str | None
    detail: str


class ComplianceOut(BaseModel):
    library: str | None
    version: int | None
    at_ms: int
    pumps: int
    on_current: int
    share_on_current: float
    lagging_by_reason: dict[str, int]
    rollout_phase: str | None
    time_to_coverage_ms: dict[str, int | None]
    laggards: list[PumpComplianceOut]


def _distribution(request: Request) -> LibraryDistribution:
    found = getattr(request.app.state, "distribution", None)
    if not isinstance(found, LibraryDistribution):
        raise NotFound("this server process hosts no update repository (`pumpguard up` does)")
    return found


def _firmware(request: Request) -> LibraryDistribution:
    """The firmware half of distribution: same repository and listener, its own roll-out."""
    found = _distribution(request).firmware
    if found is None:
        raise NotFound("this server process distributes no firmware")
    return found


_AUDIT = {
    UpdateKind.DRUG_LIBRARY: (
        "library",
        AuditAction.LIBRARY_PUBLISHED,
        AuditAction.LIBRARY_ROLLOUT_STARTED,
        AuditAction.LIBRARY_ROLLOUT_HALTED,
    ),
    UpdateKind.FIRMWARE: (
        "firmware",
        AuditAction.FIRMWARE_PUBLISHED,
        AuditAction.FIRMWARE_ROLLOUT_STARTED,
        AuditAction.FIRMWARE_ROLLOUT_HALTED,
    ),
}
"""Per kind: the audit subject's prefix and the publish, start and halt actions."""


def _target(t: TargetDescription) -> TargetOut:
    return TargetOut(path=t.path, name=t.name, version=t.version, length=t.length, sha256=t.sha256)


def _rollout(s: RolloutSnapshot) -> RolloutOut:
    return RolloutOut(
        target=s.target,
        version=s.version,
        phase=s.phase,
        started_ms=s.started_ms,
        halt_reason=s.halt_reason,
        waves=[list(w) for w in s.waves],
        pumps=[
            RolloutPumpOut(
                pump_id=p.pump_id,
                wave=p.wave,
                state=p.state.value,
                failure=p.failure.value if p.failure is not None else None,
                detail=p.detail,
                applied_ms=p.applied_ms,
                lag=p.lag.value if p.lag is not None else None,
            )
            for p in s.pumps
        ],
    )


def compliance_out(c: FleetCompliance) -> ComplianceOut:
    """The compliance body; ``pumpguard library status --json`` prints the same shape."""
    return ComplianceOut(
        library=c.library,
        version=c.version,
        at_ms=c.at_ms,
        pumps=len(c.pumps),
        on_current=c.on_current,
        share_on_current=c.share_on_current,
        lagging_by_reason=c.by_reason(),
        rollout_phase=c.rollout_phase,
        time_to_coverage_ms=c.time_to_coverage_ms,
        laggards=[
            PumpComplianceOut(
                pump_id=p.pump_id,
                library_version=p.library_version,
                firmware_version=p.firmware_version,
                online=p.online,
                state=p.state,
                on_current=p.on_current,
                lag=p.lag.value if p.lag is not None else None,
                detail=p.detail,
            )
            for p in c.laggards()
        ],
    )


@router.get("/deployment/releases")
def list_releases(request: Request, _me: LibraryReader) -> ReleasesOut:
    return _releases(_distribution(request))


@router.get("/deployment/firmware/releases")
def list_firmware_releases(request: Request, _me: LibraryReader) -> ReleasesOut:
    """Published firmware images and the one waiting for its two firmware signatures."""
    return _releases(_firmware(request))


def _releases(distribution: LibraryDistribution) -> ReleasesOut:
    pending = distribution.pending()
    return ReleasesOut(
        published=[_target(t) for t in distribution.repository.published(distribution.kind)],
        pending=(
            None
            if pending is None
            else PendingOut(
                target=_target(pending.target),
                threshold=pending.threshold,
                signatures=len(pending.signed_by),
            )
        ),
    )


@router.post("/deployment/releases/publish")
def publish_release(request: Request, session: DbSession, me: LibraryDeployer) -> TargetOut:
    """Publish the library waiting for signatures, if its key holders' threshold is met."""
    return _publish(_distribution(request), request, session, me)


@router.post("/deployment/firmware/releases/publish")
def publish_firmware(request: Request, session: DbSession, me: LibraryDeployer) -> TargetOut:
    """Publish the firmware image waiting for signatures, if both key holders signed."""
    return _publish(_firmware(request), request, session, me)


def _publish(
    distribution: LibraryDistribution, request: Request, session: DbSession, me: Principal
) -> TargetOut:
    try:
        target = distribution.publish()
    except NothingPendingError as exc:
        raise NotFound(str(exc)) from None
    except RepositoryError as exc:
        raise InvalidInput(str(exc)) from None
    prefix, published, _, _ = _AUDIT[distribution.kind]
    store_of(request).ctx.audit(session).append(
        published,
        me.username,
        f"{prefix}:{target.name}:{target.version}",
        {"target": target.path, "sha256": target.sha256},
    )
    return _target(target)


@router.post("/deployment/rollouts")
def start_rollout(
    body: RolloutIn, request: Request, session: DbSession, me: LibraryDeployer
) -> RolloutOut:
    """Roll the newest published library out: the canary share of the pumps first."""
    return _start(_distribution(request), body, request, session, me)


@router.post("/deployment/firmware/rollouts")
def start_firmware_rollout(
    body: RolloutIn, request: Request, session: DbSession, me: LibraryDeployer
) -> RolloutOut:
    """Roll the newest published firmware out (``install-firmware``): canary first, then the
    rest; a pump whose image fails its self-test rolls back and halts the roll-out."""
    return _start(_firmware(request), body, request, session, me)


def _start(
    distribution: LibraryDistribution,
    body: RolloutIn,
    request: Request,
    session: DbSession,
    me: Principal,
) -> RolloutOut:
    in_service = [
        a.ident
        for a in AssetService(session, store_of(request).ctx).list_assets(AssetState.IN_SERVICE)
        if a.kind in _PUMP_KINDS
    ]
    pumps = in_service if body.pumps is None else body.pumps
    unknown = sorted(set(pumps) - set(in_service))
    if unknown:
        raise InvalidInput(f"not pumps in service: {', '.join(unknown[:10])}")
    try:
        plan = RolloutPlan(
            wave_shares=(body.canary_share,),
            success_share=body.success_share,
            min_observation_ms=body.min_observation_s * 1000,
            soak_ms=body.soak_s * 1000,
        )
    except RolloutPlanError as exc:
        raise InvalidInput(str(exc)) from None
    try:
        snapshot = distribution.start_rollout(pumps, plan)
    except DistributionError as exc:
        raise InvalidInput(str(exc)) from None
    prefix, _, started, _ = _AUDIT[distribution.kind]
    store_of(request).ctx.audit(session).append(
        started,
        me.username,
        f"{prefix}:{snapshot.target}",
        {"pumps": len(pumps), "canary_share": str(body.canary_share)},
    )
    return _rollout(snapshot)


@router.get("/deployment/rollouts/current")
def current_rollout(request: Request, _me: LibraryReader) -> RolloutOut:
    snapshot = _distribution(request).snapshot()
    if snapshot is None:
        raise NotFound("no roll-out has been started")
    return _rollout(snapshot)


@router.get("/deployment/firmware/rollouts/current")
def current_firmware_rollout(request: Request, _me: LibraryReader) -> RolloutOut:
    snapshot = _firmware(request).snapshot()
    if snapshot is None:
        raise NotFound("no firmware roll-out has been started")
    return _rollout(snapshot)


@router.post("/deployment/rollouts/current/halt")
def halt_rollout(
    body: HaltIn, request: Request, session: DbSession, me: LibraryDeployer
) -> RolloutOut:
    """Stop further waves; pumps already running the release keep it."""
    return _halt(_distribution(request), body, request, session, me)


@router.post("/deployment/firmware/rollouts/current/halt")
def halt_firmware_rollout(
    body: HaltIn, request: Request, session: DbSession, me: LibraryDeployer
) -> RolloutOut:
    """Stop further firmware waves; pumps already running the image keep it."""
    return _halt(_firmware(request), body, request, session, me)


def _halt(
    distribution: LibraryDistribution,
    body: HaltIn,
    request: Request,
    session: DbSession,
    me: Principal,
) -> RolloutOut:
    try:
        snapshot = distribution.halt(body.reason)
    except DistributionError as exc:
        raise InvalidInput(str(exc)) from None
    prefix, _, _, halted = _AUDIT[distribution.kind]
    store_of(request).ctx.audit(session).append(
        halted,
        me.username,
        f"{prefix}:{snapshot.target}",
        {"reason": body.reason},
    )
    return _rollout(snapshot)


@router.get("/deployment/compliance")
def compliance(request: Request, session: DbSession, _me: LibraryReader) -> ComplianceOut:
    """Share of pumps on the newest library, each laggard with its reason, time to coverage."""
    distribution = _distribution(request)
    statuses = IngestService(session, store_of(request).ctx).statuses()
    return compliance_out(distribution.compliance(statuses))


@router.get("/deployment/firmware/compliance")
def firmware_compliance(request: Request, session: DbSession, _me: LibraryReader) -> ComplianceOut:
    """Share of pumps running the newest firmware image, each laggard with its reason (a
    rollback shows as ``self-test-failed``), time to coverage."""
    distribution = _firmware(request)
    statuses = IngestService(session, store_of(request).ctx).statuses()
    return compliance_out(distribution.compliance(statuses))
