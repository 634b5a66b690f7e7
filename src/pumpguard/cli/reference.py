"""Run simglucose, the reference our simulator is held to, in its own interpreter.

simglucose 0.2.11 pins ``gym==0.9.4`` and pulls pandas, matplotlib and gymnasium, so it is never
a pumpguard dependency. It lives in a separate virtual environment and is run there as a
subprocess (``simglucose_driver.py``), which times only its own stepping loop. The benchmark,
the live fidelity test and the reference-trace script all go through ``run_simglucose``, so they
measure the same thing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "DRIVER",
    "ENV_VAR",
    "HOW_TO_INSTALL",
    "SimglucoseResult",
    "SimglucoseUnavailable",
    "run_simglucose",
    "simglucose_python",
]

ENV_VAR = "PUMPGUARD_SIMGLUCOSE_PYTHON"
DRIVER = Path(__file__).with_name("simglucose_driver.py")
HOW_TO_INSTALL = (
    "simglucose is not importable here and is never a pumpguard dependency (it pins gym==0.9.4). "
    "Install it in its own virtual environment and point pumpguard at that interpreter:\n"
    "  python3 -m venv /tmp/sgvenv && /tmp/sgvenv/bin/pip install simglucose==0.2.11\n"
    f"  export {ENV_VAR}=/tmp/sgvenv/bin/python"
)


class SimglucoseUnavailable(RuntimeError):
    """No interpreter with simglucose could be found or run; the message says how to get one."""


@dataclass(frozen=True)
class SimglucoseResult:
    """Glucose per patient and minute, and wall seconds of each patient's stepping loop."""

    bg: npt.NDArray[np.float64]
    seconds: npt.NDArray[np.float64]
    version: str
    python: str


def simglucose_python() -> str:
    """The interpreter to run simglucose with: ``$PUMPGUARD_SIMGLUCOSE_PYTHON``, else ours."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = shutil.which(configured) or configured
        if not Path(path).exists():
            raise SimglucoseUnavailable(f"{ENV_VAR}={configured} does not exist.\n{HOW_TO_INSTALL}")
        return path
    if importlib.util.find_spec("simglucose") is not None:
        return sys.executable
    raise SimglucoseUnavailable(HOW_TO_INSTALL)


def _run_chunk(
    python: str, names: list[str], carbs: npt.NDArray[np.float64], insulin: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], str]:
    with tempfile.TemporaryDirectory(prefix="pumpguard-simglucose-") as tmp:
        inputs, output = Path(tmp, "inputs.npz"), Path(tmp, "output.npz")
        np.savez(inputs, names=np.array(names), carbs=carbs, insulin=insulin)
        done = subprocess.run(
            [python, str(DRIVER), str(inputs), str(output)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not output.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise SimglucoseUnavailable(
                f"simglucose run with {python} failed (exit {done.returncode}):\n  "
                + "\n  ".join(tail)
                + f"\n{HOW_TO_INSTALL}"
            )
        with np.load(output, allow_pickle=False) as data:
            return (
                np.asarray(data["bg"], dtype=np.float64),
                np.asarray(data["seconds"], dtype=np.float64),
                str(data["version"]),
            )


def run_simglucose(
    python: str,
    names: list[str],
    carbs: npt.ArrayLike,
    insulin: npt.ArrayLike,
    *,
    workers: int = 1,
) -> SimglucoseResult:
    """Step simglucose's ``T1DPatient`` for each named patient through the given inputs.

    ``carbs`` and ``insulin`` have shape (patients, minutes) and are handed over unchanged as
    ``Action(CHO, insulin)`` each minute. ``workers`` > 1 splits the patients over that many
    interpreters to save wall time when only the glucose is wanted (the reference script);
    timings are per patient either way, but the benchmark keeps one worker so nothing competes.
    """
    carbs_a = np.asarray(carbs, dtype=np.float64)
    insulin_a = np.asarray(insulin, dtype=np.float64)
    if carbs_a.shape != insulin_a.shape or carbs_a.shape[0] != len(names):
        raise ValueError("carbs and insulin must both have shape (len(names), minutes)")
    chunks = np.array_split(np.arange(len(names)), max(1, min(workers, len(names))))
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        parts = list(
            pool.map(
                lambda idx: _run_chunk(
                    python, [names[i] for i in idx], carbs_a[idx], insulin_a[idx]
                ),
                chunks,
            )
        )
    return SimglucoseResult(
        bg=np.concatenate([p[0] for p in parts]),
        seconds=np.concatenate([p[1] for p in parts]),
        version=parts[0][2],
        python=python,
    )
