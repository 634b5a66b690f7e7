"""``python -m tests.fuzz``: run every fuzz target for a bounded time and report.

    python3 tasks.py fuzz --seconds 60            # what `make fuzz` would be (atheris)
    python -m tests.fuzz --seconds 5 --target hl7-piv --json
    python -m tests.fuzz --engine mutation --seconds 5   # the built-in engine, no libFuzzer

Prints executions, executions per second, corpus size and unique crashes per target; every
crashing input is written to ``build/fuzz/crashes/<target>/<sha>`` so it can be copied into
``tests/fuzz/regressions/<target>/``, where the test suite replays it forever. Exit status 1
when anything crashed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.fuzz.engine import FuzzTarget, fuzz
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
    parser.add_argument(
        "--engine",
        choices=("atheris", "mutation"),
        default="atheris",
        help="atheris: coverage-guided libFuzzer (default); mutation: the built-in engine",
    )
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
        if args.engine == "atheris":
            rows.append(_atheris(target, args.seconds, args.seed, args.crash_dir / target.name))
            if not args.json:
                row = rows[-1]
                print(
                    f"{target.name:22} {row['executions']:9d} execs {row['exec_per_s']:7d}/s "
                    f"coverage {row['coverage']:6d}  crashes {row['crashes']}",
                    flush=True,
                )
                for crash in row["unique_crashes"]:
                    print(f"    {crash['error']} (input {crash['input']})")
            continue
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
                {
                    "engine": args.engine,
                    "seconds_per_target": args.seconds,
                    "seed": args.seed,
                    "targets": rows,
                },
                indent=2,
            )
        )
    return 1 if any(r["crashes"] for r in rows) else 0


_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.MULTILINE)
_COVERAGE = re.compile(r"cov: (\d+)")
_ERROR = re.compile(r"=== Uncaught Python exception: ===\n(.+)$", re.MULTILINE)


def _atheris(target: FuzzTarget, seconds: float, seed: int, crash_dir: Path) -> dict[str, Any]:
    """Run one target under libFuzzer in a child process and read its final statistics."""
    crash_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"corpus-{target.name}-") as corpus:
        for number, seed_input in enumerate(target.seeds):
            (Path(corpus) / f"seed-{number}").write_bytes(seed_input)
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.fuzz.atheris_driver",
                target.name,
                corpus,
                f"-max_total_time={max(1, round(seconds))}",
                f"-seed={seed or 1}",
                f"-max_len={target.max_len}",
                "-print_final_stats=1",
                f"-artifact_prefix={crash_dir}/",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    log = completed.stdout + completed.stderr
    stats = {k: int(v) for k, v in _STAT.findall(log)}
    coverage = [int(c) for c in _COVERAGE.findall(log)]
    crashed = completed.returncode != 0
    artefacts = sorted(p.name for p in crash_dir.glob("crash-*")) if crashed else []
    errors = _ERROR.findall(log)
    return {
        "target": target.name,
        "executions": stats.get("number_of_executed_units", 0),
        "exec_per_s": stats.get("average_exec_per_sec", 0),
        "coverage": max(coverage, default=0),
        "crashes": 1 if crashed else 0,
        "unique_crashes": [
            {
                "error": (errors or [log.strip().splitlines()[-1:] or ["no output"]][0])[0][:300],
                "where": "see the input",
                "input": artefacts[-1] if artefacts else None,
            }
        ]
        if crashed
        else [],
    }


if __name__ == "__main__":
    sys.exit(main())
