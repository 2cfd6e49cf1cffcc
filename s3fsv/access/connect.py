"""Opening a store with its audit trail attached, directly or through a gateway: what
``s3fsv.open_store`` and every ``s3fsv`` command use.

- Directly (the store's own credentials from the standard chain): changes are recorded in
  the store's audit trail as the current principal (``S3FSV_PRINCIPAL`` or the login name).
- Through a gateway (``gateway=URL, token=...``): no cloud credentials are needed at all. The
  store's location comes from the gateway, credentials are fetched from it and renewed before
  they expire, and changes are recorded by the gateway in the token's principal's name.
"""

from __future__ import annotations

import os
from typing import Any

from s3fsv.access.audit import NAMESPACE, AuditTrail, Sink, attach, direct_sink
from s3fsv.access.client import GatewayClient, gateway_sink, read_token_file
from s3fsv.api import Store
from s3fsv.api import open_store as _open_store
from s3fsv.errors import UsageError
from s3fsv.store.events import Events
from s3fsv.store.records import Records


def open_store(
    url: str | None = None,
    *,
    gateway: str | None = None,
    token: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    endpoint_url: str | None = None,
    **options: Any,
) -> Store:
    """``s3fsv.api.open_store`` with the audit trail attached. With ``gateway`` (a URL) and
    ``token`` (or ``token_file``), the store is reached with credentials from that gateway;
    ``url``, if given, must then be the gateway's store. Other options (cache) as for
    ``s3fsv.api.open_store``."""
    if gateway is None:
        if token is not None or token_file is not None:
            raise UsageError("a token is for a gateway: give gateway= too")
        store = _open_store(url, endpoint_url=endpoint_url, **options)
        attach(store.events, direct_sink(AuditTrail(store.records(NAMESPACE))))
        return store
    client = connect(gateway, token, token_file)
    info = client.info()
    if url is not None and url.rstrip("/") != str(info["store"]).rstrip("/"):
        raise UsageError(f"the gateway {gateway} serves {info['store']}, not {url}")
    store = _open_store(
        str(info["store"]),
        endpoint_url=info.get("endpoint_url"),
        credentials=client.refreshing(),
        region=info.get("region"),
        **options,
    )
    attach(store.events, gateway_sink(client))
    return store


def connect(
    gateway: str, token: str | None, token_file: str | os.PathLike[str] | None
) -> GatewayClient:
    """A gateway client from a token or a token file (exactly one of them)."""
    if (token is None) == (token_file is None):
        raise UsageError("give the gateway's token as token= or token_file= (one of them)")
    text = token if token is not None else read_token_file(token_file)  # type: ignore[arg-type]
    return GatewayClient(gateway, text)


def audit_sink_for(backend: Any, client: GatewayClient | None) -> Sink:
    """The sink for a store-layer store opened on ``backend``: the gateway's, or direct."""
    if client is not None:
        return gateway_sink(client)
    return direct_sink(AuditTrail(Records(backend, NAMESPACE)))


def attach_store(events: Events, backend: Any, client: GatewayClient | None = None) -> None:
    """Record the changes told to ``events`` (a store-layer store's) in the audit trail."""
    attach(events, audit_sink_for(backend, client))
