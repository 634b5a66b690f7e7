#!/usr/bin/env python3
"""Regenerate the stored simglucose reference traces the fidelity tests compare against.

Run from the repository root with pumpguard's environment, pointing at a Python that has
simglucose 0.2.11 installed (its own virtual environment: it pins gym==0.9.4):

    python3 -m venv /tmp/sgvenv && /tmp/sgvenv/bin/pip install simglucose==0.2.11
    PUMPGUARD_SIMGLUCOSE_PYTHON=/tmp/sgvenv/bin/python \\
        .venv/bin/python scripts/make_physiology_reference.py

It builds input sets for all 30 patients (``mixed``, 24 h: meals, boluses, basal, a
suspension and a temporary basal; ``stress``, 24 h: large meals, an insulin overdose and long
suspensions, which push the model into renal excretion, zero hepatic production and its
``max``/clamp branches; ``overdose``, 12 h: 10 to 300 U at once, where tissue uptake turns
stiff and glucose is driven through zero), runs simglucose's ``T1DPatient`` on them through
``pumpguard/cli/simglucose_driver.py`` and writes inputs and glucose to
``tests/physiology/data/simglucose_reference.npz``. Glucose is stored rounded to 1e-4 mg/dL
(far below the 0.5 mg/dL tolerance) so the file compresses to a few hundred kB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from pumpguard.cli.reference import run_simglucose, simglucose_python
from pumpguard.physiology import MINUTES_PER_DAY, load_patients

OUT = Path(__file__).resolve().parents[1] / "tests" / "physiology" / "data"
OUT_FILE = OUT / "simglucose_reference.npz"


def mixed_inputs() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Meals announced whole and eaten per minute, boluses by carb ratio, basal, pauses."""
    patients = load_patients()
    names = [p.name for p in patients]
    minutes = MINUTES_PER_DAY
    carbs = np.zeros((len(patients), minutes))
    insulin = np.zeros((len(patients), minutes))
    for i, p in enumerate(patients):
        basal = p.basal_u_per_min
        cr = p.carb_ratio_g_per_u
        insulin[i, :] = basal
        carbs[i, 420] = 45.0  # breakfast announced at once: eaten at 5 g/min
        insulin[i, 420] += 45.0 / cr
        carbs[i, 600:610] = 2.0  # snack eaten over 10 min, no bolus
        insulin[i, 705] += 70.0 / cr  # pre-bolus for lunch
        carbs[i, 720:730] = 7.0  # faster than 5 g/min: the backlog carries on eating
        insulin[i, 760] += 0.8  # correction
        insulin[i, 900:1020] = 0.0  # two hours suspended
        carbs[i, 1080] = 80.0  # dinner ...
        carbs[i, 1085] = 20.0  # ... and dessert announced while still eating
        insulin[i, 1080] += 50.0 / cr
        insulin[i, 1110:1140] += 50.0 / cr / 30.0  # extended (square-wave) part of the bolus
        insulin[i, 1260:1320] = 2.0 * basal  # temporary basal 200 %
        carbs[i, 1380] = 10.5
        insulin[i, 1380] += 0.55
    return names, carbs, insulin


def stress_inputs() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Extremes: 150 g unbolused, an overdose, 6 h without insulin, frequent small snacks."""
    patients = load_patients()
    names = [p.name for p in patients]
    minutes = MINUTES_PER_DAY
    carbs = np.zeros((len(patients), minutes))
    insulin = np.zeros((len(patients), minutes))
    for i, p in enumerate(patients):
        basal = p.basal_u_per_min
        insulin[i, :] = basal
        carbs[i, 60] = 150.0  # unbolused: hyperglycaemia and renal excretion
        insulin[i, 240:600] = 0.0  # six hours without insulin
        insulin[i, 660] += 12.0 * p.body_weight_kg / 70.0  # overdose: EGP driven to zero
        insulin[i, 661:700] += 0.3  # on top, a runaway basal
        carbs[i, 900:1200:20] = 1.5  # grazing
        carbs[i, 1300] = 0.2  # a crumb: eating starts and stops within a minute
        insulin[i, 1300:1302] = 0.0
    return names, carbs, insulin


def overdose_inputs() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Insulin far beyond therapy (a pump dumping its reservoir): 12 h, 30 patients.

    Tissue uptake becomes very fast (stiff) and glucose is driven through zero, where the
    model switches the derivative off and the compartment stays just below zero.
    """
    patients = load_patients()
    names = [p.name for p in patients]
    minutes = 720
    carbs = np.zeros((len(patients), minutes))
    insulin = np.zeros((len(patients), minutes))
    dumps = (300.0, 100.0, 50.0, 25.0, 10.0)
    for i, p in enumerate(patients):
        insulin[i, :] = p.basal_u_per_min
        carbs[i, 30] = 60.0
        insulin[i, 10] += dumps[i % len(dumps)]  # delivered within one minute
        insulin[i, 300:330] += 1.0  # and a runaway basal later
        carbs[i, 400:420] = 1.0 + (i % 3)  # glucose given while at the floor
    return names, carbs, insulin


def main() -> int:
    python = simglucose_python()
    OUT.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    sets = (("mixed", mixed_inputs), ("stress", stress_inputs), ("overdose", overdose_inputs))
    for label, build in sets:
        names, carbs, insulin = build()
        result = run_simglucose(python, names, carbs, insulin, workers=2)
        print(
            f"{label}: {len(names)} patients x {carbs.shape[1]} min in "
            f"{result.seconds.sum():.1f} s of simglucose {result.version} stepping",
            file=sys.stderr,
        )
        arrays[f"{label}_names"] = np.array(names)
        arrays[f"{label}_carbs"] = carbs
        arrays[f"{label}_insulin"] = insulin
        arrays[f"{label}_bg"] = np.round(result.bg, 4).astype(np.float32)
        arrays["simglucose_version"] = np.array(result.version)
    np.savez_compressed(OUT_FILE, **arrays)  # type: ignore[arg-type]
    print(f"wrote {OUT_FILE} ({OUT_FILE.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
