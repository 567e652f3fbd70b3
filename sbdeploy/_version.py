"""The package version, from the installed distribution's metadata (a leaf module: anything may import it)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sbdeploy")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0.1.0"
