"""RUN LINEAR's channel stage: each row of the engine's walk leaves with its column tile's
biases added and its multipliers and shifts, under stalls; other runs' rows pass unchanged."""

import numpy as np
import pytest

from hw.channels import ChannelStage, requant_width
from hw.config import AccelConfig, ArrayConfig, GemmConfig
from hw.isa import Buf, buffer_specs, channel_shift_width, channel_tiles
from sim import layout
from sim.bench import StreamSink, StreamSource, run, unpack

CFG = AccelConfig.preset("tiny").replace(array=ArrayConfig(3, 2), gemm=GemmConfig(16, 16, 9))


def simulate(cfg, M, N, linear, rows, table, *, stall, seed, multiplier=0, shift=0):
    """The stage's output beats for ``rows`` (the engine's rows of an M x N walk), after the
    CHAN words ``table`` are written: ``(acc, multiplier, shift)`` arrays, one row per beat."""
    dut = ChannelStage(cfg)
    C, eacc, rq_w = cfg.array.cols, len(dut.i.payload[0]), requant_width(cfg)
    mw, sw = cfg.requant.mult_width, len(dut.o.payload.shift[0])
    spec = buffer_specs(cfg, 1)[Buf.CHAN]
    wl = dut.write.payload.shape()
    writes = [wl.const({"addr": a, "data": layout.pack(w, spec.elem_width)}).as_value().value
              for a, w in enumerate(table)]
    start = len(writes) + 4
    rng = np.random.default_rng(seed)
    src = StreamSource(dut.i, layout.pack_rows(rows, eacc), name="rows", rng=rng, stall=stall,
                       start=start)
    sink = StreamSink(dut.o, len(rows), name="beats", rng=np.random.default_rng(seed + 1),
                      stall=stall, start=start)

    async def control(ctx):
        for port, value in ((dut.m, M), (dut.n, N), (dut.linear, linear),
                            (dut.linear_lanes, 0b11 * linear), (dut.multiplier, multiplier),
                            (dut.shift, shift)):
            ctx.set(port, value)
        for word in writes:
            ctx.set(dut.write.valid, 1)
            ctx.set(dut.write.payload.as_value(), word)
            await ctx.tick()
        ctx.set(dut.write.valid, 0)
        await ctx.tick().repeat(2)
        ctx.set(dut.running, 1)

    run(dut, control, src.run, sink.run)
    beats = [(unpack(v, rq_w, C), unpack(v >> (C * rq_w), mw, C, signed=False),
              unpack(v >> (C * (rq_w + mw)), sw, C, signed=False)) for v in sink.items]
    return tuple(np.array([b[i] for b in beats]) for i in range(3))


@pytest.mark.parametrize(("M", "N", "stall"), [(7, 5, 0.0), (7, 5, 0.5), (1, 9, 0.3),
                                                (3, 1, 0.3), (16, 9, 0.7)])
def test_linear_walk(M, N, stall):
    cfg, rng = CFG, np.random.default_rng(M * N)
    R, C, T = cfg.array.rows, cfg.array.cols, channel_tiles(cfg)
    acc = rng.integers(-(1 << 20), 1 << 20, (M, N))
    bias = rng.integers(-(1 << (cfg.acc_width - 1)), 1 << (cfg.acc_width - 1), N)
    bias[0] = -(1 << (cfg.acc_width - 1))
    mult = rng.integers(0, 1 << cfg.requant.mult_width, N)
    shift = rng.integers(0, cfg.acc_width + cfg.requant.mult_width, N)
    got = simulate(cfg, M, N, 1, layout.tile_rows(acc, R, C), layout.channel_words(
        bias, mult, shift, C, T), stall=stall, seed=M + N)
    mask = layout.tile_rows_mask(M, N, R, C)
    want = [layout.tile_rows(acc + bias, R, C),
            layout.tile_rows(np.broadcast_to(mult, (M, N)), R, C),
            layout.tile_rows(np.broadcast_to(shift, (M, N)), R, C)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g[mask], w[mask])


def test_other_runs_pass():
    cfg = CFG
    rows = np.random.default_rng(1).integers(-(1 << 20), 1 << 20, (6, 2))
    table = np.full((3 * channel_tiles(cfg), 2), 5)
    acc, mult, shift = simulate(cfg, 4, 4, 0, rows, table, stall=0.3, seed=2, multiplier=777,
                                shift=13)
    np.testing.assert_array_equal(acc, rows)
    assert (mult == 777).all() and (shift == 13).all()


def test_widths():
    cfg = CFG
    assert requant_width(cfg) == cfg.shared_gemm.acc_width + 1
    assert channel_shift_width(cfg) == (cfg.acc_width + 15).bit_length()
    spec = buffer_specs(cfg)[Buf.CHAN]
    assert (spec.lanes, spec.elem_width, spec.depth, spec.readable) == \
        (2, cfg.acc_width, 3 * 5, False)
