#!/usr/bin/env python3
"""Print the per-patient fidelity table of docs/physiology.md from the stored reference traces.

    .venv/bin/python scripts/physiology_fidelity.py

For each input set in tests/physiology/data/simglucose_reference.npz it replays all 30 patients
with our model and prints, per patient, the largest absolute glucose difference from
simglucose over the set (a Markdown table), then the worst of all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from pumpguard.physiology import Cohort

DATA = Path(__file__).resolve().parents[1] / "tests" / "physiology" / "data"


def main() -> int:
    with np.load(DATA / "simglucose_reference.npz", allow_pickle=False) as data:
        sets = [label.removesuffix("_names") for label in data.files if label.endswith("_names")]
        rows: dict[str, list[str]] = {}
        worst = 0.0
        for label in sets:
            names = [str(n) for n in data[f"{label}_names"]]
            ours = Cohort(names).run(data[f"{label}_carbs"], data[f"{label}_insulin"])
            diff = np.abs(ours - data[f"{label}_bg"].astype(np.float64)).max(axis=1)
            worst = max(worst, float(diff.max()))
            for name, d in zip(names, diff, strict=True):
                rows.setdefault(name, []).append(f"{d:.4f}")
    print("| patient | " + " | ".join(sets) + " |")
    print("| --- | " + " | ".join("---:" for _ in sets) + " |")
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nworst: {worst:.4f} mg/dL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
