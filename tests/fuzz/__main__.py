"""``python -m tests.fuzz``: run every fuzz target for a bounded time and report.

    python3 tasks.py fuzz --seconds 60            # what `make fuzz` would be
    python -m tests.fuzz --seconds 5 --target hl7-piv --json

Prints executions, executions per second, corpus size and unique crashes per target; every
crashing input is written to ``build/fuzz/crashes/<target>/<sha>`` so it can be copied into
``tests/fuzz/regressions/<target>/``, where the test suite replays it forever. Exit status 1
when anything crashed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.fuzz.engine import fuzz
from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="time per target (default 10)")
    parser.add_argument("--target", action="append", help="only these targets (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--crash-dir", type=Path, default=ROOT / "build" / "fuzz" / "crashes")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, got {args.seconds}")
    names = {t.name for t in TARGETS}
    unknown = sorted(set(args.target or ()) - names)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    chosen = [t for t in TARGETS if not args.target or t.name in args.target]
    rows = []
    for target in chosen:
        report = fuzz(target, seconds=args.seconds, seed=args.seed)
        crashes = report.unique_crashes
        for crash in crashes:
            folder = args.crash_dir / target.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / crash.key).write_bytes(crash.data)
        rows.append(
            {
                "target": target.name,
                "executions": report.executions,
                "exec_per_s": round(report.executions / max(report.seconds, 1e-9)),
                "corpus": report.corpus,
                "crashes": len(report.crashes),
                "unique_crashes": [
                    {"error": c.error, "where": c.where, "input": c.key} for c in crashes
                ],
            }
        )
        if not args.json:
            print(
                f"{target.name:22} {report.executions:9d} execs {rows[-1]['exec_per_s']:7d}/s "
                f"corpus {report.corpus:5d}  crashes {len(report.crashes)}",
                flush=True,
            )
            for crash in crashes:
                print(f"    {crash.where}: {crash.error} (input {crash.key})")
    if args.json:
        print(
            json.dumps(
                {"seconds_per_target": args.seconds, "seed": args.seed, "targets": rows}, indent=2
            )
        )
    return 1 if any(r["crashes"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
