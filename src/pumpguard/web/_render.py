"""Templates, filters and the headers every dashboard page carries."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

__all__ = ["SECURITY_HEADERS", "render", "stylesheet"]

# No script may run: the read views are plain HTML and forms, and a CSP without script-src
# turns any injected markup into inert text even if escaping were ever missed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _when(ms: int | None) -> str:
    if ms is None or ms <= 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _svg(markup: str) -> Markup:
    """SVG built by ``_charts`` from escaped parts only."""
    return Markup(markup)


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pumpguard.web", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["svg"] = _svg
    return env


def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    body = _environment().get_template(template).render(**values)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


@cache
def stylesheet() -> str:
    return resources.files("pumpguard.web").joinpath("static/dashboard.css").read_text("utf-8")
