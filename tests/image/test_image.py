"""The operator image, as `make image` builds it (hack/image/build.py): a valid OCI archive,
reproducible, and a container that runc runs the way the chart's pod spec does.

The module builds the image itself from the working tree (the Debian root filesystem and
the wheels come from the cache in ~/.cache/certmint, so this takes about half a minute
once they are there), so it always tests the code it sits next to. It needs root
(mmdebstrap, chroot, runc), mmdebstrap, umoci, skopeo, runc and docker-registry; a missing
one fails the tests with the command that installs it (hack/install-system-deps.sh),
never skips them.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

import localcluster
from conftest import OPERATOR_NAMESPACE, apply, control_plane, get_json, run_kubectl, wait_for_events

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "hack" / "image" / "build.py"
CHART = REPO / "charts" / "certmint"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
DEFAULT_IMAGE = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"] + ":" + VERSION
# The pod's terminationGracePeriodSeconds: the chart's, or Kubernetes' default of 30 s.
_grace = re.search(r"terminationGracePeriodSeconds:\s*(\d+)", (CHART / "templates" / "deployment.yaml").read_text())
GRACE_PERIOD = int(_grace.group(1)) if _grace else 30
TOOLS = ("mmdebstrap", "umoci", "skopeo", "runc", "docker-registry")


def require_tools() -> None:
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    assert not missing, f"missing {', '.join(missing)}: run hack/install-system-deps.sh"
    assert os.geteuid() == 0, "the image tests need root: mmdebstrap, chroot and runc"


def build(dist: Path, *args: str) -> dict:
    """Run the image build into dist and return the summary it writes next to the archive."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(BUILD), "--dist", str(dist), *args], capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, f"image build failed ({result.returncode}):\n{result.stderr[-6000:]}"
    summary = json.loads((dist / f"certmint-{VERSION}.oci.json").read_text())
    summary["seconds"] = time.monotonic() - started
    assert result.stdout.strip() == summary["digest"]
    return summary


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    require_tools()
    dist = tmp_path_factory.mktemp("dist")
    summary = build(dist)
    print(f"\nimage build: {summary['seconds']:.0f} s, {summary['digest']}")
    return dist / f"certmint-{VERSION}.oci.tar", summary


@pytest.fixture(scope="module")
def layout(image, tmp_path_factory) -> Path:
    """The archive unpacked: an OCI image layout directory."""
    directory = tmp_path_factory.mktemp("layout")
    with tarfile.open(image[0]) as tar:
        tar.extractall(directory, filter="data")
    return directory


def blob(layout: Path, digest: str) -> bytes:
    algorithm, hexdigest = digest.split(":")
    assert algorithm == "sha256"
    return (layout / "blobs" / "sha256" / hexdigest).read_bytes()


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_archive_is_a_valid_oci_image_with_the_charts_contract(image, layout):
    archive, summary = image
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2 and len(index["manifests"]) == 1
    descriptor = index["manifests"][0]
    # The tag `oci-archive:FILE:TAG` selects, and the name containerd (kind load) and Docker import it as.
    assert descriptor["annotations"] == {"org.opencontainers.image.ref.name": VERSION,
                                         "io.containerd.image.name": DEFAULT_IMAGE}

    # Every blob is what its name and its descriptor say.
    for path in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"blob {path.name} is corrupt"
    manifest_bytes = blob(layout, descriptor["digest"])
    assert len(manifest_bytes) == descriptor["size"]
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config_bytes = blob(layout, manifest["config"]["digest"])
    assert len(config_bytes) == manifest["config"]["size"]
    (layer,) = manifest["layers"]  # one layer
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    layer_bytes = blob(layout, layer["digest"])
    assert len(layer_bytes) == layer["size"]
    assert layer["size"] < 100e6, "the image must stay under 100 MB compressed"

    config = json.loads(config_bytes)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["rootfs"] == {"type": "layers",
                                "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(layer_bytes)).hexdigest()]}
    run = config["config"]
    assert run["User"] == "65532:65532"
    assert run["Entrypoint"] == ["certmint"] and run["Cmd"] == ["operator"]
    assert run["ExposedPorts"] == {"9402/tcp": {}}
    assert run["Env"][0].startswith("PATH=/opt/certmint/bin:")
    labels = run["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    # The commit the build started from (others may commit while it runs), "-dirty" when the
    # working tree's sources differ from it; created is that commit's time.
    commit = labels["org.opencontainers.image.revision"].removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and git("cat-file", "-t", commit) == "commit"
    commit_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(git("log", "-1", "--format=%ct", commit))))
    assert labels["org.opencontainers.image.created"] == config["created"] == commit_time
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["io.certmint.image.debian-packages"] == summary["debian"]["packages_digest"]

    # The `docker save` manifest points at the same blobs, for `docker load`.
    docker = json.loads((layout / "manifest.json").read_text())
    assert docker == [{"Config": "blobs/sha256/" + manifest["config"]["digest"].split(":")[1],
                       "RepoTags": [DEFAULT_IMAGE], "Layers": ["blobs/sha256/" + layer["digest"].split(":")[1]]}]

    # Two independent readers agree: skopeo (containers/image) and umoci.
    inspect = json.loads(subprocess.run(["skopeo", "inspect", f"oci-archive:{archive}:{VERSION}"],
                                        check=True, capture_output=True, text=True).stdout)
    assert inspect["Digest"] == summary["digest"] == descriptor["digest"]
    assert inspect["Layers"] == [layer["digest"]] and inspect["Labels"] == labels
    stat = subprocess.run(["umoci", "stat", "--json", "--image", f"{layout}:{VERSION}"],
                          check=True, capture_output=True, text=True).stdout
    assert json.loads(stat)["history"][0]["created_by"].startswith("hack/image/build.py")


def test_layer_holds_only_the_runtime_with_fixed_owners_and_times(image, layout):
    _, summary = image
    manifest = json.loads(blob(layout, json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]))
    epoch = int(git("log", "-1", "--format=%ct", summary["revision"].removesuffix("-dirty")))
    names, pyc_flags = [], set()
    with tarfile.open(fileobj=io.BytesIO(blob(layout, manifest["layers"][0]["digest"]))) as tar:
        for member in tar:
            names.append(member.name)
            assert member.mtime == epoch, f"{member.name}: mtime {member.mtime}, not the commit time"
            assert member.uname == member.gname == "", f"{member.name}: owner names leak the build host"
            # Debian's static system ids (root; group shadow for unix_chkpwd): nothing of the build
            # host's users, and nothing the container's user 65532 could change.
            assert member.uid == 0 and member.gid < 100, f"{member.name} is owned by {member.uid}:{member.gid}"
            if member.name.endswith(".pyc"):
                header = tar.extractfile(member).read(16)
                pyc_flags.add(int.from_bytes(header[4:8], "little"))
            if member.name == "etc/passwd":
                passwd = tar.extractfile(member).read().decode()
            if member.name == "opt/certmint/bin/certmint":
                script = tar.extractfile(member).read().decode()
    # Sorted, parents first: the order does not depend on the file system that built it.
    assert names == sorted(names, key=lambda n: n.split("/")), "layer entries are not in name order"
    # Bytecode only in unchecked-hash form (flags 0b01): no build timestamps, never re-validated at run time.
    assert pyc_flags == {1}
    assert "certmint:x:65532:65532::/nonexistent:/usr/sbin/nologin" in passwd.splitlines()
    assert script.startswith("#!/opt/certmint/bin/python\n")
    site = "opt/certmint/lib/python3.11/site-packages/"
    assert f"{site}certmint/cli/__init__.py" in names or f"{site}certmint/cli.py" in names
    leftovers = (f"{site}pip/", f"{site}setuptools/", "usr/share/man/", "usr/share/info/", "var/lib/apt/lists/",
                 "var/cache/apt/", "var/log/", "dev/", "tmp/")
    unwanted = [n for n in names if n.startswith(leftovers)
                or re.match(r"usr/share/locale/[^/]+/", n)  # translations
                or re.match(r"usr/share/doc/[^/]+/(?!copyright$)", n)  # docs; the licenses stay
                or re.match(rf"{site}[^/]+/tests?/", n)]
    assert not unwanted, f"build leftovers in the image: {unwanted[:10]}"
    assert {"python3", "ca-certificates", "netbase", "tzdata"} <= set(summary["debian"]["packages"])
    assert summary["debian"]["packages"]["python3"].startswith("3.11.")
    # Exactly the lock's versions, nothing more (names normalised as PEP 503 does).
    lock = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", (REPO / "requirements-operator.lock").read_text(),
                      re.MULTILINE)
    locked = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in lock}
    installed = dict(summary["python"])
    assert installed.pop("certmint") == VERSION
    assert installed == locked


@pytest.fixture
def isolated_cluster(tmp_path):
    """A control plane of its own: the suite's session operator watches every namespace of the
    shared one and could issue the test's Certificate before the container does."""
    with control_plane(tmp_path / "cluster") as cluster:
        yield cluster


def bundle_config(bundle: Path, kubeconfig: Path, port: int, pod_name: str) -> dict:
    """umoci's runtime config for the image, made to match the chart's pod spec."""
    config = json.loads((bundle / "config.json").read_text())
    process = config["process"]
    assert process["user"] == {"uid": 65532, "gid": 65532}, "umoci takes the user from the image config"
    assert process["args"] == ["certmint", "operator"]
    process["terminal"] = False
    process["args"] += ["--kubeconfig", "/etc/certmint/kubeconfig", "--metrics-host", "127.0.0.1",
                        "--metrics-port", str(port), "--cluster-resource-namespace", OPERATOR_NAMESPACE]
    process["env"] += [f"POD_NAME={pod_name}", f"POD_NAMESPACE={OPERATOR_NAMESPACE}"]
    # The chart drops all capabilities and forbids privilege escalation.
    process["capabilities"] = {kind: [] for kind in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    process["noNewPrivileges"] = True
    config["root"]["readonly"] = True  # readOnlyRootFilesystem
    # No network namespace: the container shares the host's, where the API server listens on 127.0.0.1.
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"]
    config["mounts"] += [
        # The chart's /tmp emptyDir.
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=16m"]},
        # The kubeconfig, read-only as a mounted Secret would be.
        {"destination": "/etc/certmint/kubeconfig", "type": "bind", "source": str(kubeconfig),
         "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]},
    ]
    return config


SELF_SIGNED = """
apiVersion: certmint.io/v1
kind: Issuer
metadata:
  name: selfsigned
spec:
  selfSigned: {}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata:
  name: web
spec:
  secretName: web-tls
  commonName: web.example.com
  dnsNames: [web.example.com]
  privateKey:
    algorithm: ECDSA
    size: 256
  issuerRef:
    name: selfsigned
"""


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except OSError:
        return None


def test_runc_runs_the_image_as_65532_read_only_and_it_issues(image, layout, isolated_cluster, tmp_path):
    bundle, state = tmp_path / "bundle", tmp_path / "runc"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{VERSION}", str(bundle)], check=True,
                   capture_output=True)
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copyfile(isolated_cluster.kubeconfig, kubeconfig)
    kubeconfig.chmod(0o644)  # as a Secret volume's default mode: readable by the container's user
    port = localcluster.free_port()
    container = f"certmint-image-{uuid.uuid4().hex[:8]}"
    (bundle / "config.json").write_text(json.dumps(bundle_config(bundle, kubeconfig, port, container)))
    log = tmp_path / "operator.log"
    url = f"http://127.0.0.1:{port}"

    def kubectl(*args: str, **kwargs):
        return run_kubectl(isolated_cluster, *args, **kwargs)

    with open(log, "wb") as out:
        started = time.monotonic()
        runc = subprocess.Popen(["runc", "--root", str(state), "run", "--bundle", str(bundle), container],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        while http_status(url + "/readyz") != 200:
            assert runc.poll() is None, f"the container exited with {runc.returncode}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() - started < 90, f"not ready within 90 s:\n{log.read_text()[-4000:]}"
            time.sleep(0.1)
        cold_start = time.monotonic() - started
        print(f"\ncold start in the container (runc run -> /readyz 200): {cold_start:.1f} s")

        # It runs as 65532, on a root file system it cannot write (not even as root in it).
        pid = json.loads(subprocess.run(["runc", "--root", str(state), "state", container], check=True,
                                        capture_output=True, text=True).stdout)["pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(r"^Uid:\s+65532\s+65532\s+65532\s+65532$", status, re.MULTILINE), status
        assert re.search(r"^CapEff:\s+0+$", status, re.MULTILINE), "all capabilities dropped"
        write = subprocess.run(["runc", "--root", str(state), "exec", "--user", "0:0", container,
                                "/bin/sh", "-c", "touch /opt/certmint/probe"], capture_output=True, text=True)
        assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr

        namespace = f"image-{uuid.uuid4().hex[:6]}"
        kubectl("create", "namespace", namespace)
        apply(kubectl, namespace, SELF_SIGNED)
        kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=60s", "certificate/web", timeout=90)
        secret = get_json(kubectl, "secret", "-n", namespace, "web-tls")
        assert secret["type"] == "kubernetes.io/tls" and {"tls.crt", "tls.key", "ca.crt"} <= set(secret["data"])
        # The container did it: its events carry the POD_NAME it was given.
        wait_for_events(kubectl, namespace, lambda events: any(
            e["reason"] == "Issued" and e.get("reportingInstance") == container for e in events))
        assert http_status(url + "/healthz") == 200
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert any(line.startswith("certmanager_certificate_ready_status{") and f'namespace="{namespace}"' in line
                   and 'name="web"' in line and line.endswith('condition="True"} 1.0')
                   for line in metrics.splitlines()), "the container's metrics show the Certificate Ready"

        # SIGTERM, as the kubelet sends it (through the runtime); it must be gone within the grace period.
        stopping = time.monotonic()
        subprocess.run(["runc", "--root", str(state), "kill", container, "TERM"], check=True)
        code = runc.wait(GRACE_PERIOD)
        stopped = time.monotonic() - stopping
        print(f"stopped {stopped:.1f} s after SIGTERM, exit code {code}")
        assert code == 0, f"exit code {code} after SIGTERM:\n{log.read_text()[-4000:]}"
        assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
    finally:
        if runc.poll() is None:
            subprocess.run(["runc", "--root", str(state), "kill", container, "KILL"], capture_output=True)
            runc.wait(10)
        subprocess.run(["runc", "--root", str(state), "delete", "--force", container], capture_output=True)


def test_skopeo_copy_to_a_registry_keeps_the_digest_the_chart_pins(image, tmp_path):
    """What docs/install.md tells users to run, against a real registry (Distribution, from
    Debian's docker-registry package) on 127.0.0.1."""
    archive, summary = image
    port = localcluster.free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    registry = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while http_status(f"http://127.0.0.1:{port}/v2/") != 200:
            assert registry.poll() is None and time.monotonic() < deadline, "the registry did not start"
            time.sleep(0.1)
        repository = f"127.0.0.1:{port}/certmint"
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci-archive:{archive}",
                        f"docker://{repository}:{VERSION}"], check=True, capture_output=True, timeout=300)
        # The chart's image.digest value: "repository@digest" resolves to the same image.
        pulled = json.loads(subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{repository}@{summary['digest']}"],
            check=True, capture_output=True, text=True).stdout)
        assert pulled["Digest"] == summary["digest"]
        tagged = json.loads(subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{repository}:{VERSION}"],
            check=True, capture_output=True, text=True).stdout)
        assert tagged["Digest"] == summary["digest"], "the tag names the same manifest, unconverted"
    finally:
        registry.terminate()
        registry.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_two_builds_of_one_commit_give_the_same_digest(tmp_path):
    """From the committed sources (the working tree may change while the builds run)."""
    require_tools()
    commit = git("rev-parse", "HEAD")
    first = build(tmp_path / "first", "--commit", commit)
    second = build(tmp_path / "second", "--commit", commit)
    print(f"\nbuilds of {commit[:12]}: {first['digest']} ({first['seconds']:.0f} s), "
          f"{second['digest']} ({second['seconds']:.0f} s)")
    assert first["revision"] == commit
    assert second["digest"] == first["digest"], (first, second)
    assert (tmp_path / "first" / f"certmint-{VERSION}.oci.tar").read_bytes() == \
        (tmp_path / "second" / f"certmint-{VERSION}.oci.tar").read_bytes()
