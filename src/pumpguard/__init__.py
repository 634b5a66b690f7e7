"""pumpguard: a working, open implementation of a secure infusion-pump ecosystem."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pumpguard")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
