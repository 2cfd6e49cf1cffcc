"""What the gateway hands out: temporary credentials from ``sts:AssumeRole`` on the ceiling
role, with ``RoleSessionName`` = the principal and an inline session policy compiled from its
grants (so the engine enforces them), and URLs presigned with such credentials.

The gateway's own long-lived credentials (the standard AWS chain) are used for nothing but
``AssumeRole``: its own store access (reading grants, appending audit records) is itself a
session of the ceiling role, restricted by :func:`~s3fsv.access.policy.gateway_policy`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from s3fsv.access.model import AccessState
from s3fsv.access.policy import Location, compact, gateway_policy, session_policy
from s3fsv.errors import UsageError
from s3fsv.store.backend.aws import (
    control_client,
    errors,
    refreshing_credentials,
    static_credentials,
)
from s3fsv.store.backend.s3 import S3Backend

# 15 minutes: what the gateway asks for, the shortest STS issues on AWS; an engine whose
# sessions are capped lower (SeaweedFS's maxSessionLength) issues shorter ones.
LIFETIME = 900
GATEWAY_SESSION = "s3fsv-gateway"


@dataclass
class IssuerConfig:
    """The store and the ceiling role. ``access_key``/``secret_key`` replace the standard
    chain for the gateway's own identity (tests; services use the chain)."""

    store_url: str
    role_arn: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.role_arn:
            raise UsageError("the gateway needs the ARN of its ceiling role (--role-arn)")


@dataclass(frozen=True)
class Issued:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: str  # ISO-8601 UTC
    policy: dict[str, Any]

    def as_json(self) -> dict[str, str]:
        return {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "session_token": self.session_token,
            "expiration": self.expiration,
        }

    def seconds_left(self) -> float:
        end = datetime.fromisoformat(self.expiration.replace("Z", "+00:00"))
        return (end - datetime.now(timezone.utc)).total_seconds()


class Issuer:
    """Assumes the ceiling role for principals and for the gateway itself. Thread-safe."""

    def __init__(self, config: IssuerConfig) -> None:
        self.config = config
        self.where = Location.of(config.store_url)
        self._sts = control_client(
            "sts",
            config.endpoint_url,
            region=config.region,
            access_key=config.access_key,
            secret_key=config.secret_key,
        )
        self._signers: dict[str, tuple[int, Issued, S3Backend]] = {}
        self._lock = threading.Lock()

    def assume(self, session: str, policy: dict[str, Any]) -> Issued:
        """Credentials of the ceiling role for ``session``, limited by ``policy``."""
        with errors(f"AssumeRole for {session}"):
            resp = self._sts.assume_role(
                RoleArn=self.config.role_arn,
                RoleSessionName=session,
                Policy=compact(policy),
                DurationSeconds=LIFETIME,
            )
        c = resp["Credentials"]
        expiration = c["Expiration"]
        if isinstance(expiration, datetime):
            expiration = expiration.astimezone(timezone.utc)
        else:
            expiration = datetime.fromisoformat(str(expiration).replace("Z", "+00:00"))
        return Issued(
            c["AccessKeyId"],
            c["SecretAccessKey"],
            c["SessionToken"],
            expiration.isoformat(timespec="seconds").replace("+00:00", "Z"),
            policy,
        )

    def for_principal(self, state: AccessState, principal: str) -> Issued:
        return self.assume(principal, session_policy(state, self.where, principal))

    def own_credentials(self) -> Any:
        """Refreshing credentials for the gateway's own store access."""
        return refreshing_credentials(
            lambda: self.assume(GATEWAY_SESSION, gateway_policy(self.where)).as_json(),
            method="s3fsv-gateway-self",
        )

    def signer(self, state: AccessState, principal: str, needed: float) -> tuple[S3Backend, float]:
        """A backend holding ``principal``'s session credentials, valid at least ``needed``
        seconds more, for presigning, and how many seconds they have left. Reused while the
        grants are unchanged (``state.seq``)."""
        with self._lock:
            cached = self._signers.get(principal)
        if cached is not None:
            seq, issued, backend = cached
            if seq == state.seq and issued.seconds_left() > needed:
                return backend, issued.seconds_left()
        issued = self.for_principal(state, principal)
        backend = S3Backend(
            self.where.bucket,
            self.where.prefix,
            self.config.endpoint_url,
            region=self.config.region,
            credentials=static_credentials(
                issued.access_key_id, issued.secret_access_key, issued.session_token
            ),
        )
        with self._lock:  # a replaced signer may still be in use: left to the collector
            self._signers[principal] = (state.seq, issued, backend)
        return backend, issued.seconds_left()
