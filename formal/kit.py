"""Proofs of the stream kit: the skid buffer, the queue, the credit counter, the down-counter,
the delay line and the buffer reader."""

from types import SimpleNamespace

from amaranth.asserts import AnyConst
from amaranth.hdl import Assert, Assume, Const, Cover, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.reader import BufferReader
from hw.skid import SkidBuffer
from hw.stream import Countdown, Credits, Queue, delay

from . import views
from .proof import Proof
from .rules import past
from .scoreboard import Scoreboard
from .spec import Spec

__all__ = ["PROOFS"]


def skid(track):
    """A 4-bit :class:`~hw.skid.SkidBuffer`: the rules, its counts and (``track``) the tracked
    beat, with the beats inside it (:func:`formal.views.skid`)."""
    def build(wrap):
        s = Spec(wrap(SkidBuffer(unsigned(4))))
        s.stream_rules()
        inside = views.skid(s.dut.formal_view) if track else None
        sb = Scoreboard(s.m, s.dut.i, s.dut.o, capacity=2, stall=0, track=track, inside=inside)
        # Both registers are visible: the main one is o, the skid one is full when i.ready is low.
        s.m.d.comb += Assert(sb.held == s.dut.o.valid + ~s.dut.i.ready, "skid: held beats")
        return s
    return build


def queue(depth, track):
    """A 3-bit :class:`~hw.stream.Queue` of ``depth``: the rules, ``level`` and ``i.ready``
    against the beats held, and (``track``) the tracked beat, with the beats inside it (the
    queue elaborated with ``formal``: :func:`formal.views.queue`)."""
    def build(wrap):
        s = Spec(wrap(Queue(unsigned(3), depth, formal=track)))
        s.stream_rules()
        inside = views.queue(s.dut.formal_view) if track else None
        sb = Scoreboard(s.m, s.dut.i, s.dut.o, capacity=depth, stall=1, track=track,
                        inside=inside)
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


def countdown(limit, step, *, wraps=False):
    """:class:`~hw.stream.Countdown` against a count of the steps taken in a block; with
    ``wraps``, its ``wrap`` mode, whose last step starts the next block of the same size."""
    def build(wrap):
        s = Spec(wrap(Countdown(limit, step, wrap=wraps)))
        m, c = s.m, s.dut
        active = Signal()         # a block is loaded and its last step not taken
        steps = Signal(range(limit + 2))
        total = Signal.like(c.total)
        m.d.comb += Assume(~c.load | (c.total != 0))
        m.d.comb += Assume(~c.en | active | c.load)
        with m.If(c.load):
            m.d.sync += [active.eq(1), steps.eq(0), total.eq(c.total)]
        with m.Elif(c.en):
            if wraps:
                m.d.sync += steps.eq(Mux(c.last, 0, steps + 1))
            else:
                m.d.sync += [active.eq(~c.last), steps.eq(steps + 1)]
        wrapped = Signal()        # a block has ended and the next one begun by itself
        with m.If(c.load):
            m.d.sync += wrapped.eq(0)
        with m.Elif(c.en & c.last):
            m.d.sync += wrapped.eq(wraps)
        with m.If(active):
            m.d.comb += [
                Assert(c.left == total - steps * step, "countdown: left counts the steps"),
                Assert(c.last == (c.left <= step), "countdown: last is left <= step"),
            ]
            with m.If(c.en & c.last):
                m.d.comb += Assert((steps + 1) * step >= total, "countdown: last ends the block")
                m.d.comb += Cover(total > step)
                if wraps:
                    m.d.comb += Cover(wrapped & (total > step))
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


def _walk(m, step, loop, width, name):
    """A reference walk ``i*si + j*sj + k`` (k innermost) through ``loop``, stepped on
    ``step``: its indices ``i``, ``j``, ``k``; ``done``, high once past the last address;
    ``at(i, j, k)``, an address (``width`` bits), and ``addr``, the current one."""
    i, j, k = (Signal.like(loop.count_i, name=f"{name}_{x}") for x in "ijk")
    done = Signal(name=f"{name}_done")
    with m.If(step):
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

    def at(i, j, k):
        return (i * loop.si + j * loop.sj + k)[:width]
    return SimpleNamespace(i=i, j=j, k=k, done=done, at=at, addr=at(i, j, k))


def reader(max_count, latency=1, *, memory_latency=None):
    """A :class:`~hw.reader.BufferReader` of 8 words (elaborated with ``formal``) for a memory of
    read latency ``latency``, over a memory that returns each word's address ``memory_latency``
    cycles after it (by default ``latency``: a reader told the wrong latency must fail),
    through one walk of loops of 1 to ``max_count``:

    - the stream rules on ``o``;
    - its reads follow the walk, from the loop's load (the cycle after ``start``) to the walk's
      last address, and none after (a reference walk stepped on each read issued);
    - the words leave in the order of the reads, none lost, duplicated or invented: a
      :class:`~formal.scoreboard.Scoreboard` from the reads to ``o``, with the words inside
      (:mod:`formal.views`: the memory's output, the landing register, the queue and the
      slice); ``o.valid`` is low for at most ``3 + latency`` cycles in a row while words are
      held (a read's latency to ``o``);
    - the credits count the words in flight, in the queue and just taken from it, so that a
      landed word always finds room in the queue.

    Together: the words of the walk, in order. For the induction, the walk's registers are
    asserted against the reference walk (they start idle, load the loop, and count it down)."""
    def build(wrap):
        aw = 3
        s = Spec(wrap(BufferReader(addr_width=aw, width=aw, latency=latency, formal=True)))
        m, r = s.m, s.dut
        view, depth = r.formal_view, r.depth
        start, loop = r.control.start, r.control.loop
        s.const(loop)
        # The memory returns a word's own address, ``memory_latency`` cycles later:
        # ``words[n]`` is the address of the read whose flag is ``view.flight[n]``.
        words = [r.mem.addr]
        for n in range(memory_latency or latency):
            words.append(past(m, words[-1], name=f"addr_{n}"))
        words = words[1:]
        word = words[-1]
        s.drive(r.mem.data, word)
        started = Signal()
        m.d.sync += started.eq(started | start)
        m.d.comb += Assume(~start | ~started)          # one walk
        for count in (loop.count_i, loop.count_j, loop.count_k):
            m.d.comb += Assume((count >= 1) & (count <= max_count))
        s.stream_rules()

        # The reads (their addresses) leave as the words on o, in order.
        reads = SimpleNamespace(valid=view.issue, ready=Const(1), payload=r.mem.addr)
        inside = views.line(views.skid(view.skid.formal_view),
                            views.queue(view.fifo.formal_view),
                            views.register(view.landed, view.landed_data),
                            *(views.register(flag, addr) for flag, addr
                              in reversed(list(zip(view.flight, words, strict=False)))))
        sb = Scoreboard(m, reads, r.o, capacity=depth + 2, stall=3 + latency, inside=inside,
                        name="reader")

        # The reads follow the walk.
        walk = _walk(m, view.issue, loop, len(view.addr), name="walk")
        with m.If(view.issue):
            m.d.comb += [
                Assert(started & ~view.load & ~walk.done, "reader: a read only in the walk"),
                Assert(r.mem.addr == walk.addr[:aw], "reader: the reads in walk order"),
            ]
        k_kept, j_kept = view.k.formal_view, view.j.formal_view     # the wrapping loops' sizes
        with m.If(~started | view.load):
            m.d.comb += Assert(~view.active & (sb.held == 0) & (walk.i == 0) & (walk.j == 0)
                               & (walk.k == 0) & ~walk.done, "reader: idle until loaded")
        with m.Else():
            m.d.comb += [
                Assert(view.active == ~walk.done, "reader: active through the walk"),
                Assert((k_kept.period == loop.count_k) & (j_kept.period == loop.count_j)
                       & (k_kept.period_last == (loop.count_k == 1))
                       & (j_kept.period_last == (loop.count_j == 1))
                       & (view.si == loop.si) & (view.sj == loop.sj), "reader: the loop loaded"),
            ]
            with m.If(~walk.done):
                m.d.comb += [
                    Assert((walk.k < loop.count_k) & (walk.j < loop.count_j)
                           & (walk.i < loop.count_i), "reader: the walk within its loops"),
                    Assert((view.k.left == loop.count_k - walk.k)
                           & (view.k.last == (walk.k == loop.count_k - 1))
                           & (view.j.left == loop.count_j - walk.j)
                           & (view.j.last == (walk.j == loop.count_j - 1))
                           & (view.i.left == loop.count_i - walk.i)
                           & (view.i.last == (walk.i == loop.count_i - 1)),
                           "reader: the loop counters follow the walk"),
                    Assert(view.addr == walk.addr, "reader: the address follows the walk"),
                    Assert(view.next_j == walk.at(walk.i, walk.j + 1, 0),
                           "reader: the next j block follows the walk"),
                    Assert(view.next_i == walk.at(walk.i + 1, 0, 0),
                           "reader: the next i block follows the walk"),
                ]

        # The credits: each slot claimed is a word in flight, in the queue or just taken from it.
        fifo, credits = view.fifo, view.credits
        m.d.comb += [
            Assert(credits.count == sum(view.flight) + view.landed + fifo.level + view.consumed,
                   "reader: the credits count the words in flight and queued"),
            Assert(credits.room == (credits.count < depth), "reader: room while credits left"),
            Assert(~view.landed | fifo.i.ready, "reader: a landed word finds room in the queue"),
        ]
        m.d.comb += [
            Cover(walk.done & (sb.held == 0) & (loop.count_i == 2) & (loop.count_j == 2)
                  & (loop.count_k == 2), "reader: a 2x2x2 walk delivered"),
            Cover(credits.count == depth, "reader: the credits run out"),
        ]
        return s
    return build

PROOFS = [
    Proof("skid.counts", "skid", "prove", 4, skid(track=False), cover_depth=6,
          what="stream rules; beats held = o.valid + skid full, within 2; offered at once"),
    Proof("skid.order", "skid", "prove", 4, skid(track=True), cover_depth=8,
          what="as skid.counts, and a tracked beat leaves in order with its payload (none "
          "lost, duplicated or reordered), held in the main or skid register at its place"),
    Proof("queue.counts", "queue", "prove", 6, queue(3, track=False), cover_depth=10,
          what="stream rules; level = beats held, within depth 3; ready while not full"),
    Proof("queue.order", "queue", "prove", 6, queue(3, track=True), cover_depth=10,
          what="as queue.counts, and a tracked beat leaves in order with its payload (none "
          "lost, duplicated or reordered), held in the FIFO at its place"),
    Proof("credits.early", "credits", "prove", 2, credits(3, early_give=True), cover_depth=6,
          what="count within depth 3; room = count < depth"),
    Proof("credits.late", "credits", "prove", 2, credits(3, early_give=False), cover_depth=6,
          what="room only with a free slot; no room only when full (or a give a cycle ago)"),
    Proof("countdown.step1", "countdown", "bmc", 10, countdown(6, 1), cover_depth=8,
          what="left counts the steps; last is high on the block's last step only"),
    Proof("countdown.step2", "countdown", "bmc", 10, countdown(7, 2), cover_depth=8,
          what="left counts the steps; last is high on the block's last step only"),
    Proof("countdown.wrap", "countdown", "bmc", 12, countdown(5, 2, wraps=True),
          cover_depth=10, what="wrap mode: left counts the steps of each block of the loaded "
          "size; last is high on each block's last step only"),
    Proof("delay.3", "delay", "bmc", 10, delayed(3), cover_depth=8,
          what="a value comes out after 3 advances of the line"),
    Proof("reader.order", "reader", "prove", 10, reader(3), cover_depth=17,
          what="stream rules; the reads follow a walk of loops up to 3x3x3, and the words "
          "leave in their order (none lost, duplicated or invented), each within 4 cycles; "
          "credits = words in flight + queued, so none overflows the queue"),
    Proof("reader.order-any", "reader", "prove", 10, reader(15), slow=True,
          what="as reader.order for every loop the reader's registers hold (1 to 15 each)"),
    Proof("reader.latency2", "reader", "prove", 10, reader(3, latency=2), cover_depth=18,
          what="as reader.order behind a memory of read latency 2 (C's registered address, "
          "hw.buffers.Buffers.read_latency): each word within 5 cycles"),
]
