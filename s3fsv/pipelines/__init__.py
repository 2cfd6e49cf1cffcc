"""Pipelines: an unchanged command run on every new commit of a branch, per datum (the paths a
glob matches), incrementally, in parallel batches, into one output commit per input commit.
Built on the Python API (``s3fsv.api``); docs/pipelines.md describes the model."""
