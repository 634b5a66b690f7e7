"""Units on the wire (IEEE 11073 MDC dimension codes, UCUM, plain text) to ``clinical`` units.

Only codes listed in REFERENCE section 4 are mapped from MDC; UCUM covers the rest. Anything
else is passed as written to ``clinical.parse_dose_unit``, which refuses ISMP error-prone
spellings and unknown units with a message that says why.
"""

from __future__ import annotations

from pumpguard.interop.codes import Mdc
from pumpguard.interop.models import CodedValue

_MDC = {
    str(int(Mdc.DIM_ML)): "mL",
    str(int(Mdc.DIM_ML_PER_H)): "mL/h",
    str(int(Mdc.DIM_UG_PER_KG_PER_MIN)): "mcg/kg/min",
    str(int(Mdc.DIM_MG)): "mg",
    str(int(Mdc.DIM_KG)): "kg",
    str(int(Mdc.DIM_MIN)): "min",
    str(int(Mdc.DIM_S)): "s",
    str(int(Mdc.DIM_H)): "h",
}

_UCUM_AMOUNTS = {
    "ml": "mL",
    "l": "L",
    "g": "g",
    "mg": "mg",
    "ug": "mcg",
    "ng": "ng",
    "[iu]": "units",
    "[u]": "units",
    "m[iu]": "milliunits",
    "meq": "mEq",
    "mmol": "mmol",
    "kg": "kg",
    "min": "min",
    "h": "h",
    "hr": "h",
    "s": "s",
    "cm": "cm",
    "m2": "m2",
}


def unit_text(unit: CodedValue | None) -> str | None:
    """The unit as ``clinical`` spells it, or None when the order gave no unit at all."""
    if unit is None:
        return None
    if unit.identifier in _MDC and unit.system.upper() in ("MDC", ""):
        return _MDC[unit.identifier]
    for text in (unit.identifier, unit.text):
        if text.strip():
            return _from_ucum(text.strip())
    return None


def _from_ucum(text: str) -> str:
    parts = text.split("/")
    mapped = [_UCUM_AMOUNTS.get(p.strip().lower(), p.strip()) for p in parts]
    return "/".join(mapped)
