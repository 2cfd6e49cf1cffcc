"""The DaemonSet example mounts with Bidirectional propagation in a privileged container and
its example reader sees the node's mount with HostToContainer propagation."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "kubernetes" / "mount-daemonset.yaml"


def test_daemonset_propagates_the_mount_to_the_host() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    (daemon,) = pod["containers"]
    assert daemon["securityContext"]["privileged"] is True
    mounts = {m["name"]: m for m in daemon["volumeMounts"]}
    assert mounts["mounts"]["mountPropagation"] == "Bidirectional"
    command = " ".join(daemon["args"])
    assert "s3fsv mount --foreground" in command and "/mnt/s3fsv/data" in command
    assert daemon["readinessProbe"]["exec"]["command"][:2] == ["s3fsv", "status"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    assert volumes["mounts"] == "/mnt/s3fsv" and volumes["fuse"] == "/dev/fuse"
    reader = docs["Pod"]["spec"]["containers"][0]["volumeMounts"][0]
    assert reader["mountPropagation"] == "HostToContainer"
    assert docs["Pod"]["spec"]["volumes"][0]["hostPath"]["path"] == "/mnt/s3fsv/data"
