"""Float64 references the golden models are measured against (tests and ``bench/accuracy.py``)."""

import math

import numpy as np

__all__ = ["layernorm", "attention", "attention_8bit_probabilities"]


def layernorm(q, scale, gamma=None, beta=None):
    """float64 LayerNorm of the dequantized input ``x = q * scale`` over the last axis
    (population variance, eps = 0; a row of zero variance normalizes to 0).

    ``x - mean(x)`` is formed as ``(L*q - sum(q)) * scale / L`` (exact up to one rounding), so
    rows of zero or tiny variance are not lost to cancellation in the reference itself.
    """
    q = np.asarray(q, dtype=np.int64)
    L = q.shape[-1]
    d = (L * q - q.sum(axis=-1, keepdims=True)).astype(np.float64) * (scale / L)
    sd = np.sqrt((d * d).mean(axis=-1, keepdims=True))
    z = np.divide(d, sd, out=np.zeros_like(d), where=sd > 0)
    g = np.ones(L) if gamma is None else np.asarray(gamma, dtype=np.float64)
    b = np.zeros(L) if beta is None else np.asarray(beta, dtype=np.float64)
    return z * g + b


def _probabilities(q, k, sq, sk, causal):
    L, d = q.shape[-2:]
    s = (q * sq) @ np.swapaxes(k * sk, -1, -2) / math.sqrt(d)
    if causal:
        s = np.where(np.tri(L, dtype=bool), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def attention(q, k, v, sq, sk, sv, causal=False):
    """softmax(Q K^T / sqrt(d)) V on the dequantized integers, in float64."""
    return _probabilities(q, k, sq, sk, causal) @ (v * sv)


def attention_8bit_probabilities(q, k, v, sq, sk, sv, so, causal=False):
    """The accuracy floor of any design with 8-bit probabilities: exact float softmax rounded
    to 8 bits (1.0 saturating to 255/256), an exact P V, and round-half-up to the output
    grid ``so``."""
    p8 = np.minimum(np.floor(_probabilities(q, k, sq, sk, causal) * 256 + 0.5), 255) / 256
    return np.clip(np.floor(p8 @ (v * sv) / so + 0.5), -128, 127) * so
