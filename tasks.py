#!/usr/bin/env python3
"""Bootstrap and run pumpguard with nothing but Python 3.11 on the machine.

Each task first makes the project environment match ``requirements.lock`` exactly: a small
tools venv (``.tools/``) holds a pinned ``uv``, which syncs ``.venv/`` from the hash-pinned lock
and installs pumpguard itself in editable mode. The lock is never rewritten here;
``python3 tasks.py lock`` refreshes it on purpose, and ``test`` fails when it is out of date.

    python3 tasks.py demo        # the main job on embedded defaults: lab run, both profiles
    python3 tasks.py test        # lint, type check and the whole test suite
    python3 tasks.py lock        # refresh requirements.lock after editing pyproject.toml
    python3 tasks.py sbom        # CycloneDX SBOM of what pumpguard ships (build/sbom.cdx.json)
    python3 tasks.py audit       # known-vulnerability audit of the lock, with its allow-list
    python3 tasks.py fuzz ARGS   # fuzz every parser for a bounded time (--seconds N per target)
    python3 tasks.py run ARGS    # run the pumpguard CLI inside the environment
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
VENV = ROOT / ".venv"
UV_VERSION = "0.13.8"
BIN = "Scripts" if os.name == "nt" else "bin"


def _run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    completed = subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=False)
    if completed.returncode != 0:
        sys.exit(completed.returncode)


def _uv() -> Path:
    uv = TOOLS / BIN / "uv"
    if not uv.exists():
        print(f"tasks: installing uv {UV_VERSION} into {TOOLS.name}/", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        _run(TOOLS / BIN / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
    return uv


LOCK = "requirements.lock"
_COMPILE = ("pip", "compile", "pyproject.toml", "--group", "dev", "--generate-hashes")
_COMPILE_OPTS = ("--python-version", "3.11", "--universal", "--quiet")


def _uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(VENV)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.pop("UV_SYSTEM_PYTHON", None)
    return env


def _sync() -> None:
    uv, env = _uv(), _uv_env()
    if not (VENV / BIN / "python").exists():
        _run(uv, "venv", "--quiet", "--python", sys.executable, VENV, env=env)
    _run(uv, "pip", "sync", "--quiet", "--require-hashes", LOCK, env=env)
    _run(uv, "pip", "install", "--quiet", "--no-deps", "-e", ".", env=env)


def _check_lock() -> None:
    """Fail when pyproject.toml asks for something the committed lock does not pin."""
    fresh = TOOLS / "requirements.check"
    # Seeded with the lock, uv keeps its pins as preferences: only a pyproject change that the
    # locked versions cannot satisfy changes the output, not a newer release on the registry.
    fresh.write_text((ROOT / LOCK).read_text())
    _run(_uv(), *_COMPILE, *_COMPILE_OPTS, "--no-header", "-o", fresh, env=_uv_env())
    lock_body = [ln for ln in (ROOT / LOCK).read_text().splitlines() if not ln.startswith("#")]
    if fresh.read_text().splitlines() != lock_body:
        sys.exit(f"tasks: {LOCK} is out of date with pyproject.toml; run: python3 tasks.py lock")


def _venv_bin(name: str) -> Path:
    return VENV / BIN / name


def demo(_: list[str]) -> None:
    _sync()
    _run(_venv_bin("pumpguard"), "lab", "run", "--profile", "both", "--out", "lab-report")


CHROMIUM = Path("/usr/bin/chromium")


def _ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium (Playwright's own download cannot reach the
    network here). Install it when missing and this user may; otherwise those tests skip and
    say why."""
    if CHROMIUM.exists() or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    if not Path("/usr/bin/apt-get").exists():
        return
    print("tasks: installing Debian's chromium for the browser tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    for step in (install, ["apt-get", "update", "-q"], install):  # stale package lists: update
        try:
            subprocess.run(step, env=env, stdout=subprocess.DEVNULL, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"tasks: could not install chromium ({exc}); the browser tests will skip")
            return
        if CHROMIUM.exists():
            return
    print("tasks: chromium did not install; the browser tests will skip")


def test(extra: list[str]) -> None:
    _sync()
    _check_lock()
    _ensure_chromium()
    _run(_venv_bin("ruff"), "check", "src", "tests", "tasks.py")
    _run(_venv_bin("ruff"), "format", "--check", "--quiet", "src", "tests", "tasks.py")
    _run(_venv_bin("mypy"))
    _run(_venv_bin("python"), "-m", "pytest", *extra)
    _write_sbom()
    _audit()


BUILD = ROOT / "build"
ALLOWLIST = ROOT / "docs" / "security" / "audit-allowlist.toml"


def sbom(_: list[str]) -> None:
    _sync()
    _write_sbom()


def _write_sbom() -> None:
    """The SBOM lists what pumpguard ships: the runtime pins of the lock, not the dev tools."""
    BUILD.mkdir(exist_ok=True)
    runtime = BUILD / "requirements-runtime.txt"
    # Seeded with the lock, uv keeps the locked versions: the runtime set is a subset of it.
    runtime.write_text((ROOT / LOCK).read_text())
    compile_runtime = ("pip", "compile", "pyproject.toml", "--generate-hashes", "--no-header")
    _run(_uv(), *compile_runtime, *_COMPILE_OPTS, "-o", runtime, env=_uv_env())
    out = BUILD / "sbom.cdx.json"
    _run(
        _venv_bin("cyclonedx-py"),
        "requirements",
        runtime,
        "--pyproject",
        "pyproject.toml",
        "--spec-version",
        "1.6",
        "--output-reproducible",
        "--validate",
        "-o",
        out,
    )
    components = json.loads(out.read_text()).get("components", [])
    print(f"tasks: SBOM written to {out.relative_to(ROOT)} ({len(components)} components)")


def _allowed_vulnerabilities() -> list[str]:
    """Every allow-list entry names a reason and an expiry; an expired entry no longer counts."""
    entries = tomllib.loads(ALLOWLIST.read_text()).get("allow", [])
    today = datetime.date.today()
    allowed = []
    for entry in entries:
        missing = {"id", "package", "reason", "expires"} - set(entry)
        if missing:
            sys.exit(f"tasks: {ALLOWLIST.name}: entry {entry} lacks {', '.join(sorted(missing))}")
        if entry["expires"] < today:
            print(f"tasks: allow-list entry {entry['id']} expired on {entry['expires']}")
            continue
        allowed.append(entry["id"])
    return allowed


def audit(_: list[str]) -> None:
    _sync()
    _audit()


def _audit() -> None:
    """Known vulnerabilities in the locked versions (PyPI's advisory data, via pip-audit).

    A finding not on the allow-list fails; an unreachable advisory service is reported loudly
    but does not fail, since it says nothing about our dependencies.
    """
    ignores = [arg for vuln in _allowed_vulnerabilities() for arg in ("--ignore-vuln", vuln)]
    report = TOOLS / "audit.json"
    completed = subprocess.run(
        [
            str(_venv_bin("pip-audit")),
            "--disable-pip",
            "-r",
            LOCK,
            "--progress-spinner",
            "off",
            "-f",
            "json",
            "-o",
            str(report),
            *ignores,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0 and not report.exists():
        print(
            "tasks: WARNING: dependency audit NOT RUN (advisory service unreachable?): "
            + (completed.stderr.strip().splitlines() or ["no output"])[-1]
        )
        return
    found = [
        f"{dep['name']} {dep['version']}: {', '.join(v['id'] for v in dep['vulns'])}"
        for dep in json.loads(report.read_text())["dependencies"]
        if dep.get("vulns")
    ]
    if found:
        sys.exit("tasks: known vulnerabilities in requirements.lock:\n  " + "\n  ".join(found))
    print(f"tasks: dependency audit clean ({len(ignores) // 2} allow-listed)")


def fuzz(extra: list[str]) -> None:
    _sync()
    _run(_venv_bin("python"), "-m", "tests.fuzz", *extra)


def lock(_: list[str]) -> None:
    _run(_uv(), *_COMPILE, *_COMPILE_OPTS, "--no-header", "-o", LOCK, env=_uv_env())


def run(extra: list[str]) -> None:
    _sync()
    _run(_venv_bin("pumpguard"), *extra)


TASKS = {
    "demo": demo,
    "test": test,
    "lock": lock,
    "run": run,
    "sbom": sbom,
    "audit": audit,
    "fuzz": fuzz,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        print(f"tasks: expected one of {', '.join(TASKS)}", file=sys.stderr)
        sys.exit(2)
    if sys.version_info < (3, 11):  # noqa: UP036 (tasks.py runs under any python3)
        sys.exit(f"tasks: pumpguard needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
