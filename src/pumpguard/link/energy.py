"""What the link costs a device's battery: per byte on the air, per wake-up, per crypto operation.

The device class is an nRF52832-class Bluetooth LE SoC (Cortex-M4F at 64 MHz, 1 Mbit/s radio,
AES-ECB/CCM hardware, 3 V, DC/DC regulator on). Figures and their sources are in
``docs/protocols/insulin-link.md`` (section "Energy model"); where a figure is a modelling choice,
the document says so. Charge is counted in microcoulombs (mA x us / 1000), energy follows from the
supply voltage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from pumpguard.link.medium import IFS_US, airtime_us

__all__ = ["NRF52_CLASS", "EnergyMeter", "EnergyModel", "EnergyUse"]


@dataclass(frozen=True, slots=True)
class EnergyModel:
    name: str = "nRF52832-class BLE SoC (Cortex-M4F 64 MHz, 1 Mbit/s radio, AES hardware), 3 V"
    supply_v: float = 3.0
    tx_ma: float = 5.3
    """Radio TX at 0 dBm, DC/DC on (nRF52832 Product Specification v1.4: 5.3 mA)."""
    rx_ma: float = 5.4
    """Radio RX at 1 Mbit/s, DC/DC on (nRF52832 PS v1.4: 5.4 mA)."""
    cpu_ma: float = 3.7
    """CPU running from flash at 64 MHz, DC/DC on (nRF52832 PS v1.4: 58 uA/MHz, 3.7 mA)."""
    wake_us: float = 360.0
    """64 MHz crystal start-up before the radio can receive (nRF52832 PS v1.4: HFXO 0.36 ms)."""
    ramp_us: float = 140.0
    """Radio RX/TX ramp-up, default mode (nRF52832 PS v1.4: t_RXEN, t_TXEN 140 us)."""
    ecb_block_us: float = 7.2
    """One AES-128 block in the ECB peripheral (nRF52832 PS v1.4: 7.2 us per 16 bytes)."""
    sha256_block_us: float = 30.0
    """One SHA-256 compression in software on Cortex-M4 (modelling choice: ~1900 cycles)."""
    x25519_us: float = 14_200.0
    """One X25519 scalar multiplication on Cortex-M4 (Fujii and Aranha, 2019: 907 240 cycles
    at 64 MHz)."""
    frame_cpu_us: float = 50.0
    """Parsing and application logic per frame handled (modelling choice)."""
    listen_duty: float = 0.0005
    """Fraction of time the receiver listens for frames addressed to the device, same in both
    profiles (modelling choice: 0.5 ms every second)."""


NRF52_CLASS = EnergyModel()


class EnergyUse(StrEnum):
    WAKE = "wake"
    RX = "rx"
    TX = "tx"
    CPU = "cpu"
    CRYPTO = "crypto"


@dataclass(slots=True)
class EnergyMeter:
    """Charge a device's link has drawn, by use, and how long its radio and CPU were on."""

    model: EnergyModel = NRF52_CLASS
    charge_uc: dict[EnergyUse, float] = field(default_factory=lambda: dict.fromkeys(EnergyUse, 0.0))
    active_us: float = 0.0
    wakes: int = 0

    def _add(self, use: EnergyUse, duration_us: float, current_ma: float) -> float:
        charge = duration_us * current_ma / 1000
        self.charge_uc[use] += charge
        self.active_us += duration_us
        return duration_us

    @property
    def total_uc(self) -> float:
        return sum(self.charge_uc.values())

    @property
    def total_mj(self) -> float:
        return self.total_uc * self.model.supply_v / 1000

    def wake(self) -> float:
        m = self.model
        self.wakes += 1
        return self._add(EnergyUse.WAKE, m.wake_us, m.cpu_ma) + self._add(
            EnergyUse.RX, m.ramp_us, m.rx_ma
        )

    def receive(self, frame_bytes: int) -> float:
        return self._add(EnergyUse.RX, airtime_us(frame_bytes), self.model.rx_ma)

    def transmit(self, frame_bytes: int) -> float:
        m = self.model
        return self._add(EnergyUse.TX, m.ramp_us + IFS_US + airtime_us(frame_bytes), m.tx_ma)

    def cpu(self, us: float | None = None) -> float:
        return self._add(
            EnergyUse.CPU, self.model.frame_cpu_us if us is None else us, self.model.cpu_ma
        )

    def aead(self, message_bytes: int) -> float:
        """AES-CCM of one frame: CBC-MAC and CTR blocks over the data, plus B0 and the tag."""
        blocks = 2 * (math.ceil(message_bytes / 16) + 1) + 1
        return self._add(EnergyUse.CRYPTO, blocks * self.model.ecb_block_us, self.model.cpu_ma)

    def hmac(self, message_bytes: int) -> float:
        blocks = math.ceil((message_bytes + 64 + 9) / 64) + 2
        return self._add(EnergyUse.CRYPTO, blocks * self.model.sha256_block_us, self.model.cpu_ma)

    def x25519(self) -> float:
        return self._add(EnergyUse.CRYPTO, self.model.x25519_us, self.model.cpu_ma)

    def listen_ma(self) -> float:
        """Average current of listening for frames, whatever arrives."""
        return self.model.rx_ma * self.model.listen_duty
