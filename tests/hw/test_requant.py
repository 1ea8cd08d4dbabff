"""Requantizer RTL against golden.requantize, bit for bit."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

import intformer as itf
from hw.config import AccelConfig, ArrayConfig, GemmConfig, LinearConfig, RequantConfig
from hw.requant import rounding_half, saturate
from sim import golden, ops
from sim.bench import run_requant_lanes

CFG = AccelConfig(array=ArrayConfig(2, 3), gemm=GemmConfig(max_k=1 << 16))  # acc_width 32


def check(acc, m, s, stall=0.0, cfg=CFG, backend="amaranth"):
    r = itf.simulate.requantize(cfg, acc, m, s, stall=stall, backend=backend)
    assert r.extra["backend"] == backend
    np.testing.assert_array_equal(
        r.output, golden.requantize(acc, m, s, acc_width=cfg.acc_width))
    return r


def test_acc_width_is_32():
    assert CFG.acc_width == 32


@pytest.mark.parametrize("m, s", [(1, 0), (65535, 0), (12345, 20), (1, 1), (40000, 40),
                                  (65535, 47), (0, 5), (3, 2)])
@pytest.mark.parametrize("stall", [0.0, 0.3, 0.7])
def test_random(m, s, stall, backend):
    rng = np.random.default_rng(m + s)
    acc = rng.integers(-(1 << 31), 1 << 31, 60)
    acc[:4] = [-(1 << 31), (1 << 31) - 1, 0, -1]
    check(acc, m, s, stall, backend=backend)


@pytest.mark.parametrize("s", [1, 2, 7, 16])
def test_rounding_ties(s, backend):
    # acc*m lands exactly halfway between two integers after the shift: both signs.
    half = 1 << (s - 1)
    acc = np.array([half, -half, 3 * half, -3 * half, 5 * half, -5 * half])
    out = check(acc, 1, s, backend=backend).output
    # Round half up: +0.5 -> 1, -0.5 -> 0, +1.5 -> 2, -1.5 -> -1, +2.5 -> 3, -2.5 -> -2.
    assert out.tolist() == [1, 0, 2, -1, 3, -2]


def test_saturation_both_ends(backend):
    acc = np.array([127, 128, 1000, -128, -129, -1000, (1 << 31) - 1, -(1 << 31)])
    out = check(acc, 1, 0, backend=backend).output
    assert out.tolist() == [127, 127, 127, -128, -128, -128, 127, -128]


def test_no_wrap_with_large_product(backend):
    # (2**31-1) * 65535 needs 47 bits: the product must not wrap before the shift.
    acc = np.array([(1 << 31) - 1, -(1 << 31)])
    check(acc, 65535, 40, backend=backend)
    check(acc, 65535, 47, backend=backend)


def test_lanes_from_config():
    cfg = AccelConfig(array=ArrayConfig(2, 5))
    acc = np.arange(-50, 50) * 1000
    check(acc, 300, 9, cfg=cfg)


# Serial: one lane of pipeline, one multiplier taking each accumulator's two parts in turn.
@pytest.mark.parametrize("cols, max_k", [(1, 256), (2, 256), (3, 1 << 16)])   # acc 24, 24, 32
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_serial(cols, max_k, stall):
    cfg = AccelConfig(array=ArrayConfig(2, cols), gemm=GemmConfig(max_k=max_k),
                      requant=RequantConfig(serial=True), linear=LinearConfig(enabled=False))
    rng = np.random.default_rng(cols)
    lim = 1 << (cfg.acc_width - 1)
    acc = rng.integers(-lim, lim, 41)
    acc[:4] = [-lim, lim - 1, 0, -1]
    for m, s in [(65535, 30), (12345, 20), (1, 0), (3, 2)]:
        r = check(acc, m, s, stall, cfg=cfg)
    if stall == 0:
        # A beat every 2 * cols cycles (plus the pipeline's latency once).
        beats = -(-acc.size // cols)
        assert r.cycles <= 2 * cols * beats + 8, r.cycles


# half_rate: a pipeline lane per element, each lane's one multiplier taking its accumulator's
# two parts in turn. Accumulators of 24 bits (the low part is then acc_width - 1 bits), 32 and
# 34 (the ulx3s preset's requantizer input: low and high parts of 17 bits each).
@pytest.mark.parametrize("cols, max_k, acc_width", [(1, 256, 24), (3, 1 << 16, 32),
                                                    (2, 1 << 16, 34)])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_half_rate(cols, max_k, acc_width, stall):
    cfg = AccelConfig(array=ArrayConfig(2, cols), gemm=GemmConfig(max_k=max_k),
                      requant=RequantConfig(half_rate=True), linear=LinearConfig(enabled=False))
    rng = np.random.default_rng(cols)
    lim = 1 << (acc_width - 1)
    acc = rng.integers(-lim, lim, (41, cols))
    acc[:2] = [[-lim] * cols, [lim - 1] * cols]
    m = rng.integers(0, 1 << 16, acc.shape)
    s = rng.integers(0, acc_width + 16, acc.shape)
    m[:2], s[:2] = 65535, acc_width + 15                  # the largest product, shifted
    r = check_lanes(acc, m, s, stall, cfg=cfg, acc_width=acc_width)
    if stall == 0:
        # A beat taken every 2 cycles, from the first transfer; the last one's output 7 cycles
        # after it, both ends counted.
        assert r.cycles == 2 * (len(acc) - 1) + 7 + 1, r.cycles
    if acc_width == 32:
        for m_, s_ in [(65535, 30), (12345, 20), (1, 0), (3, 2)]:
            check(acc.ravel(), m_, s_, stall, cfg=cfg)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Requantizer shift must be an integer from 0 to 47, "
                                         "not 50"):
        itf.simulate.requantize(CFG, np.zeros(3, np.int32), 1, 50)
    with pytest.raises(ValueError, match=r"Requantizer input values must be in"):
        itf.simulate.requantize(AccelConfig.preset("tiny"), np.array([1 << 30]), 1, 0)


# -- per lane (RUN LINEAR's per-channel requantization) ---------------------------------------


def check_lanes(acc, m, s, stall=0.0, cfg=CFG, acc_width=None):
    acc_width = cfg.acc_width if acc_width is None else acc_width
    r = run_requant_lanes(cfg, acc, m, s, acc_width=acc_width, stall=stall, seed=5)
    expect = [ops.requantize_channels(a, mm, ss, in_width=acc_width)
              for a, mm, ss in zip(acc, m, s, strict=True)]
    np.testing.assert_array_equal(r.output, np.array(expect))
    return r


@pytest.mark.parametrize("stall", [0.0, 0.3, 0.7])
def test_per_lane_random(stall):
    # Every beat and lane with its own multiplier and shift, edges among them.
    rng = np.random.default_rng(11)
    acc = rng.integers(-(1 << 31), 1 << 31, (40, 3))
    m = rng.integers(0, 1 << 16, (40, 3))
    s = rng.integers(0, 48, (40, 3))
    acc[:3], m[:3], s[:3] = [-(1 << 31), (1 << 31) - 1, 0], 65535, 47    # the largest shift
    acc[3:6], m[3:6], s[3:6] = [-(1 << 31), (1 << 31) - 1, 5], 65535, 0  # saturation
    check_lanes(acc, m, s, stall)


def test_per_lane_rounding_ties():
    shifts = np.array([[1, 2, 7], [16, 9, 3]])
    half = 1 << (shifts - 1)
    for sign in (1, -1):
        for odd in (1, 3, 5):
            out = check_lanes(sign * odd * half, np.ones_like(shifts), shifts).output
            # Round half up: +0.5 -> 1, -0.5 -> 0, +1.5 -> 2, -1.5 -> -1, ...
            np.testing.assert_array_equal(out, np.full(shifts.shape, (sign * odd + 1) // 2))


@pytest.mark.parametrize("shift_bits, width", [(3, 5), (6, 50), (7, 34), (4, 15)])
def test_rounding_half_every_shift(shift_bits, width):
    # Every shift, those beyond the width included: (1 << s) >> 1 truncated to width bits, and
    # nothing above them (the result is read wider than width).
    shift, half = Signal(shift_bits), Signal(width + 8)
    m = Module()
    m.d.comb += half.eq(rounding_half(shift, width))
    got = []

    async def bench(ctx):
        for s in range(1 << shift_bits):
            ctx.set(shift, s)
            got.append(ctx.get(half))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [((1 << s) >> 1) & ((1 << width) - 1) for s in range(1 << shift_bits)]


@pytest.mark.parametrize("shape", [signed(7), unsigned(6), signed(3), unsigned(2)])
@pytest.mark.parametrize("width", [2, 3, 5])
def test_saturate_every_value(shape, width):
    # hw.requant.saturate against golden.saturate for every value of the shape: wider and
    # narrower than the range, signed and unsigned (read as the signed value a bit wider).
    value, out = Signal(shape), Signal(signed(width + 4))
    m = Module()
    m.d.comb += out.eq(saturate(value, width))
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    values = range(lo, lo + (1 << shape.width))
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(value, v)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == golden.saturate(np.array(values), width).tolist()
