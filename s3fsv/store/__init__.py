"""The versioned store, usable without FUSE: objects and their encoding, backends, trees, refs,
repos, the verified disk cache, uploads and downloads, and the provenance schema.

The bottom layer: it imports nothing from ``s3fsv.mount``, ``s3fsv.cli`` or any capability."""
