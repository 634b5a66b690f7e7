"""The ``pumpguard`` command."""

from pumpguard.cli.app import app, main

__all__ = ["app", "main"]
