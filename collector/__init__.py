"""hamletnet probe agent: runs the probes on a schedule, spools and uploads their results."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hamletnet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
