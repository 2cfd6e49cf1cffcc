"""The example systemd units pass ``systemd-analyze verify`` (their ``s3fsv`` binary pointed at
one this test makes), and the mount service is a notify service that restarts on failure."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "examples" / "systemd"


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    binary = tmp_path / "bin" / "s3fsv"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    names = {
        "s3fsv-mount@.service": "s3fsv-mount@mnt-data.service",  # an instance of the template
        "s3fsv-pipeline-watch.service": "s3fsv-pipeline-watch.service",
        "mnt-data.mount": "mnt-data.mount",
    }
    for source, target in names.items():
        text = (UNITS / source).read_text()
        (tmp_path / target).write_text(text.replace("/usr/local/bin/s3fsv", str(binary)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in names.values())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_mount_service_is_notify_restarts_and_waits_for_the_network() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNITS / "s3fsv-mount@.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "on-failure"
    assert "--foreground" in service["ExecStart"] and "WatchdogSec" in service
    assert "network-online.target" in unit["Unit"]["After"]
    mount = configparser.ConfigParser(strict=False, interpolation=None)
    mount.read(UNITS / "mnt-data.mount")
    assert mount["Mount"]["type"] == "fuse.s3fsv" and "_netdev" in mount["Mount"]["options"]
