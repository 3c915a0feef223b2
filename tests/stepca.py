"""A real smallstep step-ca for tests, initialised in a temporary directory.

`StepCA(directory)` runs `step ca init` non-interactively (a root, an intermediate and a JWK
provisioner "admin" protected by a password), then edits ca.json for what the tests need:
  - the provisioner's claims allow certificates of up to 24h (seed 003's lifetime), and
    default to 24h;
  - the authority's x509 name policy allows only the names below, so any other SAN is refused
    by the CA itself. In a file-configured step-ca the name policy lives at authority.policy
    (per-provisioner policies exist only in its database-backed remote management);
  - it listens on 127.0.0.1 only (no plain-HTTP insecureAddress), on a free port.

The binaries come from `make tools` (hack/build-tools.sh step) in .cache/bin; when they are
missing the fixture raises, so the tests fail loudly instead of skipping.
"""
from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from localcluster import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".cache" / "bin"
PROVISIONER = "admin"
MAX_DURATION = "24h"

# The CA's name policy: an allow list, so every other name is refused by the CA itself.
# step-ca's "*.domain" matches exactly one label, so seed 003's names in namespace default
# (my-service, my-service.default.svc, my-service.default.svc.cluster.local) are listed as
# such; anything under example.test is allowed and, e.g., forbidden.invalid is not.
POLICY = {
    "x509": {
        "allow": {
            "dns": ["my-service", "*.default.svc", "*.default.svc.cluster.local", "*.example.test", "localhost"],
            "ip": ["127.0.0.0/8", "::1/128"],
            "email": ["example.test"],
            "uri": ["*.example.test", "example.test"],
        },
    }
}


def policy_allowing(*dns_names: str) -> dict:
    """POLICY with more DNS names (or one-label wildcards) allowed, e.g. a test namespace's."""
    allow = {**POLICY["x509"]["allow"], "dns": [*POLICY["x509"]["allow"]["dns"], *dns_names]}
    return {"x509": {**POLICY["x509"], "allow": allow}}


def binary(name: str) -> Path:
    path = BIN / name
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: build it with `make tools` (hack/build-tools.sh step)")
    return path


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills the CA when the test process dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class StepCA:
    """An initialised step-ca. start(), stop() and restart() control the process; the
    attributes describe it the way an Issuer's spec.step names it."""

    def __init__(self, directory: Path, *, policy: dict | None = POLICY, max_duration: str = MAX_DURATION):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.steppath = self.directory / "step"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.provisioner = PROVISIONER
        # Random passwords: a test that finds one in a log or an exception message has found
        # a leak, not a coincidence.
        self.password = secrets.token_urlsafe(24).encode()
        self._ca_password = secrets.token_urlsafe(24).encode()
        self.password_file = self.directory / "provisioner-password"
        self._ca_password_file = self.directory / "ca-password"
        self.password_file.write_bytes(self.password)
        self._ca_password_file.write_bytes(self._ca_password)
        self.log_path = self.directory / "step-ca.log"
        self.process: subprocess.Popen | None = None
        self._init(policy, max_duration)

    # --------------------------------------------------------------- set-up

    def env(self) -> dict[str, str]:
        """The environment for the step CLI: this CA's STEPPATH, nothing from the user's ~/.step."""
        return {**os.environ, "STEPPATH": str(self.steppath), "HOME": str(self.directory)}

    def step(self, *args: str, check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run the step CLI against this CA."""
        return subprocess.run([str(binary("step")), *args], env=self.env(), capture_output=True, text=True,
                              check=check, timeout=timeout, **kwargs)

    def _init(self, policy: dict | None, max_duration: str) -> None:
        result = self.step(
            "ca", "init", "--name", "certmint test CA", "--deployment-type", "standalone",
            "--dns", "127.0.0.1", "--dns", "localhost", "--address", f"127.0.0.1:{self.port}",
            "--provisioner", self.provisioner,
            "--password-file", str(self._ca_password_file),
            "--provisioner-password-file", str(self.password_file), check=False)
        if result.returncode != 0:
            raise RuntimeError(f"step ca init failed:\n{result.stdout}\n{result.stderr}")
        self.config_path = self.steppath / "config" / "ca.json"
        config = json.loads(self.config_path.read_text())
        # What step ca init wrote must already be loopback-only; the tests rely on it.
        if config["address"] != f"127.0.0.1:{self.port}" or config.get("insecureAddress"):
            raise RuntimeError(f"step-ca would listen on {config['address']!r} / {config.get('insecureAddress')!r}")
        (jwk,) = [p for p in config["authority"]["provisioners"] if p["type"] == "JWK"]
        jwk["claims"] = {"maxTLSCertDuration": max_duration, "defaultTLSCertDuration": max_duration}
        if policy is not None:
            config["authority"]["policy"] = policy
        self.config_path.write_text(json.dumps(config, indent=2))
        self.kid = jwk["key"]["kid"]
        self.encrypted_key = jwk["encryptedKey"]
        self.root_path = self.steppath / "certs" / "root_ca.crt"
        self.intermediate_path = self.steppath / "certs" / "intermediate_ca.crt"
        self.root_pem = self.root_path.read_bytes()
        self.root = x509.load_pem_x509_certificate(self.root_pem)
        self.root_fingerprint = hashlib.sha256(self.root.public_bytes(serialization.Encoding.DER)).hexdigest()
        # caBundle as step-issuer takes it: the root PEM, base64-encoded.
        self.ca_bundle = base64.b64encode(self.root_pem).decode()

    # --------------------------------------------------------------- the process

    def start(self, timeout: float = 60) -> None:
        """Start step-ca and wait until /health answers ok over TLS verified with the root."""
        if self.process is not None and self.process.poll() is None:
            return
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(binary("step-ca")), str(self.config_path), "--password-file", str(self._ca_password_file)],
            env=self.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        context = ssl.create_default_context(cafile=str(self.root_path))
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"step-ca exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", context=context, timeout=2) as r:
                    if json.load(r).get("status") == "ok":
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"step-ca did not become healthy within {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop step-ca (SIGTERM, then SIGKILL) and wait until its port is closed."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # --------------------------------------------------------------- what an Issuer names

    def issuer_spec(self, *, password_secret: str = "step-provisioner", password_key: str = "password") -> dict:
        """spec.step for a certmint Issuer or ClusterIssuer pointing at this CA."""
        return {
            "url": self.url,
            "caBundle": self.ca_bundle,
            "provisioner": {"name": self.provisioner, "kid": self.kid,
                            "passwordRef": {"name": password_secret, "key": password_key}},
        }

    def decrypted_provisioner_key(self) -> Path:
        """The provisioner's private JWK decrypted by the step CLI into a file, so `step ca
        token --key` signs tokens without running PBKDF2 each time (for the rate baseline)."""
        path = self.directory / "provisioner.jwk"
        if not path.exists():
            result = self.step("crypto", "jwe", "decrypt", "--password-file", str(self.password_file),
                               input=self.encrypted_key)
            path.write_text(result.stdout)
            path.chmod(0o600)
        return path


@contextlib.contextmanager
def running_step_ca(directory: Path, **kwargs) -> Iterator[StepCA]:
    """A started StepCA, stopped and removed on exit."""
    ca = StepCA(directory, **kwargs)
    try:
        ca.start()
        yield ca
    finally:
        ca.close()
