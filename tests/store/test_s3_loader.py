"""The data loader every S3 client of the process shares (``s3_credentials.shared_loader``):
it answers as botocore's own does (same services, same models, an unknown service refused),
only without listing every service first and without ``OrderedDict``s."""

from __future__ import annotations

import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import UnknownServiceError

from s3fsv.store.backend import s3_credentials
from s3fsv.store.backend.s3_credentials import shared_loader


def test_the_shared_loader_knows_the_services_botocore_knows() -> None:
    ours = shared_loader(botocore.session.Session())
    theirs = botocore.loaders.create_loader()
    known = ours.list_available_services("service-2")
    assert "s3" in known and "sts" in known
    assert "no-such-service" not in known and "../s3" not in known
    assert list(known) == theirs.list_available_services("service-2")
    assert len(known) == len(theirs.list_available_services("service-2"))


def test_the_shared_loader_loads_the_same_model_as_plain_dicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fresh loader: clients edit the models they were given in place (botocore strips
    # "/{Bucket}" from S3 request paths once, as it does for clients sharing one session).
    monkeypatch.setattr(s3_credentials, "_LOADER", None)
    ours = shared_loader(botocore.session.Session())
    model = ours.load_service_model("s3", "service-2")
    expected = botocore.loaders.create_loader().load_service_model("s3", "service-2")
    assert model == expected
    assert type(model) is dict and list(model["operations"]) == list(expected["operations"])


def test_an_unknown_service_is_refused_as_botocore_refuses_it() -> None:
    core = botocore.session.Session()
    core.register_component("data_loader", shared_loader(core))
    with pytest.raises(UnknownServiceError):
        core.create_client("no-such-service", region_name="us-east-1")
