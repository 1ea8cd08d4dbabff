"""Golden integer LayerNorm and integer square root: exactness, constants, accuracy vs float64."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw.config import LayerNormConfig
from sim import golden, reference

# -- integer square root ---------------------------------------------------------------------


def _edges(width):
    n = {0, 1, 2, 3, (1 << width) - 1, (1 << width) - 2}
    for b in range(1, width // 2 + 1):
        for k in ((1 << b) - 1, 1 << b, (1 << b) + 1):
            for d in (-1, 0, 1):
                if 0 <= k * k + d < (1 << width):
                    n.add(k * k + d)
    return np.array(sorted(n), dtype=np.int64)


@pytest.mark.parametrize("width", [2, 7, 16, 31, 32, 40, 62])
def test_isqrt_edges(width):
    n = _edges(width)
    assert (golden.isqrt(n, width) == [math.isqrt(int(v)) for v in n]).all()


def test_isqrt_every_16_bit_value():
    n = np.arange(1 << 16, dtype=np.int64)
    expected = np.floor(np.sqrt(n)).astype(np.int64)   # exact for 16-bit n
    assert (golden.isqrt(n, 16) == expected).all()


def test_isqrt_near_every_square_32_bit():
    k = np.arange(1 << 16, dtype=np.int64)
    for d in (-1, 0, 1):
        n = k * k + d
        n = n[(n >= 0) & (n < (1 << 32))]
        expected = np.array([math.isqrt(int(v)) for v in n])
        assert (golden.isqrt(n, 32) == expected).all()


def test_isqrt_random_32_bit():
    n = np.random.default_rng(3).integers(0, 1 << 32, 200_000, dtype=np.int64)
    r = golden.isqrt(n, 32)
    # floor(sqrt(n)) is the unique r with r*r <= n < (r+1)**2
    assert ((r * r <= n) & (n < (r + 1) * (r + 1))).all()
    assert (r[:2000] == [math.isqrt(int(v)) for v in n[:2000]]).all()


@given(st.integers(0, (1 << 32) - 1))
def test_isqrt_hypothesis(n):
    assert golden.isqrt(np.array([n]), 32)[0] == math.isqrt(n)


def test_isqrt_refuses():
    with pytest.raises(ValueError, match=r"Square root argument values must be in \[0, 4294967295\]"
                                         r" \(unsigned 32-bit\), not 4294967296"):
        golden.isqrt(np.array([1 << 32]), 32)
    with pytest.raises(ValueError, match=r"Square root argument values must be in .*, not -1"):
        golden.isqrt(np.array([-1]), 32)
    with pytest.raises(TypeError, match="Square root argument must be an array of integers, not "
                                        "of dtype float64"):
        golden.isqrt(np.array([4.0]))
    with pytest.raises(ValueError, match="Square root width must be an integer from 2 to 62, "
                                         "not 64"):
        golden.isqrt(np.array([4]), 64)


# -- row statistics ----------------------------------------------------------------------------


def test_row_stats_are_exact():
    rng = np.random.default_rng(5)
    q = rng.integers(-(1 << 15), 1 << 15, (50, 37))
    q[0] = 7                            # zero variance
    q[1] = 0
    q[1, 3] = 1                         # v = L - 1, the smallest kind
    s = golden.layernorm_row_stats(q)
    for i, row in enumerate(q):
        L = len(row)
        v = L * sum(int(x) ** 2 for x in row) - sum(int(x) for x in row) ** 2
        assert s["v"][i] == v
        if v == 0:
            assert s["factor"][i] == 0
            continue
        e = (32 - v.bit_length()) // 2
        vn = v << (2 * e) if e >= 0 else v >> (-2 * e)
        assert (1 << 30) <= vn < (1 << 32)
        assert s["std"][i] == math.isqrt(vn)
        assert s["factor"][i] == (1 << 32) // math.isqrt(vn)


# -- constants and input checks -------------------------------------------------------------


def test_constants():
    cfg = LayerNormConfig()
    c = golden.layernorm_constants(0.5, cfg, [1.0, -2.0, 0.5], [0.25, 0.0, -1.0], length=3)
    assert c.y_scale == pytest.approx((2.0 * math.sqrt(2) + 1.0) / 127)
    G, F = cfg.gamma_shift, cfg.norm_frac
    assert c.shift == F + G
    assert c.gamma == tuple(round(g / c.y_scale * 2 ** G) for g in (1.0, -2.0, 0.5))
    assert c.beta == tuple(round(b / c.y_scale * 2 ** (F + G)) for b in (0.25, 0.0, -1.0))
    default = golden.layernorm_constants(1.0, cfg, length=17)
    assert default.y_scale == pytest.approx(4.0 / 127)
    assert default.beta == (0,) * 17


@pytest.mark.parametrize("scale, exc, msg", [
    (0.0, ValueError, "LayerNorm scale must be a positive finite number, not 0.0"),
    (-1.0, ValueError, "LayerNorm scale must be a positive finite number, not -1.0"),
    (float("nan"), ValueError, "LayerNorm scale must be a positive finite number, not nan"),
    (float("inf"), ValueError, "LayerNorm scale must be a positive finite number, not inf"),
    ("1", TypeError, "LayerNorm scale must be a number, not '1'"),
])
def test_bad_scale(scale, exc, msg):
    with pytest.raises(exc, match=msg):
        golden.layernorm(np.zeros((2, 4), dtype=np.int64), scale)


def test_bad_gamma_beta_and_input():
    q = np.zeros((2, 4), dtype=np.int64)
    with pytest.raises(ValueError, match=r"LayerNorm gamma must have shape \(4,\) \(the row "
                                         r"length\), not \(3,\)"):
        golden.layernorm(q, 1.0, gamma=np.ones(3))
    with pytest.raises(ValueError, match=r"LayerNorm beta must have shape \(4,\) \(the row "
                                         r"length\), not \(4, 1\)"):
        golden.layernorm(q, 1.0, beta=np.ones((4, 1)))
    with pytest.raises(ValueError, match="LayerNorm gamma must be finite, not nan"):
        golden.layernorm(q, 1.0, gamma=[1.0, np.nan, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"LayerNorm input values must be in \[-32768, 32767\] "
                                         r"\(signed 16-bit\), not 32768"):
        golden.layernorm(q + 32768, 1.0)
    with pytest.raises(TypeError, match="LayerNorm input must be an array of integers, not of "
                                        "dtype float64"):
        golden.layernorm(q * 1.0, 1.0)
    with pytest.raises(ValueError, match=r"LayerNorm row length must be from 1 to 64 \(max_len\),"
                                         r" not 65"):
        golden.layernorm(np.zeros((1, 65), dtype=np.int64), 1.0)
    with pytest.raises(TypeError, match="LayerNorm config must be a LayerNormConfig, not 3"):
        golden.layernorm(q, 1.0, cfg=3)


def test_config_limits():
    with pytest.raises(ValueError, match=r"LayerNorm max_len must be at most 255 for in_width=24 "
                                         r"\(the row variance must fit 62 bits\), not 256"):
        LayerNormConfig(in_width=24, max_len=256)
    with pytest.raises(ValueError, match="LayerNorm gamma_width must be an integer from 10 to 32,"
                                         " not 9"):
        LayerNormConfig(gamma_width=9)
    with pytest.raises(ValueError, match="LayerNorm beta_width must be an integer from 26 to 48,"
                                         " not 20"):
        LayerNormConfig(beta_width=20)
    assert LayerNormConfig().gamma_shift == 8


# -- accuracy: within 1 LSB of the output scale of float64 on the same integer input --------


def _rows(rng, L, in_width, n):
    top = 1 << (in_width - 1)
    out = []
    out.append(rng.integers(-top, top, (n, L)))                       # full range
    for spread in (1, 2, 3, 10, 100):                                 # tiny variances
        base = rng.integers(-top + spread, top - spread, (n, 1))
        out.append(base + rng.integers(-spread, spread + 1, (n, L)))
    out.append(np.full((2, L), -top))                                 # zero variance, extreme
    out.append(np.full((2, L), top - 1))
    ext = rng.choice([-top, top - 1], (n, L))                         # extremes only
    out.append(ext)
    one = np.zeros((2, L), dtype=np.int64)                            # one outlier
    one[0, 0], one[1, -1] = top - 1, -top
    out.append(one)
    return np.concatenate(out).astype(np.int64)


@pytest.mark.parametrize("L", [1, 2, 3, 7, 16, 24, 33, 64])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("in_width", [8, 16])
def test_accuracy_within_one_lsb(L, affine, in_width):
    cfg = LayerNormConfig(in_width=in_width)
    rng = np.random.default_rng(L * 10 + affine + in_width)
    q = _rows(rng, L, in_width, 40)
    gamma = rng.normal(1.0, 0.5, L) if affine else None
    beta = rng.normal(0.0, 0.5, L) if affine else None
    for scale in (1e-4, 0.05, 3.0):
        y, y_scale = golden.layernorm(q, scale, gamma, beta, cfg)
        ref = reference.layernorm(q, scale, gamma, beta)
        err = np.abs(y * y_scale - ref).max()
        assert err <= y_scale, f"max error {err / y_scale:.3f} LSB"
        # the measured bound: final rounding (0.5 LSB) plus at most a few hundredths
        assert err <= 0.56 * y_scale
        assert np.abs(y).max() <= 127


def test_zero_variance_gives_beta():
    beta = np.array([0.5, -1.0, 0.25])
    y, s = golden.layernorm(np.full((4, 3), -5, dtype=np.int64), 0.1, None, beta)
    assert (y == np.round(beta / s)).all()
    y, s = golden.layernorm(np.full((4, 1), 17, dtype=np.int64), 0.1)
    assert (y == 0).all()


@given(st.integers(1, 64), st.integers(0, 2 ** 32 - 1), st.integers(0, 15))
def test_accuracy_hypothesis(L, seed, spread_log):
    rng = np.random.default_rng(seed)
    spread = 1 << spread_log
    q = np.clip(rng.integers(-spread, spread + 1, (8, L)) + rng.integers(-30000, 30000),
                -32768, 32767)
    y, y_scale = golden.layernorm(q, 0.01)
    assert np.abs(y * y_scale - reference.layernorm(q, 0.01)).max() <= 0.56 * y_scale
