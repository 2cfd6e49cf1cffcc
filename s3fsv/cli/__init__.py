"""The ``s3fsv`` command: parsing, the verbs, and exit codes. The top layer: nothing imports it."""

from s3fsv.cli.app import main

__all__ = ["main"]
