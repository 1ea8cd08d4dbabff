"""Cycle-accurate RTL simulation of each unit: same arguments as the golden model, plus stats.

Each function returns a :class:`sim.bench.SimResult` with ``output`` (bit-exact with the golden
model), ``cycles`` and, where the array is used, ``utilization``. ``stall`` is the probability
that a testbench source withholds ``valid`` or a sink withholds ``ready`` on a cycle.
"""

from sim.bench import (
    SimResult,
    run_attention,
    run_gelu,
    run_gemm,
    run_layernorm,
    run_requant,
    run_softmax,
)

__all__ = ["SimResult", "gemm", "requantize", "softmax", "gelu", "layernorm", "attention"]


def gemm(cfg, a, b, stall=0.0, seed=0):
    """``a @ b`` on :class:`hw.gemm.GemmEngine`; ``output`` equals :func:`sim.golden.gemm`."""
    return run_gemm(cfg, a, b, stall=stall, seed=seed)


def requantize(cfg, acc, multiplier, shift, stall=0.0, seed=0):
    """:class:`hw.requant.Requantizer` on ``acc``; ``output`` equals
    ``golden.requantize(acc, multiplier, shift, acc_width=cfg.acc_width)``."""
    return run_requant(cfg, acc, multiplier, shift, stall=stall, seed=seed)


def softmax(cfg, q, scale, stall=0.0, seed=0):
    """:class:`hw.softmax.Softmax` (configured by ``cfg.softmax``) on rows ``q`` (last axis);
    ``output`` equals ``golden.softmax(q, scale, cfg.softmax)[0]`` and ``scale`` its
    ``2**-out_width``."""
    return run_softmax(cfg.softmax, q, scale, stall=stall, seed=seed)


def gelu(cfg, q, scale, stall=0.0, seed=0):
    """:class:`hw.gelu.Gelu` (configured by ``cfg.gelu``) on ``q`` of any shape; ``output`` equals
    ``golden.gelu(q, scale, cfg.gelu)[0]`` and ``scale`` its ``y_scale``."""
    return run_gelu(cfg, q, scale, stall=stall, seed=seed)


def layernorm(cfg, q, scale, gamma=None, beta=None, stall=0.0, seed=0):
    """:class:`hw.layernorm.LayerNorm` (configured by ``cfg.layernorm``) on the rows of ``q``
    (last axis), back to back; ``output`` equals
    ``golden.layernorm(q, scale, gamma, beta, cfg.layernorm)[0]`` and ``scale`` its
    ``y_scale``."""
    return run_layernorm(cfg, q, scale, gamma, beta, stall=stall, seed=seed)


def attention(cfg, q, k, v, q_scale, k_scale, v_scale, o_scale, *, causal=False, stall=0.0,
              seed=0):
    """Attention on :class:`hw.attention.AttentionController`, one command per head.

    Same arguments as :func:`sim.golden.attention` after ``cfg``; ``output`` equals its first
    result. ``cycles`` runs from the first command to the last output row, loading included;
    ``utilization`` counts useful MACs (only unmasked scores when causal) per array slot;
    ``extra`` holds ``array_busy`` (cycles the array took operands) and ``softmax_wait``
    (cycles the next job waited for the softmax).
    """
    return run_attention(cfg, q, k, v, q_scale, k_scale, v_scale, o_scale, causal=causal,
                         stall=stall, seed=seed)
