"""Bit-exact golden models of the operations a transformer program runs on the accelerator,
beyond the single units of :mod:`sim.golden`: a GEMM with a bias preload and per-channel
requantization, a two-scale residual add, batched attention with a key-length mask, and the
pooling sum.

Each function is the ISA-level spec of one operation: integer operands of stated widths in,
integers out, one rounding rule (:func:`sim.golden.round_shift`, round half up) and saturation
(:func:`sim.golden.saturate`) everywhere. The constants are derived from float scales by the
``*_constants`` helpers here, the one place where floats become integers for these ops.
"""

import numpy as np

from hw.config import AccelConfig

from .golden import (
    attention_constants,
    attention_from_constants,
    check_attention_input,
    check_int_array,
    exact_matmul,
    quantize_multiplier,
    round_shift,
    saturate,
)

__all__ = [
    "exact_matmul",
    "check_channel_constants",
    "requantize_channels",
    "channel_constants",
    "linear_passes",
    "split_digits",
    "linear_acc_width",
    "linear",
    "residual_constants",
    "residual_add",
    "check_lengths",
    "masked_attention",
    "pool_sum",
]


def check_channel_constants(what, multipliers, shifts, channels, *, mult_width, max_shift):
    """Check per-channel ``(multipliers, shifts)``: one each per channel, ``m`` unsigned
    ``mult_width``-bit, ``0 <= s <= max_shift``. Returns them as int64 arrays."""
    m = check_int_array(f"{what} multipliers", multipliers, mult_width, signed=False, ndim=1)
    s = check_int_array(f"{what} shifts", shifts, 7, signed=False, ndim=1)
    for name, arr in (("multipliers", m), ("shifts", s)):
        if arr.shape != (channels,):
            raise ValueError(f"{what} {name} must have shape ({channels},) (one per channel), "
                             f"not {arr.shape}")
    if (s > max_shift).any():
        raise ValueError(f"{what} shifts must be at most {max_shift}, not {s.max()}")
    return m, s


def requantize_channels(x, multipliers, shifts, *, in_width=32, mult_width=16, out_width=8):
    """Requantize per channel (the last axis): ``y[..., j] = saturate(round_shift(x[..., j] *
    m_j, s_j), out_width)``.

    The hardware is the requantizer of :mod:`hw.requant` with its multiplier and shift read per
    output column from a small table, instead of one register pair. With every ``m_j`` and
    ``s_j`` equal it is :func:`sim.golden.requantize` exactly.

    Parameters
    ----------
    x : array of int, shape (..., C)
        Signed ``in_width``-bit inputs.
    multipliers, shifts : array of int, shape (C,)
        Unsigned ``mult_width``-bit ``m_j``; ``0 <= s_j < in_width + mult_width``.
    in_width, mult_width, out_width : int
        ``in_width + mult_width`` must be at most 62 (the product is exact in int64).

    Returns
    -------
    numpy.ndarray of int64, signed ``out_width``-bit (saturated, never wrapped).
    """
    if in_width + mult_width > 62:
        raise ValueError(f"Requantizer in_width + mult_width must be at most 62, not "
                         f"{in_width + mult_width}")
    x = check_int_array("Requantizer input", x, in_width)
    if x.ndim == 0:
        raise ValueError(f"Requantizer input must have a channel axis, not shape {x.shape}")
    m, s = check_channel_constants("Requantizer", multipliers, shifts, x.shape[-1],
                                   mult_width=mult_width, max_shift=in_width + mult_width - 1)
    return saturate(round_shift(x * m, s), out_width)


def channel_constants(real, *, mult_width=16, max_shift=62):
    """Per-channel dyadic ``(multipliers, shifts)`` for the real ratios ``real`` (input scale
    over output scale, one per channel), each from :func:`sim.golden.quantize_multiplier`."""
    pairs = [quantize_multiplier(r, mult_width=mult_width, max_shift=max_shift)
             for r in np.asarray(real, dtype=np.float64).ravel()]
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))


def linear_passes(x_width, in_width=8):
    """Engine passes of a GEMM whose activations are ``x_width`` bits on an ``in_width``-bit
    array: each pass takes one signed digit of ``in_width - 1`` bits (the top one keeps the
    sign), so ``ceil((x_width - 1) / (in_width - 1))`` passes; 1 for INT8, 2 for 15-bit."""
    return max(1, -(-(x_width - 1) // (in_width - 1)))


def split_digits(x, passes, in_width=8):
    """Signed base-``2**in_width`` digits of ``x``, most significant first: ``x = sum(d_i *
    2**(in_width * (passes - 1 - i)))``. Each low digit is ``x - round_shift(x, in_width) <<
    in_width`` in ``[-2**(in_width-1), 2**(in_width-1))``; the top digit is what remains."""
    digits = []
    for _ in range(passes - 1):
        hi = round_shift(x, in_width)
        digits.append(x - (hi << in_width))
        x = hi
    return [x] + digits[::-1]


def linear_acc_width(bias, k, x_width=8, in_width=8):
    """Smallest signed accumulator width that holds every partial sum of :func:`linear`:
    ``|bias_j| + k * 2**(x_width-1) * 2**(in_width-1)`` for ``x_width``-bit activations and
    ``in_width``-bit weights, whatever the operands (the partial sums of a split GEMM are
    bounded by the same, since each earlier pass's sum is shifted by the digit weight; so are
    the accelerator's, chunk by chunk, whose terms are each ``x[i,k] * w[k,j]`` or a chunk's
    low digit times ``w[k,j]``)."""
    top = int(np.abs(np.asarray(bias, dtype=np.int64)).max(initial=0)) \
        + (k << (x_width - 1 + in_width - 1))
    return top.bit_length() + 1


def linear(x, w, bias, multipliers, shifts, *, cfg=None, out_width=8, k_chunk=None,
           x_width=None):
    """GEMM with a bias preload, then per-output-channel requantization.

    Spec (all integers; P = :func:`linear_passes` of ``x_width``, digits ``x_p`` of ``x`` from
    :func:`split_digits`, most significant first, each an ``in_width``-bit operand)::

        acc[i, j] = bias[j] (P = 1) or 0                      preloaded into the accumulator
        for each pass p (P > 1: the activations' signed digits):
            acc = acc << in_width (p > 0), plus bias[j] in the last pass
            for each chunk c of K (k_chunk rows of w at a time):
                acc[i, j] += sum_k x_p[i, k] * w[k, j]        one engine call, exact
        y[i, j] = saturate(round_shift(acc[i, j] * m_j, s_j), out_width)

    so ``acc = x @ w + bias`` exactly. The accumulator is ``cfg.acc_width`` bits; it must hold
    :func:`linear_acc_width`, or :exc:`ValueError` names the width to raise. Splitting K into
    chunks, each starting from the previous chunk's accumulators, is how a compiler runs a K
    above ``gemm.max_k``; splitting the activations into digits is how it runs activations
    wider than the array's operands (a shifted preload between passes). The result is the
    same integers either way.

    Parameters
    ----------
    x : array of int, shape (M, K)
        Signed ``x_width``-bit activations.
    w : array of int, shape (K, N)
        Signed ``cfg.array.in_width``-bit weights (per-output-channel scales live in ``m_j``).
    bias : array of int, shape (N,)
        Signed 32-bit bias in accumulator units.
    multipliers, shifts : array of int, shape (N,)
        Per-channel requantization, ``cfg.requant.mult_width``-bit multipliers.
    cfg : AccelConfig or None
        The engine (default ``AccelConfig()``); M, N and ``k_chunk`` must be within its
        ``gemm`` limits.
    out_width : int
        Output width, at most ``cfg.requant.out_width``.
    k_chunk : int or None
        K rows per engine call (default: all of K, which must then be within ``gemm.max_k``).
    x_width : int or None
        Activation width (default ``cfg.array.in_width``: one pass).
    """
    cfg = AccelConfig() if cfg is None else cfg
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Linear config must be an AccelConfig, not {cfg!r}")
    iw = cfg.array.in_width
    x_width = iw if x_width is None else x_width
    passes = linear_passes(x_width, iw)
    x = check_int_array("Linear input", x, x_width, ndim=2)
    w = check_int_array("Linear weight", w, iw, ndim=2)
    M, K = x.shape
    if w.shape[0] != K:
        raise ValueError(f"Linear weight must have {K} rows (the input's K), not {w.shape[0]}")
    N = w.shape[1]
    bias = check_int_array("Linear bias", bias, 32, ndim=1)
    if bias.shape != (N,):
        raise ValueError(f"Linear bias must have shape ({N},), not {bias.shape}")
    if out_width > cfg.requant.out_width:
        raise ValueError(f"Linear output width must be at most {cfg.requant.out_width} "
                         f"(requant.out_width), not {out_width}")
    need = linear_acc_width(bias, K, x_width, iw)
    if need > cfg.acc_width:
        raise ValueError(f"GEMM acc_width must be at least {need} for K={K} with this bias "
                         f"(gemm.acc_width), not {cfg.acc_width}")
    k_chunk = K if k_chunk is None else k_chunk
    if not 1 <= k_chunk <= cfg.gemm.max_k:
        raise ValueError(f"GEMM K must be at most {cfg.gemm.max_k} (gemm.max_k), not {k_chunk}")
    for what, value, limit in (("M", M, cfg.gemm.max_m), ("N", N, cfg.gemm.max_n)):
        if value > limit:
            raise ValueError(f"GEMM {what} must be at most {limit} "
                             f"(gemm.max_{what.lower()}), not {value}")
    acc = np.zeros((M, N), dtype=np.int64)
    for p, digit in enumerate(split_digits(x, passes, iw)):
        acc <<= iw if p else 0
        if p == passes - 1:
            acc += bias
        for k0 in range(0, K, k_chunk):
            acc += exact_matmul(digit[:, k0:k0 + k_chunk], w[k0:k0 + k_chunk])
    return requantize_channels(acc, multipliers, shifts, in_width=cfg.acc_width,
                               mult_width=cfg.requant.mult_width, out_width=out_width)


def residual_constants(a_scale, b_scale, out_scale, *, mult_width=16):
    """``(ma, mb, shift)`` for :func:`residual_add`: ``ma / 2**shift ~ a_scale / out_scale``
    and ``mb / 2**shift ~ b_scale / out_scale``, with the larger multiplier as wide as fits
    ``mult_width`` bits (one shift for both, as in the hardware's one adder)."""
    ra, rb = a_scale / out_scale, b_scale / out_scale
    top = (1 << mult_width) - 1
    if not (np.isfinite(ra) and np.isfinite(rb) and ra > 0 and rb > 0):
        raise ValueError(f"Residual scales must be positive and finite, not {a_scale}, "
                         f"{b_scale} -> {out_scale}")
    if round(max(ra, rb)) > top:
        raise ValueError(f"Residual scale ratio must be at most {top}, not {max(ra, rb)}")
    shift = 0
    while shift < 62 and round(max(ra, rb) * (1 << (shift + 1))) <= top:
        shift += 1
    return round(ra * (1 << shift)), round(rb * (1 << shift)), shift


def residual_add(a, b, ma, mb, shift, *, in_width=16, mult_width=16, out_width=16):
    """Add two tensors held at two scales into a third: ``y = saturate(round_shift(a*ma +
    b*mb, shift), out_width)``.

    Two ``in_width x mult_width`` multipliers, one adder, one rounding shift and a saturation:
    the real sum ``a*Sa + b*Sb`` on the output grid ``So`` when ``ma/2**shift ~ Sa/So`` and
    ``mb/2**shift ~ Sb/So`` (:func:`residual_constants`).

    Parameters
    ----------
    a, b : array of int, same shape
        Signed ``in_width``-bit.
    ma, mb : int
        Unsigned ``mult_width``-bit multipliers.
    shift : int
        ``0 <= shift <= in_width + mult_width``.
    """
    a = check_int_array("Residual input a", a, in_width)
    b = check_int_array("Residual input b", b, in_width)
    if a.shape != b.shape:
        raise ValueError(f"Residual inputs must have the same shape, not {a.shape} and "
                         f"{b.shape}")
    for what, m in (("ma", ma), ("mb", mb)):
        if isinstance(m, bool) or not isinstance(m, int | np.integer) \
                or not 0 <= m < (1 << mult_width):
            raise ValueError(f"Residual multiplier {what} must be an integer from 0 to "
                             f"{(1 << mult_width) - 1}, not {m!r}")
    if isinstance(shift, bool) or not isinstance(shift, int | np.integer) \
            or not 0 <= shift <= in_width + mult_width:
        raise ValueError(f"Residual shift must be an integer from 0 to "
                         f"{in_width + mult_width}, not {shift!r}")
    return saturate(round_shift(a * int(ma) + b * int(mb), int(shift)), out_width)


def check_lengths(what, lengths, B, L):
    """Check a padded batch's sequence lengths: ``B`` integers from 1 to ``L``. Returns them
    as an int64 array; a :exc:`ValueError` starts with ``what``."""
    lengths = check_int_array(what, lengths, 32, ndim=1)
    if lengths.shape != (B,) or (lengths < 1).any() or (lengths > L).any():
        raise ValueError(f"{what} must be {B} values from 1 to {L}, not {lengths.tolist()}")
    return lengths


def masked_attention(q, k, v, lengths, q_scale, k_scale, v_scale, o_scale, *, cfg=None,
                     out_width=None):
    """Integer attention over a padded batch: ``softmax(Q K^T / sqrt(d)) V`` per sequence and
    head, each query seeing only its sequence's first ``lengths[b]`` keys.

    Spec: for each batch item b, exactly :func:`sim.golden.attention` on its heads with
    ``keys=lengths[b]``: the scores of keys ``j >= lengths[b]`` replaced by ``-2**(w-1)`` (w
    the softmax input width), as the causal mask is: past the range-reduction clamp, so their
    exponentials are exactly 0 and they change neither the row max nor the row sum. Padded
    query rows are computed like the others (and ignored downstream). With every length equal
    to L it is :func:`sim.golden.attention` on each item, bit for bit.

    Parameters
    ----------
    q, k, v : array of int, shape (B, heads, L, d)
        Signed ``cfg.array.in_width``-bit; L within ``attention.max_seq_len``.
    lengths : array of int, shape (B,)
        Valid keys per item, 1 to L.
    q_scale, k_scale, v_scale, o_scale : float
    cfg : AccelConfig or None
    out_width : int or None
        Output width, at most ``requant.out_width`` (the default); a program feeding the
        output to a GEMM asks for ``array.in_width``.

    Returns
    -------
    o : array of int64, shape (B, heads, L, d)
        Signed ``out_width``-bit, at ``o_scale``.
    """
    cfg = AccelConfig() if cfg is None else cfg
    out_width = cfg.requant.out_width if out_width is None else out_width
    if not 2 <= out_width <= cfg.requant.out_width:
        raise ValueError(f"Attention output width must be from 2 to {cfg.requant.out_width} "
                         f"(requant.out_width), not {out_width}")
    q, k, v = (np.asarray(t) for t in (q, k, v))
    if q.ndim != 4:
        raise ValueError(f"Attention q must have shape (batch, heads, L, d), not {q.shape}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"Attention q, k and v must have the same shape, not {q.shape}, "
                         f"{k.shape} and {v.shape}")
    B, H, L, d = q.shape
    qf, kf, vf, _ = check_attention_input(*(t.reshape(B * H, L, d) for t in (q, k, v)), cfg)
    lengths = check_lengths("Attention lengths", lengths, B, L)
    consts = attention_constants(q_scale, k_scale, v_scale, o_scale, d, cfg)
    o = attention_from_constants(qf, kf, vf, consts, causal=False, keys=np.repeat(lengths, H),
                                 cfg=cfg, out_width=out_width)
    return o.reshape(B, H, L, d)


def pool_sum(x, lengths, *, in_width=16):
    """Sum of each sequence's first ``lengths[b]`` rows: ``(B, L, C) -> (B, C)``, exact.

    Mean pooling followed by L2 normalization needs only this sum: the division by the length
    is a positive factor that the normalization removes.
    """
    x = check_int_array("Pooling input", x, in_width, ndim=3)
    lengths = check_lengths("Pooling lengths", lengths, *x.shape[:2])
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
    return (x * mask[..., None]).sum(axis=1)
