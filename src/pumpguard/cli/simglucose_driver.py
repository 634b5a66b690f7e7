"""Run simglucose's ``T1DPatient`` on given inputs, in whatever Python has simglucose installed.

This file is a standalone script, not part of pumpguard's import graph: ``pumpguard bench
physiology``, the fidelity test and ``scripts/make_physiology_reference.py`` run it with the
interpreter named by ``PUMPGUARD_SIMGLUCOSE_PYTHON`` (simglucose pins ``gym==0.9.4`` and pulls
pandas and matplotlib, so it lives in its own virtual environment, never in pumpguard's). It
needs only NumPy and simglucose, and it imports nothing from pumpguard.

    python simglucose_driver.py INPUTS.npz OUTPUT.npz

``INPUTS.npz`` holds ``names`` (patient names), ``carbs`` and ``insulin`` (arrays of shape
(patients, minutes): what is handed to ``T1DPatient.step`` as ``Action(CHO, insulin)`` in each
minute). ``OUTPUT.npz`` receives ``bg`` (``observation.Gsub`` after each minute's step, same
shape), ``seconds`` (wall time of the stepping loops only, per patient) and ``version``.

Only the stepping loop is timed: building the patient (which reads its CSV with pandas) is
left out, as is building our cohort on the other side of the benchmark.
"""

from __future__ import annotations

import sys

# Run by path, Python puts this script's directory first on sys.path; that directory holds
# pumpguard's CLI modules, whose names must not shadow anything simglucose imports.
if sys.path and sys.path[0]:
    del sys.path[0]

import importlib
import time
import warnings
from typing import Any

import numpy as np


def simulate(names: list[str], carbs: Any, insulin: Any) -> tuple[Any, Any]:
    """Step one ``T1DPatient`` per name through every minute; return BG and loop seconds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module("simglucose.patient.t1dpatient")
    patient_class = module.T1DPatient
    action_class = module.Action
    minutes = carbs.shape[1]
    bg = np.empty((len(names), minutes))
    seconds = np.empty(len(names))
    for i, name in enumerate(names):
        patient = patient_class.withName(name)
        if getattr(patient, "name", name) != name:
            raise SystemExit(f"simglucose has no patient {name!r}")
        cho = [float(v) for v in carbs[i]]
        ins = [float(v) for v in insulin[i]]
        row = [0.0] * minutes
        start = time.perf_counter()
        for m in range(minutes):
            patient.step(action_class(CHO=cho[m], insulin=ins[m]))
            row[m] = patient.observation.Gsub
        seconds[i] = time.perf_counter() - start
        bg[i] = row
    return bg, seconds


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: simglucose_driver.py INPUTS.npz OUTPUT.npz\n")
        return 2
    with np.load(argv[1], allow_pickle=False) as data:
        names = [str(n) for n in data["names"]]
        carbs = np.asarray(data["carbs"], dtype=float)
        insulin = np.asarray(data["insulin"], dtype=float)
    bg, seconds = simulate(names, carbs, insulin)
    try:
        from importlib.metadata import version

        sg_version = version("simglucose")
    except Exception:
        sg_version = "unknown"
    np.savez(argv[2], bg=bg, seconds=seconds, version=np.array(sg_version))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
