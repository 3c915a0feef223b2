"""A deterministic OCI image writer: one root filesystem directory in, one OCI archive out.

Written with tarfile + hashlib instead of umoci because every byte of the output must
depend only on the files' contents, modes and numeric owners: entries sorted by name,
uid/gid numeric with no user or group names, every mtime set to SOURCE_DATE_EPOCH, no
atime/ctime/xattr records, gzip with no name and mtime 0. `umoci repack` writes history
entries with the current time and records what it finds on disk (names, times); pinning
all of that afterwards would be more code than writing the layout here. umoci and skopeo
then read the result as independent checks (tests/image).

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) in a tar.
It also carries a manifest.json in `docker save` form, pointing at the same blobs, so that
`docker load` and `kind load image-archive` (containerd's import) accept it as well.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"

# Directories whose contents belong to the runtime, not to the image: it mounts /proc,
# /sys and /dev (mmdebstrap leaves device nodes there) and a fresh /tmp.
RUNTIME_DIRS = ("dev", "proc", "sys", "run", "tmp")


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(value) -> bytes:
    """Sorted keys, no whitespace: the same object always gives the same digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it to the next file."""

    def __init__(self, target):
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)


def _walk(root: Path):
    """Depth-first, name-sorted: dir, then its sorted contents recursively."""
    def visit(rel: str):
        full = root / rel if rel else root
        for name in sorted(os.listdir(full), key=os.fsencode):
            child = f"{rel}/{name}" if rel else name
            yield child
            path = root / child
            if stat.S_ISDIR(os.lstat(path).st_mode):
                if rel == "" and name in RUNTIME_DIRS:
                    continue  # keep the directory, not its contents
                yield from visit(child)
    yield from visit("")


def write_layer(rootfs: Path, out, epoch: int) -> tuple[str, str, int]:
    """Write rootfs as a gzip-compressed tar to out; return (diff_id, digest, compressed size)."""
    compressed = _HashingWriter(out)
    # mtime=0 and an empty filename: the gzip header then holds nothing about this build.
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=6, mtime=0)
    uncompressed = _HashingWriter(gz)
    inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in _walk(rootfs):
            path = rootfs / rel
            st = os.lstat(path)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = info.gname = ""
            info.mtime = epoch
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in inodes:
                info.type, info.linkname = tarfile.LNKTYPE, inodes[key]
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    inodes[key] = rel
                info.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                tar.addfile(info)
            elif rel.split("/", 1)[0] in RUNTIME_DIRS:
                continue  # device nodes, sockets, fifos under /dev and /run
            else:
                raise ValueError(f"{rel}: unsupported file type {stat.filemode(st.st_mode)} in an image")
    gz.close()
    return "sha256:" + uncompressed.sha.hexdigest(), "sha256:" + compressed.sha.hexdigest(), compressed.size


@dataclass
class ImageConfig:
    user: str
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    exposed_ports: list[str]
    labels: dict[str, str]
    working_dir: str = "/"
    created_by: str = ""


@dataclass
class Image:
    digest: str       # the manifest's digest: what `image.digest` pins
    config_digest: str
    layer_digest: str
    diff_id: str
    layer_size: int


def write_archive(rootfs: Path, archive: Path, config: ImageConfig, epoch: int,
                  ref_name: str, image_name: str) -> Image:
    """An OCI layout in a tar at archive, with rootfs as its single layer.

    ref_name is the tag recorded as org.opencontainers.image.ref.name (what
    `oci-archive:FILE:TAG` selects); image_name the full reference containerd and Docker
    name the image by when they import the archive.
    """
    archive.parent.mkdir(parents=True, exist_ok=True)
    layer_tmp = archive.with_name(archive.name + ".layer.tmp")
    try:
        with open(layer_tmp, "wb") as f:
            diff_id, layer_digest, layer_size = write_layer(rootfs, f, epoch)
        created = rfc3339(epoch)
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": {
                "User": config.user,
                "Entrypoint": config.entrypoint,
                "Cmd": config.cmd,
                "Env": config.env,
                "WorkingDir": config.working_dir,
                "ExposedPorts": {port: {} for port in config.exposed_ports},
                "Labels": config.labels,
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": config.created_by}],
        }
        config_bytes = canonical_json(image_config)
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer_size}],
            "annotations": {k: v for k, v in config.labels.items() if k.startswith("org.opencontainers.image.")},
        }
        manifest_bytes = canonical_json(manifest)
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [{
                "mediaType": MEDIA_MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "org.opencontainers.image.ref.name": ref_name,
                    "io.containerd.image.name": image_name,
                },
            }],
        }
        docker_manifest = [{
            "Config": "blobs/sha256/" + config_digest.split(":")[1],
            "RepoTags": [image_name],
            "Layers": ["blobs/sha256/" + layer_digest.split(":")[1]],
        }]
        small_files = {
            "blobs/sha256/" + config_digest.split(":")[1]: config_bytes,
            "blobs/sha256/" + manifest_digest.split(":")[1]: manifest_bytes,
            "index.json": canonical_json(index),
            "manifest.json": canonical_json(docker_manifest),
            "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        }
        entries = sorted([*small_files, "blobs", "blobs/sha256", "blobs/sha256/" + layer_digest.split(":")[1]])
        tmp = archive.with_name(archive.name + ".tmp")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in entries:
                info = tarfile.TarInfo(name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
                if name in ("blobs", "blobs/sha256"):
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif name in small_files:
                    info.mode, info.size = 0o644, len(small_files[name])
                    tar.addfile(info, io.BytesIO(small_files[name]))
                else:
                    info.mode, info.size = 0o644, layer_size
                    with open(layer_tmp, "rb") as f:
                        tar.addfile(info, f)
        os.replace(tmp, archive)
    finally:
        layer_tmp.unlink(missing_ok=True)
    return Image(manifest_digest, config_digest, layer_digest, diff_id, layer_size)
