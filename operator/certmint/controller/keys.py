"""Where new private keys are made: RSA keys in a pool of processes, the others in the worker.

Finding RSA primes takes tens of milliseconds of CPU with the GIL held, so worker threads
making RSA keys take turns on one core. Processes make them on every core; the key comes
back as PKCS#8 DER. ECDSA and Ed25519 keys take well under a millisecond and are made
where they are needed.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

from certmint.pki.keys import PrivateKey, generate_key, generate_key_der, load_generated_key
from certmint.pki.types import RSA, KeySpec


class KeyFactory:
    def __init__(self, processes: int | None = None):
        self.processes = processes if processes is not None else (os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def new_key(self, spec: KeySpec) -> PrivateKey:
        if spec.algorithm != RSA or self.processes < 2:
            return generate_key(spec)
        return load_generated_key(self._executor().submit(generate_key_der, spec).result())

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the operator has threads (and their locks) that a forked child would copy
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
