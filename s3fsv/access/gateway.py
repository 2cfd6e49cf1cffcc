"""``s3fsv serve``: the access gateway, a small Starlette app served by uvicorn.

Callers present ``Authorization: Bearer <token>``: an s3fsv token (``s3fsv access token
create``; the store keeps its SHA-256) or an OIDC JWT from the configured issuer. Tokens are
checked against the grant history on every request, so a revoked one is refused at once.

Routes (JSON in and out; errors are ``{"error": "..."}`` with 400, 401, 403 or 503):

- ``GET /v1/health``: no token needed.
- ``GET /v1/info``: the store's URL, endpoint and region, the caller's principal.
- ``POST /v1/credentials``: credentials from ``sts:AssumeRole`` on the ceiling role, session
  named after the principal, limited by its compiled grants, for at most 15 minutes.
- ``POST /v1/presign``: ``{"method": "PUT", "repo", "paths"}`` gives URLs to upload new files
  below the caller's upload prefix (landing under ``STORE/_uploads/REPO/``); ``{"method":
  "GET", "repo", "ref", "paths"}`` gives, per file, its hash and the URLs (with byte ranges) of
  the objects holding it. Both are signed with the caller's own session credentials, so the
  engine checks them again on every use.
- ``POST /v1/audit``: appends a record in the caller's name (what its mounts commit).
- ``POST /v1/check``: the decision ``s3fsv access check`` would give for the caller.

Every credential and URL issued is recorded in the audit trail (principal, scope, expiry)
before it is returned; if the record cannot be written, nothing is issued. Data never passes
through the gateway.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from s3fsv.access.audit import NAMESPACE as AUDIT_NAMESPACE
from s3fsv.access.audit import AuditTrail
from s3fsv.access.check import decide
from s3fsv.access.grants import AccessLog, split_token, token_hash
from s3fsv.access.issuer import Issuer, IssuerConfig
from s3fsv.access.model import AccessState
from s3fsv.access.oidc import OidcConfig, OidcVerifier
from s3fsv.api import Store, open_store
from s3fsv.errors import AccessDenied, S3fsvError, StoreUnavailable, UsageError
from s3fsv.store.objects import split_path
from s3fsv.store.store import Store as StoreLayerStore

log = logging.getLogger(__name__)

PRESIGN_SECONDS = 300  # how long a presigned URL works (less if the signer expires sooner)
MAX_PATHS = 1000
MAX_RECORD_BYTES = 16384
MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class Caller:
    principal: str
    via: str  # "token <id>" or "oidc"


class Gateway:
    """The gateway's state: its store handle (its own session), the grants, the trail."""

    def __init__(self, config: IssuerConfig, oidc: OidcConfig | None = None) -> None:
        self.config = config
        self.issuer = Issuer(config)
        self.store: Store = open_store(
            config.store_url,
            endpoint_url=config.endpoint_url,
            credentials=self.issuer.own_credentials(),
            region=config.region,
        )
        self.access = AccessLog(self.store)
        self.trail = AuditTrail(self.store.records(AUDIT_NAMESPACE))
        if not self.trail.enabled():
            raise UsageError(
                f"the audit trail of {config.store_url} is off: run `s3fsv audit init` first "
                "(the gateway records everything it issues)"
            )
        self.oidc = OidcVerifier(oidc) if oidc is not None else None

    # -- who is calling ---------------------------------------------------------------------
    def authenticate(self, header: str | None) -> tuple[Caller, AccessState]:
        if not header or not header.startswith("Bearer "):
            raise _Unauthorized("missing bearer token")
        text = header[7:].strip()
        state = self.access.state()  # re-read: a revocation counts from the next request
        if text.startswith("s3fsv_"):
            try:
                tid, _ = split_token(text)
            except UsageError:
                raise _Unauthorized("malformed token") from None
            token = state.tokens.get(tid)
            if token is None or not hmac.compare_digest(token.sha256, token_hash(text)):
                raise _Unauthorized("unknown token")
            why = ""
            if token.revoked:
                why = "token revoked"
            elif token.expires and _parse(token.expires) <= datetime.now(timezone.utc):
                why = "token expired"
            if why:
                self.refused(Caller(token.principal, f"token {tid}"), "", why)
                raise _Unauthorized(why)
            return Caller(token.principal, f"token {tid}"), state
        if self.oidc is not None and text.count(".") == 2:
            try:
                return Caller(self.oidc.principal(text), "oidc"), state
            except AccessDenied as err:
                raise _Unauthorized(str(err)) from None
        raise _Unauthorized("not an s3fsv token" + ("" if self.oidc else " (OIDC is off)"))

    # -- issuing ----------------------------------------------------------------------------
    def record(self, caller: Caller, fields: dict[str, Any]) -> dict[str, Any]:
        """Append a record in the caller's name; a failure is the gateway's (503), never
        the caller's, and stops whatever was about to be issued."""
        try:
            rec = self.trail.append(fields, principal=caller.principal, session=caller.principal)
        except S3fsvError as err:
            raise StoreUnavailable(f"cannot write the audit record: {err}") from None
        if rec is None:
            raise StoreUnavailable("the audit trail is off: nothing is issued")
        return rec

    def refused(self, caller: Caller, asked: str, why: str, repo: str | None = None) -> None:
        """Record a request refused in a known principal's name."""
        detail = {"asked": asked, "why": why, "via": caller.via}
        self.record(caller, {"action": "gateway.refused", "repo": repo, "detail": detail})

    def credentials(self, caller: Caller, state: AccessState) -> dict[str, Any]:
        if not state.grants_of(caller.principal):
            self.refused(caller, "credentials", "no grants")
            raise AccessDenied(f"{caller.principal} has no grants")
        issued = self.issuer.for_principal(state, caller.principal)
        scope = [g.describe() for g in state.grants_of(caller.principal)]
        self.record(
            caller,
            {
                "action": "gateway.credentials",
                "scope": scope,
                "expires": issued.expiration,
                "detail": {"via": caller.via, "access_key_id": issued.access_key_id},
            },
        )
        return {**issued.as_json(), "principal": caller.principal}

    def presign(self, caller: Caller, state: AccessState, body: dict[str, Any]) -> list[dict]:
        method = str(body.get("method", "")).upper()
        repo = str(body.get("repo", ""))
        paths = body.get("paths")
        if method not in ("GET", "PUT"):
            raise UsageError("method must be GET or PUT")
        if not isinstance(paths, list) or not paths or len(paths) > MAX_PATHS:
            raise UsageError(f"paths must be a list of 1 to {MAX_PATHS} repo paths")
        clean = ["/".join(split_path(str(p))) for p in paths]
        if any(not p for p in clean):
            raise UsageError("a path must name a file, not the repo's root")
        action = "upload" if method == "PUT" else "read"
        for path in clean:
            verdict = decide(state, caller.principal, action, repo, path=path)
            if not verdict.allowed:
                self.refused(caller, f"{method} {repo}:{path}", verdict.reason, repo)
                raise AccessDenied(str(verdict))
        signer, left = self.issuer.signer(state, caller.principal, needed=60)
        expires = int(min(PRESIGN_SECONDS, max(left - 5, 1)))
        if method == "PUT":
            out = [
                {"path": p, "url": signer.presign("PUT", f"_uploads/{repo}/{p}", expires)}
                for p in clean
            ]
        else:
            out = self._get_urls(signer, repo, str(body.get("ref") or "main"), clean, expires)
        until = datetime.now(timezone.utc) + timedelta(seconds=expires)
        self.record(
            caller,
            {
                "action": f"gateway.presign.{method.lower()}",
                "repo": repo,
                "ref": body.get("ref") if method == "GET" else None,
                "scope": [f"{method} {repo}:{p}" for p in clean][:50],
                "expires": until.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "detail": {"via": caller.via, "count": len(clean)},
            },
        )
        return out

    def _get_urls(
        self, signer: Any, repo: str, ref: str, paths: list[str], expires: int
    ) -> list[dict[str, Any]]:
        """Per file: its hash, size and the objects (with byte ranges) holding its bytes,
        looked up with the caller's own credentials."""
        inner = StoreLayerStore(signer).repo(repo)
        commit = inner.resolve(ref)
        out = []
        for path in paths:
            entry = inner.file_entry(commit, path)
            if entry.pack:
                end = entry.pack_offset + entry.size - 1
                parts = [
                    {
                        "url": signer.presign("GET", inner.objects.key(entry.pack), expires),
                        "range": f"bytes={entry.pack_offset}-{end}" if entry.size else None,
                    }
                ]
            else:
                parts = [
                    {"url": signer.presign("GET", inner.objects.key(c), expires), "range": None}
                    for c in entry.chunks
                ]
            out.append(
                {
                    "path": path,
                    "commit": commit,
                    "sha256": entry.sha256,
                    "size": entry.size,
                    "parts": parts,
                }
            )
        return out

    def client_record(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body.get("action"), str) or not body["action"]:
            raise UsageError("an audit record needs an action")
        if body["action"].startswith(("gateway.", "access.", "audit.")):
            raise UsageError(f"{body['action']} records are written by s3fsv itself")
        if len(json.dumps(body)) > MAX_RECORD_BYTES:
            raise UsageError(f"an audit record holds at most {MAX_RECORD_BYTES} bytes")
        rec = self.record(caller, body)
        return {"seq": rec["seq"]}


class _Unauthorized(Exception):
    pass


def _parse(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def build_app(gateway: Gateway) -> Any:
    """The Starlette application serving ``gateway``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def handler(fn: Any, *, auth: bool = True) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                body: Any = {}
                if request.method == "POST":
                    raw = await request.body()
                    if len(raw) > MAX_BODY_BYTES:
                        raise UsageError("request too large")
                    body = await request.json() if raw else {}
                    if not isinstance(body, dict):
                        raise UsageError("the request body must be a JSON object")
                if not auth:
                    return JSONResponse(await run_in_threadpool(fn))
                header = request.headers.get("authorization")
                caller, state = await run_in_threadpool(gateway.authenticate, header)
                result = await run_in_threadpool(fn, caller, state, body)
                return JSONResponse(result)
            except _Unauthorized as err:
                return JSONResponse({"error": str(err)}, status_code=401)
            except AccessDenied as err:
                return JSONResponse({"error": str(err)}, status_code=403)
            except (UsageError, ValueError) as err:
                return JSONResponse({"error": str(err)}, status_code=400)
            except S3fsvError as err:
                log.error("%s %s failed: %s", request.method, request.url.path, err)
                return JSONResponse({"error": str(err)}, status_code=503)

        return endpoint

    def info(caller: Caller, state: AccessState, body: Any) -> dict[str, Any]:
        return {
            "store": gateway.config.store_url,
            "endpoint_url": gateway.config.endpoint_url,
            "region": gateway.config.region,
            "principal": caller.principal,
            "grants": [g.describe() for g in state.grants_of(caller.principal)],
        }

    def check(caller: Caller, state: AccessState, body: dict[str, Any]) -> dict[str, Any]:
        verdict = decide(
            state,
            caller.principal,
            str(body.get("action", "")),
            str(body.get("repo", "")),
            body.get("branch"),
            str(body.get("path") or ""),
        )
        return {"allowed": verdict.allowed, "reason": verdict.reason}

    routes = [
        Route("/v1/health", handler(lambda: {"ok": True}, auth=False), methods=["GET"]),
        Route("/v1/info", handler(info), methods=["GET"]),
        Route(
            "/v1/credentials",
            handler(lambda c, s, b: gateway.credentials(c, s)),
            methods=["POST"],
        ),
        Route(
            "/v1/presign",
            handler(lambda c, s, b: {"urls": gateway.presign(c, s, b)}),
            methods=["POST"],
        ),
        Route("/v1/audit", handler(lambda c, s, b: gateway.client_record(c, b)), methods=["POST"]),
        Route("/v1/check", handler(check), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def serve(gateway: Gateway, host: str, port: int) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), in this thread."""
    import uvicorn

    uvicorn.run(build_app(gateway), host=host, port=port, log_level="warning", access_log=False)
