"""Talking to an access gateway (``s3fsv serve``) with a token: the store's location,
short-lived credentials that renew themselves, presigned URLs, and audit records.

Nothing here holds cloud credentials for longer than the gateway's lifetime (at most 15
minutes); the token is the only secret, read from a file that should be private to its user.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from s3fsv.errors import AccessDenied, StoreUnavailable, UsageError

log = logging.getLogger(__name__)

TIMEOUT = 15.0
ATTEMPTS = 3


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in ``path`` (surrounding whitespace ignored). A file others may read is
    used, with a warning: the token is as good as the credentials it buys."""
    p = Path(path).expanduser()
    try:
        text = p.read_text().strip()
        mode = p.stat().st_mode
    except OSError as err:
        raise UsageError(f"cannot read token file {path}: {err.strerror or err}") from None
    if not text:
        raise UsageError(f"token file {path} is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s can be read by others: chmod 600 it", path)
    return text


class GatewayClient:
    """One gateway, one token. Thread-safe (one ``requests.Session`` per call site would do;
    requests' sessions are safe for concurrent simple requests)."""

    def __init__(self, url: str, token: str) -> None:
        import requests

        if not url.startswith(("http://", "https://")):
            raise UsageError(f"gateway URL {url!r} must start with http:// or https://")
        if not token:
            raise UsageError("a gateway needs a token (--token-file, or token=)")
        self.url = url.rstrip("/")
        self._token = token
        self._http = requests.Session()
        self._http.trust_env = False  # no proxy between us and a gateway on this machine...
        if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            self._http.trust_env = True  # ...but the usual proxy rules for a remote one

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import requests

        headers = {"Authorization": f"Bearer {self._token}"}
        last: Exception | None = None
        for _ in range(ATTEMPTS):
            try:
                resp = self._http.request(
                    method, self.url + path, json=body, headers=headers, timeout=TIMEOUT
                )
                break
            except requests.RequestException as err:  # refused, reset, timed out
                last = err
        else:
            raise StoreUnavailable(f"cannot reach the gateway {self.url}: {last}") from None
        if resp.status_code == 200:
            return resp.json()
        try:
            message = str(resp.json().get("error", ""))
        except ValueError:
            message = resp.text[:200]
        if resp.status_code == 401:
            raise AccessDenied(f"the gateway refused the token: {message or 'unauthorized'}")
        if resp.status_code == 403:
            raise AccessDenied(f"the gateway refused: {message or 'forbidden'}")
        if resp.status_code in (400, 404, 422):
            raise UsageError(f"the gateway refused the request: {message}")
        raise StoreUnavailable(f"gateway {self.url} answered {resp.status_code}: {message}")

    def info(self) -> dict[str, Any]:
        """``{"store", "endpoint_url", "region", "principal", "lifetime"}``."""
        return dict(self._call("GET", "/v1/info"))

    def credentials(self) -> dict[str, str]:
        """Fresh credentials: ``access_key_id``, ``secret_access_key``, ``session_token``,
        ``expiration`` (ISO-8601)."""
        return dict(self._call("POST", "/v1/credentials", {}))

    def refreshing(self) -> Any:
        """botocore credentials that ask this gateway again before they expire."""
        from s3fsv.store.backend.aws import refreshing_credentials  # imports boto3

        return refreshing_credentials(self.credentials, method="s3fsv-gateway")

    def presign(self, method: str, repo: str, paths: list[str], **extra: Any) -> list[dict]:
        """Presigned URLs: ``PUT`` for new uploads below the principal's upload prefix
        (``[{"path", "url", "expires"}]``), ``GET`` for a committed file (``ref`` in
        ``extra``; ``[{"path", "sha256", "size", "parts": [{"url", "range"}]}]``)."""
        body = {"method": method, "repo": repo, "paths": paths, **extra}
        return list(self._call("POST", "/v1/presign", body)["urls"])

    def record(self, fields: dict[str, Any]) -> None:
        """Have the gateway append an audit record in the principal's name."""
        self._call("POST", "/v1/audit", fields)

    def check(self, action: str, repo: str, branch: str | None = None, path: str = "") -> Any:
        return self._call(
            "POST", "/v1/check", {"action": action, "repo": repo, "branch": branch, "path": path}
        )


def gateway_sink(client: GatewayClient) -> Any:
    """An audit sink (``s3fsv.access.audit.Sink``) that sends records to the gateway."""
    return client.record
