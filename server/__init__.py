"""hamletnet server: receives, stores, judges, alerts and exports probe results."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hamletnet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
