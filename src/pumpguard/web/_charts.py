"""The dashboard's charts: the one implementation lives in ``lab.charts`` (the ``lab run``
report draws the same charts offline); the web layer only re-exports what its views use."""

from __future__ import annotations

from pumpguard.lab.charts import bar_chart, heat_map

__all__ = ["bar_chart", "heat_map"]
