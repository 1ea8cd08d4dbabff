"""The stream kit: Queue, Credits, Countdown, delay and delay_ram, against Python models, under
stalls."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, Module, Signal, UnusedElaboratable, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.stream import Countdown, Credits, Queue, delay, delay_ram
from sim.bench import StreamSink, StreamSource, run


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# -- Queue -------------------------------------------------------------------------------------

PAIR = data.StructLayout({"a": 7, "b": 9})


@pytest.mark.parametrize("depth", [1, 2, 5])
@pytest.mark.parametrize("stall_in, stall_out", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.6),
                                                 (0.4, 0.7)])
def test_queue_every_beat_in_order(depth, stall_in, stall_out):
    dut = Queue(PAIR, depth)
    rng = np.random.default_rng(depth)
    items = rng.integers(0, 1 << 16, 200).tolist()
    src = StreamSource(dut.i, items, name="i", rng=rng, stall=stall_in)
    sink = StreamSink(dut.o, len(items), name="o", rng=rng, stall=stall_out)
    run(dut, src.run, sink.run)
    assert sink.items == items


@pytest.mark.parametrize("depth, latency, period", [(1, 1, 2), (2, 2, 2), (3, 2, 1), (8, 2, 1)])
def test_queue_latency_and_throughput(depth, latency, period):
    dut = Queue(16, depth)
    items = list(range(40))
    rng = np.random.default_rng(0)
    src = StreamSource(dut.i, items, name="i", rng=rng)
    sink = StreamSink(dut.o, len(items), name="o", rng=rng)
    run(dut, src.run, sink.run)
    assert sink.items == items
    assert sink.first_cycle - src.first_cycle == latency
    assert sink.last_cycle - sink.first_cycle == period * (len(items) - 1)


def test_queue_holds_depth_beats_and_reports_its_level():
    dut = Queue(PAIR, 3)
    assert dut.i.payload.shape() == PAIR and dut.o.payload.shape() == PAIR
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        for k in range(5):
            ctx.set(dut.i.payload, {"a": k, "b": 2 * k})
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            seen.append(ready)
        await ctx.tick()
        assert ctx.get(dut.level) == 3
        assert ctx.get(dut.o.payload) == {"a": 0, "b": 0}

    _simulate(dut, bench)
    assert seen == [1, 1, 1, 0, 0]


def test_queue_formal_view_shows_the_beats_held():
    # A beat passes through (the ring's pointers move on), then four stay: the output register
    # holds the first, the storage rows the others, from ``consume`` on around the ring of 3
    # rows (wrapping), up to ``produce``.
    dut = Queue(16, 4, formal=True)
    sim = Simulator(dut)            # elaborates the queue: ``formal_view`` is set
    view = dut.formal_view
    assert len(view.rows) == 3
    sim.add_clock(1e-8)
    held = []

    async def bench(ctx):
        for beat in (8, 9, 10, 11, 12):
            ctx.set(dut.o.ready, beat < 9)
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, beat)
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            await ctx.tick().repeat(3)
        consume, produce = ctx.get(view.consume), ctx.get(view.produce)
        assert ctx.get(dut.level) == 4 and (consume, produce) == (2, 2)
        held.append(ctx.get(view.fifo.r_data))
        held.extend(ctx.get(view.rows[(consume + k) % 3]) for k in range(3))

    sim.add_testbench(bench)
    sim.run()
    assert held == [9, 10, 11, 12]


def test_queue_formal_view_needs_storage():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)  # the refused, half-built queue
        with pytest.raises(ValueError, match=r"^Queue depth must be at least 2 for a formal "
                                             r"view, not 1$") as info:
            Queue(16, 1, formal=True)
        del info
        gc.collect()


# -- Credits ---------------------------------------------------------------------------------

class _CreditedPipe(wiring.Component):
    """A producer that claims a slot, writes its beat 3 cycles later into a Queue, and frees the
    slot a cycle after the consumer takes a beat: the use Credits is for."""

    def __init__(self, depth, lag=3, early_give=True):
        self.depth, self.lag, self.early_give = depth, lag, early_give
        super().__init__({"want": In(1), "o": Out(stream.Signature(16)),
                          "overflow": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.q = q = Queue(16, self.depth)
        m.submodules.credits = cr = Credits(self.depth, early_give=self.early_give)
        seq = Signal(16)
        take = self.want & cr.room
        given = Signal()
        with m.If(take):
            m.d.sync += seq.eq(seq + 1)
        valid = delay(m, take, self.lag, name="v")
        payload = delay(m, seq, self.lag, name="p")
        if self.early_give:
            m.d.sync += given.eq(q.o.valid & q.o.ready)
        else:
            m.d.comb += given.eq(q.o.valid & q.o.ready)
        m.d.comb += [q.i.valid.eq(valid), q.i.payload.eq(payload),
                     cr.take.eq(take), cr.give.eq(given)]
        with m.If(q.i.valid & ~q.i.ready):
            m.d.sync += self.overflow.eq(1)
        wiring.connect(m, q.o, wiring.flipped(self.o))
        return m


@pytest.mark.parametrize("early_give", [True, False])
@pytest.mark.parametrize("stall_out", [0.0, 0.5, 0.9])
def test_credits_never_overfill_and_lose_nothing(stall_out, early_give):
    dut = _CreditedPipe(depth=6, early_give=early_give)
    rng = np.random.default_rng(7)
    sink = StreamSink(dut.o, 150, name="o", rng=rng, stall=stall_out)

    async def want(ctx):
        for _ in range(4000):
            ctx.set(dut.want, int(rng.random() < 0.8))
            await ctx.tick()
            assert not ctx.get(dut.overflow), "the queue was written while full"

    run(dut, sink.run, background=[want])
    assert sink.items == list(range(150))


@pytest.mark.parametrize("early_give, rooms", [(True, [1, 1, 0, 0, 0, 1, 1]),
                                               (False, [1, 1, 0, 0, 0, 0, 1])])
def test_credits_room_is_registered_and_counts(early_give, rooms):
    dut = Credits(2, early_give=early_give)
    rows = []

    async def bench(ctx):
        for take, give in [(1, 0), (1, 0), (0, 0), (1, 1), (0, 1), (0, 1), (0, 0)]:
            ctx.set(dut.take, take)
            ctx.set(dut.give, give)
            await ctx.delay(1e-9)
            rows.append((ctx.get(dut.room), ctx.get(dut.count)))
            await ctx.tick()

    _simulate(dut, bench)
    assert rows == list(zip(rooms, [0, 1, 2, 2, 2, 1, 0], strict=True))


# -- Countdown -------------------------------------------------------------------------------

async def _countdown_step(ctx, dut, rng, seen):
    """Drive ``en`` at random (70%); when it is high, record ``(left, last)`` in ``seen``.
    Returns ``(en, last)``; the caller ticks."""
    en = int(rng.random() < 0.7)
    ctx.set(dut.en, en)
    await ctx.delay(1e-9)
    last = bool(ctx.get(dut.last))
    if en:
        seen.append((ctx.get(dut.left), last))
    return en, last


def _countdown_block(total, step):
    """``(left, last)`` at each step of one block of ``total`` items, ``step`` a step."""
    lefts = range(total, 0, -step)
    return [(left, left <= step) for left in lefts]


@pytest.mark.parametrize("step", [1, 3])
def test_countdown_marks_the_last_step_of_each_block(step):
    limit = 20
    dut = Countdown(limit, step)
    rng = np.random.default_rng(step)
    totals = rng.integers(1, limit + 1, 12).tolist()
    seen = []
    expect = [beat for total in totals for beat in _countdown_block(total, step)]

    async def bench(ctx):
        # Each block is loaded on the last step of the one before (back to back) or after a gap.
        ctx.set(dut.total, totals[0])
        ctx.set(dut.load, 1)
        await ctx.tick()
        ctx.set(dut.load, 0)
        k = 1
        while len(seen) < len(expect):
            en, last = await _countdown_step(ctx, dut, rng, seen)
            if en:
                if last and k < len(totals):
                    ctx.set(dut.total, totals[k])
                    ctx.set(dut.load, 1)
                    k += 1
            await ctx.tick()
            ctx.set(dut.load, 0)

    _simulate(dut, bench)
    assert seen == expect


@pytest.mark.parametrize("step", [1, 2])
def test_countdown_with_wrap_repeats_its_block_until_loaded_again(step):
    limit = 9
    dut = Countdown(limit, step, wrap=True)
    rng = np.random.default_rng(10 + step)
    # (total, blocks): each total is loaded once and counted down `blocks` times.
    plan = [(int(rng.integers(1, limit + 1)), int(rng.integers(1, 4))) for _ in range(8)]
    expect = [beat for total, blocks in plan for _ in range(blocks)
              for beat in _countdown_block(total, step)]
    seen = []

    async def bench(ctx):
        for total, blocks in plan:
            ctx.set(dut.total, total)
            ctx.set(dut.load, 1)
            ctx.set(dut.en, 0)
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.total, 0)     # read on load only
            done = 0
            while done < blocks:
                en, last = await _countdown_step(ctx, dut, rng, seen)
                done += en and last
                await ctx.tick()

    _simulate(dut, bench)
    assert seen == expect


# -- delay -----------------------------------------------------------------------------------

class _Delay(wiring.Component):
    i: In(8)
    en: In(1)
    o: Out(8)
    o_en: Out(8)

    def __init__(self, cycles):
        self.cycles = cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()   # the 0-cycle delay makes no register
        m.d.comb += self.o.eq(delay(m, self.i, self.cycles, name="x"))
        with m.If(self.en):
            m.d.comb += self.o_en.eq(delay(m, self.i, self.cycles, name="y", reset_less=True))
        return m


@pytest.mark.parametrize("cycles", [0, 1, 4])
def test_delay_is_cycles_registers(cycles):
    dut = _Delay(cycles)
    rng = np.random.default_rng(cycles)
    values = rng.integers(0, 256, 60).tolist()
    ens = (rng.random(60) < 0.6).astype(int).tolist()
    free, gated = [], []

    async def bench(ctx):
        for v, en in zip(values, ens, strict=True):
            ctx.set(dut.i, v)
            ctx.set(dut.en, en)
            await ctx.delay(1e-9)
            free.append(ctx.get(dut.o))
            gated.append(ctx.get(dut.o_en) if en else None)
            await ctx.tick()

    _simulate(dut, bench)
    # Free-running: the value from `cycles` cycles ago (0 from reset before that).
    assert free == ([0] * cycles + values)[:len(values)]
    # Under m.If(en): a pipeline that advances only on `en`.
    moved = [0] * cycles
    for v, en, got in zip(values, ens, gated, strict=True):
        if en:
            want = (moved + [v])[-cycles - 1] if cycles else v
            assert got == want
            moved.append(v)


def test_delay_names_and_shapes():
    m = Module()
    src = Signal(4, init=5, reset_less=True)
    out = delay(m, src, 2, name="q")
    assert out.name == "q_d1" and out.init == 5 and out.reset_less
    wide = delay(m, src, 1, name="w", shape=9)
    assert wide.shape().width == 9 and wide.init == 0 and not wide.reset_less
    Fragment.get(m, None)


class _DelayRam(wiring.Component):
    i: In(signed(8))
    o: Out(signed(8))

    def __init__(self, cycles):
        self.cycles = cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(delay_ram(m, self.i, self.cycles, name="x"))
        return m


@pytest.mark.parametrize("cycles", [2, 3, 4, 5, 11])
def test_delay_ram_is_a_delay(cycles, new_data_reads):
    # The value from `cycles` cycles ago, signed, once the line has filled; the same with the
    # memory returning new data on a collision (it never has one).
    new_data_reads()
    dut = _DelayRam(cycles)
    values = np.random.default_rng(cycles).integers(-128, 128, 80).tolist()
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(dut.i, v)
            await ctx.delay(1e-9)
            got.append(ctx.get(dut.o))
            await ctx.tick()

    _simulate(dut, bench)
    assert got[cycles:] == values[:-cycles]


def test_delay_ram_refuses_short_lines():
    m = Module()
    for cycles in (0, 1):
        with pytest.raises(ValueError, match="at least 2 cycles"):
            delay_ram(m, Signal(8), cycles, name="x")
    Fragment.get(m, None)
