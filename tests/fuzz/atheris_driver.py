"""One fuzz target under atheris (libFuzzer, coverage-guided), in its own process.

    python -m tests.fuzz.atheris_driver TARGET CORPUS_DIR [libFuzzer flags...]

pumpguard and hl7apy are instrumented for coverage as they are imported; the target's
documented errors are caught, anything else propagates and libFuzzer records the input as a
crash. ``python -m tests.fuzz --engine atheris`` runs this once per target and reads the
final statistics.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["pumpguard", "hl7apy"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    name = sys.argv[1]
    target = next((t for t in TARGETS if t.name == name), None)
    if target is None:
        sys.exit(f"unknown target {name!r}")

    def one_input(data: bytes) -> None:
        with contextlib.suppress(target.expected):
            target.call(data[: target.max_len])

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
