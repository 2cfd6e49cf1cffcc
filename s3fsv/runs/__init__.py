"""Pinned runs: ``s3fsv run`` (a command on pinned input commits, its outputs committed with
a run record), ``s3fsv reproduce`` and lineage. Sits on ``s3fsv.api`` and ``s3fsv.mount``.

- ``spec``: ``--in``/``--out`` and the ``{in}``/``{in.NAME}``/``{out}`` placeholders;
- ``identity``, ``record``: the code identity and the run record (docs/format.md 11.1);
- ``views``: inputs through one store mount (reused or the run's own) or downloaded;
- ``execute``: the command with the caller's streams, directory, environment and signals;
- ``staging``: the run's local directory, and the one commit path for its outputs;
- ``run``, ``reproduce``, ``lineage``: the three verbs.
"""
