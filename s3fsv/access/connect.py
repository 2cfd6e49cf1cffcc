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
from dataclasses import dataclass, field
from typing import Any

from s3fsv.access.audit import NAMESPACE, AuditTrail, Sink, attach, direct_sink
from s3fsv.access.client import GatewayClient, gateway_sink, read_token_file
from s3fsv.api import Store
from s3fsv.api import open_store as _open_store
from s3fsv.config import endpoint_url as configured_endpoint
from s3fsv.config import store_url
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
        if url is not None and not str(url).strip():
            raise UsageError("open_store: the store URL is empty")
        return command_store(Reach(store_url(url), configured_endpoint(endpoint_url)), **options)
    return command_store(_through(connect(gateway, token, token_file), url), **options)


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


@dataclass
class Reach:
    """How a command reaches its store: URL, endpoint, extra S3 backend options (a gateway's
    ``credentials`` and ``region``), and the gateway client (None when direct)."""

    url: str
    endpoint_url: str | None
    s3: dict[str, Any] = field(default_factory=dict)
    client: GatewayClient | None = None


def reach(
    store: str | None = None,
    endpoint: str | None = None,
    gateway: str | None = None,
    token_file: str | None = None,
    *,
    environment: bool = True,
) -> Reach:
    """The store of a command's ``--store``/``--endpoint-url``/``--gateway``/``--token-file``
    (each falling back to ``S3FSV_STORE``, ``AWS_ENDPOINT_URL``, ``S3FSV_GATEWAY``,
    ``S3FSV_TOKEN_FILE``). Through a gateway, the store is the gateway's (``--store``, if
    given, must name it). ``environment=False`` ignores the two ``S3FSV_`` gateway variables
    (for the store owner's own commands)."""
    env = os.environ if environment else {}
    gateway = gateway or env.get("S3FSV_GATEWAY") or None
    token_file = token_file or env.get("S3FSV_TOKEN_FILE") or None
    if not gateway:
        if token_file and not env.get("S3FSV_TOKEN_FILE"):
            raise UsageError("--token-file is the token of a --gateway: give that too")
        return Reach(store_url(store), configured_endpoint(endpoint))
    if not token_file:
        raise UsageError("--gateway needs --token-file (or S3FSV_TOKEN_FILE)")
    return _through(connect(gateway, None, os.path.abspath(os.path.expanduser(token_file))), store)


def _through(client: GatewayClient, store: str | None) -> Reach:
    """The store ``client``'s gateway serves (which ``store``, if given, must name)."""
    info = client.info()
    served = str(info["store"]).rstrip("/")
    if store and str(store).rstrip("/") != served:
        raise UsageError(f"the gateway {client.url} serves {served}, not {store}")
    who = info.get("principal", "?")
    options = {
        "credentials": client.refreshing(),
        "region": info.get("region"),
        "denied_hint": f"the grants of {who} do not allow it (s3fsv access check {who} ...)",
    }
    return Reach(served, info.get("endpoint_url"), options, client)


def command_store(reached: Reach, **options: Any) -> Store:
    """The API store of a :func:`reach`, its changes going to the audit trail."""
    store = _open_store(reached.url, endpoint_url=reached.endpoint_url, **reached.s3, **options)
    attach(store.events, audit_sink_for(store.records(NAMESPACE).backend, reached.client))
    return store
