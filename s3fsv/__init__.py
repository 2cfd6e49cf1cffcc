"""s3fsv: versioned S3 prefixes mounted as an ordinary directory tree."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("s3fsv")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
