"""The installed version of s3fsv, recorded in every commit's provenance."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("s3fsv")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
