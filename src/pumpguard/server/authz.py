"""Roles and what each may do: the one table every endpoint's authorisation comes from.

Least privilege: each endpoint requires exactly one ``Permission`` and each role holds only the
permissions its job needs, so the role x endpoint matrix can be generated from this table and
the routes (``tests/server/test_authorisation_matrix.py``). Administrators manage accounts and
read the audit log; they do not move pumps through their life cycle (biomedical engineering
does), so one stolen admin session cannot also decommission the fleet.
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


_EVERYONE = frozenset({Permission.OWN_SESSION, Permission.PUMPS_READ})

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.NURSE: _EVERYONE,
        Role.PHARMACIST: _EVERYONE,
        Role.PHARMACY_APPROVER: _EVERYONE,
        Role.BIOMED: _EVERYONE
        | {Permission.EVENTS_READ, Permission.ASSETS_READ, Permission.ASSETS_MANAGE},
        Role.SECURITY_ANALYST: _EVERYONE
        | {
            Permission.EVENTS_READ,
            Permission.ASSETS_READ,
            Permission.USERS_READ,
            Permission.AUDIT_READ,
            Permission.AUDIT_VERIFY,
        },
        Role.ADMIN: _EVERYONE
        | {
            Permission.ASSETS_READ,
            Permission.USERS_READ,
            Permission.USERS_MANAGE,
            Permission.AUDIT_READ,
            Permission.AUDIT_VERIFY,
        },
    }
)


def role_allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
