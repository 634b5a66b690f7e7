"""Data files shipped inside the package, so embedded defaults need no network or checkout."""

from pathlib import Path

__all__ = ["EXAMPLE_LIBRARY"]

EXAMPLE_LIBRARY = Path(__file__).with_name("example-drug-library.json")
"""The example drug library (``examples/drug-library.json`` in the repository links here)."""

VIRTUAL_PATIENTS = Path(__file__).with_name("vpatients.csv")
"""UVA/Padova parameters of the 30 simglucose virtual patients (MIT; source in the header)."""
DATA_DIR = Path(__file__).parent  # risk assessment data: advisories/, questionnaires/, risk/
