"""The pump server's HTTP API (``/api/v1``)."""

from __future__ import annotations

from pumpguard.server.api.app import create_app
from pumpguard.server.api.deps import endpoint_permissions

__all__ = ["create_app", "endpoint_permissions"]
