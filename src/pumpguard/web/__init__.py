"""The dashboard: server-rendered pages over the pump server's own services.

``add_dashboard(app)`` adds it to the FastAPI app of ``server.api.create_app``; ``pumpguard up``
does so on its HTTPS listener, at ``/``. Pages obey ``server.authz`` exactly as the REST API
does, need no JavaScript, and ship their template and stylesheet inside this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from pumpguard.web._routes import router

__all__ = ["EXAMPLE_INVENTORY", "DashboardOptions", "add_dashboard"]

EXAMPLE_INVENTORY = Path(__file__).resolve().parents[3] / "examples" / "inventory.csv"
"""The repository's example pump inventory; absent from an installed wheel."""


@dataclass(frozen=True, slots=True)
class DashboardOptions:
    risk_inventory: Path | None = EXAMPLE_INVENTORY if EXAMPLE_INVENTORY.is_file() else None
    """The inventory the risk page assesses (CSV or JSON, as ``pumpguard risk assess``)."""


def add_dashboard(app: FastAPI, options: DashboardOptions | None = None) -> None:
    app.state.dashboard = options or DashboardOptions()
    app.include_router(router)
