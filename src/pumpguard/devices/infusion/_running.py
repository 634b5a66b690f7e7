"""What a pump is running: confirmed programmes and the volumes they have delivered.

Each running programme carries the drug library and care area it was checked against: a
library installed while it runs becomes the pump's active library for new programmes only, and
this programme's titrations and limits stay those of its own library until it ends.

Volumes are kept in mL x ms/h (a rate in mL/h times integer milliseconds), which is exact:
only reading them in mL divides, so no rounding accumulates over a long infusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from pumpguard.clinical import Concentration, DoseUnit, DrugEntry, DrugLibrary
from pumpguard.clock import MS_PER_HOUR
from pumpguard.devices.infusion.commands import ContinuousProgramme, PcaProgramme

__all__ = ["SCALE", "ZERO", "Infusion", "PcaSession"]

ZERO = Decimal(0)
SCALE = Decimal(MS_PER_HOUR)
"""One mL in the internal volume unit (mL x ms/h)."""


@dataclass(slots=True)
class Infusion:
    """A confirmed continuous programme running on one channel."""

    programme: ContinuousProgramme
    entry: DrugEntry | None
    unit: DoseUnit
    concentration: Concentration | None
    rate_ml_h: Decimal
    max_rate_ml_h: Decimal
    library: DrugLibrary
    care_area: str
    infused: Decimal = ZERO

    @property
    def remaining(self) -> Decimal:
        return self.programme.vtbi_ml * SCALE - self.infused

    @property
    def remaining_ml(self) -> Decimal:
        return self.remaining / SCALE


@dataclass(slots=True)
class PcaSession:
    """A confirmed PCA programme: basal rate plus patient demand doses from one reservoir."""

    programme: PcaProgramme
    entry: DrugEntry
    rate_unit: DoseUnit
    concentration: Concentration | None
    basal_rate_ml_h: Decimal
    demand_volume_ml: Decimal
    max_rate_ml_h: Decimal
    library: DrugLibrary
    care_area: str
    used: Decimal = ZERO
    bolus_active: bool = False
    bolus_left: Decimal = ZERO
    grants: list[tuple[int, Decimal]] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.programme.vtbi_ml * SCALE - self.used

    @property
    def remaining_ml(self) -> Decimal:
        return self.remaining / SCALE
