"""Ingest and storage bounds: ``import`` of objects already in a bucket (in place, or copied),
continuously and exactly once (``--watch``); ``gc`` with retention rules and a grace period;
``purge``, which erases matching files from every commit and the originals, with a tombstone.
See docs/ingest.md."""
