"""Charts as inline SVG strings, for pages that must work without scripts or network: the
dashboard's read views and the self-contained ``lab run`` report.

Chart libraries that ship their JavaScript in the wheel exist (plotly, bokeh), but a chart
drawn in the browser needs a script, and the dashboard's CSP allows none and its read views
must work without one; so the few charts pumpguard draws are rendered in Python as SVG.
Every text is escaped where it is placed; every chart is an ``img`` with a ``<title>`` and an
``aria-label``, and a ``<desc>`` where a sentence says more than the title.
``bar_chart`` and ``heat_map`` take their colours from the page's CSS (``.bar``, ``.heat-N``);
the line and grouped-bar charts carry their own colours, so they look the same on any page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "GLUCOSE_LINES_MGDL",
    "Series",
    "bar_chart",
    "glucose_chart",
    "grouped_bar_chart",
    "heat_map",
    "line_chart",
]

_ROW = 22
_LABEL_W = 150
_BAR_W = 320
_PALETTE = ("#1f5fa8", "#c2410c", "#6b7280", "#15803d", "#7c3aed")
"""Blue, orange, grey, green, violet: distinguishable with the common colour-vision
deficiencies, and every series also has its own dash pattern or a legend entry."""

GLUCOSE_LINES_MGDL: tuple[tuple[float, str], ...] = (
    (54, "54"),
    (70, "70"),
    (180, "180"),
    (250, "250"),
)
"""The consensus glucose thresholds (Battelino 2019) drawn behind every glucose trace."""


def _svg_open(title: str, width: int, height: int, desc: str | None = None) -> list[str]:
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    if desc:
        parts.append(f"<desc>{escape(desc)}</desc>")
    return parts


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


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a ``line_chart``: its legend label and (x, y) points; NaN y values break
    the line (a gap, not a fall to zero)."""

    label: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2 or 5 times a power of ten."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    out = []
    value = first
    while value <= high + step * 1e-9:
        out.append(round(value, 9))
        value += step
    return out


def _label(value: float) -> str:
    return f"{value:g}"


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    guides: Sequence[tuple[float, str]] = (),
    marker: tuple[float, str] | None = None,
    desc: str | None = None,
    width: int = 520,
    height: int = 240,
) -> str:
    """Lines over a shared x axis, with labelled horizontal ``guides`` (thresholds) and one
    vertical ``marker`` (an instant, e.g. the attack). The y axis spans ``y_range`` widened to
    every finite point, so an excursion beyond the usual range is never clipped."""
    left, right, top, bottom = 46, 34, 26, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for s in series for x, y in s.points if math.isfinite(y)]
    ys = [y for s in series for _, y in s.points if math.isfinite(y)]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if marker is not None:
        x_lo, x_hi = min(x_lo, marker[0]), max(x_hi, marker[0])
    if x_hi == x_lo:
        x_hi = x_lo + 1
    y_lo, y_hi = y_range if y_range is not None else (min(ys, default=0), max(ys, default=1))
    y_lo, y_hi = min([y_lo, *ys]), max([y_hi, *ys])
    if y_hi == y_lo:
        y_hi = y_lo + 1

    def px(x: float) -> float:
        return round(left + (x - x_lo) / (x_hi - x_lo) * plot_w, 1)

    def py(y: float) -> float:
        return round(top + (y_hi - y) / (y_hi - y_lo) * plot_h, 1)

    parts = _svg_open(title, width, height, desc)
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fbfcfe" '
        f'stroke="#c9d0db"></rect>'
    )
    if y_range is not None and y_lo <= 70 <= y_hi and y_lo <= 180 <= y_hi:
        parts.append(
            f'<rect x="{left}" y="{py(180)}" width="{plot_w}" height="{py(70) - py(180)}" '
            f'fill="#e8f5ec"></rect>'
        )
    for value, name in guides:
        if y_lo <= value <= y_hi:
            y = py(value)
            parts.append(
                f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#9aa3b2" '
                f'stroke-width="0.8" stroke-dasharray="2 3"></line>'
                f'<text x="{left + plot_w + 4}" y="{y + 4}" font-size="10" fill="#4b5563">'
                f"{escape(name)}</text>"
            )
    for tick in _ticks(y_lo, y_hi):
        parts.append(
            f'<text x="{left - 5}" y="{py(tick) + 4}" font-size="10" text-anchor="end" '
            f'fill="#4b5563">{_label(tick)}</text>'
        )
    for tick in _ticks(x_lo, x_hi, 7):
        x = px(tick)
        parts.append(
            f'<line x1="{x}" y1="{top + plot_h}" x2="{x}" y2="{top + plot_h + 4}" '
            f'stroke="#9aa3b2"></line>'
            f'<text x="{x}" y="{top + plot_h + 15}" font-size="10" text-anchor="middle" '
            f'fill="#4b5563">{_label(tick)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 4}" font-size="10" text-anchor="middle" '
        f'fill="#4b5563">{escape(x_label)}</text>'
        f'<text x="12" y="{top + plot_h / 2}" font-size="10" text-anchor="middle" '
        f'fill="#4b5563" transform="rotate(-90 12 {top + plot_h / 2})">{escape(y_label)}</text>'
    )
    if marker is not None:
        x = px(marker[0])
        parts.append(
            f'<line x1="{x}" y1="{top}" x2="{x}" y2="{top + plot_h}" stroke="#b91c1c" '
            f'stroke-width="1.5"></line>'
            f'<text x="{x + 3}" y="{top + 11}" font-size="10" fill="#b91c1c">'
            f"{escape(marker[1])}</text>"
        )
    legend_x = left
    for index, line in enumerate(series):
        colour = _PALETTE[index % len(_PALETTE)]
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        for run in _runs(line.points):
            path = " ".join(f"{px(x)},{py(y)}" for x, y in run)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"'
                f"{dash}></polyline>"
            )
        parts.append(
            f'<line x1="{legend_x}" y1="10" x2="{legend_x + 20}" y2="10" stroke="{colour}" '
            f'stroke-width="2.5"{dash}></line>'
            f'<text x="{legend_x + 24}" y="14" font-size="10" fill="#1d2330">'
            f"{escape(line.label)}</text>"
        )
        legend_x += 24 + 6 * len(line.label) + 16
    parts.append("</svg>")
    return "".join(parts)


def _runs(points: Sequence[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """The stretches of consecutive finite points."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if math.isfinite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def glucose_chart(
    title: str,
    minutes: Sequence[float],
    attacked: Sequence[float],
    twin: Sequence[float],
    *,
    desc: str | None = None,
    attack_label: str = "attack",
) -> str:
    """Glucose of an attacked run against its attack-free twin, minutes from the attack
    (0 is the attack instant), over the 54/70/180/250 mg/dL thresholds; 70-180 is shaded."""
    hours = [m / 60 for m in minutes]
    return line_chart(
        title,
        (
            Series("no attack (twin)", list(zip(hours, twin, strict=True)), dashed=True),
            Series("attacked", list(zip(hours, attacked, strict=True))),
        ),
        x_label="hours from the attack",
        y_label="glucose mg/dL",
        y_range=(40, 300),
        guides=GLUCOSE_LINES_MGDL,
        marker=(0.0, attack_label),
        desc=desc,
    )


def grouped_bar_chart(
    title: str,
    groups: Sequence[tuple[str, Sequence[float | None]]],
    series: Sequence[str],
    *,
    unit: str,
    desc: str | None = None,
    colours: Sequence[str] = _PALETTE,
) -> str:
    """Horizontal bars, one group per label with one bar per ``series`` name (None: no bar,
    written as "n/a"), every value written after its bar with ``unit``; ``colours`` per
    series, in order."""
    bar_h, gap = 11, 10
    label_w, bar_w, value_w = 200, 300, 90
    group_h = len(series) * bar_h + gap
    legend_h = 20
    height = legend_h + max(1, len(groups)) * group_h + 6
    width = label_w + bar_w + value_w
    values = [v for _, vs in groups for v in vs if v is not None and math.isfinite(v)]
    top = max(values, default=0.0) or 1.0
    parts = _svg_open(title, width, height, desc)
    x = label_w
    for index, name in enumerate(series):
        colour = colours[index % len(colours)]
        parts.append(
            f'<rect x="{x}" y="4" width="12" height="10" fill="{colour}"></rect>'
            f'<text x="{x + 16}" y="13" font-size="11" fill="#1d2330">{escape(name)}</text>'
        )
        x += 16 + 7 * len(name) + 18
    for row, (label, group) in enumerate(groups):
        y0 = legend_h + row * group_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y0 + len(series) * bar_h / 2 + 4}" font-size="11" '
            f'text-anchor="end" fill="#1d2330">{escape(label)}</text>'
        )
        for index, value in enumerate(group):
            y = y0 + index * bar_h
            colour = colours[index % len(colours)]
            if value is None or not math.isfinite(value):
                parts.append(
                    f'<text x="{label_w + 4}" y="{y + 9}" font-size="9" fill="#4b5563">n/a</text>'
                )
                continue
            w = round(bar_w * max(value, 0.0) / top, 1)
            parts.append(
                f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h - 2}" '
                f'fill="{colour}"></rect>'
                f'<text x="{label_w + w + 4}" y="{y + 9}" font-size="9" fill="#1d2330">'
                f"{round(value, 2):g} {escape(unit)}</text>"
            )
    if not groups:
        parts.append(f'<text x="4" y="{legend_h + 14}">{escape("nothing to show")}</text>')
    parts.append("</svg>")
    return "".join(parts)
