"""Botocore session plumbing for the S3 backend: a given credentials object as the only source
of a session, which source the standard chain would use (never the credentials themselves),
and one data loader shared by every session of the process, quicker than botocore's own."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import botocore.credentials
import botocore.loaders
import botocore.session
from botocore.exceptions import DataNotFoundError


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


_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def shared_loader(core: botocore.session.Session) -> Any:
    """The data loader of the first session made here, for every later one too: it caches
    the service models it parses, so that a second client (a run's mount next to the run's
    own store) costs a sixth of the first (measured: 7 ms of CPU instead of 43). It is
    botocore's loader for the session's ``data_path``, except as :class:`_Loader` and
    :class:`_PlainJSONLoader` say."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            data_path = core.get_config_variable("data_path")
            extra = [
                os.path.expanduser(os.path.expandvars(path))
                for path in (data_path.split(os.pathsep) if data_path else ())
            ]
            _LOADER = _Loader(extra_search_paths=extra or None, file_loader=_PlainJSONLoader())
        return _LOADER


class _Loader(botocore.loaders.Loader):  # type: ignore[misc]
    """botocore's loader, but a client's model is found without listing every service botocore
    knows first (which it does only to check that the one asked for is among them): hundreds
    of directories looked through, once per model type, 17 ms of the first client's 75 ms of
    CPU (measured), and disk reads with a cold page cache. Only the asked-for service's
    directory is looked at; the whole list is still made when something lists it."""

    def list_available_services(self, type_name: str) -> Sequence[str]:
        return _KnownServices(
            lambda: list(super(_Loader, self).list_available_services(type_name)),
            lambda name: self._has_service(name, type_name),
        )

    def _has_service(self, name: str, type_name: str) -> bool:
        try:
            return bool(self.list_api_versions(name, type_name))
        except DataNotFoundError:
            return False


class _PlainJSONLoader(botocore.loaders.JSONFileLoader):  # type: ignore[misc]
    """botocore's model files parsed into plain dicts (ordered, as every dict is) rather than
    ``OrderedDict``s, whose hook made parsing ``endpoints.json`` and the S3 model several times
    slower: another 17 ms of the first client's 75 ms of CPU (measured)."""

    def _load_file(self, full_path: str, open_method: Callable[..., Any]) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            payload = fp.read().decode("utf-8")
        return json.loads(payload)


class _KnownServices(Sequence[str]):
    """The services of one model type: ``in`` asks about one service; anything else lists
    them all (once)."""

    def __init__(self, listed: Callable[[], list[str]], has: Callable[[str], bool]) -> None:
        self._listed, self._has = listed, has
        self._all: list[str] | None = None

    def __contains__(self, name: object) -> bool:
        if self._all is not None:
            return name in self._all
        return isinstance(name, str) and "/" not in name and self._has(name)

    def _names(self) -> list[str]:
        if self._all is None:
            self._all = self._listed()
        return self._all

    def __getitem__(self, index: Any) -> Any:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())
