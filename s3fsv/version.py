"""The version of s3fsv, recorded in every commit's provenance. The one place it is written:
``pyproject.toml`` reads it from here. (Asking ``importlib.metadata`` instead cost every
command 11 ms of CPU at start, for the import alone.)"""

__version__ = "0.1.0"
