"""Charts as inline SVG rendered on the server: no chart library ships its JavaScript in a wheel
here, and the read views must work without scripts. Every text is escaped where it is placed."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["bar_chart", "heat_map"]

_ROW = 22
_LABEL_W = 150
_BAR_W = 320


def bar_chart(title: str, items: Sequence[tuple[str, int]]) -> str:
    """Horizontal bars, one per (label, count), with the count written after each bar."""
    height = max(1, len(items)) * _ROW + 8
    top = max((count for _, count in items), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {_LABEL_W + _BAR_W + 60} {height}" '
        f'width="{_LABEL_W + _BAR_W + 60}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, count) in enumerate(items):
        y = 4 + index * _ROW
        width = round(_BAR_W * count / top)
        parts.append(
            f'<text x="{_LABEL_W - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{_LABEL_W}" y="{y + 3}" width="{width}" height="{_ROW - 8}" '
            f'class="bar"></rect>'
            f'<text x="{_LABEL_W + width + 6}" y="{y + 15}">{count}</text>'
        )
    if not items:
        parts.append(f'<text x="4" y="18">{escape("nothing to show")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def heat_map(title: str, cells: Sequence[Sequence[int]]) -> str:
    """A likelihood (rows, 5 at the top) by impact (columns) grid of risk counts."""
    size = 44
    origin_x, origin_y = 90, 10
    bands = len(cells)
    width = origin_x + size * bands + 10
    height = origin_y + size * bands + 40
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    for likelihood in range(bands, 0, -1):
        row = bands - likelihood
        y = origin_y + row * size
        parts.append(f'<text x="{origin_x - 8}" y="{y + 27}" text-anchor="end">{likelihood}</text>')
        for impact in range(1, bands + 1):
            x = origin_x + (impact - 1) * size
            count = cells[likelihood - 1][impact - 1]
            level = min(4, (likelihood + impact - 2) // 2)
            parts.append(
                f'<rect x="{x}" y="{y}" width="{size - 2}" height="{size - 2}" '
                f'class="heat heat-{level}"></rect>'
                f'<text x="{x + size // 2 - 1}" y="{y + 27}" text-anchor="middle">'
                f"{count or ''}</text>"
            )
    axis_y = origin_y + bands * size + 16
    for impact in range(1, bands + 1):
        x = origin_x + (impact - 1) * size + size // 2 - 1
        parts.append(f'<text x="{x}" y="{axis_y}" text-anchor="middle">{impact}</text>')
    parts.append(
        f'<text x="{origin_x}" y="{axis_y + 18}">impact &#8594;</text>'
        f'<text x="4" y="{origin_y + 14}">likelihood</text></svg>'
    )
    return "".join(parts)
