"""The golden attention head: integer scores, the softmax, ``P V`` and the output
requantization."""

import math
from dataclasses import dataclass

import numpy as np

from hw.config import AccelConfig

from .gemm_model import quantize_multiplier, requantize
from .integers import check_int_array, exact_matmul
from .softmax_model import SoftmaxConstants, softmax_constants, softmax_from_constants

# softmax(Q K^T / sqrt(d)) V for one or more heads, integers in and out, exactly as the attention
# controller (hw/attention/) computes it, whatever its tiling:
#
#   S = Q K^T                      exact integer scores, scale q_scale * k_scale
#   S[i, j] = -2**(w-1), j > i     causal mask (w = the softmax input width): such a score is
#                                  past the range-reduction clamp, so its exponential is exactly
#                                  0 and it changes neither the row max nor the row sum
#   S[i, j] = -2**(w-1), j >= keys key mask (a padded sequence's length), the same way
#   P = softmax(S, q_scale * k_scale / sqrt(d))   unsigned (in_width - 1)-bit probabilities, so
#                                  that P is a non-negative signed operand of the array
#   A = P V                        exact integer accumulators, scale 2**-(in_width-1) * v_scale
#   O = requantize(A, m, s)        (m, s) = quantize_multiplier(that scale / o_scale)


@dataclass(frozen=True)
class AttentionConstants:
    """Integers handed to :class:`hw.attention_unit.AttentionUnit` for one problem.

    Attributes
    ----------
    softmax : SoftmaxConstants
        For the scores, at scale ``q_scale * k_scale / sqrt(d)``.
    multiplier, shift : int
        Requantization of ``P V`` to the output scale.
    """

    softmax: SoftmaxConstants
    multiplier: int
    shift: int


def _attention_cfg(cfg):
    if cfg is None:
        return AccelConfig()
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Attention config must be an AccelConfig, not {cfg!r}")
    return cfg


def attention_constants(q_scale, k_scale, v_scale, o_scale, head_dim, cfg=None):
    """The integer constants of :func:`attention`: the one place its float scales become
    integers. Raises :exc:`ValueError` for a scale that is not positive and finite, or whose
    constants do not fit the configured widths."""
    cfg = _attention_cfg(cfg)
    for what, s in (("q_scale", q_scale), ("k_scale", k_scale), ("v_scale", v_scale),
                    ("o_scale", o_scale)):
        if isinstance(s, bool) or not isinstance(s, int | float | np.floating | np.integer):
            raise TypeError(f"Attention {what} must be a real number, not {s!r}")
        if not (np.isfinite(s) and s > 0):
            raise ValueError(f"Attention {what} must be a positive finite number, not {s!r}")
    sm_cfg = cfg.attention_softmax
    k = softmax_constants(q_scale * k_scale / math.sqrt(head_dim), sm_cfg)
    acc_width = cfg.attention_gemm.acc_width
    real = 2.0 ** -sm_cfg.out_width * v_scale / o_scale
    m, s = quantize_multiplier(real, mult_width=cfg.requant.mult_width,
                               max_shift=acc_width + cfg.requant.mult_width - 1)
    return AttentionConstants(k, m, s)


def check_attention_input(q, k, v, cfg=None):
    """Validate :func:`attention`'s operands; return them as int64 arrays of shape (H, L, d)
    and whether the input had a head axis."""
    cfg = _attention_cfg(cfg)
    w = cfg.array.in_width
    q = check_int_array("Attention q", q, w)
    k = check_int_array("Attention k", k, w)
    v = check_int_array("Attention v", v, w)
    if q.ndim not in (2, 3):
        raise ValueError(f"Attention q must have shape (L, d) or (heads, L, d), not {q.shape}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"Attention q, k and v must have the same shape, not {q.shape}, "
                         f"{k.shape} and {v.shape}")
    heads = q.ndim == 3
    if not heads:
        q, k, v = q[None], k[None], v[None]
    H, L, d = q.shape
    at = cfg.attention
    if H < 1:
        raise ValueError(f"Attention heads must be at least 1, not {H}")
    if not 1 <= L <= at.max_seq_len:
        raise ValueError(f"Attention sequence length must be from 1 to {at.max_seq_len} "
                         f"(attention.max_seq_len), not {L}")
    if not 1 <= d <= at.max_head_dim:
        raise ValueError(f"Attention head dimension must be from 1 to {at.max_head_dim} "
                         f"(attention.max_head_dim), not {d}")
    return q, k, v, heads


def attention(q, k, v, q_scale, k_scale, v_scale, o_scale, *, causal=False, keys=None,
              cfg=None):
    """Integer-only attention ``softmax(Q K^T / sqrt(d)) V``, head by head.

    Parameters
    ----------
    q, k, v : array of int
        Signed ``cfg.array.in_width``-bit, shape ``(L, d)`` or ``(heads, L, d)``.
    q_scale, k_scale, v_scale : float
        Their scales.
    o_scale : float
        The scale of the int8 output.
    causal : bool
        Mask scores above the diagonal (query i sees keys 0..i).
    keys : int or None
        Keys every query sees, 1 to L (a padded sequence's length; the top's ``ATT_KEYS``):
        the scores of keys ``j >= keys`` are masked as the causal mask masks them. None: L.
    cfg : AccelConfig or None
        Uses ``array``, ``attention``, ``softmax.variant`` and ``requant``.

    Returns
    -------
    o : array of int64
        Shape of ``q``, signed ``requant.out_width``-bit.
    o_scale : float
    """
    cfg = _attention_cfg(cfg)
    q, k, v, heads = check_attention_input(q, k, v, cfg)
    H, L, d = q.shape
    consts = attention_constants(q_scale, k_scale, v_scale, o_scale, d, cfg)
    if keys is not None:
        keys = check_keys(keys, L)
    o = attention_from_constants(q, k, v, consts, causal=causal, keys=keys, cfg=cfg)
    return (o if heads else o[0]), float(o_scale)


def check_keys(keys, L):
    """Check the keys every query sees (:func:`attention`'s ``keys``): an integer from 1 to
    ``L``. Returns it as an int."""
    if isinstance(keys, bool) or not isinstance(keys, int | np.integer):
        raise TypeError(f"Attention keys must be an integer, not {keys!r}")
    if not 1 <= keys <= L:
        raise ValueError(f"Attention keys must be from 1 to {L} (the sequence length), "
                         f"not {keys}")
    return int(keys)


def attention_from_constants(q, k, v, consts, *, causal, cfg, keys=None, out_width=None):
    """The integer part of :func:`attention`: ``o`` (H, L, d) for int64 ``q``, ``k``, ``v`` of
    shape (H, L, d), already checked, and constants ``consts`` (what the controller computes
    from its registers). ``keys`` (None, an int, or one int a head, each 1 to L, checked by
    the caller) masks the scores of keys ``j >= keys``; ``out_width`` (default
    ``requant.out_width``) narrows the output's saturation."""
    L, n = q.shape[1], k.shape[1]      # queries and keys (n = L but in tests of the spec)
    sm_cfg = cfg.attention_softmax
    s = exact_matmul(q, k.transpose(0, 2, 1))
    seen = np.ones((1, L, n), dtype=bool)
    if causal:
        seen = seen & np.tri(L, n, dtype=bool)
    if keys is not None:
        seen = seen & (np.arange(n) < np.reshape(keys, (-1, 1, 1)))
    s = np.where(seen, s, -(1 << (sm_cfg.in_width - 1)))
    p = softmax_from_constants(s, consts.softmax, sm_cfg)
    acc = exact_matmul(p, v)
    out_width = cfg.requant.out_width if out_width is None else out_width
    return requantize(acc, consts.multiplier, consts.shift,
                      acc_width=cfg.attention_gemm.acc_width,
                      mult_width=cfg.requant.mult_width, out_width=out_width)
