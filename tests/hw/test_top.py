"""Accelerator top through its cmd/rsp byte streams (no UART), bit-exact with the golden models,
under random stalls; malformed commands answer error codes and change nothing.

Tests on the tiny top (depth 64, or 16 for the malformed commands) run on both backends:
Amaranth's ``SimTop`` and ``VerilatorTop`` (two models, built once and cached). Tests of other
configs or depths (each another build of about a minute) and the white-box ones stay on
Amaranth.
"""

import dataclasses
import functools
import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from hypothesis import given
from hypothesis import strategies as st

from boards.host import BoardError, LinearSplit, linear_runs
from boards.simtop import SimTop
from boards.verilatortop import VerilatorTop
from hw.config import (
    AccelConfig,
    ArrayConfig,
    AttentionConfig,
    BufferConfig,
    GeluConfig,
    GemmConfig,
    LayerNormConfig,
    LinearConfig,
    RequantConfig,
    ResidualConfig,
    SoftmaxConfig,
)
from hw.isa import (
    GELU_REGS,
    NARROW_VIEWS,
    RESIDUAL_REGS,
    Buf,
    Command,
    Error,
    LinMode,
    Op,
    Reg,
    buffer_specs,
    channel_tiles,
    gelu_in_c,
    register_specs,
    vector_lanes,
)
from hw.top import Accelerator
from intformer.model.quantize import unit_configs
from sim import cyclemodel, golden, layout, ops

# The tiny preset with a small attention controller (L <= 10, d <= 5) and buffers of 64 words
# (the simulated tops take the config's depth): every unit, quick to elaborate and simulate.
TINY = AccelConfig.preset("tiny").replace(attention=AttentionConfig(max_seq_len=10,
                                                                    max_head_dim=5),
                                          buffers=BufferConfig(64))


TOPS = {"amaranth": SimTop, "verilator": VerilatorTop}


@pytest.fixture
def Top(backend):
    """The simulated top class of the backend (the ``backend`` fixture of tests/conftest.py)."""
    return TOPS[backend]


def expect(code, fn, *args, **kwargs):
    with pytest.raises(BoardError) as info:
        fn(*args, **kwargs)
    assert info.value.name == code.name


# -- bit-exact per unit ----------------------------------------------------------------------


def check_gemm(top, a, b, scale, acc_width):
    """Raw and requantized GEMM of ``a`` and ``b`` on ``top``, each equal to golden's."""
    np.testing.assert_array_equal(top.gemm(a, b), golden.gemm(a, b))
    m, s = golden.quantize_multiplier(scale)
    np.testing.assert_array_equal(
        top.gemm(a, b, requant=(m, s)),
        golden.requantize(golden.gemm(a, b), m, s, acc_width=acc_width))


@pytest.mark.parametrize("stall", [0.0, 0.3, 0.7])
def test_gemm_raw_and_requantized(stall, Top):
    top = Top(TINY, stall=stall, seed=1)
    rng = np.random.default_rng(2)
    a = rng.integers(-128, 128, (5, 7))
    b = rng.integers(-128, 128, (7, 3))
    check_gemm(top, a, b, 1 / 900, TINY.acc_width)
    assert top.status() == (False, True, "OK")


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_narrow_views(stall, Top):
    """The narrow views, lanes of ``requant.out_width`` bits: C_OUT answers C's words with each
    lane saturated (GEMM's results exactly, an exact sum beyond those bits clamped), Y_OUT
    Y's; a word written to X_IN lands in X with each lane sign-extended. A view's other
    command answers BUFFER and changes nothing; a read past the depth answers RANGE."""
    depth = 16
    top = Top(TINY, depth=depth, stall=stall, seed=3)
    specs = buffer_specs(TINY, depth)
    rng = np.random.default_rng(4)
    C, ow = TINY.array.cols, TINY.requant.out_width
    half = 1 << (ow - 1)
    a, b = rng.integers(-128, 128, (5, 9)), rng.integers(-128, 128, (9, 3))
    a[0] = 0
    a[0, 0] = 1                     # row 0's sums are B's row 0: within the view's bits
    sums = top.gemm(a, b)
    np.testing.assert_array_equal(sums, golden.gemm(a, b))
    n = 5 * -(-3 // C)
    exact = top.read_buffer(Buf.C, 0, n)
    inside = (exact >= -half) & (exact < half)
    assert inside.any() and (exact > half).any() and (exact < -half).any()
    np.testing.assert_array_equal(top.read_buffer(Buf.C_OUT, 0, n), golden.saturate(exact, ow))
    m, s = golden.quantize_multiplier(1 / 700)
    want = golden.requantize(sums, m, s, acc_width=TINY.acc_width)
    np.testing.assert_array_equal(top.gemm(a, b, requant=(m, s)), want)    # read via C_OUT
    np.testing.assert_array_equal(top.read_buffer(Buf.C_OUT, 0, n), top.read_buffer(Buf.C, 0, n))

    # Y_OUT: Y's words (as wide as Y holds), saturated.
    ys = specs[Buf.Y]
    wide = rng.integers(-(1 << (ys.elem_width - 1)), 1 << (ys.elem_width - 1), (depth, ys.lanes))
    wide[:4] = [[-half - 1], [-half], [half - 1], [half]]
    top.write_buffer(Buf.Y, 0, wide)
    np.testing.assert_array_equal(top.read_buffer(Buf.Y_OUT, 0, depth), golden.saturate(wide, ow))
    # X_IN: narrow words into X, sign-extended.
    narrow_words = rng.integers(-half, half, (depth, specs[Buf.X_IN].lanes))
    narrow_words[:2] = [[-half], [half - 1]]
    top.write_buffer(Buf.X, 0, wide)
    top.write_buffer(Buf.X_IN, 3, narrow_words[3:12])
    np.testing.assert_array_equal(top.read_buffer(Buf.X, 0, depth),
                                  np.concatenate([wide[:3], narrow_words[3:12], wide[12:]]))
    top.write_buffer(Buf.X_IN, 0, narrow_words)
    np.testing.assert_array_equal(top.read_buffer(Buf.X, 0, depth), narrow_words)

    # Refusals change nothing.
    before = {buf: top.read_buffer(buf, 0, depth) for buf in (Buf.C, Buf.X, Buf.Y)}
    for view in (Buf.C_OUT, Buf.Y_OUT):
        word = bytes(specs[view].nbytes)
        assert top.raw(Command.WRITE_BUFFER, bytes([view.value, 0, 0, 1, 0]) + word)[0] == \
            Error.BUFFER.value
        assert top.raw(Command.READ_BUFFER, bytes([view.value, depth - 1, 0, 2, 0]))[0] == \
            Error.RANGE.value
    assert top.raw(Command.READ_BUFFER, bytes([Buf.X_IN.value, 0, 0, 1, 0]))[0] == \
        Error.BUFFER.value
    word = bytes(2 * specs[Buf.X_IN].nbytes)
    assert top.raw(Command.WRITE_BUFFER, bytes([Buf.X_IN.value, depth - 1, 0, 2, 0]) + word)[0] \
        == Error.RANGE.value
    for buf, words in before.items():
        np.testing.assert_array_equal(top.read_buffer(buf, 0, depth), words)
    assert top.status() == (False, True, "RANGE")


# The tiny top with C's lanes as wide as GELU's output (24 bits, 23 needed), so that it can run
# GELU over C (GELU_IN_C), and small buffers.
TINY_C = TINY.replace(gemm=dataclasses.replace(TINY.gemm, acc_width=24), buffers=BufferConfig(32))


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_gelu_over_c(stall, Top):
    """RUN GELU with GELU_IN_C runs over C's first ROWS words in place: each lane saturated to
    GELU's in_width, the results over the same words; C's other words, X and Y unchanged. A
    ROW_LEN other than the columns answers SHAPE and changes nothing; GELU from X runs again
    with GELU_IN_C cleared. Client.linear_gelu keeps a Linear's results in C for it."""
    cfg, depth = TINY_C, TINY_C.buffers.depth
    assert gelu_in_c(cfg) and not gelu_in_c(TINY)
    top = Top(cfg, stall=stall, seed=5)
    specs, rng, C = buffer_specs(cfg, depth), np.random.default_rng(8), cfg.array.cols
    ew, iw = specs[Buf.C].elem_width, cfg.gelu.in_width
    words = rng.integers(-(1 << (ew - 1)), 1 << (ew - 1), (depth, C))
    words[:4] = rng.integers(-(1 << (iw - 1)), 1 << (iw - 1), (4, C))     # within in_width
    words[4] = [-(1 << (iw - 1)) - 1, 1 << (iw - 1)]      # just beyond it: saturated
    x_words = rng.integers(-100, 100, (depth, specs[Buf.X].lanes))
    y_words = rng.integers(-100, 100, (depth, specs[Buf.Y].lanes))
    for buf, w in ((Buf.C, words), (Buf.X, x_words), (Buf.Y, y_words)):
        top.write_buffer(buf, 0, w)
    k = golden.gelu_constants(0.02, cfg.gelu)
    for name, reg in GELU_REGS.items():
        if hasattr(k, name):
            top.set_reg(reg, getattr(k, name))
    n = 23
    top.set_reg(Reg.GELU_IN_C, 1)
    top.set_reg(Reg.ROWS, n)
    top.set_reg(Reg.ROW_LEN, C + 1)
    expect(Error.SHAPE, top.run, Op.GELU)
    np.testing.assert_array_equal(top.read_buffer(Buf.C, 0, depth), words)
    top.set_reg(Reg.ROW_LEN, C)
    top.run(Op.GELU)
    want = words.copy()
    want[:n] = golden.gelu(golden.saturate(words[:n], iw), 0.02, cfg.gelu)[0]
    np.testing.assert_array_equal(top.read_buffer(Buf.C, 0, depth), want)
    np.testing.assert_array_equal(top.read_buffer(Buf.X, 0, depth), x_words)
    np.testing.assert_array_equal(top.read_buffer(Buf.Y, 0, depth), y_words)
    # The driver: from X (GELU_IN_C cleared), and a Linear's blocks through GELU over C.
    q = rng.integers(-(1 << (iw - 1)), 1 << (iw - 1), (3, 7))
    np.testing.assert_array_equal(top.gelu(q, 0.02)[0], golden.gelu(q, 0.02, cfg.gelu)[0])
    x, w = rng.integers(-128, 128, (5, 9)), rng.integers(-128, 128, (9, 11))
    bias = rng.integers(-500, 500, 11)
    mult, shift = np.full(11, 19000), rng.integers(8, 11, 11)
    lin = ops.linear(x, w, bias, mult, shift, cfg=cfg, out_width=iw)
    link = top.link.sent + top.link.received
    y, y_scale = top.linear_gelu(x, w, bias, mult, shift, 0.02, out_width=iw)
    chained, link = top.link.sent + top.link.received - link, top.link.sent + top.link.received
    assert np.abs(lin).max() > 1 << (cfg.requant.out_width - 2)     # results of every size
    np.testing.assert_array_equal(y, golden.gelu(lin, 0.02, cfg.gelu)[0])
    assert y_scale == k.y_scale and top.status() == (False, True, "OK")
    # The same through the link: more bytes (the results read, then written into X).
    apart = top.gelu(top.linear(x, w, bias, mult, shift, out_width=iw), 0.02)[0]
    np.testing.assert_array_equal(apart, y)
    assert top.link.sent + top.link.received - link > chained


# The icebreaker preset (paired products, the serial requantizer on its two columns: one lane
# of logic, the lanes in turn), its one column with the requantizer of two products, and the
# serial requantizer on two columns of tiny.
@pytest.mark.parametrize("cfg", [
    AccelConfig.preset("icebreaker"),
    AccelConfig.preset("icebreaker").replace(array=ArrayConfig(6, 1, dsp_pairs=True),
                                             requant=RequantConfig()),
    TINY.replace(array=ArrayConfig(2, 2, dsp_pairs=True), requant=RequantConfig(serial=True),
                 attention=AttentionConfig(enabled=False), linear=LinearConfig(enabled=False)),
], ids=["icebreaker", "icebreaker-6x1", "tiny-serial"])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_gemm_paired_and_serial(cfg, stall):
    top = SimTop(cfg, depth=64, stall=stall, seed=4)
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (13, 40))
    b = rng.integers(-128, 128, (40, 5))
    a[0], b[:, 0] = -128, -128
    check_gemm(top, a, b, 1 / 2000, cfg.acc_width)
    assert top.status() == (False, True, "OK")


# The icebreaker preset as iCE40 builds it (one-register stream slices, buffers without their
# port registers, queues without collision emulation), on one column and on two with the serial
# requantizer, without dsp_pairs (the simulator cannot run an SB_MAC16;
# tests/hw/test_systolic_ice40.py proves the pairs): bit-exact under stalls with the
# uncontended memories returning new data, and without stalls on the same cycles as the
# simulated top.
@pytest.mark.parametrize("cfg", [
    AccelConfig.preset("icebreaker").replace(array=ArrayConfig(6, 1), requant=RequantConfig()),
    AccelConfig.preset("icebreaker").replace(array=ArrayConfig(6, 2)),
], ids=["6x1", "6x2-serial"])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_gemm_on_ice40(cfg, stall, new_data_reads):
    from boards.synth import SynthTarget
    new_data_reads()
    rng = np.random.default_rng(6)
    a = rng.integers(-128, 128, (13, 40))
    b = rng.integers(-128, 128, (40, 5))
    a[0], b[:, 0] = -128, -128
    cycles = []
    for platform in (None, SynthTarget.for_family("ice40")):
        top = SimTop(cfg, depth=64, stall=stall, seed=4, platform=platform)
        check_gemm(top, a, b, 1 / 2000, cfg.acc_width)
        # Words written and read back through the command port, in every buffer.
        for buf in (Buf.A, Buf.B, Buf.C):
            spec = top.buffers[buf]
            lo, hi = -(1 << (spec.elem_width - 1)), 1 << (spec.elem_width - 1)
            words = rng.integers(lo, hi, (5, spec.lanes))
            top.write_buffer(buf, 7, words)
            np.testing.assert_array_equal(top.read_buffer(buf, 7, 5), words)
        assert top.status() == (False, True, "OK")
        cycles.append(top.cycles)
    if stall == 0.0:
        assert cycles[0] == cycles[1]


def test_gemm_edges_and_blocks():
    # -128 everywhere at the largest K a buffer holds, then a product split into blocks.
    top = SimTop(TINY, depth=32)
    a = np.full((2, 32), -128)
    b = np.full((32, 2), -128)
    np.testing.assert_array_equal(top.gemm(a, b), golden.gemm(a, b))
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (9, 40))      # K=40 > depth: split over K too
    b = rng.integers(-128, 128, (40, 5))
    check_gemm(top, a, b, 1 / 3000, 40)


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_softmax(stall, Top):
    top = Top(TINY, stall=stall, seed=4)
    rng = np.random.default_rng(5)
    q = rng.normal(0, 2500, (3, 10)).round().astype(np.int64)
    q[1, 4] = 40_000                           # one dominant element: saturates to 255
    p, scale = top.softmax(q, 1e-3)
    ref, ref_scale = golden.softmax(q, 1e-3, TINY.softmax)
    np.testing.assert_array_equal(p, ref)
    assert scale == ref_scale


@pytest.mark.parametrize("softmax_lanes", [1, 2])
def test_softmax_and_attention_on_one_unit_or_two(softmax_lanes):
    # With the same lanes, output width and variant, RUN SOFTMAX and attention share one
    # Softmax, configured for the longer rows and wider scores of the two (TINY: 64 and 24 bits
    # against attention's 10 and 21); with other lanes the top holds two. Either way both stay
    # exact, alternating run after run.
    cfg = TINY.replace(attention=AttentionConfig(max_seq_len=10, max_head_dim=5,
                                                 softmax_lanes=softmax_lanes))
    assert (cfg.shared_softmax is None) == (softmax_lanes == 2)
    top = SimTop(cfg, stall=0.3, seed=21, budget=40_000)
    rng = np.random.default_rng(22)
    for causal in (False, True):
        x = rng.normal(0, 2500, (2, 12)).round().astype(np.int64)
        np.testing.assert_array_equal(top.softmax(x, 1e-3)[0],
                                      golden.softmax(x, 1e-3, cfg.softmax)[0])
        q, k, v = (rng.integers(-128, 128, (7, 5)) for _ in range(3))
        np.testing.assert_array_equal(
            top.attention(q, k, v, *SCALES, causal=causal)[0],
            golden.attention(q, k, v, *SCALES, causal=causal, cfg=cfg)[0])


@pytest.mark.parametrize("variant", ["ibert", "shift"])
def test_gelu_every_int8(variant):
    cfg = TINY.replace(gelu=GeluConfig(variant=variant))
    top = SimTop(cfg, stall=0.3, seed=6)
    q = np.random.default_rng(7).permutation(np.arange(-128, 128))
    y, y_scale = top.gelu(q, 0.05)
    ref, ref_scale = golden.gelu(q, 0.05, cfg.gelu)
    np.testing.assert_array_equal(y, ref)
    assert y_scale == ref_scale


def test_layernorm_lanes2():
    cfg = TINY.replace(softmax=SoftmaxConfig(lanes=2), gelu=GeluConfig(lanes=2),
                       layernorm=LayerNormConfig(lanes=2, max_len=16))
    top = SimTop(cfg, stall=0.3, seed=8)
    rng = np.random.default_rng(9)
    q = rng.integers(-3000, 3000, (3, 11))
    q[2] = 77                                   # zero variance
    gamma, beta = rng.normal(1, 0.3, 11), rng.normal(0, 0.5, 11)
    y, y_scale = top.layernorm(q, 0.01, gamma, beta)
    ref, ref_scale = golden.layernorm(q, 0.01, gamma, beta, cfg.layernorm)
    np.testing.assert_array_equal(y, ref)
    assert y_scale == ref_scale
    q = rng.normal(0, 2000, (2, 9)).round().astype(np.int64)   # softmax at 2 lanes too
    np.testing.assert_array_equal(top.softmax(q, 2e-3)[0], golden.softmax(q, 2e-3, cfg.softmax)[0])
    a, b = (rng.integers(-(1 << 15), 1 << 15, (2, 7)) for _ in range(2))   # residual too
    np.testing.assert_array_equal(top.residual(a, b, 300, 7000, 13),
                                  ops.residual_add(a, b, 300, 7000, 13))


SCALES = (0.05, 0.04, 0.03, 0.02)     # q, k, v and o scales


@pytest.mark.parametrize(("causal", "stall"), [(False, 0.0), (True, 0.0), (False, 0.3),
                                                (True, 0.7)])
def test_attention_two_heads(causal, stall, Top):
    # Ragged on both axes: L = 9 is not a multiple of R = 2, d = 5 not of C = 2.
    top = Top(TINY, stall=stall, seed=11, budget=40_000)
    rng = np.random.default_rng(12)
    q, k, v = (rng.integers(-128, 128, (2, 9, 5)) for _ in range(3))
    o, o_scale = top.attention(q, k, v, *SCALES, causal=causal)
    ref, ref_scale = golden.attention(q, k, v, *SCALES, causal=causal, cfg=TINY)
    np.testing.assert_array_equal(o, ref)
    assert o_scale == ref_scale
    assert top.status() == (False, True, "OK")


@functools.cache
def _shared_top(backend):
    # One simulated top for every Hypothesis example, as a board stays up between calls.
    return TOPS[backend](TINY, stall=0.3, seed=17, budget=40_000)


@given(heads=st.integers(1, 2), L=st.integers(1, TINY.attention.max_seq_len),
       d=st.integers(1, TINY.attention.max_head_dim), causal=st.booleans(),
       keys=st.integers(0, TINY.attention.max_seq_len), seed=st.integers(0, 2**16))
def test_attention_random_shapes(heads, L, d, causal, keys, seed, backend):
    # keys 0: no key mask (ATT_KEYS = 0); else the keys every query sees, at most L.
    keys = min(keys, L) or None
    rng = np.random.default_rng(seed)
    q, k, v = (rng.integers(-128, 128, (heads, L, d)) for _ in range(3))
    scales = tuple(rng.uniform(0.005, 0.1, 4))
    np.testing.assert_array_equal(
        _shared_top(backend).attention(q, k, v, *scales, causal=causal, keys=keys)[0],
        golden.attention(q, k, v, *scales, causal=causal, keys=keys, cfg=TINY)[0])


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_attention_key_mask(stall, Top):
    # ATT_KEYS: keys = 1, keys = L (sent as 0), keys with the causal mask, L = 9 not a multiple
    # of R = 2 nor C = 2; then no mask again (ATT_KEYS back to 0).
    top = Top(TINY, stall=stall, seed=21, budget=40_000)
    rng = np.random.default_rng(22)
    q, k, v = (rng.integers(-128, 128, (2, 9, 5)) for _ in range(3))
    for keys, causal in ((1, False), (9, False), (4, True), (6, False), (None, True)):
        np.testing.assert_array_equal(
            top.attention(q, k, v, *SCALES, causal=causal, keys=keys)[0],
            golden.attention(q, k, v, *SCALES, causal=causal, keys=keys, cfg=TINY)[0],
            err_msg=f"keys={keys}, causal={causal}")
    assert top.status() == (False, True, "OK")


def test_attention_edges_and_gemm_around_it(Top):
    top = Top(TINY, stall=0.3, seed=13)
    rng = np.random.default_rng(14)
    a, b = rng.integers(-128, 128, (3, 4)), rng.integers(-128, 128, (4, 3))
    np.testing.assert_array_equal(top.gemm(a, b), golden.gemm(a, b))
    cases = [
        (np.full((10, 5), -128), np.full((10, 5), 127), np.full((10, 5), -128), True),  # max L, d
        (np.full((10, 5), 127), np.full((10, 5), 127), np.full((10, 5), 127), False),
        (rng.integers(-128, 128, (1, 1)), rng.integers(-128, 128, (1, 1)),      # length 1
         rng.integers(-128, 128, (1, 1)), False),
        (rng.integers(-128, 128, (4, 2)), np.full((4, 2), 3),                   # equal scores
         rng.integers(-128, 128, (4, 2)), True),
    ]
    for q, k, v, causal in cases:
        o, _ = top.attention(q, k, v, 0.1, 0.1, 0.05, 0.01, causal=causal)
        np.testing.assert_array_equal(
            o, golden.attention(q, k, v, 0.1, 0.1, 0.05, 0.01, causal=causal, cfg=TINY)[0])
    np.testing.assert_array_equal(top.gemm(a, b), golden.gemm(a, b))   # GEMM still wired


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_new_data_reads_change_nothing(stall, new_data_reads):
    # The top's buffers, the CHAN table and the attention scratchpads are marked uncontended
    # (hw.memory): in hardware a read of the address being written may return the new data.
    # Every run and buffer command must give the same results with it.
    new_data_reads()
    top = SimTop(TINY, stall=stall, seed=21, budget=40_000)
    rng = np.random.default_rng(22)
    a, b = rng.integers(-128, 128, (7, 9)), rng.integers(-128, 128, (9, 4))
    m, s = golden.quantize_multiplier(1 / 900)
    np.testing.assert_array_equal(
        top.gemm(a, b, requant=(m, s)),
        golden.requantize(golden.gemm(a, b), m, s, acc_width=TINY.acc_width))
    x = rng.normal(0, 3000, (3, 10)).round().astype(np.int64)
    np.testing.assert_array_equal(top.softmax(x, 1e-3)[0], golden.softmax(x, 1e-3, TINY.softmax)[0])
    for causal in (False, True):
        q, k, v = (rng.integers(-128, 128, (2, 10, 5)) for _ in range(3))
        np.testing.assert_array_equal(
            top.attention(q, k, v, *SCALES, causal=causal)[0],
            golden.attention(q, k, v, *SCALES, causal=causal, cfg=TINY)[0])
    np.testing.assert_array_equal(top.gemm(a, b), golden.gemm(a, b))
    # LINEAR reads its constants from the CHAN table, RESIDUAL both halves of X.
    args = _linear_case(rng, 5, 7, 5)
    np.testing.assert_array_equal(top.linear(*args), ops.linear(*args, cfg=TINY))
    # LINEARs summed in C (two digits; K in three chunks) read each word of C before they
    # write it.
    for K, xw in ((24, 10), (60, 8)):
        x = rng.integers(-(1 << (xw - 1)), 1 << (xw - 1), (5, K))
        w = rng.integers(-128, 128, (K, 3))
        consts = rng.integers(-99, 99, 3), np.full(3, 3000), np.full(3, 20)
        np.testing.assert_array_equal(top.linear(x, w, *consts, x_width=xw),
                                      ops.linear(x, w, *consts, cfg=TINY, x_width=xw))
    ra, rb = (rng.integers(-(1 << 15), 1 << 15, (3, 11)) for _ in range(2))
    consts = ops.residual_constants(0.02, 0.05, 0.04)
    np.testing.assert_array_equal(top.residual(ra, rb, *consts), ops.residual_add(ra, rb, *consts))


def test_malformed_attention_changes_nothing(Top):
    top = Top(TINY, depth=16, stall=0.3, seed=15)
    rng = np.random.default_rng(16)
    before = {buf: rng.integers(-128, 128, (16, top.buffers[buf].lanes))
              for buf in (Buf.A, Buf.B, Buf.V, Buf.C)}
    for buf, words in before.items():
        top.write_buffer(buf, 0, words)
    expect(Error.SHAPE, top.run, Op.ATTENTION)                    # L and d still 0
    expect(Error.VALUE, top.set_reg, Reg.ATT_LEN, TINY.attention.max_seq_len + 1)
    expect(Error.VALUE, top.set_reg, Reg.ATT_DIM, TINY.attention.max_head_dim + 1)
    expect(Error.VALUE, top.set_reg, Reg.ATT_CAUSAL, 2)
    expect(Error.VALUE, top.set_reg, Reg.ATT_KEYS, TINY.attention.max_seq_len + 1)
    top.set_reg(Reg.ATT_LEN, 4)
    top.set_reg(Reg.ATT_DIM, 3)
    top.set_reg(Reg.ATT_KEYS, 5)                                  # more keys than L
    expect(Error.SHAPE, top.run, Op.ATTENTION)
    top.set_reg(Reg.ATT_KEYS, 0)
    top.set_reg(Reg.ATT_DIM, 0)
    top.set_reg(Reg.ATT_LEN, 10)
    expect(Error.SHAPE, top.run, Op.ATTENTION)                    # d still 0
    top.set_reg(Reg.ATT_DIM, 5)                                   # 5 * 5 Q words > 16
    expect(Error.SHAPE, top.run, Op.ATTENTION)
    top.set_reg(Reg.ATT_DIM, 3)                                   # 5 * 3 Q words fit, but
    top.set_reg(Reg.ATT_LEN, 9)                                   # 2 * 9 V words > 16
    expect(Error.SHAPE, top.run, Op.ATTENTION)
    for buf, words in before.items():
        np.testing.assert_array_equal(top.read_buffer(buf, 0, 16), words)
    assert top.status() == (False, False, "SHAPE")
    with pytest.raises(ValueError, match=r"Attention head must need at most 16 words per "
                                         r"buffer \(the board's depth\), not 18 \(L=9, d=3\)"):
        top.attention(*(np.zeros((9, 3), dtype=int),) * 3, *SCALES)
    # The top still works, and refuses commands while the head runs.
    q, k, v = (rng.integers(-128, 128, (4, 3)) for _ in range(3))
    np.testing.assert_array_equal(top.attention(q, k, v, *SCALES)[0],
                                  golden.attention(q, k, v, *SCALES, cfg=TINY)[0])
    top.run(Op.ATTENTION, wait=False)
    assert top.status().busy
    expect(Error.BUSY, top.write_buffer, Buf.V, 0, np.zeros((1, 2)))
    expect(Error.BUSY, top.set_reg, Reg.ATT_LEN, 1, force=True)
    for _ in range(100):
        if not top.status().busy:
            break
    assert top.status() == (False, True, "OK")
    np.testing.assert_array_equal(top.attention(q, k, v, *SCALES)[0],
                                  golden.attention(q, k, v, *SCALES, cfg=TINY)[0])


# -- RUN LINEAR and RUN RESIDUAL --------------------------------------------------------------


def _linear_case(rng, M, K, N, cfg=TINY):
    """Random operands of ``sim.ops.linear`` on ``cfg``: biases as large as the accumulator
    and int32 allow, constants for random output scales."""
    x, w = rng.integers(-128, 128, (M, K)), rng.integers(-128, 128, (K, N))
    room = (1 << (min(cfg.acc_width, 32) - 1)) - 1 - (K << 14)
    bias = rng.integers(-room, room + 1, N)
    mult, shift = ops.channel_constants(rng.uniform(0.1, 8, N) / (K * 128 * 16),
                                        max_shift=cfg.acc_width + cfg.requant.mult_width - 1)
    return x, w, bias, mult, shift


@pytest.mark.parametrize("stall", [0.0, 0.3, 0.7])
def test_linear(stall, Top):
    # Ragged: M = 5 and N = 5 are not multiples of R = C = 2.
    top = Top(TINY, stall=stall, seed=31)
    rng = np.random.default_rng(32)
    for M, K, N in ((5, 7, 5), (1, 1, 1), (4, 32, 6)):
        args = _linear_case(rng, M, K, N)
        np.testing.assert_array_equal(top.linear(*args), ops.linear(*args, cfg=TINY))
    assert top.status() == (False, True, "OK")


def test_linear_edges(Top):
    top = Top(TINY, stall=0.3, seed=33)
    rng = np.random.default_rng(34)
    N, max_shift = 6, TINY.acc_width + TINY.requant.mult_width - 1
    w = rng.integers(-128, 128, (3, N))
    cases = []
    # Rounding ties, both signs: x = 0, so the sum is the bias, an odd multiple of 2**(s-1).
    s = np.array([1, 2, 5, 9, 16, 20])
    bias = np.array([-1, -6, 48, -3 << 8, 5 << 15, -(3 << 19)])
    cases.append((np.zeros((3, 3), dtype=int), w, bias, np.ones(N, dtype=int), s))
    # Saturation at both ends (the largest multiplier, no shift), and the largest shift.
    big = np.array([(1 << 20), -(1 << 20), 1000, -1000, 0, 1])
    cases.append((np.full((2, 3), -128), np.full((3, N), -128), big,
                  np.full(N, 65535), np.array([0, 0, 0, 0, max_shift, max_shift])))
    cases.append((np.full((2, 3), 127), np.full((3, N), -128), -big,
                  np.full(N, 65535), np.array([max_shift] * 3 + [1] * 3)))
    for args in cases:
        np.testing.assert_array_equal(top.linear(*args), ops.linear(*args, cfg=TINY))
    # GEMM and attention still get their one multiplier and shift in every lane.
    a, b = rng.integers(-128, 128, (3, 4)), rng.integers(-128, 128, (4, 3))
    m, sh = golden.quantize_multiplier(1 / 900)
    np.testing.assert_array_equal(
        top.gemm(a, b, requant=(m, sh)),
        golden.requantize(golden.gemm(a, b), m, sh, acc_width=TINY.acc_width))
    q, k, v = (rng.integers(-128, 128, (7, 5)) for _ in range(3))
    np.testing.assert_array_equal(top.attention(q, k, v, *SCALES)[0],
                                  golden.attention(q, k, v, *SCALES, cfg=TINY)[0])


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_residual(stall, Top):
    top = Top(TINY, stall=stall, seed=35)
    rng = np.random.default_rng(36)
    a, b = (rng.integers(-(1 << 15), 1 << 15, (3, 11)) for _ in range(2))
    consts = ops.residual_constants(0.02, 0.05, 0.04)
    np.testing.assert_array_equal(top.residual(a, b, *consts), ops.residual_add(a, b, *consts))
    top_, bottom = (1 << 15) - 1, -(1 << 15)
    a = np.array([top_, bottom, top_, bottom, 0, 3, -3, 1, -1])
    b = np.array([top_, bottom, bottom, top_, 0, 0, 0, 0, 0])
    for ma, mb, s in [(65535, 65535, 0), (65535, 65535, 32), (1, 1, 1), (1, 1, 2), (0, 7, 3)]:
        np.testing.assert_array_equal(top.residual(a, b, ma, mb, s),
                                      ops.residual_add(a, b, ma, mb, s))
    # Longer than one run: split over X's halves.
    a, b = (rng.integers(-(1 << 15), 1 << 15, 70) for _ in range(2))
    np.testing.assert_array_equal(top.residual(a, b, *consts), ops.residual_add(a, b, *consts))


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_residual_into_layernorm(stall, Top):
    # RES_TO_X: the sums go over X's first half, LayerNorm reads them there; Y keeps what the
    # last run before wrote until LayerNorm's rows replace it.
    top = Top(TINY, stall=stall, seed=39)
    rng = np.random.default_rng(40)
    L = 12                                    # 2 rows of 12 a run in TINY's 64-word X
    a, b = (rng.integers(-(1 << 15), 1 << 15, (5, L)) for _ in range(2))
    a[0], b[0] = (1 << 15) - 1, (1 << 15) - 1            # a saturated row
    res = ops.residual_constants(0.02, 0.05, 0.04)
    k = golden.layernorm_constants(1.0, TINY.layernorm, rng.normal(1, 0.3, L),
                                   rng.normal(0, 0.2, L), length=L)
    s = ops.residual_add(a, b, *res)
    want = golden.layernorm(s, 1.0, cfg=TINY.layernorm, constants=k)
    y, y_scale = top.residual_layernorm(a, b, *res, constants=k)
    np.testing.assert_array_equal(y, want[0])
    assert y_scale == want[1]
    # The last run's sums are in X's first half, exactly (row 4 alone).
    np.testing.assert_array_equal(layout.from_beats(top.read_buffer(Buf.X, 0, L), 1, L, 1)[0],
                                  s[4])
    # A plain residual add after it writes Y again.
    np.testing.assert_array_equal(top.residual(a, b, *res), s)
    assert top.status() == (False, True, "OK")


def test_residual_to_x_refusals(Top):
    top = Top(TINY, depth=16, stall=0.3, seed=41)
    expect(Error.VALUE, top.set_reg, Reg.RES_TO_X, 2)
    with pytest.raises(ValueError, match="fit X's halves"):     # 2 * 9 words > 16
        top.residual_layernorm(np.zeros((1, 9), int), np.zeros((1, 9), int), 1, 1, 0,
                               constants=golden.layernorm_constants(
                                   1.0, TINY.layernorm, np.ones(9), np.zeros(9), length=9))
    assert top.runs == 0
    ice = AccelConfig.preset("icebreaker")
    assert Reg.RES_TO_X not in register_specs(ice)


def test_linear_and_residual_refusals(Top):
    top = Top(TINY, depth=16, stall=0.3, seed=37)
    rng = np.random.default_rng(38)
    expect(Error.SHAPE, top.run, Op.LINEAR)                       # M, K, N still 0
    expect(Error.SHAPE, top.run, Op.RESIDUAL)                     # ROW_LEN, ROWS still 0
    assert top.raw(Command.READ_BUFFER, bytes([Buf.CHAN.value, 0, 0, 1, 0]))[0] == \
        Error.BUFFER.value                                        # write-only
    T = channel_tiles(TINY)
    assert top.raw(Command.WRITE_BUFFER, bytes([Buf.CHAN.value]) + (3 * T).to_bytes(2, "little")
                   + bytes([1, 0]) + bytes(top.buffers[Buf.CHAN].nbytes))[0] == \
        Error.RANGE.value
    expect(Error.VALUE, top.set_reg, Reg.RES_SHIFT, TINY.residual.max_shift + 1)
    expect(Error.VALUE, top.set_reg, Reg.RES_MULT_A, 1 << 16)
    top.set_reg(Reg.ROW_LEN, 9)
    top.set_reg(Reg.ROWS, 1)                                      # 2 * 9 X words > 16
    expect(Error.SHAPE, top.run, Op.RESIDUAL)
    top.set_reg(Reg.ROW_LEN, 8)                                   # 2 * 8 fit
    top.run(Op.RESIDUAL)
    # A LINEAR run refuses CHAN writes and register changes, and its result is unchanged.
    args = _linear_case(rng, 4, 8, 4)
    want = ops.linear(*args, cfg=TINY)
    np.testing.assert_array_equal(top.linear(*args), want)
    for refused in ((top.set_reg, Reg.N, 1), (top.write_buffer, Buf.CHAN, 0, np.ones((1, 2)))):
        top.run(Op.LINEAR, wait=False)
        expect(Error.BUSY, *refused, **({"force": True} if refused[1] == Reg.N else {}))
        for _ in range(100):
            if not top.status().busy:
                break
        got = layout.from_tile_rows(top.read_buffer(Buf.C, 0, 8), 4, 4, 2, 2)
        np.testing.assert_array_equal(got, want)


# TINY with an accumulator wide enough for 15-bit activations summed over K = 64 on chip.
WIDE = TINY.replace(gemm=GemmConfig(max_m=32, max_k=64, max_n=32, acc_width=30))


def _accumulated(top, cfg, x, w, consts, kc, x_width):
    """``linear`` of ``x`` (``x_width`` bits) and ``w`` on ``top`` as :func:`linear_runs`'
    LINEAR runs, K in chunks of ``kc``, one block; returns C's block."""
    R, C = cfg.array.rows, cfg.array.cols
    (M, K), N = x.shape, w.shape[1]
    passes = ops.linear_passes(x_width, cfg.array.in_width)
    digits = ops.split_digits(x, passes, cfg.array.in_width)
    top.write_channels(*consts)
    for r in linear_runs(cfg, top.depth, M, K, N, passes, LinearSplit(kc, False)):
        assert (r.i0, r.j0, r.m, r.n) == (0, 0, M, N)
        top.write_buffer(Buf.A, 0, layout.column_words(digits[r.p][:, r.k0:r.k0 + r.k], R))
        top.write_buffer(Buf.B, 0, layout.row_words(w[r.k0:r.k0 + r.k], C))
        for reg, value in ((Reg.M, M), (Reg.K, r.k), (Reg.N, N), (Reg.LIN_MODE, r.mode.value)):
            top.set_reg(reg, value)
        top.run(Op.LINEAR)
    return layout.from_tile_rows(top.read_buffer(Buf.C, 0, M * -(-N // C)), M, N, R, C)


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_linear_accumulates_in_c(stall, Top):
    # K chunks and 15-bit digits summed in C (LIN_MODE), by the driver and by hand: K chunks
    # of 1, sums at the accumulator's limits, shifts at the limits, saturated outputs. 16-bit
    # inputs are three digits, summed on the host (boards.splits.sums_on_chip).
    top = Top(WIDE, stall=stall, seed=43)
    rng = np.random.default_rng(44)
    for M, K, N, xw in ((5, 40, 5, 15), (7, 20, 3, 12), (4, 30, 4, 8), (3, 6, 5, 16)):
        x = rng.integers(-(1 << (xw - 1)), 1 << (xw - 1), (M, K))
        w = rng.integers(-128, 128, (K, N))
        bias = rng.integers(-1000, 1000, N)
        mult, shift = ops.channel_constants(rng.uniform(0.1, 8, N) / (K << (xw + 4)),
                                            max_shift=WIDE.acc_width + 15)
        np.testing.assert_array_equal(top.linear(x, w, bias, mult, shift, x_width=xw),
                                      ops.linear(x, w, bias, mult, shift, cfg=WIDE,
                                                 x_width=xw, k_chunk=min(K, 8)))
    max_shift = WIDE.acc_width + WIDE.requant.mult_width - 1
    K, N = 5, 4
    for x, w, s in ((np.full((3, K), -(1 << 14)), np.full((K, N), -128), [0, 1, max_shift, 20]),
                    (np.full((3, K), (1 << 14) - 1), np.full((K, N), -128), [max_shift, 0, 3, 9]),
                    (rng.integers(-(1 << 14), 1 << 14, (3, K)), rng.integers(-128, 128, (K, N)),
                     [1, 0, max_shift, 30])):
        room = (1 << (WIDE.acc_width - 1)) - 1 - (K << 21)
        bias = np.array([room, -room, 7, 0])
        mult, s = np.array([65535, 1, 65535, 40000]), np.array(s)
        want = ops.linear(x, w, bias, mult, s, cfg=WIDE, x_width=15, k_chunk=1)
        np.testing.assert_array_equal(_accumulated(top, WIDE, x, w, (bias, mult, s), 1, 15),
                                      want)
    assert top.status() == (False, True, "OK")


def test_refused_accumulating_run_changes_nothing():
    # An ACCUMULATE run refused (SHAPE, then BUSY) writes nothing and reads nothing: C holds
    # the raw sum, and the next run continues it.
    top = SimTop(WIDE, depth=32)
    rng = np.random.default_rng(45)
    R, C = 2, 2
    M, K, N = 4, 6, 3
    x, w = rng.integers(-128, 128, (M, 2 * K)), rng.integers(-128, 128, (2 * K, N))
    bias, mult, shift = rng.integers(-99, 99, N), np.full(N, 3000), np.full(N, 18)
    top.write_channels(bias, mult, shift)
    for reg, value in ((Reg.M, M), (Reg.K, K), (Reg.N, N), (Reg.LIN_MODE, LinMode.RAW.value)):
        top.set_reg(reg, value)
    top.write_buffer(Buf.A, 0, layout.column_words(x[:, :K], R))
    top.write_buffer(Buf.B, 0, layout.row_words(w[:K], C))
    top.run(Op.LINEAR)
    raw = top.read_buffer(Buf.C, 0, M * 2)
    top.set_reg(Reg.LIN_MODE, LinMode.ACCUMULATE.value)
    top.set_reg(Reg.K, 40)                          # 2 * 40 A words > 32
    expect(Error.SHAPE, top.run, Op.LINEAR)
    np.testing.assert_array_equal(top.read_buffer(Buf.C, 0, M * 2), raw)
    top.set_reg(Reg.K, K)
    top.write_buffer(Buf.A, 0, layout.column_words(x[:, K:], R))
    top.write_buffer(Buf.B, 0, layout.row_words(w[K:], C))
    top.run(Op.LINEAR, wait=False)
    expect(Error.BUSY, top.run, Op.LINEAR)
    for _ in range(100):
        if not top.status().busy:
            break
    got = layout.from_tile_rows(top.read_buffer(Buf.C, 0, M * 2), M, N, R, C)
    np.testing.assert_array_equal(got, ops.linear(x, w, bias, mult, shift, cfg=WIDE,
                                                  k_chunk=K))


def test_lin_mode_leaves_gemm_alone():
    # LIN_MODE is LINEAR's alone: GEMM_RAW and GEMM give their results whatever it holds
    # (SHIFT shifts a LINEAR run's products, ACCUMULATE adds C's words, RAW skips the bias).
    top = SimTop(WIDE, depth=32)
    rng = np.random.default_rng(46)
    a, b = rng.integers(-128, 128, (5, 6)), rng.integers(-128, 128, (6, 3))
    m, s = golden.quantize_multiplier(1 / 300)
    for mode in range(8):
        top.set_reg(Reg.LIN_MODE, mode)
        np.testing.assert_array_equal(top.gemm(a, b), golden.gemm(a, b))
        np.testing.assert_array_equal(top.gemm(a, b, requant=(m, s)),
                                      golden.requantize(golden.gemm(a, b), m, s,
                                                        acc_width=WIDE.acc_width))


def test_linear_and_residual_left_out():
    cfg = TINY.replace(linear=LinearConfig(enabled=False), residual=ResidualConfig(enabled=False))
    top = SimTop(cfg, depth=16)
    assert Buf.CHAN not in top.buffers
    expect(Error.UNIT, top.run, Op.LINEAR)
    expect(Error.UNIT, top.run, Op.RESIDUAL)
    expect(Error.REGISTER, top.set_reg, Reg.RES_MULT_B, 1)
    assert top.raw(Command.WRITE_BUFFER, bytes([Buf.CHAN.value, 0, 0, 0, 0]))[0] == \
        Error.BUFFER.value
    with pytest.raises(ValueError, match="Board config must include linear, not leave it out"):
        top.linear(np.zeros((1, 1)), np.zeros((1, 1)), [0], [1], [0])
    a = np.arange(12).reshape(3, 4) - 6
    m, s = golden.quantize_multiplier(1 / 50)
    np.testing.assert_array_equal(top.gemm(a, a.T, requant=(m, s)),
                                  golden.requantize(golden.gemm(a, a.T), m, s,
                                                    acc_width=cfg.acc_width))


class RunClock(SimTop):
    """:class:`SimTop` that notes the cycle the dispatcher accepts each RUN (its ``run`` pulse)
    and the cycle each run word is written, so that :meth:`accepted_to_written` counts a run as
    :func:`sim.cyclemodel.linear_cycles` does."""

    def __init__(self, cfg, **kwargs):
        super().__init__(cfg, **kwargs)
        self.accepted = self.last_write = None
        disp, bufs = self.dut.dispatcher, self.dut.memories

        async def watch(ctx):
            cycle = 0
            async for _, _, run, write in ctx.tick().sample(disp.request.run, bufs.run_write):
                if run:
                    self.accepted = cycle
                if write:
                    self.last_write = cycle
                cycle += 1
        self.sim.add_testbench(watch, background=True)

    def accepted_to_written(self):
        """Cycles of the last run, from its accepted RUN to its last word written, inclusive."""
        assert self.last_write > self.accepted, "the last run wrote nothing"
        return self.last_write - self.accepted + 1


# The ulx3s preset (its array, every unit, the shared engine) with a small attention controller, to
# elaborate and simulate quickly; the array, the attention softmax's 3 lanes (beside RUN
# SOFTMAX's unit) and the LINEAR and RESIDUAL paths are the board's.
ULX3S = AccelConfig.preset("ulx3s")
ULX3S = ULX3S.replace(attention=dataclasses.replace(ULX3S.attention, max_seq_len=16,
                                                    max_head_dim=8))
_R = ULX3S.array.rows


@pytest.mark.parametrize("cfg, shapes", [
    # Ragged M and N, several column tiles, K = 1; (8, 3, 8), (3, 1, 7), (16, 1, 16) and
    # (9, 2, 1) come faster than the channel stage passes them (R = 2, K < R + 2).
    (TINY, [(5, 7, 5), (1, 1, 1), (4, 32, 6), (8, 3, 8), (3, 1, 7), (16, 1, 16), (9, 2, 1)]),
    # The preset's R rows. (R + 1, 5, 6) and (R + 2, 1, 4): a last row tile of 1 or 2 rows
    # comes 2R cycles after a full one, before the stage has passed it and waited out its
    # bubble. The preset's requantizer is half_rate, so the engine spaces tiles 2R apart:
    # (R, 1, 12), (2R, 2, 18) and (R, 10, 18) have K < 2R, (R, 2R, 12) K = 2R. (The MiniLM
    # forward on the Verilated top, tests/model/test_accel.py, runs many-tile shapes whose
    # requantizer fell behind at 2R - 1.)
    (ULX3S, [(13, 20, 14), (7, 5, 13), (_R, 1, 6), (1, 40, 19), (_R + 1, 5, 6), (_R + 2, 1, 4),
             (_R, 1, 12), (2 * _R, 2, 18), (_R, 10, 18), (_R, 2 * _R, 12)]),
])
def test_linear_cycle_model_exact(cfg, shapes):
    # Per shape, a LINEAR as three runs of LIN_MODE (RAW, ACCUMULATE|RAW, then ACCUMULATE:
    # a K in three chunks), then the whole problem in one plain run and in one GEMM_RAW; no
    # stalls.
    R, C = cfg.array.rows, cfg.array.cols
    top = RunClock(cfg, depth=256)
    rng = np.random.default_rng(41)
    modes = (LinMode.RAW, LinMode.ACCUMULATE | LinMode.RAW, LinMode.ACCUMULATE)
    for M, K, N in shapes:
        x, w, bias, mult, shift = _linear_case(rng, M, 3 * K, N, cfg)
        want = ops.linear(x, w, bias, mult, shift, cfg=cfg, k_chunk=K,
                          out_width=cfg.requant.out_width)
        top.write_channels(bias, mult, shift)
        for reg, value in ((Reg.M, M), (Reg.K, K), (Reg.N, N)):
            top.set_reg(reg, value)
        for i, mode in enumerate(modes):
            top.write_buffer(Buf.A, 0, layout.column_words(x[:, i * K:(i + 1) * K], R))
            top.write_buffer(Buf.B, 0, layout.row_words(w[i * K:(i + 1) * K], C))
            top.set_reg(Reg.LIN_MODE, mode.value)
            top.run(Op.LINEAR)
            assert top.accepted_to_written() == cyclemodel.linear_cycles(
                cfg, M, K, N, raw=LinMode.RAW in mode), (M, K, N, mode)
        got = layout.from_tile_rows(top.read_buffer(Buf.C, 0, M * -(-N // C)), M, N, R, C)
        np.testing.assert_array_equal(got, want)
        x, w, bias, mult, shift = _linear_case(rng, M, K, N, cfg)
        top.write_channels(bias, mult, shift)
        top.write_buffer(Buf.A, 0, layout.column_words(x, R))
        top.write_buffer(Buf.B, 0, layout.row_words(w, C))
        top.set_reg(Reg.LIN_MODE, 0)
        top.run(Op.LINEAR)
        measured = top.accepted_to_written()
        got = layout.from_tile_rows(top.read_buffer(Buf.C, 0, M * -(-N // C)), M, N, R, C)
        np.testing.assert_array_equal(got, ops.linear(x, w, bias, mult, shift, cfg=cfg,
                                                      out_width=cfg.requant.out_width))
        assert measured == cyclemodel.linear_cycles(cfg, M, K, N), (M, K, N)
        # The same shape as GEMM_RAW: exact rows, no channel stage nor requantizer.
        top.run(Op.GEMM_RAW)
        measured = top.accepted_to_written()
        got = layout.from_tile_rows(top.read_buffer(Buf.C, 0, M * -(-N // C)), M, N, R, C)
        np.testing.assert_array_equal(got, golden.gemm(x, w))
        assert measured == cyclemodel.gemm_raw_cycles(cfg, M, K, N), ("GEMM_RAW", M, K, N)


@pytest.mark.parametrize("cfg, shapes", [
    (TINY, [(1, 1), (1, 11), (3, 7), (2, 40)]),
    (TINY.replace(softmax=SoftmaxConfig(lanes=2), gelu=GeluConfig(lanes=2),   # 2 lanes: ragged
                  layernorm=LayerNormConfig(lanes=2, max_len=16)), [(1, 1), (3, 7), (2, 16)]),
    (ULX3S, [(1, 9), (4, 13)]),
])
def test_residual_cycle_model_exact(cfg, shapes):
    # One RUN RESIDUAL per shape (ROWS rows of ROW_LEN elements); no stalls.
    VL = vector_lanes(cfg)
    top = RunClock(cfg, depth=256)
    rng = np.random.default_rng(42)
    consts = ops.residual_constants(0.02, 0.05, 0.04)
    for reg, value in zip(RESIDUAL_REGS.values(), consts, strict=True):
        top.set_reg(reg, value)
    for rows, length in shapes:
        a, b = (rng.integers(-(1 << 15), 1 << 15, (rows, length)) for _ in range(2))
        top.write_buffer(Buf.X, 0, layout.residual_words(a, b, VL))
        top.set_reg(Reg.ROW_LEN, length)
        top.set_reg(Reg.ROWS, rows)
        top.run(Op.RESIDUAL)
        measured = top.accepted_to_written()
        got = layout.from_beats(top.read_buffer(Buf.Y, 0, rows * -(-length // VL)), rows, length,
                                VL)
        np.testing.assert_array_equal(got, ops.residual_add(a, b, *consts))
        assert measured == cyclemodel.residual_cycles(cfg, rows, length), (rows, length)


#: The ulx3s top with the units the MiniLM program asks for (intformer.model.quantize
#: unit_configs: 16-bit GELU, LayerNorm rows of 384), as compiler.fit_config makes it.
FITTED = ULX3S.replace(**{name: unit_configs(384)[name] for name in ("gelu", "layernorm")})
#: 2 and 3 lanes: ragged rows, several elements a beat.
LANES2, LANES3 = (TINY.replace(softmax=SoftmaxConfig(lanes=n), gelu=GeluConfig(lanes=n),
                               layernorm=LayerNormConfig(lanes=n, max_len=40)) for n in (2, 3))


@pytest.mark.parametrize("cfg, shapes, depth", [
    # Short rows (the variance stage sets the pace: M + 2 = 24 cycles a row), rows of 24 beats
    # and more (a beat a cycle), a lone row.
    (TINY, [(1, 1), (1, 5), (3, 7), (6, 3), (12, 20), (4, 24), (8, 64)], 1024),
    (LANES2, [(1, 1), (3, 7), (6, 16), (9, 3)], 256),
    (LANES3, [(1, 5), (2, 40), (6, 40)], 256),
    (ULX3S.replace(gelu=GeluConfig(variant="shift")), [(1, 1), (6, 13)], 256),
    (FITTED, [(1, 384), (2, 384), (3, 20)], 1024),
])
def test_gelu_and_layernorm_cycle_model_exact(cfg, shapes, depth):
    # One RUN GELU and one RUN LAYERNORM per shape (ROWS rows of ROW_LEN elements); no stalls.
    VL = vector_lanes(cfg)
    top = RunClock(cfg, depth=depth)
    rng = np.random.default_rng(43)
    k = golden.gelu_constants(0.05, cfg.gelu)
    for name, reg in GELU_REGS.items():
        if hasattr(k, name):
            top.set_reg(reg, getattr(k, name))
    for rows, length in shapes:
        q = rng.integers(-100, 100, (rows, length))
        top.write_buffer(Buf.X, 0, layout.beats(q, VL))
        top.set_reg(Reg.ROW_LEN, length)
        top.set_reg(Reg.ROWS, rows)
        top.run(Op.GELU)
        got = layout.from_beats(top.read_buffer(Buf.Y, 0, rows * -(-length // VL)), rows,
                                length, VL)
        np.testing.assert_array_equal(got, golden.gelu(q, 0.05, cfg.gelu)[0])
        assert top.accepted_to_written() == cyclemodel.gelu_cycles(cfg, rows, length), \
            ("GELU", rows, length)
        q = rng.integers(-3000, 3000, (rows, length))
        gamma, beta = rng.uniform(0.5, 1.5, length), rng.uniform(-1, 1, length)
        got = top.layernorm(q, 0.01, gamma, beta)[0]
        np.testing.assert_array_equal(got, golden.layernorm(q, 0.01, gamma, beta,
                                                            cfg.layernorm)[0])
        assert top.accepted_to_written() == cyclemodel.layernorm_cycles(cfg, rows, length), \
            ("LAYERNORM", rows, length)


def test_gelu_over_c_cycle_model_exact():
    # GELU over C on the ulx3s top (C words of 6 lanes, one GELU lane): the model's cycles.
    top = RunClock(ULX3S, depth=64)
    k = golden.gelu_constants(0.05, ULX3S.gelu)
    for name, reg in GELU_REGS.items():
        if hasattr(k, name):
            top.set_reg(reg, getattr(k, name))
    C = ULX3S.array.cols
    top.set_reg(Reg.GELU_IN_C, 1)
    top.set_reg(Reg.ROW_LEN, C)
    for n in (1, 2, 17, 64):
        top.set_reg(Reg.ROWS, n)
        top.run(Op.GELU)
        assert top.accepted_to_written() == cyclemodel.gelu_cycles(ULX3S, n, C, in_c=True), n


@pytest.mark.parametrize("softmax_lanes", [1, "auto"])
def test_attention_run_cycle_model(softmax_lanes):
    # One RUN ATTENTION (a head) per shape, with one softmax lane (shared with RUN SOFTMAX) and
    # with "auto" (six for the preset's 6 columns, d <= 8); attention_cycles is fitted: the
    # top's run within 2% of it.
    cfg = ULX3S.replace(attention=dataclasses.replace(ULX3S.attention,
                                                      softmax_lanes=softmax_lanes))
    top = RunClock(cfg, depth=256)
    rng = np.random.default_rng(44)
    for L, d in ((6, 8), (13, 8), (7, 5), (16, 8)):
        q, k, v = (rng.integers(-128, 128, (L, d)) for _ in range(3))
        top.attention(q, k, v, *SCALES)
        measured, model = top.accepted_to_written(), cyclemodel.attention_run_cycles(cfg, L, d)
        assert abs(measured - model) <= 0.02 * model, (cfg.attention_lanes, L, d, measured,
                                                      model)


# -- malformed commands ----------------------------------------------------------------------


def test_malformed_commands_change_nothing(Top):
    top = Top(TINY, depth=16, stall=0.3, seed=10)
    spec = buffer_specs(TINY, 16)[Buf.A]
    before = np.arange(16 * 2).reshape(16, 2) - 16
    top.write_buffer(Buf.A, 0, before)

    def raw_write(buf, addr, count, nwords=None, nbytes=spec.nbytes):
        nwords = count if nwords is None else nwords
        head = bytes([getattr(buf, "value", buf)]) + addr.to_bytes(2, "little")
        return top.raw(Command.WRITE_BUFFER,
                       head + count.to_bytes(2, "little") + bytes(range(nwords * nbytes)))

    assert raw_write(Buf.A, 15, 2)[0] == Error.RANGE.value        # runs past the end
    assert raw_write(Buf.A, 16, 1)[0] == Error.RANGE.value
    assert raw_write(Buf.A, 0, 3, nwords=2)[0] == Error.LENGTH.value   # count vs length
    assert raw_write(0x40, 0, 1)[0] == Error.BUFFER.value        # no buffer 0x40
    assert top.raw(0x7e, bytes(40))[0] == Error.OPCODE.value      # payload discarded
    assert top.raw(Command.STATUS, b"\x00")[0] == Error.LENGTH.value
    assert top.raw(Command.READ_BUFFER, bytes([Buf.A.value, 10, 0, 7, 0]))[0] == Error.RANGE.value
    assert top.raw(Command.READ_BUFFER, bytes([Buf.COEF.value, 0, 0, 1, 0]))[0] == \
        Error.BUFFER.value
    assert top.raw(Command.READ_BUFFER, bytes([Buf.A.value, 0, 0, 1]))[0] == Error.LENGTH.value
    assert top.raw(Command.SET_REG, bytes([0x7f, 1]))[0] == Error.REGISTER.value
    assert top.raw(Command.SET_REG, bytes([Reg.M.value, TINY.gemm.max_m + 1]))[0] == \
        Error.VALUE.value
    assert top.raw(Command.SET_REG, bytes([Reg.M.value]) + bytes(9))[0] == Error.LENGTH.value
    assert top.raw(Command.RUN, bytes([Op.ATTENTION.value]))[0] == Error.SHAPE.value  # L = 0
    assert top.raw(Command.RUN, bytes([0x40]))[0] == Error.UNIT.value
    assert top.status().error == "UNIT"                           # the last error, then cleared
    assert top.status().error == "OK"
    expect(Error.SHAPE, top.run, Op.GEMM)                         # M, K, N still 0
    for reg, v in ((Reg.M, 32), (Reg.K, 64), (Reg.N, 1)):         # within the config...
        top.set_reg(reg, v)
    expect(Error.SHAPE, top.run, Op.GEMM_RAW)                     # ...but not the buffers
    expect(Error.SHAPE, top.run, Op.SOFTMAX)                      # ROW_LEN, ROWS still 0
    top.set_reg(Reg.ROW_LEN, 8)
    top.set_reg(Reg.ROWS, 3)                                      # 24 beats > 16
    expect(Error.SHAPE, top.run, Op.GELU)
    np.testing.assert_array_equal(top.read_buffer(Buf.A, 0, 16), before)
    assert top.status() == (False, False, "SHAPE")


def test_busy_and_left_out_units():
    cfg = TINY.replace(softmax=SoftmaxConfig(enabled=False), gelu=GeluConfig(enabled=False))
    top = SimTop(cfg)
    assert Buf.X in top.buffers and Buf.COEF in top.buffers
    expect(Error.UNIT, top.run, Op.SOFTMAX)
    expect(Error.UNIT, top.run, Op.GELU)
    expect(Error.REGISTER, top.set_reg, Reg.SM_DIVISOR, 1)
    expect(Error.REGISTER, top.set_reg, Reg.GELU_C, 1)
    for reg, v in ((Reg.M, 8), (Reg.K, 8), (Reg.N, 8)):
        top.set_reg(reg, v)
    top.run(Op.GEMM_RAW, wait=False)
    assert top.status().busy
    expect(Error.BUSY, top.write_buffer, Buf.A, 0, np.zeros((1, 2)))
    expect(Error.BUSY, top.set_reg, Reg.M, 2, force=True)
    expect(Error.BUSY, top.run, Op.GEMM)
    for _ in range(100):
        if not top.status().busy:
            break
    assert top.status() == (False, True, "OK")


def test_refused_set_reg_leaves_running_gemm_alone():
    # Issue 18's reproducer, byte for byte, on the tiny preset (R = C = 2): a SET_REG refused
    # with BUSY while a GEMM_RAW runs. Its argument byte (register N = 2) used to reach the
    # running GEMM's B reader stride, so the tile at row tile 1, column tile 1 was computed
    # from column tile 0 of B.
    top = SimTop(AccelConfig.preset("tiny"), depth=256)
    ok = (Error.OK.value, b"")
    assert top.raw(0x02, bytes.fromhex("0000002000") + bytes([1] * 64)) == ok
    assert top.raw(0x02, bytes.fromhex("0100002000") + bytes([1] * 32 + [2] * 32)) == ok
    for reg, value in ((0x00, 0x04), (0x01, 0x10), (0x02, 0x04)):
        assert top.raw(0x04, bytes([reg, value])) == ok
    assert top.raw(0x05, bytes([0x01])) == ok                    # RUN GEMM_RAW
    assert top.raw(0x04, bytes([0x02, 0x01])) == (Error.BUSY.value, b"")
    top.idle(1000)
    for _ in range(100):
        if not top.status().busy:
            break
    c = top.read_buffer(Buf.C, 0, 8)      # rows in the engine's order: row tile, column tile
    expect = np.array([[16, 16], [16, 16], [32, 32], [32, 32]] * 2)
    np.testing.assert_array_equal(c, expect)


def test_no_nonlinear_units():
    cfg = TINY.replace(softmax=SoftmaxConfig(enabled=False), gelu=GeluConfig(enabled=False),
                       layernorm=LayerNormConfig(enabled=False),
                       attention=AttentionConfig(enabled=False),
                       residual=ResidualConfig(enabled=False))
    top = SimTop(cfg, depth=16)
    assert set(top.buffers) == {Buf.A, Buf.B, Buf.C, Buf.CHAN, Buf.C_OUT}
    assert top.raw(Command.WRITE_BUFFER, bytes([Buf.X.value, 0, 0, 0, 0]))[0] == Error.BUFFER.value
    assert top.raw(Command.WRITE_BUFFER, bytes([Buf.V.value, 0, 0, 0, 0]))[0] == Error.BUFFER.value
    assert top.raw(Command.WRITE_BUFFER, bytes([Buf.X_IN.value, 0, 0, 0, 0]))[0] == \
        Error.BUFFER.value
    expect(Error.UNIT, top.run, Op.LAYERNORM)
    expect(Error.UNIT, top.run, Op.ATTENTION)
    expect(Error.REGISTER, top.set_reg, Reg.ATT_LEN, 1)
    expect(Error.REGISTER, top.set_reg, Reg.ATT_DIVISOR, 1)
    with pytest.raises(ValueError, match="Board config must include attention, not leave it out"):
        top.attention(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)), 1, 1, 1, 1)
    a = np.arange(12).reshape(3, 4) - 6
    np.testing.assert_array_equal(top.gemm(a, a.T), golden.gemm(a, a.T))


def test_depth_from_config(tmp_path):
    # A [buffers] depth in a TOML config reaches the top, its buffers and registers, and the
    # host driver, which splits runs by it: the same residual add in one run at 64 words, in
    # five at 8 (4 elements a run: half of X each for a and b).
    path = tmp_path / "deep.toml"
    path.write_text(AccelConfig.preset("tiny").to_toml().replace("depth = 256", "depth = 512"))
    deep = AccelConfig.from_toml(path)
    assert deep.buffers.depth == 512
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)  # tops built only to be looked at
        acc = Accelerator(deep)
        assert acc.depth == acc.memories.depth == acc.dispatcher.depth == 512
        assert {b: s.depth for b, s in acc.buffers.items() if b not in (Buf.COEF, Buf.CHAN)} \
            == dict.fromkeys((Buf.A, Buf.B, Buf.C, Buf.X, Buf.Y, Buf.V, *NARROW_VIEWS), 512)
        assert acc.buffers == buffer_specs(deep) and acc.registers[Reg.ROWS] == (10, 512)
        assert Accelerator(deep, depth=16).buffers[Buf.A].depth == 16   # a test top's override
        del acc
        gc.collect()
    rng = np.random.default_rng(50)
    a, b = (rng.integers(-(1 << 15), 1 << 15, 20) for _ in range(2))
    consts = ops.residual_constants(0.02, 0.05, 0.04)
    assert vector_lanes(TINY) == 1
    for cfg, runs in ((TINY, 1), (TINY.replace(buffers=BufferConfig(8)), 5)):
        top = SimTop(cfg)
        assert top.depth == top.dut.depth == cfg.buffers.depth
        np.testing.assert_array_equal(top.residual(a, b, *consts),
                                      ops.residual_add(a, b, *consts))
        assert top.runs == runs


def test_config_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)  # the refused, half-built tops
        with pytest.raises(ValueError, match="Nonlinear unit lanes must be equal in the "
                                             r"accelerator top, not \[1, 2\]"):
            Accelerator(TINY.replace(gelu=GeluConfig(lanes=2)))
        with pytest.raises(ValueError, match="Buffer depth must be an integer from 1 to 65536, "
                                             "not 0"):
            Accelerator(TINY, depth=0)
        with pytest.raises(TypeError, match="Buffer depth must be an integer, not 2.5"):
            Accelerator(TINY, depth=2.5)
        gc.collect()
