"""Float64 references the golden models are measured against (tests and ``bench/accuracy.py``)."""

import math

import numpy as np

__all__ = ["attention", "attention_8bit_probabilities"]


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
