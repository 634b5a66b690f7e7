"""The asset life cycle of SP 1800-8 as an explicit transition table.

procured -> onboarded (certificate issued) -> in service <-> maintenance, decontamination ->
decommissioned (certificate revoked, stored secrets wiped, history kept). Decommissioned is
final: a pump that comes back is a new asset with a new certificate.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = ["ADMITTED_STATES", "TRANSITIONS", "AssetState", "allowed_from", "is_allowed"]


class AssetState(StrEnum):
    PROCURED = "procured"
    ONBOARDED = "onboarded"
    IN_SERVICE = "in_service"
    MAINTENANCE = "maintenance"
    DECONTAMINATION = "decontamination"
    DECOMMISSIONED = "decommissioned"


_S = AssetState

TRANSITIONS: Mapping[AssetState, frozenset[AssetState]] = MappingProxyType(
    {
        _S.PROCURED: frozenset({_S.ONBOARDED, _S.DECOMMISSIONED}),
        _S.ONBOARDED: frozenset({_S.IN_SERVICE, _S.MAINTENANCE, _S.DECOMMISSIONED}),
        _S.IN_SERVICE: frozenset({_S.MAINTENANCE, _S.DECONTAMINATION}),
        _S.MAINTENANCE: frozenset({_S.IN_SERVICE, _S.DECONTAMINATION}),
        _S.DECONTAMINATION: frozenset({_S.IN_SERVICE, _S.MAINTENANCE, _S.DECOMMISSIONED}),
        _S.DECOMMISSIONED: frozenset(),
    }
)

ADMITTED_STATES: frozenset[AssetState] = frozenset(
    {_S.ONBOARDED, _S.IN_SERVICE, _S.MAINTENANCE, _S.DECONTAMINATION}
)
"""States in which a pump holds a valid certificate and its reports are accepted."""


def allowed_from(state: AssetState) -> tuple[AssetState, ...]:
    return tuple(sorted(TRANSITIONS[state]))


def is_allowed(current: AssetState, target: AssetState) -> bool:
    return target in TRANSITIONS[current]
