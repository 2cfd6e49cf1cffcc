"""Credentials for the S3 backend: a given credentials object as the only source of a botocore
session, and which source the standard chain would use (never the credentials themselves)."""

from __future__ import annotations

from typing import Any

import botocore.credentials
import botocore.session


class _Given(botocore.credentials.CredentialProvider):  # type: ignore[misc]
    METHOD = "s3fsv-given"

    def __init__(self, credentials: Any) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Any:
        return self._credentials


def given_credentials(core: botocore.session.Session, credentials: Any) -> None:
    """Make ``credentials`` the only source a botocore session's clients use (the standard
    chain would otherwise pick up environment variables or a profile first)."""
    resolver = botocore.credentials.CredentialResolver(providers=[_Given(credentials)])
    core.register_component("credential_provider", resolver)


def credentials_method() -> str | None:
    """Where the standard chain finds credentials here (botocore's name for it: ``env``,
    ``shared-credentials-file``, ``iam-role``, ``assume-role``...), or None when it finds none.
    Never the credentials themselves."""
    try:
        creds = botocore.session.Session().get_credentials()
    except Exception:  # a broken profile: the store's own error says more
        return None
    return None if creds is None else str(creds.method)
