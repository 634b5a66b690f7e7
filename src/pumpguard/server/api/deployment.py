"""Drug library and firmware publication, roll-out and fleet compliance endpoints."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
