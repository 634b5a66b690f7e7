"""Device firmware as deterministic state machines driven by commands and a ``Clock``."""

from pumpguard.devices.common import AlarmPriority, AppendOnlyLog
from pumpguard.devices.power import Battery

__all__ = ["AlarmPriority", "AppendOnlyLog", "Battery"]
