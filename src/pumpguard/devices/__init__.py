"""Device firmware as deterministic state machines driven by commands and a ``Clock``."""

from pumpguard.devices.power import Battery

__all__ = ["Battery"]
