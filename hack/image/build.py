"""Build the certmint operator image as an OCI archive, without a container engine.

    sudo .venv/bin/python hack/image/build.py          # what `make image` runs
    -> dist/certmint-<version>.oci.tar                  the image (OCI layout in a tar)
       dist/certmint-<version>.oci.json                 its digest and every package version in it

Steps, all from Debian's and PyPI's packages (no base image is pulled):

1. A Debian bookworm root filesystem: mmdebstrap's Essential set plus hack/image/packages.txt
   (Python 3.11, ca-certificates, netbase, tzdata), without recommends, docs, man pages or
   locales. Cached in ~/.cache/certmint/image-rootfs-<hash>/, keyed by the package list,
   suite, mirrors and options.
2. The wheels of requirements-operator.lock and build.lock (hashes checked by pip), cached in
   ~/.cache/certmint/wheels-<hash of the lock files>/, and a wheel of certmint built from
   the working tree (or, with --commit, from that commit's sources). CERTMINT_CACHE_DIR
   moves the cache.
3. In a copy of the root filesystem (chroot): a venv at /opt/certmint, the wheels installed
   with --no-index --require-hashes by a pinned pip run from its wheel (so no pip or
   setuptools stays in the image), the user 65532, bytecode compiled with
   --invalidation-mode unchecked-hash (no build time in it; the root filesystem is
   read-only at run time, so Python could not cache it there later), caches and logs removed.
4. One layer, written by oci.py: name-sorted, numeric owners, every mtime the commit time.

Reproducible: the same commit and the same Debian packages give the same image digest.
SOURCE_DATE_EPOCH is the commit time. What is not pinned: the Debian mirror serves the
current bookworm point release and security updates, so a build on another day may get
newer packages; the exact versions are recorded in the .oci.json next to the archive, in
the image's dpkg database, and a digest of the list in the label io.certmint.image.debian-packages.
The gzip stream also depends on the zlib of the Python that builds it (the layer's diff_id
does not). A cached root filesystem keeps the package versions it was built with, so that
rebuilds stay identical; --refresh-rootfs builds it again from the mirror (to take Debian's
security updates).
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import oci  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# What the image is; tests/unit/test_dockerfile.py keeps the Dockerfile in step with these.
IMAGE_REPOSITORY = "ghcr.io/certmint/certmint"
SOURCE_URL = "https://github.com/certmint/certmint"
VENV = "/opt/certmint"
UID = GID = 65532
USER_NAME = "certmint"
ENTRYPOINT = ["certmint"]
CMD = ["operator"]
METRICS_PORT = 9402
ENV = [
    f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "PYTHONDONTWRITEBYTECODE=1",
    "PYTHONUNBUFFERED=1",
]

SUITE = "bookworm"
MIRRORS = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]
# The image's Python: Debian bookworm's. The wheels are chosen for it (CPython 3.11,
# glibc 2.36 >= the lock's manylinux_2_28).
PYTHON = "/usr/bin/python3"
PY_TAGS = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
           "--only-binary=:all:"]
# pip does not widen an explicit --platform to the older manylinux tags it is compatible
# with, so list them: manylinux_2_28 (what the lock was made for) down to manylinux2014.
PLATFORMS = [arg for n in range(28, 16, -1) for arg in ("--platform", f"manylinux_2_{n}_x86_64")] + \
    ["--platform", "manylinux2014_x86_64", "--platform", "manylinux1_x86_64"]

MMDEBSTRAP_OPTIONS = [
    "--mode=root", "--variant=essential", "--architectures=amd64",
    # /bin -> usr/bin etc. as symlinks, as bookworm expects, without the usrmerge package
    # (which would pull in perl).
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    '--aptopt=APT::Install-Recommends "false"',
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/lintian/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    # Licenses stay: the image redistributes these packages.
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
]
# Bump when the steps that shape the cached root filesystem change in a way the options do not show.
ROOTFS_RECIPE = "1"
# mmdebstrap's SOURCE_DATE_EPOCH, fixed so that the cached root filesystem does not depend on
# the commit that first built it (packing sets every mtime to the commit time anyway).
ROOTFS_EPOCH = 1700000000

# Left in the rootfs by the package manager or copied from the build host; none belongs in an image.
REMOVE = [
    "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "var/cache/apt/*", "var/lib/apt/lists/*",
    "var/log/*", "var/cache/ldconfig/aux-cache", "etc/machine-id", "var/lib/dbus/machine-id",
    "usr/share/bash-completion", "root/.cache",
]
EMPTY = ["etc/resolv.conf", "etc/hostname"]  # the runtime mounts its own


STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"image: [{time.monotonic() - STARTED:5.1f}s] {message}", file=sys.stderr, flush=True)


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, **kwargs)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def cache_root() -> Path:
    base = os.environ.get("CERTMINT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "certmint")
    return Path(base)


@contextmanager
def locked(path: Path):
    """Serialises builds that fill the same cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def packages() -> list[str]:
    lines = (HERE / "packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def rootfs_key() -> str:
    recipe = {"suite": SUITE, "mirrors": MIRRORS, "options": MMDEBSTRAP_OPTIONS, "packages": packages(),
              "recipe": ROOTFS_RECIPE}
    return hashlib.sha256(oci.canonical_json(recipe)).hexdigest()[:16]


def cached_rootfs(refresh: bool = False) -> Path:
    """The Debian root filesystem, from the cache or built with mmdebstrap."""
    target = cache_root() / f"image-rootfs-{rootfs_key()}"
    with locked(cache_root() / f".image-rootfs-{rootfs_key()}.lock"):
        if (target / ".complete").exists() and not refresh:
            log(f"Debian root filesystem from {target}")
            return target / "rootfs"
        shutil.rmtree(target, ignore_errors=True)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        log(f"building the Debian {SUITE} root filesystem with mmdebstrap into {target}")
        run("mmdebstrap", *MMDEBSTRAP_OPTIONS, "--include=" + ",".join(packages()), SUITE,
            str(partial / "rootfs"), *MIRRORS,
            env={**os.environ, "SOURCE_DATE_EPOCH": str(ROOTFS_EPOCH)}, stdout=sys.stderr)
        (partial / ".complete").write_text("")
        partial.rename(target)
        return target / "rootfs"


def cached_wheels() -> Path:
    """Every wheel the lock files name, downloaded once per lock (pip checks each hash)."""
    locks = [REPO / "requirements-operator.lock", HERE / "build.lock"]
    key = hashlib.sha256(b"".join(p.read_bytes() for p in locks) + oci.canonical_json(PLATFORMS + PY_TAGS)).hexdigest()[:16]
    target = cache_root() / f"wheels-{key}"
    with locked(cache_root() / f".wheels-{key}.lock"):
        if (target / ".complete").exists():
            log(f"wheels from {target}")
            return target
        shutil.rmtree(target, ignore_errors=True)
        log(f"downloading the locked wheels into {target}")
        for lock in locks:
            run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes", "-r", str(lock),
                *PLATFORMS, *PY_TAGS, "--dest", str(target), env=pip_env())
        (target / ".complete").write_text("")
        return target


def pip_env() -> dict[str, str]:
    """The environment without the caller's PIP_* settings (find-links, indexes) that would change what pip picks."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")} | \
        {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}


SOURCES = ["pyproject.toml", "README.md", "operator"]


def certmint_wheel(workdir: Path, wheels: Path, epoch: int, commit: str | None) -> Path:
    """A wheel of certmint from a commit, or from the working tree (tracked and new files, as git sees them)."""
    src = workdir / "src"
    src.mkdir()
    if commit:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, "--", *SOURCES],
                                 check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(src, filter="data")
    else:
        files = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *SOURCES).split("\0")
        for name in filter(None, files):
            if (REPO / name).is_file():
                (src / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, src / name)
    out = workdir / "certmint-wheel"
    # The build backend (setuptools) comes from build.lock's hash-checked wheel, offline.
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--find-links", str(wheels),
        "--wheel-dir", str(out), str(src), env={**pip_env(), "SOURCE_DATE_EPOCH": str(epoch)}, stdout=sys.stderr)
    (wheel,) = out.glob("certmint-*.whl")
    return wheel


def chroot(rootfs: Path, *args: str) -> subprocess.CompletedProcess:
    # A clean environment: nothing of the build host's (PIP_*, locale, HOME) leaks in.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
           "PYTHONDONTWRITEBYTECODE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1",
           "PIP_ROOT_USER_ACTION": "ignore"}
    return run("chroot", str(rootfs), *args, env=env, stdout=sys.stderr)


def install(rootfs: Path, wheels: Path, certmint: Path) -> None:
    build = rootfs / "tmp" / "build"
    build.mkdir(parents=True)
    shutil.copytree(wheels, build / "wheels", ignore=shutil.ignore_patterns(".complete", "setuptools-*"))
    shutil.copy2(REPO / "requirements-operator.lock", build / "requirements-operator.lock")
    shutil.copy2(certmint, build / certmint.name)
    (pip_wheel,) = (build / "wheels").glob("pip-*.whl")
    pip = ["/opt/certmint/bin/python", f"/tmp/build/wheels/{pip_wheel.name}/pip"]
    chroot(rootfs, PYTHON, "-m", "venv", "--without-pip", VENV)
    # --no-deps: the lock is complete (pip check below proves it), and pip must not
    # reach for anything it does not name.
    chroot(rootfs, *pip, "install", "-q", "--no-index", "--find-links", "/tmp/build/wheels", "--no-deps",
           "--require-hashes", "--no-compile", "-r", "/tmp/build/requirements-operator.lock")
    chroot(rootfs, *pip, "install", "-q", "--no-index", "--no-deps", "--no-compile", f"/tmp/build/{certmint.name}")
    chroot(rootfs, *pip, "check")
    shutil.rmtree(build)


def add_user(rootfs: Path) -> None:
    with open(rootfs / "etc/passwd", "a") as f:
        f.write(f"{USER_NAME}:x:{UID}:{GID}::/nonexistent:/usr/sbin/nologin\n")
    with open(rootfs / "etc/group", "a") as f:
        f.write(f"{USER_NAME}:x:{GID}:\n")


def clean(rootfs: Path) -> None:
    for pattern in REMOVE:
        for path in rootfs.glob(pattern):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for name in EMPTY:
        path = rootfs / name
        path.unlink(missing_ok=True)
        path.write_text("")
    # dpkg's path-exclude does not reach the Essential packages (mmdebstrap unpacks those
    # itself) and keeps excluded directories: finish the job. Licenses stay.
    for path in sorted((rootfs / "usr/share/doc").glob("*/*")):
        if path.name != "copyright":
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for name in ("usr/share/man", "usr/share/info", "usr/share/lintian"):
        shutil.rmtree(rootfs / name, ignore_errors=True)
    for path in (rootfs / "usr/share/locale").glob("*/"):
        shutil.rmtree(path)  # translations; locale.alias stays
    # The installed packages' own test suites.
    site = rootfs / VENV.lstrip("/") / "lib/python3.11/site-packages"
    for tests in sorted(site.glob("*/tests")) + sorted(site.glob("*/test")):
        shutil.rmtree(tests)
    # Debian compiles its modules at install time with timestamps; the packing sets every
    # mtime to the commit time, which would invalidate them. Drop all, compile below.
    for cache in sorted(rootfs.glob("**/__pycache__"), reverse=True):
        if not cache.is_symlink():
            shutil.rmtree(cache)


def compile_bytecode(rootfs: Path) -> None:
    """unchecked-hash .pyc: no timestamp in them, and Python trusts them without stat'ing the source."""
    site = f"{VENV}/lib/python3.11/site-packages"
    # kubernetes.aio (the client's asyncio twin, 30 MB of bytecode) is never imported by
    # certmint; should something import it, Python compiles it in memory.
    chroot(rootfs, PYTHON, "-m", "compileall", "-q", "-q", "--invalidation-mode", "unchecked-hash",
           "-x", "/site-packages/kubernetes/aio/", "/usr/lib/python3.11", "/usr/lib/python3/dist-packages", site)


def dpkg_versions(rootfs: Path) -> dict[str, str]:
    out = subprocess.run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W", "-f=${Package}\t${Version}\n"],
                         check=True, capture_output=True, text=True).stdout
    return dict(line.split("\t") for line in out.splitlines())


def wheel_versions(rootfs: Path) -> dict[str, str]:
    site = rootfs / VENV.lstrip("/") / "lib/python3.11/site-packages"
    found = {}
    for dist in site.glob("*.dist-info"):
        meta = (dist / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", meta, re.MULTILINE).group(1).strip()
        found[re.sub(r"[-_.]+", "-", name).lower()] = re.search(r"^Version: (.+)$", meta, re.MULTILINE).group(1).strip()
    return dict(sorted(found.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="output directory")
    parser.add_argument("--commit", help="build this commit's sources instead of the working tree's")
    parser.add_argument("--refresh-rootfs", action="store_true",
                        help="build the Debian root filesystem again from the mirror instead of the cached one")
    args = parser.parse_args()
    if os.geteuid() != 0:
        log("needs root: mmdebstrap --mode=root, chroot and the files' owners (run it with sudo)")
        return 1
    missing = [tool for tool in ("mmdebstrap", "chroot", "dpkg-query", "git") if not shutil.which(tool)]
    if missing:
        log(f"missing {', '.join(missing)}: run hack/install-system-deps.sh")
        return 1
    os.umask(0o022)
    commit = git("rev-parse", "--verify", (args.commit or "HEAD") + "^{commit}")
    epoch = int(git("log", "-1", "--format=%ct", commit))
    if args.commit:
        version = tomllib.loads(git("show", f"{commit}:pyproject.toml"))["project"]["version"]
        dirty = False
    else:
        version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
        dirty = bool(git("status", "--porcelain", "--untracked-files=all", "--", *SOURCES))
    revision = commit + ("-dirty" if dirty else "")
    if dirty:
        log(f"the working tree differs from {commit[:12]} in {' '.join(SOURCES)}: revision {revision}")

    base = cached_rootfs(args.refresh_rootfs)
    wheels = cached_wheels()
    with tempfile.TemporaryDirectory(prefix="certmint-image-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        work = Path(tmp)
        wheel = certmint_wheel(work, wheels, epoch, args.commit and commit)
        rootfs = work / "rootfs"
        log("installing certmint into a copy of the root filesystem")
        run("cp", "-a", str(base), str(rootfs))
        install(rootfs, wheels, wheel)
        add_user(rootfs)
        clean(rootfs)
        log("compiling bytecode")
        compile_bytecode(rootfs)
        debian = dpkg_versions(rootfs)
        python = wheel_versions(rootfs)
        debian_digest = hashlib.sha256(oci.canonical_json(debian)).hexdigest()
        labels = {
            "org.opencontainers.image.title": "certmint",
            "org.opencontainers.image.description": "certmint, a Kubernetes operator that issues and renews X.509 certificates",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.revision": revision,
            "org.opencontainers.image.created": oci.rfc3339(epoch),
            "org.opencontainers.image.source": SOURCE_URL,
            "org.opencontainers.image.licenses": "Apache-2.0",
            "io.certmint.image.debian-suite": SUITE,
            "io.certmint.image.debian-packages": "sha256:" + debian_digest,
        }
        config = oci.ImageConfig(
            user=f"{UID}:{GID}", entrypoint=ENTRYPOINT, cmd=CMD, env=ENV,
            exposed_ports=[f"{METRICS_PORT}/tcp"], labels=labels,
            created_by="hack/image/build.py: Debian bookworm (mmdebstrap) + certmint[operator] from requirements-operator.lock")
        archive = args.dist / f"certmint-{version}.oci.tar"
        log(f"packing {archive}")
        image = oci.write_archive(rootfs, archive, config, epoch, ref_name=version,
                                  image_name=f"{IMAGE_REPOSITORY}:{version}")
        unpacked = int(subprocess.run(["du", "-sb", str(rootfs)], check=True, capture_output=True,
                                      text=True).stdout.split()[0])
    summary = {
        "image": f"{IMAGE_REPOSITORY}:{version}",
        "digest": image.digest,
        "config": image.config_digest,
        "layer": {"digest": image.layer_digest, "diff_id": image.diff_id, "size": image.layer_size,
                  "unpacked_size": unpacked},
        "revision": revision,
        "created": oci.rfc3339(epoch),
        "debian": {"suite": SUITE, "mirrors": MIRRORS, "packages": debian, "packages_digest": "sha256:" + debian_digest},
        "python": python,
    }
    (args.dist / f"certmint-{version}.oci.json").write_text(json.dumps(summary, indent=2) + "\n")
    if os.environ.get("SUDO_UID"):  # `make image` as a user, through sudo: the outputs are theirs
        for path in (args.dist, archive, args.dist / f"certmint-{version}.oci.json"):
            os.chown(path, int(os.environ["SUDO_UID"]), int(os.environ["SUDO_GID"]))
    log(f"{archive}: {IMAGE_REPOSITORY}:{version}@{image.digest}, layer {image.layer_size / 1e6:.1f} MB "
        f"compressed, {unpacked / 1e6:.1f} MB unpacked, in {time.monotonic() - STARTED:.0f} s")
    print(image.digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
