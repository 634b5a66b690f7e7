#!/usr/bin/env python3
"""Bootstrap and run pumpguard with nothing but Python 3.11 on the machine.

Each task first makes the project environment match ``requirements.lock`` exactly: a small
tools venv (``.tools/``) holds a pinned ``uv``, which syncs ``.venv/`` from the hash-pinned lock
and installs pumpguard itself in editable mode. The lock is never rewritten here;
``python3 tasks.py lock`` refreshes it on purpose, and ``test`` fails when it is out of date.

    python3 tasks.py demo        # the main job on embedded defaults
    python3 tasks.py test        # lint, type check and the whole test suite
    python3 tasks.py lock        # refresh requirements.lock after editing pyproject.toml
    python3 tasks.py run ARGS    # run the pumpguard CLI inside the environment
"""

from __future__ import annotations

import os
import subprocess
import sys
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
    _run(_venv_bin("pumpguard"), "demo")


def test(extra: list[str]) -> None:
    _sync()
    _check_lock()
    _run(_venv_bin("ruff"), "check", "src", "tests", "tasks.py")
    _run(_venv_bin("ruff"), "format", "--check", "--quiet", "src", "tests", "tasks.py")
    _run(_venv_bin("mypy"))
    _run(_venv_bin("python"), "-m", "pytest", *extra)


def lock(_: list[str]) -> None:
    _run(_uv(), *_COMPILE, *_COMPILE_OPTS, "--no-header", "-o", LOCK, env=_uv_env())


def run(extra: list[str]) -> None:
    _sync()
    _run(_venv_bin("pumpguard"), *extra)


TASKS = {"demo": demo, "test": test, "lock": lock, "run": run}


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
