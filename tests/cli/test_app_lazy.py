from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pumpguard.cli.app import _COMMANDS, _GROUPS, app

runner = CliRunner()


def test_importing_the_cli_loads_no_sub_command() -> None:
    probe = (
        "import sys, pumpguard.cli.app; "
        "heavy = [m for m in ('scipy', 'fastapi', 'sqlalchemy', 'hl7apy', 'tuf', "
        "'pumpguard.server', 'pumpguard.physiology', 'pumpguard.cli.pki') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("name", sorted({*_GROUPS, *_COMMANDS}))
def test_every_registered_command_loads_and_has_help(name: str) -> None:
    result = runner.invoke(app, [name, "--help"], prog_name="pumpguard")
    assert result.exit_code == 0, result.output
    assert f"pumpguard {name}" in result.output


def test_an_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output
