"""The golden integer softmax (I-BERT i-exp or I-ViT Shiftmax) and its constants."""

import math
from dataclasses import dataclass

import numpy as np

from hw.config import SoftmaxConfig

from .integers import check_int_array, round_shift

# Integer-only softmax, rows on the last axis. The whole datapath, for a row of scores q:
#
#   x  = max(q) - q                                  distance from the row max, 0 <= x < 2**w
#   x' = min(round_shift(x, sr) << sl, 2**19 - 1)    rescaled so that one unit is S' (below)
#   y  = x'                  ("ibert")   or   x' + (x' >> 1) - (x' >> 4)   ("shift", x*log2(e))
#   y  = min(y, 30 * D)                              clamp at N = 30 range reductions
#   z, r = divmod(y, D)                              5-bit quotient: 5 compare-subtract steps
#   t  = B - r
#   v  = t*t + C             ("ibert")   or   t                            ("shift")
#   e  = v >> (z + se)                               0 <= e < 2**16; e of the row max >= 2**14
#   f  = 2**K // sum(e)                              K = out_width + 20, once per row
#   p  = min((e*f + 2**(K-out_width-1)) >> (K-out_width), 2**out_width - 1)
#
# Floats become integers in exactly one place, softmax_constants(): the input scale S is split
# into a power of two and S' in [2**-14, 2**-13), so every constant has a width that does not
# depend on S (the shift (sr, sl) only rescales x, exactly when sl > 0):
#   "ibert" (I-BERT i-exp, exp(p) ~ 0.3585 (p + 1.353)**2 + 0.344 on (-ln2, 0]):
#       D = round(ln2/S') in [5678, 11357], B = round(1.353/S') in [11083, 22167],
#       C = round(0.344/(0.3585 S'**2)) < 2**28, se = bitlen(B*B + C) - 16 in [12, 14];
#       v <= B*B + C < 2**29.5, so v >> se < 2**16 and the row max gives e >= 2**15.
#   "shift" (I-ViT Shiftmax, 2**p ~ 1 + p/2 on (-1, 0]):
#       D = round(1/S') in [8192, 16384], B = 2*D in [16384, 32768], C = 0, se = 0;
#       t in (D, 2D] <= 2**15, and the row max gives e = 2D >= 2**14.
# Width proof (also asserted below): y <= 30*D < 2**19; sum(e) < max_len * 2**16 <= 2**28;
# sum(e) >= 2**14, so f <= 2**(K-14) = 2**(out_width+6) (out_width + 7 bits) and
# e*f <= 2**K * e/sum(e) <= 2**K <= 2**36; every intermediate fits int64 (and the RTL widths).
# Rounding: f is floored, which errs by at most e/2**(K-out_width) < 2**-4 output LSB; the
# output rounds half up (I-BERT floors), so it is within about 0.5 LSB + the exp error.
# A probability of 1.0 gives 2**out_width before saturation: it saturates, never wraps.
# Masked entries (very negative scores) reach the clamp, get z = 30 and e = 0, so p = 0.

#: I-BERT's i-exp polynomial a*(p + b)**2 + c on (-ln2, 0].
IBERT_EXP_A, IBERT_EXP_B, IBERT_EXP_C = 0.3585, 1.353, 0.344


@dataclass(frozen=True)
class SoftmaxConstants:
    """The integer constants of :func:`softmax`, derived from the input scale by
    :func:`softmax_constants`. The RTL (:class:`hw.softmax.Softmax`) takes them on input ports
    held constant while rows stream.

    Attributes
    ----------
    variant : str
        ``"ibert"`` or ``"shift"``.
    shift_right, shift_left : int
        Rescale of the distance from the row max: ``x' = round_shift(x, shift_right) <<
        shift_left`` (at most one is nonzero), so that one unit of ``x'`` is ``S'``.
    divisor : int
        ``D``: ln2 (``"ibert"``) or 1 (``"shift"``) in units of ``S'``.
    offset : int
        ``B``: I-BERT's ``b = 1.353`` in units of ``S'``, or ``2*D`` for ``"shift"``.
    poly_c : int
        ``C``: I-BERT's ``c/a`` in units of ``S'**2``; 0 for ``"shift"``.
    exp_shift : int
        ``se``: extra right shift making the exponentials 16-bit.
    """

    variant: str
    shift_right: int
    shift_left: int
    divisor: int
    offset: int
    poly_c: int
    exp_shift: int

    @property
    def clamp(self):
        """``30*D``, the range-reduction clamp (the RTL forms it with shifts and adds)."""
        return SoftmaxConfig.CLAMP * self.divisor


def _softmax_cfg(cfg):
    if cfg is None:
        return SoftmaxConfig()
    if not isinstance(cfg, SoftmaxConfig):
        raise TypeError(f"Softmax config must be a SoftmaxConfig, not {cfg!r}")
    return cfg


def softmax_constants(scale, cfg=None):
    """The integer constants of :func:`softmax` for input scale ``scale`` (real = q * scale).

    This is the one place where the float scale becomes integers (see the comment block above
    for the formulas and their ranges).

    Raises :exc:`TypeError` for a scale that is not a real number and :exc:`ValueError` for
    one that is not finite and positive, or outside ``[2**-(14 + in_width), 2)``: below, every
    score difference rounds to nothing; above, the rescaling left shift would overflow its
    configured width.
    """
    cfg = _softmax_cfg(cfg)
    w = cfg.in_width
    lo_exp = -(cfg.SCALE_EXP + w)
    hi_exp = cfg.MAX_LEFT + 1 - cfg.SCALE_EXP
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"Softmax scale must be a real number, not {scale!r}") from None
    if not (np.isfinite(s) and 2.0 ** lo_exp <= s < 2.0 ** hi_exp):
        raise ValueError(
            f"Softmax scale must be a finite number in [2**{lo_exp}, 2**{hi_exp}) for {w}-bit "
            f"scores, not {scale!r}")
    _, e2 = math.frexp(s)              # s in [2**(e2-1), 2**e2)
    left = e2 - 1 + cfg.SCALE_EXP  # x' = x * 2**left, one unit of x' is s' = s / 2**left
    sr, sl = max(0, -left), max(0, left)
    sp = math.ldexp(s, -left)
    assert 2.0 ** -cfg.SCALE_EXP <= sp < 2.0 ** (1 - cfg.SCALE_EXP)
    if cfg.variant == "ibert":
        d = round(math.log(2) / sp)
        b = round(IBERT_EXP_B / sp)
        c = round(IBERT_EXP_C / (IBERT_EXP_A * sp * sp))
        se = (b * b + c).bit_length() - cfg.EXP_WIDTH
    else:
        d = round(1 / sp)
        b, c, se = 2 * d, 0, 0
    k = SoftmaxConstants(cfg.variant, sr, sl, d, b, c, se)
    for name, width in cfg.constant_widths.items():
        value = getattr(k, name)
        if not 0 <= value < (1 << width):
            raise ValueError(f"Softmax scale must give constants that fit their widths, not "
                             f"{scale!r} ({name} = {value} needs more than {width} bits)")
    assert k.clamp < (1 << cfg.X_WIDTH) and b > d
    return k


def softmax_exp(x, k, cfg):
    """The integer exponentials ``e`` of distances ``x >= 0`` from the row max (int64 array),
    for constants ``k`` and config ``cfg``."""
    x = np.asarray(x, dtype=np.int64)
    xs = np.minimum(round_shift(x, k.shift_right) << k.shift_left, (1 << cfg.X_WIDTH) - 1)
    y = xs + (xs >> 1) - (xs >> 4) if k.variant == "shift" else xs
    y = np.minimum(y, k.clamp)
    z, r = np.divmod(y, k.divisor)
    t = k.offset - r
    v = t * t + k.poly_c if k.variant == "ibert" else t
    e = v >> (z + k.exp_shift)
    assert ((e >= 0) & (e < (1 << cfg.EXP_WIDTH))).all()
    return e


def check_softmax_input(q, scale, cfg=None):
    """Validate :func:`softmax`'s arguments; return ``(q as int64, constants, cfg)``."""
    cfg = _softmax_cfg(cfg)
    k = softmax_constants(scale, cfg)
    q = check_int_array("Softmax input", q, cfg.in_width)
    if q.ndim == 0:
        raise ValueError(f"Softmax input must have at least 1 dimension, not shape {q.shape}")
    n = q.shape[-1]
    if not 1 <= n <= cfg.max_len:
        raise ValueError(f"Softmax row length must be from 1 to {cfg.max_len} "
                         f"(softmax.max_len), not {n}")
    return q, k, cfg


def softmax(q, scale, cfg=None):
    """Integer-only softmax over the last axis: ``(p, p_scale)`` with ``p_scale =
    2**-out_width``.

    Parameters
    ----------
    q : array of int
        Scores, signed ``cfg.in_width``-bit; rows of 1 to ``cfg.max_len`` on the last axis.
    scale : float
        Their scale: real score = ``q * scale``.
    cfg : SoftmaxConfig or None
        ``in_width``, ``max_len``, ``out_width`` and ``variant``; the default ``SoftmaxConfig()``.

    Returns
    -------
    p : array of int64
        Unsigned ``out_width``-bit probabilities (1.0 saturates to ``2**out_width - 1``).
    p_scale : float
    """
    q, k, cfg = check_softmax_input(q, scale, cfg)
    return softmax_from_constants(q, k, cfg), 2.0 ** -cfg.out_width


def softmax_from_constants(q, k, cfg):
    """The integer part of :func:`softmax`: probabilities of the rows (last axis) of int64
    ``q``, already checked, for constants ``k`` (what the unit computes from its constant
    ports)."""
    e = softmax_exp(q.max(axis=-1, keepdims=True) - q, k, cfg)
    total = e.sum(axis=-1, keepdims=True)
    assert (total >= (1 << (cfg.EXP_WIDTH - 2))).all()
    assert (total < (cfg.max_len << cfg.EXP_WIDTH)).all()
    big_k = cfg.recip_bits
    f = (1 << big_k) // total
    assert (f < (1 << (cfg.out_width + 7))).all()
    p = round_shift(e * f, big_k - cfg.out_width)
    return np.minimum(p, (1 << cfg.out_width) - 1)
