"""s3fsv: versioned S3 prefixes mounted as an ordinary directory tree."""

from s3fsv.version import __version__

__all__ = ["__version__"]
