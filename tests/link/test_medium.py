"""The radio medium: range, carrier sense, collisions, jamming, loss, interception."""

from __future__ import annotations

from dataclasses import dataclass, field

from pumpguard.clock import VirtualClock
from pumpguard.link import PASS, Jammer, RadioMedium, Transmission, airtime_us


@dataclass
class Node:
    name: str
    position_m: tuple[float, float] = (0.0, 0.0)
    range_m: float = 10.0
    heard: list[bytes] = field(default_factory=list)

    def on_frame(self, data: bytes, at_us: int) -> None:
        self.heard.append(data)


def medium(**kw: float) -> tuple[VirtualClock, RadioMedium]:
    clock = VirtualClock(1_000)
    return clock, RadioMedium(clock, **kw)  # type: ignore[arg-type]


def test_frames_reach_every_node_in_range_and_no_one_else() -> None:
    _, m = medium()
    a, b, far = Node("a"), Node("b", (5.0, 0.0)), Node("far", (50.0, 0.0))
    for n in (a, b, far):
        m.attach(n)
    tx = m.transmit(a, b"hello")
    assert tx.end_us - tx.start_us == airtime_us(5) == (5 + 10) * 8
    m.settle()
    assert b.heard == [b"hello"]
    assert far.heard == [] and a.heard == []


def test_honest_senders_wait_for_the_channel() -> None:
    _, m = medium()
    a, b, c = Node("a"), Node("b", (1.0, 0.0)), Node("c", (2.0, 0.0))
    for n in (a, b, c):
        m.attach(n)
    first = m.transmit(a, b"one")
    second = m.transmit(b, b"two")
    assert second.start_us > first.end_us
    m.settle()
    assert c.heard == [b"one", b"two"]
    assert m.stats.lost_collision == 0


def test_overlapping_frames_collide_at_a_receiver_that_hears_both() -> None:
    _, m = medium()
    a, b, c = Node("a"), Node("b", (1.0, 0.0)), Node("c", (2.0, 0.0))
    for n in (a, b, c):
        m.attach(n)
    m.transmit(a, b"one")
    m.transmit(b, b"two", carrier_sense=False)
    m.settle()
    assert c.heard == []
    assert m.stats.lost_collision >= 2


def test_hidden_terminals_collide_only_where_both_are_heard() -> None:
    _, m = medium()
    a, b = Node("a", (0.0, 0.0), 6.0), Node("b", (10.0, 0.0), 6.0)
    middle, near_a = Node("middle", (5.0, 0.0)), Node("near_a", (-3.0, 0.0))
    for n in (a, b, middle, near_a):
        m.attach(n)
    m.transmit(a, b"from a")
    m.transmit(b, b"from b")  # b cannot hear a: no deferral
    m.settle()
    assert middle.heard == []
    assert near_a.heard == [b"from a"]


def test_a_jammer_drops_frames_during_its_on_time_only() -> None:
    clock, m = medium()
    a, b, jam = Node("a"), Node("b", (1.0, 0.0)), Node("jammer", (2.0, 0.0))
    m.attach(a)
    m.attach(b)

    m.add_jammer(
        Jammer(jam, period_ms=10, on_ms=5, start_ms=clock.now_ms(), end_ms=clock.now_ms() + 100)
    )
    m.transmit(a, b"during on")
    m.settle()
    clock.advance(6)
    m.transmit(a, b"during off")
    m.settle()
    clock.advance(200)
    m.transmit(a, b"after")
    m.settle()
    assert b.heard == [b"during off", b"after"]
    assert m.stats.lost_jammed == 1


def test_random_loss_is_seeded() -> None:
    def run(seed: int) -> list[bytes]:
        _, m = medium(seed=seed, loss_rate=0.5)
        a, b = Node("a"), Node("b", (1.0, 0.0))
        m.attach(a)
        m.attach(b)
        for i in range(200):
            m.transmit(a, bytes([i]))
        m.settle(until_us=10**12)
        return b.heard

    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert first != other
    assert 60 < len(first) < 140


def test_an_interceptor_replaces_frames_in_flight() -> None:
    _, m = medium()
    a, b, mitm = Node("a"), Node("b", (1.0, 0.0)), Node("mitm", (0.5, 0.5))
    for n in (a, b, mitm):
        m.attach(n)

    def rule(tx: Transmission) -> bytes | object | None:
        if tx.data == b"pass":
            return PASS
        return None if tx.data == b"drop" else tx.data.upper()

    m.intercept(mitm, rule)  # type: ignore[arg-type]
    for data in (b"pass", b"drop", b"bolus 1"):
        m.transmit(a, data)
        m.settle()
    assert b.heard == [b"pass", b"BOLUS 1"]
    assert mitm.heard == [b"pass", b"drop", b"bolus 1"]
    assert m.stats.intercepted == 2
