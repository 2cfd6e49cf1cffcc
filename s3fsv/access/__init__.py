"""Access control and the audit trail: grants kept in the store, compiled into the storage
engine's own policies; a gateway that hands out short-lived scoped credentials; a hash-chained,
write-once record of every change. See docs/access.md."""
