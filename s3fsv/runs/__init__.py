"""Pinned runs: ``s3fsv run`` (a command on pinned input commits, its outputs committed with
a run record), ``s3fsv reproduce`` and lineage. Sits on ``s3fsv.api`` and ``s3fsv.mount``.

- ``spec``: ``--in``/``--out`` and the ``{in}``/``{out}`` placeholders;
- ``identity``/``record``: the code identity and the run record (docs/format.md 11.1);
"""
