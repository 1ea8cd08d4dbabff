"""The golden integer LayerNorm: exact moments, a bitwise square root, one reciprocal a row, and
its constants."""

import dataclasses
import math

import numpy as np

from hw.config import LayerNormConfig

from .integers import bit_length, check_int_array, round_shift, saturate

# Integer LayerNorm. Exact mean and variance in integers (no rounded mean), an exact bitwise
# square root on a normalized 32-bit variance, one reciprocal per row, then a per-channel integer
# gamma/beta. The floats (scale, gamma, beta) become integers in layernorm_constants only.

#: Width of the integer square root's argument in the LayerNorm unit (the variance is normalized
#: into [2**30, 2**32) before the root, so ``std`` always has 16 significant bits).
LAYERNORM_SQRT_WIDTH = 32
#: ``factor = floor(2**LAYERNORM_RECIP_BITS / std)``; with ``std`` in [2**15, 2**16) the factor is
#: in (2**16, 2**17], 18 bits unsigned.
LAYERNORM_RECIP_BITS = 32


def isqrt(n, width=32):
    """Exact ``floor(sqrt(n))`` elementwise, for integers ``0 <= n < 2**width``.

    The bitwise shift-subtract method, one result bit per step (``width/2`` steps), mirrored by
    the hardware in :mod:`hw.layernorm`::

        res, bit = 0, 2**(2*ceil(width/2) - 2)
        while bit:
            if n >= res + bit: n -= res + bit; res = res//2 + bit
            else:              res = res//2
            bit //= 4
    """
    if isinstance(width, bool) or not isinstance(width, int) or not 2 <= width <= 62:
        raise ValueError(f"Square root width must be an integer from 2 to 62, not {width!r}")
    n = check_int_array("Square root argument", n, width, signed=False)
    rem = n.copy()
    res = np.zeros_like(n)
    bit = 1 << (2 * ((width + 1) // 2) - 2)
    while bit:
        t = res + bit
        take = rem >= t
        rem = np.where(take, rem - t, rem)
        res = np.where(take, (res >> 1) + bit, res >> 1)
        bit >>= 2
    return res


@dataclasses.dataclass(frozen=True)
class LayerNormConstants:
    """The integers the LayerNorm unit receives, derived from floats in one place.

    Attributes
    ----------
    length : int
        Row length ``L``.
    gamma : tuple of int
        Per-channel integer gamma, ``round(gamma_j / y_scale * 2**G)``, signed ``gamma_width``-bit.
    beta : tuple of int
        Per-channel integer beta, ``round(beta_j / y_scale * 2**(F + G))``, signed
        ``beta_width``-bit (F = ``norm_frac``, G = ``gamma_shift``).
    shift : int
        ``F + G``: the final rounding shift.
    y_scale : float
        Output scale: real output = ``y * y_scale``.
    """

    length: int
    gamma: tuple
    beta: tuple
    shift: int
    y_scale: float


def _check_float_vector(what, v, length):
    if v is None:
        return None
    v = np.asarray(v)
    if np.issubdtype(v.dtype, np.integer):
        # The γ/β contract: real values here; the unit's integers only as LayerNormConstants
        # (layernorm(..., constants=)). An int8 γ is never silently taken as real values.
        raise TypeError(f"LayerNorm {what} must be real values (a float array; pass integer "
                        f"parameters as LayerNormConstants through constants=), not of dtype "
                        f"{v.dtype}")
    if v.dtype == np.bool_ or not np.issubdtype(v.dtype, np.floating):
        raise TypeError(f"LayerNorm {what} must be an array of numbers, not of dtype {v.dtype}")
    if v.shape != (length,):
        raise ValueError(f"LayerNorm {what} must have shape ({length},) (the row length), "
                         f"not {v.shape}")
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError(f"LayerNorm {what} must be finite, not {v[~np.isfinite(v)][0]}")
    return v


def layernorm_constants(scale, cfg=None, gamma=None, beta=None, *, length):
    """Turn the float parameters of a LayerNorm into the unit's integers.

    LayerNorm is invariant to the input scale (``eps`` is taken as 0, as in I-BERT), so
    ``scale`` is only checked. The output scale covers the largest possible output exactly:
    ``|z| <= sqrt(L-1)`` for a normalized row, so
    ``y_scale = (max|gamma| * max(sqrt(L-1), 1) + max|beta|) / (2**(out_width-1) - 1)``
    (1.0 if that is 0) and nothing saturates except by rounding. Hence
    ``|gamma_j| / y_scale`` and ``|beta_j| / y_scale`` are at most ``2**(out_width-1) - 1`` and
    ``G = cfg.gamma_shift`` fits both integer widths.

    Parameters
    ----------
    scale : float
        Input scale, > 0 and finite.
    cfg : LayerNormConfig or None
        Widths; default ``LayerNormConfig()``.
    gamma, beta : array of float, shape (length,), or None
        Affine parameters (None: ones and zeros).
    length : int
        Row length, 1 to ``cfg.max_len``.
    """
    cfg = LayerNormConfig() if cfg is None else cfg
    if not isinstance(cfg, LayerNormConfig):
        raise TypeError(f"LayerNorm config must be a LayerNormConfig, not {cfg!r}")
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.integer | np.floating):
        raise TypeError(f"LayerNorm scale must be a number, not {scale!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"LayerNorm scale must be a positive finite number, not {scale}")
    if isinstance(length, bool) or not isinstance(length, int | np.integer):
        raise TypeError(f"LayerNorm row length must be an integer, not {length!r}")
    if not 1 <= length <= cfg.max_len:
        raise ValueError(f"LayerNorm row length must be from 1 to {cfg.max_len} (max_len), "
                         f"not {length}")
    length = int(length)
    g = _check_float_vector("gamma", gamma, length)
    b = _check_float_vector("beta", beta, length)
    g = np.ones(length) if g is None else g
    b = np.zeros(length) if b is None else b
    top = (1 << (cfg.out_width - 1)) - 1
    bound = np.abs(g).max() * max(math.sqrt(length - 1), 1.0) + np.abs(b).max()
    y_scale = float(bound / top) if bound > 0 else 1.0
    G, F = cfg.gamma_shift, cfg.norm_frac
    g_int = np.round(g / y_scale * (1 << G)).astype(np.int64)
    b_int = np.round(b / y_scale * (1 << (F + G))).astype(np.int64)
    # Both always fit (see the docstring); checked anyway, this is where floats end.
    check_int_array("LayerNorm integer gamma", g_int, cfg.gamma_width)
    check_int_array("LayerNorm integer beta", b_int, cfg.beta_width)
    return LayerNormConstants(length=length, gamma=tuple(int(v) for v in g_int),
                              beta=tuple(int(v) for v in b_int), shift=F + G, y_scale=y_scale)


def layernorm_row_stats(q):
    """Per-row integers the unit computes once per row, for rows on the last axis of ``q``.

    Returns a dict of int64 arrays (shape ``q.shape[:-1]``):

    * ``s1 = sum(q)``, ``s2 = sum(q**2)``;
    * ``v = L*s2 - s1**2 = L**2 * sum((q - mean)**2) / L``, exact and >= 0;
    * ``e = floor((32 - bit_length(v)) / 2)``, so ``v * 4**e`` lies in [2**30, 2**32)
      (a right shift, truncating, when ``e < 0``);
    * ``std = isqrt(v * 4**e)`` in [2**15, 2**16), about ``sqrt(v) * 2**e``;
    * ``factor = floor(2**32 / std)`` (0 when ``v == 0``);
    * ``shift = F - e``, the rounding shift that brings ``(L*q - s1) * factor`` to ``z * 2**F``.
    """
    L = q.shape[-1]
    s1 = q.sum(axis=-1)
    s2 = (q * q).sum(axis=-1)
    v = L * s2 - s1 * s1
    e = (LAYERNORM_SQRT_WIDTH - bit_length(v)) // 2
    vn = np.where(e >= 0, v << np.maximum(2 * e, 0), v >> np.maximum(-2 * e, 0))
    std = isqrt(vn, LAYERNORM_SQRT_WIDTH)
    factor = np.where(v > 0, (1 << LAYERNORM_RECIP_BITS) // np.maximum(std, 1), 0)
    return {"s1": s1, "s2": s2, "v": v, "e": e, "std": std, "factor": factor,
            "shift": LayerNormConfig.norm_frac - e}


def check_layernorm_constants(consts, cfg, length):
    """Check integer LayerNorm parameters given directly (``layernorm(..., constants=)``)
    against ``cfg`` and the row length; return them."""
    if not isinstance(consts, LayerNormConstants):
        raise TypeError(f"LayerNorm constants must be a LayerNormConstants, not {consts!r}")
    if consts.length != length:
        raise ValueError(f"LayerNorm constants must be for rows of {length}, not "
                         f"{consts.length}")
    if consts.shift != cfg.norm_frac + cfg.gamma_shift:
        raise ValueError(f"LayerNorm constants shift must be {cfg.norm_frac + cfg.gamma_shift} "
                         f"(norm_frac + gamma_shift), not {consts.shift}")
    check_int_array("LayerNorm integer gamma", np.array(consts.gamma), cfg.gamma_width)
    check_int_array("LayerNorm integer beta", np.array(consts.beta), cfg.beta_width)
    return consts


def check_layernorm_input(q, scale, gamma=None, beta=None, cfg=None, *, constants=None):
    """Validate :func:`layernorm`'s arguments; return ``(q as int64, constants, cfg)``.

    Shared by the golden model, the simulation runner and the host driver, so all three refuse
    the same inputs with the same messages.
    """
    cfg = LayerNormConfig() if cfg is None else cfg
    if not isinstance(cfg, LayerNormConfig):
        raise TypeError(f"LayerNorm config must be a LayerNormConfig, not {cfg!r}")
    q = check_int_array("LayerNorm input", q, cfg.in_width)
    if q.ndim == 0 or q.size == 0:
        raise ValueError(f"LayerNorm input must have at least one non-empty row, not "
                         f"shape {q.shape}")
    if constants is not None:
        if gamma is not None or beta is not None:
            raise ValueError("LayerNorm parameters must be given once, as real gamma/beta or "
                             "as integer constants, not both")
        return q, check_layernorm_constants(constants, cfg, q.shape[-1]), cfg
    return q, layernorm_constants(scale, cfg, gamma, beta, length=q.shape[-1]), cfg


def layernorm(q, scale, gamma=None, beta=None, cfg=None, *, constants=None):
    """Integer LayerNorm over the last axis: ``(y, y_scale)`` with ``y * y_scale`` close to
    ``gamma * (x - mean(x)) / std(x) + beta`` for ``x = q * scale`` (population std, eps = 0).

    Algorithm (all integers; ``L`` the row length, ``F = cfg.norm_frac``, constants from
    :func:`layernorm_constants`, row integers from :func:`layernorm_row_stats`):

    1. ``d_j = L*q_j - s1`` is ``L * (q_j - mean)`` exactly: no rounded mean (I-BERT's
       ``q - round(mean)`` is off by up to half a unit, which ruins rows of small variance);
    2. ``z_j * 2**F ~ zq_j = round_shift(d_j * factor, F - e)``, because
       ``z_j = d_j / sqrt(v)`` and ``factor ~ 2**(32 - e) / sqrt(v)``; 0 for a zero-variance row;
    3. ``y_j = saturate(round_shift(zq_j * gamma_int_j + beta_int_j, F + G), out_width)``.

    Zero-variance rows (all equal, and every row of length 1) give ``z = 0``, so
    ``y = round(beta / y_scale)``.

    Parameters
    ----------
    q : array of int, shape (..., L)
        Signed ``cfg.in_width``-bit inputs, rows on the last axis, ``1 <= L <= cfg.max_len``.
    scale : float
        Input scale (> 0); the result does not depend on it.
    gamma, beta : array of float, shape (L,), or None
        Real affine parameters (None: ones and zeros), turned into the unit's integers by
        :func:`layernorm_constants`. Integer arrays are refused (:exc:`TypeError`): the unit's
        integers are passed as ``constants`` instead, never guessed from a dtype.
    cfg : LayerNormConfig or None
        Default ``LayerNormConfig()``.
    constants : LayerNormConstants or None
        The integer parameters themselves (as a compiled program holds them), checked against
        ``cfg``; then ``gamma`` and ``beta`` must be None and the output scale is
        ``constants.y_scale``.
    """
    q, consts, cfg = check_layernorm_input(q, scale, gamma, beta, cfg, constants=constants)
    return layernorm_from_integers(q, consts.gamma, consts.beta, cfg), consts.y_scale


def layernorm_from_integers(q, gamma, beta, cfg):
    """The integer part of :func:`layernorm`: ``y`` for int64 rows ``q`` (last axis), already
    checked, and the integer per-channel ``gamma``/``beta`` the unit holds (signed
    ``gamma_width``/``beta_width``-bit; the final shift is ``norm_frac + gamma_shift``)."""
    st = layernorm_row_stats(q)
    L = q.shape[-1]
    factor = st["factor"][..., None]
    shift = st["shift"][..., None]
    n = (L * q - st["s1"][..., None]) * factor
    zq = (n + ((np.int64(1) << shift) >> 1)) >> shift
    p = zq * np.array(gamma, dtype=np.int64) + np.array(beta, dtype=np.int64)
    return saturate(round_shift(p, cfg.norm_frac + cfg.gamma_shift), cfg.out_width)
