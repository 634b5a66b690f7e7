"""The pump server's HTTP API (``/api/v1``)."""

from __future__ import annotations

from pumpguard.server.api.app import ROUTERS, create_app
from pumpguard.server.api.deps import endpoint_permissions

__all__ = ["ROUTERS", "create_app", "endpoint_permissions"]
