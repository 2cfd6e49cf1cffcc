"""OIDC bearer tokens (JWTs) from a configured issuer, verified with PyJWT: signature against
the issuer's JWKS (a local file, or the issuer's ``jwks_uri`` fetched by PyJWT's client),
``iss``, ``aud``, ``exp`` and ``iat``; the principal is one claim (``sub`` by default)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3fsv.access.model import check_principal
from s3fsv.errors import AccessDenied, InvalidName, UsageError

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
LEEWAY = 30  # seconds of clock skew tolerated on exp/iat/nbf


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    jwks: str  # a JWKS file, or an https:// URL
    claim: str = "sub"


class OidcVerifier:
    def __init__(self, config: OidcConfig) -> None:
        import jwt

        self.config = config
        self._client: Any = None
        self._keys: Any = None
        if config.jwks.startswith("https://"):
            self._client = jwt.PyJWKClient(config.jwks, cache_keys=True)
        else:
            try:
                data = json.loads(Path(config.jwks).read_text())
                self._keys = jwt.PyJWKSet.from_dict(data)
            except (OSError, ValueError, jwt.PyJWTError) as err:
                raise UsageError(f"cannot load the JWKS {config.jwks}: {err}") from None

    def principal(self, token: str) -> str:
        """The principal a valid token names; ``AccessDenied`` for any invalid token."""
        import jwt

        try:
            if self._client is not None:
                key = self._client.get_signing_key_from_jwt(token).key
            else:
                kid = jwt.get_unverified_header(token).get("kid")
                key = self._keys[kid].key if kid else self._keys.keys[0].key
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except (jwt.PyJWTError, KeyError) as err:
            raise AccessDenied(f"OIDC token refused: {err or type(err).__name__}") from None
        name = claims.get(self.config.claim)
        try:
            return check_principal(str(name))
        except InvalidName:
            raise AccessDenied(
                f"OIDC claim {self.config.claim} ({name!r}) is not a principal name"
            ) from None
