"""The one store for every kind certmint caches: Certificates, issuers and its own Secrets.

It follows the rules of client-go's informer store, plus one for our own writes:

- An object's resourceVersion only moves forward. Watch events, listings and the answers
  to our own writes all go through the same comparison, so an older copy (a late watch
  event, or the answer to a write that a user's edit has since overtaken) never replaces a
  newer one.
- A deletion leaves a tombstone with its resourceVersion, so a copy older than the
  deletion (our own write's answer arriving after the watch said DELETED) cannot bring the
  object back.
- A relist replaces exactly the set its listing covered (a namespace, or the whole
  cluster): keys in that scope that the listing did not return, and that are not newer
  than the listing, are deleted. Keys of other scopes are untouched.

Every read and write holds the lock; nothing relies on the GIL. Values are opaque to the
store: slim dicts for custom resources, SecretState for Secrets. An optional index maps
each value to the keys it is filed under (for example, the issuer a Certificate uses),
kept in step under the same lock. An optional codec keeps values packed while they are held
(tens of thousands of Certificates are held as compact JSON, a third of their size as
dicts) and unpacks a fresh copy for each read.
"""
from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from collections.abc import Callable, Hashable, Iterable
from collections.abc import Set as AbstractSet
from typing import Generic, Protocol, TypeVar

Key = tuple[str, ...]  # (kind, namespace or "", name) or (namespace, name)
V = TypeVar("V")
IndexFn = Callable[[Key, object], Iterable[Hashable]]


def compress(data: bytes, dictionary: bytes) -> bytes:
    """data compressed (fast, zlib level 1) against a preset dictionary of what such values share."""
    packer = zlib.compressobj(1, zdict=dictionary)
    return packer.compress(data) + packer.flush()


def decompress(blob: bytes, dictionary: bytes) -> bytes:
    return zlib.decompressobj(zdict=dictionary).decompress(blob)


class Codec(Protocol[V]):
    """How values are held: pack(key, value) when stored, unpack(key, held) when read."""

    def pack(self, key: Key, value: V) -> object: ...

    def unpack(self, key: Key, held: object) -> V: ...


@dataclass(frozen=True)
class Change(Generic[V]):
    """What one store operation did, for the caller to react to: the new value, or for a
    deletion the last value held (whose labels and references say whom the deletion concerns)."""

    key: Key
    value: V
    deleted: bool = False


class Store(Generic[V]):
    def __init__(self, index: IndexFn | None = None, tombstones: int = 10000,
                 observer: Callable[[Change[V]], None] | None = None, codec: Codec[V] | None = None):
        self._observer = observer  # told of every accepted change, after the lock is released
        self._codec = codec
        self._lock = threading.Lock()
        self._items: dict[Key, tuple[int, object]] = {}  # values as held: packed when there is a codec
        self._tombstones: OrderedDict[Key, int] = OrderedDict()
        self._tombstone_limit = tombstones
        self._index_fn = index
        self._index: dict[Hashable, set[Key]] = {}
        self._filed: dict[Key, tuple[Hashable, ...]] = {}

    # --- reads ---------------------------------------------------------------------------------

    def get(self, key: Key) -> V | None:
        with self._lock:
            entry = self._items.get(key)
        return self._unpack(key, entry[1]) if entry else None

    def version(self, key: Key) -> int | None:
        """The resourceVersion held for key, or None."""
        with self._lock:
            entry = self._items.get(key)
            return entry[0] if entry else None

    def keys(self, predicate: Callable[[Key], bool] | None = None) -> list[Key]:
        with self._lock:
            return [k for k in self._items if predicate is None or predicate(k)]

    def items(self) -> list[tuple[Key, V]]:
        with self._lock:
            held = [(k, v) for k, (_, v) in self._items.items()]
        return [(k, self._unpack(k, v)) for k, v in held]

    def indexed(self, value: Hashable) -> list[Key]:
        """The keys filed under value by the index function."""
        with self._lock:
            return list(self._index.get(value, ()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    # --- writes --------------------------------------------------------------------------------

    def upsert(self, key: Key, version: int, value: V, only_if_present: bool = False) -> Change[V] | None:
        """Store value unless what is held (or the tombstone) is as new or newer.

        only_if_present is for answers to our own writes of objects we do not create (a status
        patch): they must not re-add an object the watch has already forgotten."""
        with self._lock:
            current = self._items.get(key)
            if current is not None and current[0] >= version:
                return None
            if current is None:
                if only_if_present:
                    return None
                tombstone = self._tombstones.get(key)
                if tombstone is not None and tombstone >= version:
                    return None
            self._items[key] = (version, value if self._codec is None else self._codec.pack(key, value))
            self._tombstones.pop(key, None)
            self._refile(key, value)
            change = Change(key, value)
        return self._told(change)

    def delete(self, key: Key, version: int) -> Change[V] | None:
        """Forget key, unless what is held is newer than the deletion (it was re-created since)."""
        with self._lock:
            gone = self._delete_locked(key, version)
        return self._told(self._deleted(key, gone)) if gone is not None else None

    def _delete_locked(self, key: Key, version: int) -> object | None:
        """Forget key; returns the value it held (as held), or None if nothing was deleted."""
        current = self._items.get(key)
        if current is not None and current[0] > version:
            return None
        self._remember_tombstone(key, max(version, current[0] if current else 0))
        if current is None:
            return None
        del self._items[key]
        self._refile(key, None)
        return current[1]

    def _deleted(self, key: Key, held: object) -> Change[V]:
        return Change(key, self._unpack(key, held), deleted=True)

    def replace(self, in_scope: Callable[[Key], bool], seen: AbstractSet[Key],
                list_version: int) -> list[Change[V]]:
        """After a relist: delete the keys in scope that the listing did not return.

        The listed objects themselves were already upserted page by page. A key whose held
        version is newer than the listing (written or watched after the list was taken) stays."""
        with self._lock:
            absent = [k for k in self._items if in_scope(k) and k not in seen]
            gone = [(k, held) for k in absent if (held := self._delete_locked(k, list_version)) is not None]
        return [self._told(self._deleted(k, held)) for k, held in gone]

    # --- internals -----------------------------------------------------------------------------

    def _unpack(self, key: Key, held: object) -> V:
        return held if self._codec is None else self._codec.unpack(key, held)  # type: ignore[return-value]

    def _told(self, change: Change[V]) -> Change[V]:
        if self._observer is not None:
            self._observer(change)
        return change

    def _remember_tombstone(self, key: Key, version: int) -> None:
        self._tombstones[key] = version
        self._tombstones.move_to_end(key)
        while len(self._tombstones) > self._tombstone_limit:
            self._tombstones.popitem(last=False)

    def _refile(self, key: Key, value: V | None) -> None:
        if self._index_fn is None:
            return
        for old in self._filed.pop(key, ()):
            bucket = self._index.get(old)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del self._index[old]
        if value is None:
            return
        filed = tuple(self._index_fn(key, value))
        if filed:
            self._filed[key] = filed
            for value_key in filed:
                self._index.setdefault(value_key, set()).add(key)


class WritesInFlight(Generic[V]):
    """Our writes whose answer has not come back yet, and the watch events that arrived meanwhile.

    The watch can deliver the echo of our own write before the write's answer returns. Held
    here, that echo is not mistaken for someone else's change (which would reconcile the
    object once more for nothing); when the answer comes, the writer compares versions: an
    event with the answer's version was our echo, any other was a real change, replayed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Key, list[tuple[int, V]]] = {}

    def begin(self, key: Key) -> None:
        with self._lock:
            self._held[key] = []

    def hold(self, key: Key, version: int, event: V) -> bool:
        """Keep the event if a write of key is in flight; True if kept."""
        with self._lock:
            held = self._held.get(key)
            if held is None:
                return False
            held.append((version, event))
            return True

    def end(self, key: Key) -> list[tuple[int, V]]:
        """The write's answer came (or it failed): the events held meanwhile."""
        with self._lock:
            return self._held.pop(key, [])
