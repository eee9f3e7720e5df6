"""The installed package's version, at the bottom of the import graph (manifests and
result records carry it; importing the package root for it would pull in everything)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deepinterest")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"
