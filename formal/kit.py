"""Proofs of the stream kit: the skid buffer, the queue, the credit counter, the down-counter,
the delay line and the buffer reader."""

from amaranth.asserts import AnyConst
from amaranth.hdl import Assert, Assume, Cover, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.reader import BufferReader
from hw.skid import SkidBuffer
from hw.stream import Countdown, Credits, Queue, delay

from .proof import Proof
from .rules import past, transfer
from .scoreboard import Scoreboard
from .spec import Spec

__all__ = ["PROOFS"]


def skid(track):
    """A 4-bit :class:`~hw.skid.SkidBuffer`: the rules, its counts and (``track``) the tracked
    beat."""
    def build(wrap):
        s = Spec(wrap(SkidBuffer(unsigned(4))))
        s.stream_rules()
        sb = Scoreboard(s.m, s.dut.i, s.dut.o, capacity=2, stall=0, track=track)
        # Both registers are visible: the main one is o, the skid one is full when i.ready is low.
        s.m.d.comb += Assert(sb.held == s.dut.o.valid + ~s.dut.i.ready, "skid: held beats")
        return s
    return build


def queue(depth, track):
    """A 3-bit :class:`~hw.stream.Queue` of ``depth``: the rules, ``level`` and ``i.ready``
    against the beats held, and (``track``) the tracked beat."""
    def build(wrap):
        s = Spec(wrap(Queue(unsigned(3), depth)))
        s.stream_rules()
        sb = Scoreboard(s.m, s.dut.i, s.dut.o, capacity=depth, stall=1, track=track)
        s.m.d.comb += [
            Assert(s.dut.level == sb.held, "queue: level counts the beats held"),
            Assert(s.dut.i.ready == (s.dut.level < depth), "queue: ready while not full"),
        ]
        return s
    return build


def credits(depth, early_give):
    """:class:`~hw.stream.Credits` under a producer that claims only with ``room`` and a
    consumer that frees only claimed slots."""
    def build(wrap):
        s = Spec(wrap(Credits(depth, early_give=early_give)))
        m, c = s.m, s.dut
        # The producer claims only with room; the consumer frees only a claimed slot.
        m.d.comb += [Assume(~c.take | c.room), Assume(~c.give | (c.count != 0))]
        m.d.comb += Assert(c.count <= depth, "credits: count within depth")
        if early_give:
            m.d.comb += Assert(c.room == (c.count < depth), "credits: room is count < depth")
        else:
            gave = past(m, c.give, name="gave")
            m.d.comb += [
                Assert(~c.room | (c.count < depth), "credits: room only with a free slot"),
                Assert(c.room | (c.count == depth) | (gave & (c.count == depth - 1)),
                       "credits: no room only when full, or freed a cycle ago"),
            ]
        m.d.comb += [Cover(c.count == depth), Cover((c.count == 0) & c.take)]
        return s
    return build


def countdown(limit, step):
    """:class:`~hw.stream.Countdown` against a count of the steps taken in a block."""
    def build(wrap):
        s = Spec(wrap(Countdown(limit, step)))
        m, c = s.m, s.dut
        active = Signal()         # a block is loaded and its last step not taken
        steps = Signal(range(limit + 2))
        total = Signal.like(c.total)
        m.d.comb += Assume(~c.load | (c.total != 0))
        m.d.comb += Assume(~c.en | active | c.load)
        with m.If(c.load):
            m.d.sync += [active.eq(1), steps.eq(0), total.eq(c.total)]
        with m.Elif(c.en):
            m.d.sync += [active.eq(~c.last), steps.eq(steps + 1)]
        with m.If(active):
            m.d.comb += [
                Assert(c.left == total - steps * step, "countdown: left counts the steps"),
                Assert(c.last == (c.left <= step), "countdown: last is left <= step"),
            ]
            with m.If(c.en & c.last):
                m.d.comb += Assert((steps + 1) * step >= total, "countdown: last ends the block")
                m.d.comb += Cover(total > step)
        return s
    return build


class _DelayLine(wiring.Component):
    """:func:`hw.stream.delay` of ``i`` by ``cycles`` registers that load on ``en``."""

    i: In(4)
    en: In(1)
    o: Out(4)

    def __init__(self, cycles):
        self.cycles = cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            out = delay(m, self.i, self.cycles, name="d")
        m.d.comb += self.o.eq(out)
        return m


def delayed(cycles):
    """:func:`~hw.stream.delay` by ``cycles`` under an advance: one value followed through."""
    def build(wrap):
        s = Spec(wrap(_DelayLine(cycles)))
        m, d = s.m, s.dut
        # Follow one value (tag) through the line: after `cycles` advances it is on o.
        tag = Signal(4)
        m.d.comb += tag.eq(AnyConst(4))
        advances = Signal(range(cycles + 2))
        tracking = Signal()
        with m.If(~tracking & d.en & (d.i == tag)):
            m.d.sync += [tracking.eq(1), advances.eq(1)]
        with m.Elif(tracking & d.en):
            m.d.sync += advances.eq(advances + 1)
        with m.If(tracking & (advances == cycles)):
            m.d.comb += Assert(d.o == tag, "delay: the value comes out after `cycles` advances")
            m.d.sync += tracking.eq(0)
            m.d.comb += Cover(d.en)
        return s
    return build


def reader(max_count):
    """A :class:`~hw.reader.BufferReader` of 8 words over a memory that returns each word's
    address: one walk of loops up to ``max_count``, checked word by word against the walk."""
    def build(wrap):
        aw = 3
        s = Spec(wrap(BufferReader(addr_width=aw, width=aw)))
        m, r = s.m, s.dut
        start, loop = r.control.start, r.control.loop
        s.const(loop)
        # The memory returns a word's own address, a cycle later.
        s.drive(r.mem.data, past(m, r.mem.addr, name="addr"))
        started = Signal()
        m.d.sync += started.eq(started | start)
        m.d.comb += Assume(~start | ~started)          # one walk
        for count in (loop.count_i, loop.count_j, loop.count_k):
            m.d.comb += Assume((count >= 1) & (count <= max_count))
        s.stream_rules()

        # The walk, stepped on each word delivered: it must deliver i*si + j*sj + k.
        i, j, k = (Signal(range(max_count + 1), name=f"ref_{x}") for x in "ijk")
        done = Signal()
        delivered = Signal(range(max_count ** 3 + 2))
        expected = Signal(aw)
        m.d.comb += expected.eq(i * loop.si + j * loop.sj + k)
        with m.If(transfer(r.o)):
            m.d.sync += delivered.eq(delivered + 1)
            with m.If(k + 1 != loop.count_k):
                m.d.sync += k.eq(k + 1)
            with m.Else():
                m.d.sync += k.eq(0)
                with m.If(j + 1 != loop.count_j):
                    m.d.sync += j.eq(j + 1)
                with m.Else():
                    m.d.sync += j.eq(0)
                    with m.If(i + 1 != loop.count_i):
                        m.d.sync += i.eq(i + 1)
                    with m.Else():
                        m.d.sync += done.eq(1)
        with m.If(r.o.valid):
            m.d.comb += [
                Assert(started, "reader: no word before start"),
                Assert(~done, "reader: no word after the walk"),
                Assert(r.o.payload == expected, "reader: the words in walk order"),
            ]
        m.d.comb += Cover(done & (loop.count_i == max_count) & (loop.count_j == max_count)
                          & (loop.count_k == max_count))
        return s
    return build


PROOFS = [
    Proof("skid.counts", "skid", "prove", 4, skid(track=False), cover_depth=6,
          what="stream rules; beats held = o.valid + skid full, within 2; offered at once"),
    Proof("skid.order", "skid", "bmc", 16, skid(track=True), cover_depth=8,
          what="a tracked beat leaves in order: none lost, duplicated or reordered"),
    Proof("queue.counts", "queue", "prove", 6, queue(3, track=False), cover_depth=10,
          what="stream rules; level = beats held, within depth 3; ready while not full"),
    Proof("queue.order", "queue", "bmc", 16, queue(3, track=True), cover_depth=10,
          what="a tracked beat leaves in order: none lost, duplicated or reordered"),
    Proof("credits.early", "credits", "prove", 2, credits(3, early_give=True), cover_depth=6,
          what="count within depth 3; room = count < depth"),
    Proof("credits.late", "credits", "prove", 2, credits(3, early_give=False), cover_depth=6,
          what="room only with a free slot; no room only when full (or a give a cycle ago)"),
    Proof("countdown.step1", "countdown", "bmc", 10, countdown(6, 1), cover_depth=8,
          what="left counts the steps; last is high on the block's last step only"),
    Proof("countdown.step2", "countdown", "bmc", 10, countdown(7, 2), cover_depth=8,
          what="left counts the steps; last is high on the block's last step only"),
    Proof("delay.3", "delay", "bmc", 10, delayed(3), cover_depth=8,
          what="a value comes out after 3 advances of the line"),
    Proof("reader.walk", "reader", "bmc", 16, reader(2), cover_depth=16,
          what="stream rules; the words of a 2x2x2 walk in order, none lost or duplicated"),
    Proof("reader.walk-stalled", "reader", "bmc", 24, reader(2), slow=True,
          what="as reader.walk, 8 cycles deeper: the walk completes under consumer stalls"),
]
