"""GemmEngine (and through it SystolicArray and PE) against golden.gemm, bit for bit."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given
from hypothesis import strategies as st

import intformer as itf
from hw.config import AccelConfig, ArrayConfig, GemmConfig, RequantConfig
from hw.gemm import GemmEngine, tile_gap
from sim import bench, cyclemodel, golden

# Several array shapes, non-square and non-power-of-two included.
ARRAYS = [(1, 1), (2, 2), (3, 2), (1, 4), (4, 3), (3, 5)]


def make_cfg(rows, cols, max_m=24, max_k=40, max_n=24):
    return AccelConfig(array=ArrayConfig(rows, cols), gemm=GemmConfig(max_m, max_k, max_n))


def random_operands(rng, M, K, N):
    return (rng.integers(-128, 128, (M, K), dtype=np.int8),
            rng.integers(-128, 128, (K, N), dtype=np.int8))


def check(cfg, a, b, *, backend="amaranth", **kwargs):
    r = itf.simulate.gemm(cfg, a, b, backend=backend, **kwargs)
    assert r.extra["backend"] == backend
    np.testing.assert_array_equal(r.output, golden.gemm(a, b))
    # The engine zeroes lanes beyond N itself, whatever the producer sent there.
    assert not r.extra["padding"].any()
    return r


@given(arr=st.sampled_from(ARRAYS), M=st.integers(1, 13), K=st.integers(1, 20),
       N=st.integers(1, 13), seed=st.integers(0, 2**16))
def test_random_shapes(arr, M, K, N, seed):
    a, b = random_operands(np.random.default_rng(seed), M, K, N)
    check(make_cfg(*arr), a, b, seed=seed)


@pytest.mark.parametrize("arr", ARRAYS)
def test_ragged_and_k1(arr):
    rows, cols = arr
    rng = np.random.default_rng(rows * 10 + cols)
    cfg = make_cfg(rows, cols)
    for M, K, N in [(rows + 1, 1, cols + 1), (2 * rows + 1, 3, 2 * cols - 1 or 1), (1, 1, 1)]:
        check(cfg, *random_operands(rng, M, K, N))


@pytest.mark.parametrize("stall", [0.3, 0.7])
@pytest.mark.parametrize("arr", [(2, 2), (3, 2), (1, 4)])
def test_random_stalls(arr, stall, backend):
    rng = np.random.default_rng(int(stall * 10) + arr[0])
    cfg = make_cfg(*arr)
    for M, K, N in [(5, 7, 3), (4, 1, 6), (3, 12, 2)]:
        check(cfg, *random_operands(rng, M, K, N), stall=stall, seed=M, backend=backend)


@pytest.mark.parametrize("arr", [(2, 2), (3, 2)])
def test_extremes_at_max_k(arr, backend):
    # acc_width is derived from max_k: 40 * (-128)**2 must fit, and the most negative sum too.
    cfg = make_cfg(*arr)
    K = cfg.gemm.max_k
    lo = np.full((3, K), -128, dtype=np.int8)
    r = check(cfg, lo, np.full((K, 3), -128, dtype=np.int8), backend=backend)
    assert r.output.max() == K * 128 * 128
    r = check(cfg, lo, np.full((K, 3), 127, dtype=np.int8), backend=backend)
    assert r.output.min() == -K * 128 * 127
    mixed = np.where(np.arange(K) % 2, 127, -128).astype(np.int8)
    check(cfg, np.tile(mixed, (3, 1)), np.tile(mixed[:, None], (1, 2)), backend=backend)


def test_acc_width_is_tight():
    # With the derived width, the largest possible sum sits within one bit of the top.
    cfg = make_cfg(2, 2, max_k=64)
    assert cfg.acc_width == 22
    lo = np.full((2, 64), -128, dtype=np.int8)
    r = check(cfg, lo, lo.T.copy())
    assert r.output.max() == 2**20


# On Verilator for the arrays whose models the tests above build already.
@pytest.mark.parametrize("arr, backend", [(arr, "amaranth") for arr in ARRAYS] + [
    ((2, 2), "verilator"), ((3, 2), "verilator"), ((1, 4), "verilator")])
def test_cycle_model_exact_without_stalls(arr, backend):
    cfg = make_cfg(*arr)
    rng = np.random.default_rng(sum(arr))
    for M, K, N in [(7, 1, 5), (9, 4, 4), (arr[0] * 2, 30, arr[1] * 2)]:
        r = check(cfg, *random_operands(rng, M, K, N), backend=backend)
        assert r.cycles == cyclemodel.gemm_cycles(cfg, M, K, N)


@pytest.mark.parametrize("arr", [(2, 2), (3, 2)])
def test_tiles_2r_apart_before_a_half_rate_requantizer(arr):
    # With RequantConfig.half_rate the engine spaces tiles 2R apart (tile_gap), so that a
    # requantizer taking a row every 2 cycles keeps up; K < 2R shows the extra cycle a tile.
    cfg = make_cfg(*arr)
    half = cfg.replace(requant=RequantConfig(half_rate=True))
    assert (tile_gap(cfg), tile_gap(half)) == (2 * arr[0] - 1, 2 * arr[0])
    rng = np.random.default_rng(7)
    M, K, N = 2 * arr[0] + 1, 1, 3 * arr[1]
    a, b = random_operands(rng, M, K, N)
    cycles = {}
    for c in (cfg, half):
        cycles[c.requant.half_rate] = check(c, a, b).cycles
        assert cycles[c.requant.half_rate] == cyclemodel.gemm_cycles(c, M, K, N)
    tiles = -(-M // arr[0]) * -(-N // arr[1])
    assert cycles[True] - cycles[False] == tiles - 1


# Paired products (two elements of a column per DSP block, reset-less product registers): the
# same results and cycles, stalls and extremes included.
@pytest.mark.parametrize("arr", [(2, 1), (3, 2), (4, 3)])
def test_dsp_pairs(arr):
    cfg = make_cfg(*arr).replace(array=ArrayConfig(*arr, dsp_pairs=True))
    rng = np.random.default_rng(sum(arr))
    for M, K, N in [(7, 1, 5), (arr[0] * 2 + 1, 30, arr[1] * 2)]:
        r = check(cfg, *random_operands(rng, M, K, N))
        assert r.cycles == cyclemodel.gemm_cycles(cfg, M, K, N)
        check(cfg, *random_operands(rng, M, K, N), stall=0.5, seed=K)
    K = cfg.gemm.max_k
    lo = np.full((3, K), -128, dtype=np.int8)
    assert check(cfg, lo, np.full((K, 3), -128, dtype=np.int8)).output.max() == K * 128 * 128


def test_utilization_when_k_large():
    cfg = make_cfg(2, 2, max_k=256)
    a, b = random_operands(np.random.default_rng(3), 4, 256, 4)
    r = check(cfg, a, b)
    assert r.utilization >= 0.95


@pytest.mark.parametrize("shape, message", [
    ((25, 2, 2), r"GEMM M must be from 1 to 24 \(gemm.max_m\), not 25"),
    ((2, 41, 2), r"GEMM K must be from 1 to 40 \(gemm.max_k\), not 41"),
    ((2, 2, 25), r"GEMM N must be from 1 to 24 \(gemm.max_n\), not 25"),
])
def test_shape_beyond_config(shape, message):
    M, K, N = shape
    with pytest.raises(ValueError, match=message):
        itf.simulate.gemm(make_cfg(2, 2), np.zeros((M, K), np.int8), np.zeros((K, N), np.int8))


@pytest.mark.parametrize("a, b, exc, message", [
    (np.zeros((2, 2)), np.zeros((2, 2), np.int8), TypeError,
     "GEMM operand a must be an array of integers, not of dtype float64"),
    (np.zeros((2, 2), np.int8), np.full((2, 2), -129), ValueError,
     r"GEMM operand b values must be in \[-128, 127\] \(signed 8-bit\), not -129"),
    (np.zeros((2, 3), np.int8), np.zeros((2, 2), np.int8), ValueError,
     "GEMM inner dimensions must match"),
])
def test_bad_operands(a, b, exc, message):
    with pytest.raises(exc, match=message):
        itf.simulate.gemm(make_cfg(2, 2), a, b)


def test_bad_command_sets_error_and_is_dropped():
    cfg = make_cfg(2, 2)
    dut = GemmEngine(cfg)
    layout = dut.cmd.payload.shape()
    a, b = random_operands(np.random.default_rng(9), 2, 3, 2)
    beats_a, beats_b = bench.gemm_operand_beats(a.astype(np.int64), b.astype(np.int64), 2, 2,
                                                np.random.default_rng(0))
    seen = {}

    async def testbench(ctx):
        for bad in ({"m": 2, "k": 0, "n": 2}, {"m": 2, "k": 41, "n": 2}, {"m": 0, "k": 3, "n": 2}):
            ctx.set(dut.cmd.payload, layout.const(bad))
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)
            await ctx.tick()
            assert ctx.get(dut.error) == 1, bad
            assert ctx.get(dut.busy) == 0, bad
            assert ctx.get(dut.a.ready) == 0
        # A good command afterwards clears the error and computes the right answer.
        ctx.set(dut.cmd.payload, layout.const({"m": 2, "k": 3, "n": 2}))
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        await ctx.tick()
        seen["error_after_good"] = ctx.get(dut.error)

    src_a = bench.StreamSource(dut.a, [bench.pack(v, 8) for v in beats_a], name="a",
                               rng=np.random.default_rng(1))
    src_b = bench.StreamSource(dut.b, [bench.pack(v, 8) for v in beats_b], name="b",
                               rng=np.random.default_rng(2))
    sink = bench.StreamSink(dut.out, 2, name="out", rng=np.random.default_rng(3))
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in (testbench, src_a.run, src_b.run, sink.run):
        sim.add_testbench(tb)
    sim.run()
    assert seen["error_after_good"] == 0
    rows = [bench.unpack(w, cfg.acc_width, 2) for w in sink.items]
    np.testing.assert_array_equal(rows, golden.gemm(a, b))
