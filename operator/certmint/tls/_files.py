"""Where the certificate files are (a mounted Secret, or the MTLS_* variables), and reading them as
one generation.

The kubelet updates a mounted Secret atomically: it writes every key into a new directory named
after the time (`..2026_11_30_12_00_00.123456789`), points the `..data` symlink at it by a rename,
then deletes the previous directory. Each key is a symlink through `..data` (`tls.crt ->
..data/tls.crt`). Opening `tls.crt` and then `tls.key` may therefore straddle a swap and pair a new
certificate with an old key. Reading resolves `..data` once per directory and opens every file
inside the directory it named, so the three files always come from one generation.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from certmint.tls._errors import MissingFile, TLSConfigError

CERT, KEY, CA = "tls.crt", "tls.key", "ca.crt"
DATA_LINK = "..data"

ENV_ENABLED = "MTLS_ENABLED"
ENV_DIR = "MTLS_DIR"
ENV_CERT = "MTLS_CERT_PATH"
ENV_KEY = "MTLS_KEY_PATH"
ENV_CA = ("MTLS_CA_CERT_PATH", "MTLS_CA_PATH")
ENV_CRL = "MTLS_CRL_PATH"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class TLSFiles:
    """The paths of a key pair, its trust anchors and optionally a CRL, and where each path came from
    (so an error can name the variable to fix)."""
    cert_path: Path
    key_path: Path
    ca_path: Path
    crl_path: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str], *, crl_path: str | os.PathLike[str] | None = None,
                       source: str | None = None) -> TLSFiles:
        """tls.crt, tls.key and ca.crt of a Secret mounted at directory."""
        d = Path(directory)
        where = source or f"the directory {d}"
        sources = {"cert": where, "key": where, "ca": where}
        if crl_path is not None:
            sources["crl"] = "crl_path"
        return cls(d / CERT, d / KEY, d / CA, Path(crl_path) if crl_path is not None else None, sources)

    @classmethod
    def from_paths(cls, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str], ca_path: str | os.PathLike[str],
                   crl_path: str | os.PathLike[str] | None = None) -> TLSFiles:
        return cls(Path(cert_path), Path(key_path), Path(ca_path), Path(crl_path) if crl_path else None,
                   {"cert": "cert_path", "key": "key_path", "ca": "ca_path", "crl": "crl_path"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TLSFiles | None:
        """The files the MTLS_* variables name; None when MTLS_ENABLED is false.

        MTLS_DIR names a mounted Secret's directory; otherwise MTLS_CERT_PATH, MTLS_KEY_PATH and
        MTLS_CA_CERT_PATH (or MTLS_CA_PATH) name the files. MTLS_CRL_PATH is optional either way.
        """
        env = os.environ if environ is None else environ
        enabled = env.get(ENV_ENABLED, "true").strip().lower()
        if enabled in _FALSE and ENV_ENABLED in env:
            return None
        if enabled not in _TRUE and enabled not in _FALSE:
            raise TLSConfigError(f"{ENV_ENABLED}={env[ENV_ENABLED]!r} is neither true nor false")
        crl = env.get(ENV_CRL) or None
        if env.get(ENV_DIR):
            files = cls.from_directory(env[ENV_DIR], crl_path=crl, source=ENV_DIR)
        else:
            ca_var = next((v for v in ENV_CA if env.get(v)), None)
            missing = [v for v, ok in ((ENV_CERT, env.get(ENV_CERT)), (ENV_KEY, env.get(ENV_KEY)),
                                       (" or ".join(ENV_CA), ca_var)) if not ok]
            if missing:
                raise TLSConfigError(f"mTLS is enabled but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                                     f"not set (set {ENV_DIR} to a mounted Secret's directory instead, or "
                                     f"{ENV_ENABLED}=false to run without mTLS)")
            assert ca_var is not None
            files = cls(Path(env[ENV_CERT]), Path(env[ENV_KEY]), Path(env[ca_var]), Path(crl) if crl else None,
                        {"cert": ENV_CERT, "key": ENV_KEY, "ca": ca_var})
        if crl:
            files.sources["crl"] = ENV_CRL  # type: ignore[index]
        return files

    def roles(self) -> list[tuple[str, Path]]:
        out = [("cert", self.cert_path), ("key", self.key_path), ("ca", self.ca_path)]
        if self.crl_path is not None:
            out.append(("crl", self.crl_path))
        return out

    def source(self, role: str) -> str:
        return self.sources.get(role, f"{role}_path")

    def directories(self) -> set[Path]:
        """The directories whose entries change when the files do (for inotify)."""
        return {p.parent for _, p in self.roles()}

    def check_exist(self) -> None:
        for role, path in self.roles():
            if not path.exists():
                raise MissingFile(str(path), self.source(role))


@dataclass(frozen=True)
class Snapshot:
    """The files' bytes, read through one generation, and the paths they were read from (inside the
    generation directory, which the kubelet never modifies, only deletes once superseded)."""
    data: Mapping[str, bytes] = field(repr=False)
    paths: Mapping[str, Path]
    generation: str            # the kubelet's directory name(s), or "" outside that layout
    digest: str


def in_generation(path: Path, generations: dict[Path, str]) -> tuple[Path, str | None]:
    """The file that path names inside the generation `..data` points at now, resolving each
    directory's `..data` once (cached in generations)."""
    try:
        target = os.readlink(path)
    except OSError:
        return path, None  # not a symlink (or missing: the read reports it)
    parts = Path(target).parts
    if os.path.isabs(target) or not parts or parts[0] != DATA_LINK:
        return path, None
    directory = path.parent
    if directory not in generations:
        generations[directory] = os.readlink(directory / DATA_LINK)
    return directory.joinpath(generations[directory], *parts[1:]), generations[directory]


def read_snapshot(files: TLSFiles) -> Snapshot:
    """One read of every file through one resolution of `..data`. Raises FileNotFoundError when a file
    (or the generation directory, deleted under us) is gone: the caller retries or reports."""
    generations: dict[Path, str] = {}
    data, paths, names = {}, {}, []
    digest = hashlib.sha256()
    for role, path in files.roles():
        resolved, generation = in_generation(path, generations)
        with open(resolved, "rb") as f:
            data[role] = f.read()
        paths[role] = resolved
        if generation and generation not in names:
            names.append(generation)
        digest.update(role.encode() + b"\0" + len(data[role]).to_bytes(8, "big") + data[role])
    return Snapshot(data, paths, ",".join(names), digest.hexdigest())
