"""golden.attention against float64 attention on the dequantized inputs."""

import numpy as np
import pytest

from hw.config import AccelConfig, ArrayConfig, AttentionConfig
from sim import golden, reference

CFG = AccelConfig(array=ArrayConfig(4, 4),
                  attention=AttentionConfig(max_seq_len=64, max_head_dim=32))

#: Budget in output LSB (o_scale = v_scale). The floor is set by 8-bit probabilities: exact float
#: softmax rounded to 8 bits, then an exact P V and output rounding, errs by up to 2.83 LSB (RMS
#: 0.65) on flat rows of 64 (each p ~ 4/256 rounds by up to 1/512); the integer pipeline must
#: stay within 5% of that ideal.
MAX_LSB = 3.0
RMS_LSB = 0.7


def errors(rng, sq, causal, dominant, trials=8, L=64, d=32):
    ours, floor = [], []
    for _ in range(trials):
        q, k, v = (rng.integers(-128, 128, (L, d)) for _ in range(3))
        if dominant:
            k[rng.integers(0, L, L)] = q   # each query has a matching key: one dominant score
        o, o_scale = golden.attention(q, k, v, sq, sq, 0.05, 0.05, causal=causal, cfg=CFG)
        ref = reference.attention(q, k, v, sq, sq, 0.05, causal)
        ours.append(((o * o_scale - ref) / 0.05).ravel())
        floor.append((reference.attention_8bit_probabilities(q, k, v, sq, sq, 0.05, 0.05, causal)
                      - ref).ravel() / 0.05)
    return np.concatenate(ours), np.concatenate(floor)


def rms(e):
    return float(np.sqrt(np.mean(e ** 2)))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("sq, dominant", [(0.02, False), (0.05, False), (0.02, True)])
def test_accuracy_budget(sq, dominant, causal):
    e, floor = errors(np.random.default_rng(int(sq * 100) + dominant), sq, causal, dominant)
    assert np.abs(e).max() <= MAX_LSB
    assert rms(e) <= RMS_LSB
    assert rms(e) <= 1.05 * rms(floor)


def test_masked_scores_get_zero_probability():
    # A query at position 0 with causal masking attends only to key 0: output = v[0].
    rng = np.random.default_rng(0)
    q, k, v = (rng.integers(-128, 128, (5, 4)) for _ in range(3))
    o, _ = golden.attention(q, k, v, 0.05, 0.05, 0.05, 0.05, causal=True, cfg=CFG)
    # p = 255/256 saturated 1.0, times v[0], requantized at the same scale.
    expected = golden.requantize(255 * v[0], *golden.quantize_multiplier(2.0 ** -8),
                                 acc_width=CFG.attention_gemm.acc_width)
    np.testing.assert_array_equal(o[0], expected)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("keys", [1, 3, 7])
def test_masked_keys_are_as_if_absent(keys, causal):
    # golden.attention(keys=n): every query as if the keys and values past n were not there
    # (their probabilities exactly 0, the row max and sum unchanged); keys = L changes nothing.
    rng = np.random.default_rng(keys)
    q, k, v = (rng.integers(-128, 128, (2, 7, 4)) for _ in range(3))
    consts = golden.attention_constants(0.05, 0.05, 0.05, 0.04, 4, CFG)
    o, _ = golden.attention(q, k, v, 0.05, 0.05, 0.05, 0.04, causal=causal, keys=keys, cfg=CFG)
    np.testing.assert_array_equal(o, golden.attention_from_constants(
        q, k[:, :keys], v[:, :keys], consts, causal=False, cfg=CFG) if not causal else
        golden.attention_from_constants(q, k, v, consts, causal=True, keys=keys, cfg=CFG))
    if causal:      # query i sees keys 0 .. min(i, keys - 1)
        for i in range(7):
            n = min(i, keys - 1) + 1
            np.testing.assert_array_equal(o[:, i], golden.attention_from_constants(
                q[:, i:i + 1], k[:, :n], v[:, :n], consts, causal=False, cfg=CFG)[:, 0])
    if keys == 7:
        np.testing.assert_array_equal(
            o, golden.attention(q, k, v, 0.05, 0.05, 0.05, 0.04, causal=causal, cfg=CFG)[0])


@pytest.mark.parametrize("keys, error, message", [
    (0, ValueError, r"^Attention keys must be from 1 to 5 \(the sequence length\), not 0$"),
    (6, ValueError, r"^Attention keys must be from 1 to 5 \(the sequence length\), not 6$"),
    (2.0, TypeError, r"^Attention keys must be an integer, not 2.0$"),
])
def test_bad_keys_refused(keys, error, message):
    x = np.zeros((5, 4), dtype=int)
    with pytest.raises(error, match=message):
        golden.attention(x, x, x, 0.05, 0.05, 0.05, 0.05, keys=keys, cfg=CFG)


def test_heads_are_independent():
    rng = np.random.default_rng(1)
    q, k, v = (rng.integers(-128, 128, (3, 6, 4)) for _ in range(3))
    o, _ = golden.attention(q, k, v, 0.05, 0.05, 0.05, 0.05, cfg=CFG)
    for h in range(3):
        np.testing.assert_array_equal(
            o[h], golden.attention(q[h], k[h], v[h], 0.05, 0.05, 0.05, 0.05, cfg=CFG)[0])


def test_constants_refuse_bad_scales():
    with pytest.raises(ValueError, match="Attention q_scale must be a positive finite number, "
                                         "not nan"):
        golden.attention_constants(float("nan"), 1, 1, 1, 4, CFG)
    with pytest.raises(TypeError, match="Attention v_scale must be a real number, not '1'"):
        golden.attention_constants(1, 1, "1", 1, 4, CFG)
