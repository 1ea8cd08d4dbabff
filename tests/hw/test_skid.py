"""SkidBuffer: every beat through, in order, with registered handshakes, at one beat a cycle."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import Fragment, UnusedElaboratable

from boards.synth import SynthTarget
from hw.skid import SkidBuffer
from sim.bench import StreamSink, StreamSource, run

#: The iCE40 target: the slice is one register there, with ``i.ready`` passed through.
ICE40 = SynthTarget.for_family("ice40")


def _pass(items, stall_in, stall_out, seed, platform=None, copies=1):
    dut = SkidBuffer(16, copies=copies)
    rng = np.random.default_rng(seed)
    src = StreamSource(dut.i, items, name="i", rng=rng, stall=stall_in)
    sink = StreamSink(dut.o, len(items), name="o", rng=rng, stall=stall_out)
    run(Fragment.get(dut, platform), src.run, sink.run)    # as ``platform`` builds it
    return src, sink


@pytest.mark.parametrize("platform, copies", [(None, 1), (ICE40, 1), (None, 3)],
                         ids=["sim", "ice40", "sim-3-flags"])
@pytest.mark.parametrize("stall_in, stall_out", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5),
                                                 (0.3, 0.6), (0.7, 0.7)])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_beat_in_order(stall_in, stall_out, seed, platform, copies):
    # With 3 copies of the skid flag, the 16 bits are cut 6, 6, 4, each slice on its own.
    items = np.random.default_rng(100 + seed).integers(0, 1 << 16, 300).tolist()
    _, sink = _pass(items, stall_in, stall_out, seed, platform, copies)
    assert sink.items == items


def test_skid_flag_copies_on_ecp5_are_kept_flip_flops():
    # On ECP5 each copy is a TRELLIS_FF instance marked keep (hw.fanout), so that Yosys does not
    # merge them back into one net across the payload.
    dut = SkidBuffer(16, copies=4)
    frag = Fragment.get(dut, SynthTarget.for_family("ecp5"))
    kept = [name for _, name, *_ in frag.subfragments if name.startswith("skid_valid_")]
    assert sorted(kept) == [f"skid_valid_{k}" for k in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)     # the refused one
        with pytest.raises(ValueError, match="flag copies must be a positive integer, not 0"):
            SkidBuffer(16, copies=0)
        gc.collect()


@pytest.mark.parametrize("platform", [None, ICE40], ids=["sim", "ice40"])
def test_one_beat_per_cycle_and_one_cycle_of_latency(platform):
    items = list(range(50))
    src, sink = _pass(items, 0.0, 0.0, 0, platform)
    assert sink.items == items
    assert sink.first_cycle - src.first_cycle == 1
    assert sink.last_cycle - sink.first_cycle == len(items) - 1


@pytest.mark.parametrize("stall_out", [0.3, 0.6])
def test_ice40_slice_leaves_beats_on_the_same_cycles(stall_out):
    # Behind a producer that always offers a beat, the one-register slice of iCE40 and the
    # two-register one hand every beat out on the same cycle, under any stalls of the consumer.
    items = list(range(200))
    cycles = []
    for platform in (None, ICE40):
        _, sink = _pass(items, 0.0, stall_out, 3, platform)
        assert sink.items == items
        cycles.append(sink.transfer_cycles)
    assert cycles[0] == cycles[1]


def test_handshakes_come_from_flip_flops():
    # i.ready and o.valid must not follow o.ready or i.valid in the same cycle.
    from amaranth.sim import Simulator
    dut = SkidBuffer(4)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 3)
        ctx.set(dut.o.ready, 0)
        await ctx.tick()
        await ctx.tick()              # main and skid now full
        for o_ready in (0, 1):
            ctx.set(dut.o.ready, o_ready)
            await ctx.delay(1e-9)     # combinational settle, no clock edge
            seen.append((ctx.get(dut.i.ready), ctx.get(dut.o.valid)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(0, 1), (0, 1)]
