"""sim.ops: the model path's operations against the golden units they extend and against
float64, with stated error budgets; the golden.gemm limits and golden.layernorm γ/β contract."""

import math

import numpy as np
import pytest

from hw.config import (
    AccelConfig,
    AttentionConfig,
    GeluConfig,
    GemmConfig,
    LayerNormConfig,
    RequantConfig,
)
from sim import golden, ops, reference

CFG = AccelConfig(gemm=GemmConfig(max_m=64, max_k=64, max_n=64, acc_width=32),
                  requant=RequantConfig(out_width=16),
                  attention=AttentionConfig(max_seq_len=32, max_head_dim=16))


def rng(seed=0):
    return np.random.default_rng(seed)


def test_requantize_channels_equals_requantize_with_one_pair():
    acc = rng().integers(-(1 << 24), 1 << 24, (7, 5))
    y = ops.requantize_channels(acc, [12345] * 5, [20] * 5)
    np.testing.assert_array_equal(y, golden.requantize(acc, 12345, 20))


def test_requantize_channels_budget_and_saturation():
    r = rng(1)
    real = r.uniform(1e-4, 0.5, 6)
    m, s = ops.channel_constants(real)
    x = r.integers(-(1 << 15), 1 << 15, (50, 6))
    y = ops.requantize_channels(x, m, s, in_width=16, out_width=16)
    exact = x * real
    inside = np.abs(exact) < 32767
    # round half up (0.5 LSB) plus the dyadic multiplier's relative error 2**-15
    assert (np.abs(y - exact)[inside] <= 0.5 + np.abs(exact[inside]) * 2.0 ** -15 + 1e-9).all()
    big = ops.requantize_channels(np.array([[1 << 20, -(1 << 20)]]), [1, 1], [0, 0],
                                  in_width=24, out_width=8)
    np.testing.assert_array_equal(big, [[127, -128]])


def test_requantize_channels_bad_constants():
    with pytest.raises(ValueError, match=r"Requantizer multipliers must have shape \(3,\) "
                                         r"\(one per channel\), not \(2,\)"):
        ops.requantize_channels(np.zeros((2, 3), np.int64), [1, 1], [0, 0, 0])
    with pytest.raises(ValueError, match="Requantizer shifts must be at most 47, not 50"):
        ops.requantize_channels(np.zeros((1, 1), np.int64), [1], [50])


def test_linear_equals_gemm_bias_requantize_and_k_chunks():
    r = rng(2)
    x = r.integers(-128, 128, (20, 150))
    w = r.integers(-128, 128, (150, 9))
    bias = r.integers(-(1 << 20), 1 << 20, 9)
    m, s = ops.channel_constants(r.uniform(1e-5, 1e-3, 9), max_shift=47)
    cfg = CFG.replace(gemm=GemmConfig(max_m=64, max_k=256, max_n=64, acc_width=32))
    y = ops.linear(x, w, bias, m, s, cfg=cfg, out_width=16)
    acc = golden.gemm(x, w) + bias
    np.testing.assert_array_equal(y, ops.requantize_channels(acc, m, s, in_width=32,
                                                             out_width=16))
    # K split in chunks, each preloading the last chunk's accumulators: the same integers
    np.testing.assert_array_equal(y, ops.linear(x, w, bias, m, s, cfg=cfg, out_width=16,
                                                k_chunk=64))


def test_linear_against_float():
    r = rng(3)
    xs, ws, so = 0.05, r.uniform(0.001, 0.01, 12), 0.02
    x = r.integers(-127, 128, (16, 40))
    w = r.integers(-127, 128, (40, 12))
    b = r.normal(0, 0.5, 12)
    acc_scale = xs * ws
    bias = np.round(b / acc_scale).astype(np.int64)
    m, s = ops.channel_constants(acc_scale / so, max_shift=47)
    y = ops.linear(x, w, bias, m, s, cfg=CFG, out_width=16)
    ref = (x * xs) @ (w * ws) + b
    # half an output step, the bias rounding (half an accumulator step) and 2**-15 relative
    assert np.abs(y * so - ref).max() <= so / 2 + acc_scale.max() / 2 + np.abs(ref).max() * 2e-5


def test_linear_refuses_limits():
    x = np.zeros((4, 64), np.int64)
    w = np.zeros((64, 2), np.int64)
    small = CFG.replace(gemm=GemmConfig(max_m=2, max_k=64, max_n=64))
    with pytest.raises(ValueError, match=r"GEMM M must be at most 2 \(gemm.max_m\), not 4"):
        ops.linear(x, w, [0, 0], [1, 1], [0, 0], cfg=small)
    with pytest.raises(ValueError, match=r"GEMM acc_width must be at least 33 for K=64 with "
                                         r"this bias \(gemm.acc_width\), not 32"):
        ops.linear(x, w, [(1 << 31) - 1, 0], [1, 1], [0, 0], cfg=CFG)


def test_golden_gemm_checks_config_limits():
    cfg = AccelConfig.preset("ulx3s")
    a = np.zeros((2, 513), np.int64)
    with pytest.raises(ValueError, match=r"GEMM K must be at most 512 \(gemm.max_k\), not 513"):
        golden.gemm(a, np.zeros((513, 2), np.int64), cfg=cfg)
    np.testing.assert_array_equal(golden.gemm(a[:, :512], np.ones((512, 2), np.int64), cfg=cfg),
                                  np.zeros((2, 2)))


def test_residual_add_against_float():
    r = rng(4)
    sa, sb, so = 0.003, 0.0071, 0.009
    a = r.integers(-(1 << 15), 1 << 15, 500)
    b = r.integers(-(1 << 15), 1 << 15, 500)
    ma, mb, shift = ops.residual_constants(sa, sb, so)
    y = ops.residual_add(a, b, ma, mb, shift)
    exact = (a * sa + b * sb) / so
    inside = np.abs(exact) < 32767
    assert 0 < inside.sum() < len(exact)
    assert np.abs(y - exact)[inside].max() <= 0.5 + 32767 * 2.0 ** -15
    np.testing.assert_array_equal(y[~inside], np.where(exact[~inside] > 0, 32767, -32768))
    sat = ops.residual_add(np.array([32767]), np.array([32767]), 1 << 15, 1 << 15, 15)
    assert sat[0] == 32767


def test_masked_attention_is_attention_on_each_prefix():
    r = rng(5)
    B, H, L, d = 3, 2, 12, 8
    q, k, v = (r.integers(-128, 128, (B, H, L, d)) for _ in range(3))
    lengths = np.array([12, 5, 1])
    scales = (0.03, 0.04, 0.05, 0.04)
    o = ops.masked_attention(q, k, v, lengths, *scales, cfg=CFG, out_width=8)
    for b, n in enumerate(lengths):
        want, _ = golden.attention(q[b, :, :n], k[b, :, :n], v[b, :, :n], *scales, cfg=CFG)
        # golden.attention saturates to requant.out_width (16 here), the op to 8 bits
        np.testing.assert_array_equal(o[b, :, :n], golden.saturate(want, 8))


def test_masked_attention_against_float():
    r = rng(6)
    B, H, L, d = 2, 2, 20, 16
    q, k, v = (r.integers(-100, 100, (B, H, L, d)) for _ in range(3))
    lengths = np.array([20, 13])
    sq, sk, sv, so = 0.02, 0.02, 0.03, 0.03
    o = ops.masked_attention(q, k, v, lengths, sq, sk, sv, so, cfg=CFG, out_width=8)
    for b, n in enumerate(lengths):
        ref = reference.attention(q[b, :, :n], k[b, :, :n], v[b, :, :n], sq, sk, sv)
        # 8-bit probabilities: each of n terms off by up to ~1/512, times |v| <= 100 * sv,
        # plus half an output step
        assert np.abs(o[b, :, :n] * so - ref).max() <= n * 100 * sv / 400 + so


def test_masked_attention_refuses_long_sequences():
    x = np.zeros((1, 1, 33, 8), np.int64)
    with pytest.raises(ValueError, match=r"Attention sequence length must be from 1 to 32 "
                                         r"\(attention.max_seq_len\), not 33"):
        ops.masked_attention(x, x, x, [33], 1.0, 1.0, 1.0, 1.0, cfg=CFG)


def test_pool_sum():
    x = rng(7).integers(-100, 100, (2, 4, 3))
    y = ops.pool_sum(x, np.array([4, 2]))
    np.testing.assert_array_equal(y, [x[0].sum(0), x[1, :2].sum(0)])


def test_wide_gelu_budget():
    """GELU at 16-bit input width (poly_width 14): the I-BERT budget on [-4, 4]."""
    cfg = GeluConfig(in_width=16, poly_width=14)
    scale = 4 / 32767 * 3          # a model's GELU input scale (max about 12)
    q = np.arange(-10922, 10923, 7)
    y, ys = golden.gelu(q, scale, cfg)
    x = q * scale
    ref = x / 2 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    e = y * ys - ref
    assert np.abs(e).max() <= 0.018 and np.sqrt((e * e).mean()) <= 0.0082


def test_wide_layernorm_budget_and_constants():
    """LayerNorm with a 16-bit output, 384 wide; integer constants give the same integers."""
    cfg = LayerNormConfig(max_len=384, in_width=16, out_width=16, gamma_width=24,
                          beta_width=40)
    r = rng(8)
    q = r.integers(-20000, 20000, (6, 384))
    gamma, beta = r.normal(1, 0.3, 384), r.normal(0, 0.3, 384)
    y, ys = golden.layernorm(q, 0.01, gamma, beta, cfg)
    ref = reference.layernorm(q, 0.01, gamma, beta)
    assert np.abs(y * ys - ref).max() <= 0.6 * ys + 1e-4 * np.abs(ref).max()
    c = golden.layernorm_constants(0.01, cfg, gamma, beta, length=384)
    y2, ys2 = golden.layernorm(q, 0.01, cfg=cfg, constants=c)
    np.testing.assert_array_equal(y2, y)
    assert ys2 == ys


def test_layernorm_gamma_contract():
    q = np.zeros((1, 4), np.int64)
    with pytest.raises(TypeError, match="LayerNorm gamma must be real values"):
        golden.layernorm(q, 1.0, gamma=np.array([1, 2, 3, 4], dtype=np.int8))
    c = golden.layernorm_constants(1.0, length=4)
    with pytest.raises(ValueError, match="LayerNorm parameters must be given once"):
        golden.layernorm(q, 1.0, gamma=np.ones(4), constants=c)
    with pytest.raises(ValueError, match="LayerNorm constants must be for rows of 4, not 5"):
        golden.layernorm(q, 1.0, constants=golden.layernorm_constants(1.0, length=5))


def test_split_digits_and_wide_linear():
    """15-bit activations run as two INT8 passes give exactly x @ w + bias."""
    r = rng(9)
    x = r.integers(-(1 << 14), 1 << 14, (10, 70))
    x[0, :3] = [-(1 << 14), (1 << 14) - 1, 0]
    hi, lo = ops.split_digits(x, 2)
    assert hi.min() >= -64 and hi.max() <= 64 and lo.min() >= -128 and lo.max() <= 127
    np.testing.assert_array_equal(hi * 256 + lo, x)
    assert ops.linear_passes(15) == 2 and ops.linear_passes(8) == 1
    w = r.integers(-128, 128, (70, 6))
    bias = r.integers(-(1 << 20), 1 << 20, 6)
    cfg = CFG.replace(gemm=GemmConfig(max_m=64, max_k=64, max_n=64, acc_width=40))
    m, s = ops.channel_constants(np.full(6, 1e-4), max_shift=47)
    y = ops.linear(x, w, bias, m, s, cfg=cfg, out_width=16, x_width=15, k_chunk=32)
    np.testing.assert_array_equal(y, ops.requantize_channels(x @ w + bias, m, s, in_width=40,
                                                             out_width=16))
    # 2**20 + 70 * 2**21 needs 29 bits (28 would hold the same GEMM on INT8 inputs)
    with pytest.raises(ValueError, match=r"GEMM acc_width must be at least 29 for K=70 with "
                                         r"this bias \(gemm.acc_width\), not 28"):
        ops.linear(x, w, bias, m, s, cfg=CFG.replace(gemm=GemmConfig(acc_width=28)),
                   x_width=15)
