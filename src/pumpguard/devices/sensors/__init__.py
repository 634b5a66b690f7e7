"""Glucose sensor devices: a CGM transmitter and a blood glucose meter, driven by a ``Clock``."""

from pumpguard.devices.sensors.bgm import BgmReading, FingerstickMeter, MeterError
from pumpguard.devices.sensors.cgm import (
    CgmReading,
    CgmSessionState,
    CgmTransmitter,
)

__all__ = [
    "BgmReading",
    "CgmReading",
    "CgmSessionState",
    "CgmTransmitter",
    "FingerstickMeter",
    "MeterError",
]
