"""The store's rules: versions only move forward, relists forget only their own scope, deletions stick."""
from __future__ import annotations

import threading

from certmint.kube.store import Store, WritesInFlight


def cert(namespace: str, name: str) -> tuple[str, str, str]:
    return ("Certificate", namespace, name)


def in_namespace(namespace: str):
    return lambda key: key[1] == namespace


def test_an_older_version_never_replaces_a_newer_one():
    store: Store[str] = Store()
    assert store.upsert(cert("a", "x"), 10, "v10") is not None
    assert store.upsert(cert("a", "x"), 9, "v9") is None
    assert store.upsert(cert("a", "x"), 10, "v10 again") is None  # an echo changes nothing
    assert store.get(cert("a", "x")) == "v10"
    assert store.upsert(cert("a", "x"), 11, "v11") is not None
    assert store.get(cert("a", "x")) == "v11"


def test_our_older_write_answer_does_not_roll_back_a_users_newer_edit():
    """The answer to our status patch (version 5) arrives after the watch delivered a user's edit
    (version 6): the edit stays, so it is acted on."""
    store: Store[dict] = Store()
    store.upsert(cert("a", "x"), 4, {"spec": "old"})
    store.upsert(cert("a", "x"), 6, {"spec": "edited"})
    assert store.upsert(cert("a", "x"), 5, {"spec": "old", "status": "ours"}, only_if_present=True) is None
    assert store.get(cert("a", "x")) == {"spec": "edited"}


def test_a_write_answer_does_not_bring_back_a_deleted_object():
    store: Store[str] = Store()
    store.upsert(cert("a", "x"), 4, "v4")
    assert store.delete(cert("a", "x"), 7) is not None
    assert store.upsert(cert("a", "x"), 5, "our answer") is None  # older than the deletion: tombstone
    assert store.upsert(cert("a", "x"), 5, "status answer", only_if_present=True) is None
    assert store.get(cert("a", "x")) is None
    assert store.upsert(cert("a", "x"), 8, "re-created") is not None  # newer: a real re-creation
    assert store.get(cert("a", "x")) == "re-created"


def test_a_deletion_older_than_what_is_held_is_ignored():
    store: Store[str] = Store()
    store.upsert(cert("a", "x"), 9, "v9")
    assert store.delete(cert("a", "x"), 8) is None
    assert store.get(cert("a", "x")) == "v9"


def test_a_relist_of_one_namespace_keeps_the_other_namespaces():
    store: Store[str] = Store()
    for ns in ("a", "b"):
        for name in ("x", "y"):
            store.upsert(cert(ns, name), 5, f"{ns}/{name}")
    changes = store.replace(in_namespace("a"), {cert("a", "x"), cert("a", "y")}, 20)
    assert changes == []
    assert len(store) == 4


def test_a_relist_forgets_what_was_deleted_while_nobody_watched():
    """The deletion happened during a watch gap: the listing simply lacks the object, and no
    event carries its version. The listing's version judges it."""
    store: Store[str] = Store()
    store.upsert(cert("a", "x"), 5, "a/x")
    store.upsert(cert("a", "gone"), 6, "a/gone")
    store.upsert(cert("b", "gone-too"), 6, "b/gone-too")
    changes = store.replace(in_namespace("a"), {cert("a", "x")}, 20)
    assert [(c.key, c.value, c.deleted) for c in changes] == [(cert("a", "gone"), "a/gone", True)]
    assert store.get(cert("a", "gone")) is None
    assert store.get(cert("b", "gone-too")) == "b/gone-too"  # another scope's listing must say so
    assert store.upsert(cert("a", "gone"), 10, "stale copy") is None  # older than the listing


def test_a_relist_keeps_what_is_newer_than_the_listing():
    store: Store[str] = Store()
    store.upsert(cert("a", "created-after-list"), 25, "new")
    assert store.replace(in_namespace("a"), set(), 20) == []
    assert store.get(cert("a", "created-after-list")) == "new"


def test_the_index_follows_each_change():
    def filed(key, value):
        return (value["issuer"],) if value.get("issuer") else ()

    store: Store[dict] = Store(index=filed)
    store.upsert(cert("a", "x"), 1, {"issuer": "ca-1"})
    store.upsert(cert("a", "y"), 1, {"issuer": "ca-1"})
    store.upsert(cert("b", "z"), 1, {"issuer": "ca-2"})
    assert sorted(store.indexed("ca-1")) == [cert("a", "x"), cert("a", "y")]
    store.upsert(cert("a", "y"), 2, {"issuer": "ca-2"})
    assert store.indexed("ca-1") == [cert("a", "x")]
    store.delete(cert("a", "x"), 3)
    assert store.indexed("ca-1") == []
    assert sorted(store.indexed("ca-2")) == [cert("a", "y"), cert("b", "z")]


def test_tombstones_are_bounded():
    store: Store[str] = Store(tombstones=3)
    for i in range(10):
        store.upsert(cert("a", str(i)), 1, "v")
        store.delete(cert("a", str(i)), 2)
    assert len(store._tombstones) == 3


def test_concurrent_writers_leave_the_newest_version():
    store: Store[int] = Store()
    key = cert("a", "x")

    def write(versions):
        for v in versions:
            store.upsert(key, v, v)

    threads = [threading.Thread(target=write, args=(range(start, 5000, 4),)) for start in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(key) == 4999 and store.version(key) == 4999


def test_events_during_our_write_are_held_and_sorted_by_version():
    """The watch may deliver the echo of our write before the write's answer: held, then judged by
    the answer's version: the echo is ours, any other version was someone else's change."""
    writes: WritesInFlight[str] = WritesInFlight()
    key = ("Certificate", "a", "x")
    assert not writes.hold(key, 5, "no write in flight: handled at once")
    writes.begin(key)
    assert writes.hold(key, 7, "our echo")
    assert writes.hold(key, 8, "a user's edit")
    held = writes.end(key)
    answer = 7
    assert [e for v, e in held if v != answer] == ["a user's edit"]
    assert writes.end(key) == [] and not writes.hold(key, 9, "after the write")


def test_a_codec_holds_values_packed_and_every_read_gets_its_own_copy():
    import json

    from certmint.controller.context import OBJECT_DICTIONARY, PACKED, index_by_reference
    from certmint.kube.store import decompress

    seen = []
    store: Store[dict] = Store(index=index_by_reference("certmint"), codec=PACKED, observer=seen.append)
    obj = {"kind": "Certificate", "metadata": {"name": "x", "namespace": "a"}, "spec": {"issuerRef": {"name": "ca"}}}
    issuer = {"kind": "Issuer", "metadata": {"name": "ca", "namespace": "a"}, "spec": {"ca": {"secretName": "s"}}}
    store.upsert(cert("a", "x"), 1, obj)
    store.upsert(("Issuer", "a", "ca"), 1, issuer)
    held = dict(store._items)
    assert json.loads(decompress(held[cert("a", "x")][1], OBJECT_DICTIONARY)) == obj  # held as compressed JSON
    assert held[("Issuer", "a", "ca")][1] is issuer  # an issuer, read often and few, stays a dict
    first, second = store.get(cert("a", "x")), store.get(cert("a", "x"))
    assert first == second == obj and first is not second
    first["spec"]["issuerRef"]["name"] = "changed by a reader"
    assert store.get(cert("a", "x")) == obj  # a reader's change never reaches the store
    assert store.indexed(("Issuer", "a", "ca")) == [cert("a", "x")]  # filed by what it holds
    assert dict(store.items())[cert("a", "x")] == obj
    gone = store.delete(cert("a", "x"), 2)
    assert gone is not None and gone.deleted and gone.value == obj  # the last value, unpacked
    assert [c.value for c in seen] == [obj, issuer, obj]
    assert store.indexed(("Issuer", "a", "ca")) == []
