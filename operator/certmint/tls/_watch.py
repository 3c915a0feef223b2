"""Waking up when a mounted Secret changes: inotify (through ctypes, no dependency) on the directories
that hold the files, a short poll where inotify is not available.

The kubelet's swap is a rename of `..data_tmp` onto `..data` (IN_MOVED_TO on the directory); a writer
that replaces files in place gives IN_CLOSE_WRITE, IN_CREATE or IN_MOVED_TO. Any event in a watched
directory wakes the watcher, which then compares the files' digest: events only decide *when* to
look, the digest decides whether anything changed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("certmint.tls")

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF


class Inotify:
    """A non-blocking inotify descriptor watching some directories. Raises OSError when the platform
    has none (not Linux, or a sandbox that forbids it)."""

    def __init__(self, directories: Iterable[Path]):
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            raise OSError(errno.ENOSYS, "inotify is not available")
        self._libc = libc
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.watched: list[Path] = []
        for d in directories:
            wd = libc.inotify_add_watch(self.fd, os.fsencode(d), MASK)
            if wd < 0:
                err = ctypes.get_errno()
                os.close(self.fd)
                raise OSError(err, f"inotify_add_watch({d}) failed")
            self.watched.append(d)

    def drain(self) -> int:
        """Discard the pending events; how many bytes were read (0: none)."""
        total = 0
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return total
            if not chunk:
                return total
            total += len(chunk)

    def close(self) -> None:
        os.close(self.fd)


class Watcher:
    """Calls check() soon after a change (inotify), every poll_interval where inotify is missing, and
    every backstop seconds regardless (a directory replaced wholesale, events lost to overflow)."""

    def __init__(self, directories: Iterable[Path], check: Callable[[], object], *, poll_interval: float = 1.0,
                 backstop: float = 10.0, debounce: float = 0.02, inotify: bool = True,
                 name: str = "certmint-tls-watch"):
        self.directories = sorted(set(directories))
        self.check, self.poll_interval, self.backstop, self.debounce = check, poll_interval, backstop, debounce
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self.inotify: Inotify | None
        try:
            if not inotify:
                raise OSError(errno.EPERM, "inotify turned off")
            self.inotify = Inotify(self.directories)
        except OSError as e:
            log.info("inotify unavailable (%s); polling %s every %.1f s", e, ", ".join(map(str, self.directories)),
                     poll_interval)
            self.inotify = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def mode(self) -> str:
        return "inotify" if self.inotify else "poll"

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self.inotify:
            self.inotify.close()

    def _run(self) -> None:
        timeout = self.backstop if self.inotify else self.poll_interval
        fds = [self._wake_r] + ([self.inotify.fd] if self.inotify else [])
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except OSError:
                return
            if self._stop.is_set():
                return
            if self.inotify and self.inotify.fd in ready:
                # A swap is several events (symlink created, renamed, old directory deleted): let it
                # finish, then look once.
                self._stop.wait(self.debounce)
                self.inotify.drain()
            try:
                self.check()
            except Exception:  # the watcher must outlive a bad update; check() logs what went wrong
                log.exception("certificate reload check failed")
