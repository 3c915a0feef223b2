"""Where new private keys are made: RSA keys in a pool of processes, the others in the worker.

Finding RSA primes takes tens of milliseconds of CPU with the GIL held, so worker threads
making RSA keys take turns on one core. Processes make them on every core; the key comes
back as PKCS#8 DER. ECDSA and Ed25519 keys take well under a millisecond and are made
where they are needed.

The key processes end with the operator, however it ends: each one watches its parent and
exits when it is gone. A killed operator (kill -9, the OOM killer) cannot tell them to stop,
and they would otherwise wait on their task queue for ever, since each holds that queue's
writing end itself.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from certmint.pki.keys import PrivateKey, generate_key, generate_key_der, load_generated_key
from certmint.pki.types import RSA, KeySpec


PARENT_CHECK_SECONDS = 1.0


def exit_with_parent(parent: int) -> None:
    """Runs first in each key process: a daemon thread that ends the process once `parent` is no
    longer its parent (the operator died and the process was handed to init or a subreaper)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=exit_with_parent, initargs=(os.getpid(),))
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
