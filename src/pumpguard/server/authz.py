"""Roles and what each may do: the one table every endpoint's authorisation comes from.

Least privilege: each endpoint requires exactly one ``Permission`` and each role holds only the
permissions its job needs, so the role x endpoint matrix can be generated from this table and
the routes (``tests/server/test_http_api.py``). Administrators manage accounts and
read the audit log; they do not move pumps through their life cycle (biomedical engineering
does), so one stolen admin session cannot also decommission the fleet. Launching attacks at
the live system (``attacks.launch``) is the security analyst's alone: it locks accounts and
raises alerts, so it is not folded into any broader permission.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = ["ROLE_PERMISSIONS", "Permission", "Role", "role_allows"]


class Role(StrEnum):
    NURSE = "nurse"
    PHARMACIST = "pharmacist"
    PHARMACY_APPROVER = "pharmacy_approver"
    BIOMED = "biomed"
    SECURITY_ANALYST = "security_analyst"
    ADMIN = "admin"


class Permission(StrEnum):
    OWN_SESSION = "own-session"
    PUMPS_READ = "pumps.read"
    EVENTS_READ = "events.read"
    ASSETS_READ = "assets.read"
    ASSETS_MANAGE = "assets.manage"
    USERS_READ = "users.read"
    USERS_MANAGE = "users.manage"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    LIBRARY_READ = "library.read"
    LIBRARY_DRAFT = "library.draft"
    LIBRARY_APPROVE = "library.approve"
    LIBRARY_DEPLOY = "library.deploy"
    ALERTS_READ = "alerts.read"
    ALERTS_MANAGE = "alerts.manage"
    ORDERS_READ = "orders.read"
    RISK_READ = "risk.read"
    ATTACKS_LAUNCH = "attacks.launch"


_EVERYONE = frozenset({Permission.OWN_SESSION, Permission.PUMPS_READ, Permission.LIBRARY_READ})
_CLINICAL = frozenset({Permission.ORDERS_READ})

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.NURSE: _EVERYONE | _CLINICAL,
        Role.PHARMACIST: _EVERYONE | _CLINICAL | {Permission.LIBRARY_DRAFT},
        Role.PHARMACY_APPROVER: _EVERYONE | _CLINICAL | {Permission.LIBRARY_APPROVE},
        Role.BIOMED: _EVERYONE
        | {
            Permission.EVENTS_READ,
            Permission.ASSETS_READ,
            Permission.ASSETS_MANAGE,
            Permission.LIBRARY_DEPLOY,
            Permission.ALERTS_READ,
            Permission.RISK_READ,
        },
        Role.SECURITY_ANALYST: _EVERYONE
        | {
            Permission.EVENTS_READ,
            Permission.ASSETS_READ,
            Permission.USERS_READ,
            Permission.AUDIT_READ,
            Permission.AUDIT_VERIFY,
            Permission.ALERTS_READ,
            Permission.ALERTS_MANAGE,
            Permission.RISK_READ,
            Permission.ATTACKS_LAUNCH,
        },
        Role.ADMIN: _EVERYONE
        | {
            Permission.ASSETS_READ,
            Permission.USERS_READ,
            Permission.USERS_MANAGE,
            Permission.AUDIT_READ,
            Permission.AUDIT_VERIFY,
            Permission.ALERTS_READ,
            Permission.RISK_READ,
        },
    }
)


def role_allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
