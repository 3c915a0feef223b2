"""Keys made in other processes are real, distinct and of the asked type."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certmint.controller.keys import PARENT_CHECK_SECONDS, KeyFactory
from certmint.pki.keys import key_matches_spec
from certmint.pki.types import KeySpec


def test_rsa_keys_come_from_the_process_pool_and_ecdsa_keys_from_the_caller():
    factory = KeyFactory(processes=2)
    try:
        spec = KeySpec("RSA", 2048)
        keys = [factory.new_key(spec) for _ in range(3)]
        assert factory._pool is not None  # RSA went to the pool
        assert all(isinstance(k, rsa.RSAPrivateKey) and key_matches_spec(k, spec) for k in keys)
        assert len({k.public_key().public_numbers().n for k in keys}) == 3
        # the key is usable: it signs
        keys[0].sign(b"x", *_pkcs1v15_sha256())
        ecdsa = factory.new_key(KeySpec("ECDSA", 384))
        assert isinstance(ecdsa, ec.EllipticCurvePrivateKey) and ecdsa.curve.key_size == 384
    finally:
        factory.close()


def _pkcs1v15_sha256():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    return padding.PKCS1v15(), hashes.SHA256()


KILLED_OPERATOR = """
import sys
from certmint.controller.keys import KeyFactory
from certmint.pki.types import KeySpec
factory = KeyFactory(processes=2)
factory.new_key(KeySpec("RSA", 2048))  # the pool is running
print("ready", flush=True)
sys.stdin.read()  # until killed
"""


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_key_processes_exit_when_the_operator_is_killed():
    proc = subprocess.Popen([sys.executable, "-c", KILLED_OPERATOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        key_processes = _children(proc.pid)
        assert len(key_processes) >= 2  # a key process (one per key asked for so far) and the resource tracker
    finally:
        proc.kill()  # as kill -9: nothing runs in the operator after it
        proc.wait()
    deadline = time.monotonic() + 10 * PARENT_CHECK_SECONDS
    while time.monotonic() < deadline and any(_alive(pid) for pid in key_processes):
        time.sleep(0.1)
    left = [pid for pid in key_processes if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"key processes outlived the operator: {left}"
