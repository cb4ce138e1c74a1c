"""The daemon's queue: bounded, round robin between clients, removable."""

from __future__ import annotations

import threading

import pytest

from paintbridge.backend.door.fairqueue import FairQueue, QueueFull

pytestmark = pytest.mark.fast


def drain(q: FairQueue) -> list[str]:
    out = []
    while len(q):
        _, key, _ = q.take(timeout=0)
        out.append(key)
    return out


def test_round_robin_between_clients() -> None:
    q: FairQueue[int] = FairQueue(100, 100)
    for i in range(4):
        q.put("a", f"a{i}", i)
    q.put("b", "b0", 0)
    q.put("c", "c0", 0)
    q.put("b", "b1", 1)
    assert drain(q) == ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]


def test_positions_predict_service_order() -> None:
    q: FairQueue[int] = FairQueue(100, 100)
    positions = {}
    for key, client in [("a0", "a"), ("a1", "a"), ("a2", "a"), ("b0", "b"), ("b1", "b"),
                        ("c0", "c")]:
        positions[key] = q.put(client, key, 0)
    # positions are "jobs ahead at submit time"; later arrivals can only add behind b1/c0
    assert positions["a0"] == 0 and positions["a1"] == 1 and positions["b0"] == 1
    assert positions["b1"] == 3 and positions["c0"] == 2
    order = drain(q)
    assert order.index("b0") < order.index("a1") and order.index("c0") < order.index("a2")


def test_limits() -> None:
    q: FairQueue[int] = FairQueue(3, 2)
    q.put("a", "1", 0)
    q.put("a", "2", 0)
    with pytest.raises(QueueFull):
        q.put("a", "3", 0)
    q.put("b", "1", 0)
    with pytest.raises(QueueFull):
        q.put("c", "1", 0)


def test_remove_and_close() -> None:
    q: FairQueue[int] = FairQueue(10, 10)
    q.put("a", "1", 1)
    q.put("a", "2", 2)
    assert q.remove("a", "2") == 2
    assert q.remove("a", "9") is None and q.remove("z", "1") is None
    assert len(q) == 1
    got = []
    t = threading.Thread(target=lambda: got.append(q.take()))
    q.close()
    t.start()
    t.join(5)
    assert got == [None]


def test_positions_list_every_waiting_job_in_service_order() -> None:
    q: FairQueue[str] = FairQueue(10, 10)
    for client, key in (("a", "a0"), ("a", "a1"), ("b", "b0")):
        q.put(client, key, key.upper())
    assert sorted(q.positions(), key=lambda p: p[2]) == [("a0", "A0", 0), ("b0", "B0", 1),
                                                         ("a1", "A1", 2)]
    q.take()
    assert sorted(p[2] for p in q.positions()) == [0, 1]
