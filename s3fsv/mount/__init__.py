"""The mounted filesystem: a FUSE-free core (vfs, overlay, staging, write-behind), the thin
mfusepy adapter, the daemon and its control socket. Imports only ``s3fsv.store`` below it."""
