"""The GEMM and requantizer golden models against float64 / exact rational references."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim import golden


def test_gemm_matches_float64():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (17, 300), dtype=np.int8)
    b = rng.integers(-128, 128, (300, 9), dtype=np.int8)
    # float64 is exact here: every partial sum is below 2**53.
    ref = a.astype(np.float64) @ b.astype(np.float64)
    out = golden.gemm(a, b)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, ref.astype(np.int64))


def test_gemm_no_int8_wraparound():
    a = np.full((1, 4), -128, dtype=np.int8)
    np.testing.assert_array_equal(golden.gemm(a, a.T), [[4 * 16384]])


@pytest.mark.parametrize("a, b, exc, message", [
    (np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int8), TypeError,
     "GEMM operand a must be an array of integers, not of dtype float32"),
    (np.full((2, 2), 128), np.zeros((2, 2), np.int8), ValueError,
     r"GEMM operand a values must be in \[-128, 127\] \(signed 8-bit\), not 128"),
    (np.zeros((2, 3), np.int8), np.zeros((2, 2), np.int8), ValueError,
     r"GEMM inner dimensions must match, not a \(2, 3\) @ b \(2, 2\)"),
    (np.zeros(3, np.int8), np.zeros((3, 2), np.int8), ValueError,
     r"GEMM operand a must have 2 dimensions, not shape \(3,\)"),
])
def test_gemm_bad_operands(a, b, exc, message):
    with pytest.raises(exc, match=message):
        golden.gemm(a, b)


def _exact_requant(acc, m, s):
    """floor(acc*m/2**s + 1/2), clamped: round half up, with exact rationals."""
    v = Fraction(int(acc) * m, 1 << s) + Fraction(1, 2)
    return max(-128, min(127, v.numerator // v.denominator))


@given(acc=st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=20),
       m=st.integers(0, (1 << 16) - 1), s=st.integers(0, 47))
def test_requantize_matches_exact_rounding(acc, m, s):
    out = golden.requantize(np.array(acc), m, s)
    assert out.tolist() == [_exact_requant(x, m, s) for x in acc]


def test_requantize_ties_round_half_up():
    # x/2 for x = -3..3: -1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 1.5 -> 2.
    out = golden.requantize(np.arange(-3, 4), 1, 1)
    assert out.tolist() == [-1, -1, 0, 0, 1, 1, 2]


def test_requantize_saturates_both_ends():
    out = golden.requantize(np.array([-(1 << 31), (1 << 31) - 1, 300, -300]), 1, 0)
    assert out.tolist() == [-128, 127, 127, -128]


@pytest.mark.parametrize("args, exc, message", [
    ((1 << 16, 0), ValueError, "Requantizer multiplier must be an integer from 0 to 65535, "
                               "not 65536"),
    ((1, 48), ValueError, "Requantizer shift must be an integer from 0 to 47, not 48"),
    ((1.5, 3), TypeError, "Requantizer multiplier must be an integer, not 1.5"),
])
def test_requantize_bad_arguments(args, exc, message):
    with pytest.raises(exc, match=message):
        golden.requantize(np.zeros(2, np.int32), *args)


@pytest.mark.parametrize("real", [1.0, 0.5, 1e-3, 3.7e-5, 0.123456, 200.0])
def test_quantize_multiplier_accuracy(real):
    m, s = golden.quantize_multiplier(real)
    assert 0 < m < (1 << 16)
    assert abs(m / 2 ** s - real) / real < 2 ** -15


@pytest.mark.parametrize("real", [0.0, -1.0, float("nan"), float("inf")])
def test_quantize_multiplier_refuses(real):
    with pytest.raises(ValueError, match="Requantization scale must be a positive finite number"):
        golden.quantize_multiplier(real)
