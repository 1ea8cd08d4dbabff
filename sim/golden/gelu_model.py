"""The golden integer GELU (I-BERT i-GELU or I-ViT ShiftGELU) and its constants."""

from dataclasses import dataclass

import numpy as np

from hw.config import GeluConfig

from .integers import check_int_array, round_shift

#: The erf polynomial of "ibert": erf(x) ~ sgn(x) * (GELU_A * (min(|x|, -GELU_B) + GELU_B)**2 + 1).
#: I-BERT publishes a = -0.2888, b = -1.769 (IBERT_GELU_A/B). Evaluated exactly in float64, those
#: give a max GELU error of 0.01815 on [-4, 4] (RMS 0.008188), above the 0.018 budget. These are a
#: refit of the same curve for the GELU (not erf) error on [-4, 4]: max 0.01788, RMS 0.008182 in
#: float64 (a grid search; the RMS of this curve family cannot go below about 0.00818).
GELU_A, GELU_B = -0.2875, -1.773
IBERT_GELU_A, IBERT_GELU_B = -0.2888, -1.769
#: The "shift" variant's exponent multiplier and shift (defined with the config).
SHIFT_GELU_MULT, SHIFT_GELU_SHIFT = GeluConfig.SHIFT_MULT, GeluConfig.SHIFT_SHIFT


@dataclass(frozen=True)
class IBertGeluConstants:
    """Integer constants of the "ibert" GELU for one input scale (see :func:`gelu_constants`).

    Attributes
    ----------
    scale : float
        The input scale ``S``.
    k : int
        Pre-shift of ``|q|``: the erf is evaluated at resolution ``S_t = S / sqrt(2) / 2**k``.
    beta : int
        ``round(-GELU_B / S_t)``, the clip point, in ``[2**(poly_width-1), 2**poly_width)``.
    c : int
        ``round(1 / (-GELU_A * S_t**2))``, the polynomial's ``1`` (> ``beta**2``).
    n : int
        The overflow shift, derived from ``c``: ``max(0, bit_length(c) - frac_width)``.
    one : int
        ``round_shift(c, n)``, at most ``2**frac_width``: the erf value 1.
    y_scale : float
        ``S / (2 * one)``, the output scale.
    """

    scale: float
    k: int
    beta: int
    c: int
    n: int
    one: int
    y_scale: float


@dataclass(frozen=True)
class ShiftGeluConstants:
    """Integer constants of the "shift" GELU for one input scale (see :func:`gelu_constants`).

    Attributes
    ----------
    scale : float
        The input scale ``S``.
    x0 : int
        ``round(256 / S)``: the steps of ``u = 621*|q|`` in one unit of the base-2 exponent.
    zs : int
        Left shift giving ``eps`` at least ``frac_width + 2`` bits: ``max(0, frac_width + 2 -
        bit_length(x0))``.
    d : int
        ``x0 << zs``: the value 1 of ``eps``.
    umax : int
        Clamp of ``u``, so that ``z = u // x0 <= zs + bit_length(x0)``, where ``eps`` is 0.
    y_scale : float
        ``S / 2**frac_width``, the output scale.
    """

    scale: float
    x0: int
    zs: int
    d: int
    umax: int
    y_scale: float


def _gelu_config(cfg):
    if cfg is None:
        return GeluConfig()
    if not isinstance(cfg, GeluConfig):
        raise TypeError(f"GELU config must be a GeluConfig, not {cfg!r}")
    return cfg


def gelu_scale_range(cfg=None):
    """``(lo, hi)``: the input scales :func:`gelu_constants` accepts for ``cfg`` (approximately:
    the exact test is on the derived integers, so a scale within a relative 1e-6 of a bound may
    go either way).

    ``"ibert"``: the clip point ``-b`` must take fewer than ``2**poly_width`` steps of
    ``S/sqrt(2)`` at ``k = 0`` and at least ``2**(poly_width-1)`` steps of ``S/sqrt(2)/2**k`` at
    ``k = poly_width``. ``"shift"``: ``16 <= x0 = round(256/S) < 2**exp_width``.
    """
    cfg = _gelu_config(cfg)
    if cfg.variant == "ibert":
        P = cfg.poly_width
        return (np.sqrt(2.0) * -GELU_B / ((1 << P) - 0.5),
                np.sqrt(2.0) * -GELU_B * (1 << P) / ((1 << (P - 1)) - 0.5))
    return ((1 << SHIFT_GELU_SHIFT) / ((1 << cfg.exp_width) - 0.5),
            (1 << SHIFT_GELU_SHIFT) / 15.5)


def gelu_constants(scale, cfg=None):
    """Derive the integer constants of the GELU unit from the float input scale.

    This is the one place where floats become integers: the hardware receives only the integers
    returned here (on input ports held constant while data flows), and :func:`gelu` uses the
    same ones.

    Parameters
    ----------
    scale : float
        Input scale ``S`` (real = q * S); positive and finite.
    cfg : GeluConfig or None
        The unit's configuration (default ``GeluConfig()``); ``cfg.variant`` selects the result.

    Returns
    -------
    IBertGeluConstants or ShiftGeluConstants

    Raises
    ------
    TypeError
        If ``scale`` is not a real number.
    ValueError
        "GELU scale must be ..., not ..." if ``scale`` is not positive and finite, or lies
        outside the range the configured widths accept (``"ibert"``: the clip point must take
        fewer than ``2**poly_width`` steps at ``k = 0`` and at least ``2**(poly_width-1)`` at
        ``k = poly_width``, about ``[2.5e-3, 5.0]`` for ``poly_width=10``; ``"shift"``:
        ``16 <= x0 < 2**exp_width``, about ``[2.0e-3, 16.5]`` for INT8); see
        :func:`gelu_scale_range`.
    """
    cfg = _gelu_config(cfg)
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.integer | np.floating):
        raise TypeError(f"GELU scale must be a real number, not {scale!r}")
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"GELU scale must be a positive finite number, not {scale!r}")
    F = cfg.frac_width
    if cfg.variant == "ibert":
        P = cfg.poly_width
        s_e = scale / np.sqrt(2.0)
        for k in range(P, -1, -1):
            beta = round(-GELU_B * (1 << k) / s_e)
            if beta < (1 << P):
                break
        if beta >= (1 << P) or beta < (1 << (P - 1)):
            lo, hi = gelu_scale_range(cfg)
            raise ValueError(f"GELU scale must be from {lo:.6g} to {hi:.6g} for "
                             f"poly_width={P}, not {scale!r}")
        s_t = s_e / (1 << k)
        c = round(1.0 / (-GELU_A * s_t * s_t))
        assert beta * beta < c < 1 << (2 * P + 1)
        n = max(0, c.bit_length() - F)
        one = (c + ((1 << n) >> 1)) >> n
        return IBertGeluConstants(scale=scale, k=k, beta=beta, c=c, n=n, one=one,
                                  y_scale=scale / (2 * one))
    x0 = round((1 << SHIFT_GELU_SHIFT) / scale)
    if not 16 <= x0 < 1 << cfg.exp_width:
        lo, hi = gelu_scale_range(cfg)
        raise ValueError(f"GELU scale must be from {lo:.6g} to {hi:.6g} for "
                         f"in_width={cfg.in_width}, not {scale!r}")
    bx = x0.bit_length()
    zs = max(0, F + 2 - bx)
    umax = min((zs + bx + 1) * x0 - 1, SHIFT_GELU_MULT << (cfg.in_width - 1))
    return ShiftGeluConstants(scale=scale, x0=x0, zs=zs, d=x0 << zs, umax=umax,
                              y_scale=scale / (1 << F))


def gelu(q, scale, cfg=None):
    """Integer-only GELU, elementwise: ``y * y_scale ~ GELU(q * scale)``.

    Parameters
    ----------
    q : array of int
        Any shape; signed ``cfg.in_width``-bit values.
    scale : float
        Input scale; see :func:`gelu_constants` for the accepted range.
    cfg : GeluConfig or None
        Default ``GeluConfig()`` (variant ``"ibert"``, INT8 input).

    Returns
    -------
    y : numpy.ndarray of int64
        Same shape as ``q``; signed ``cfg.out_width``-bit (never overflows).
    y_scale : float

    Notes
    -----
    ``"ibert"`` (I-BERT i-GELU, constants from :func:`gelu_constants`)::

        t = beta - min(|q| << k, beta)                   # 0 <= t <= beta < 2**poly_width
        e = round_shift(c - t*t, n)                      # erf(|x|/sqrt 2) = e / one
        y = q * (one + e) if q >= 0 else q * (one - e)   # x/2 * (1 + erf(x/sqrt 2))

    ``"shift"`` (I-ViT ShiftGELU, ``x * sigmoid(1.702 x)`` with a shift-only exp)::

        u = min(621 * |q|, umax)            # 1.702*log2(e)*|x| = u / x0 (621 = 27 * 23: shifts)
        z, r = u // x0, u % x0              # 2**(-u/x0) = 2**-z * 2**(-r/x0)
        eps = ((x0 - (r >> 1)) << zs) >> z  # 2**(-r/x0) ~ 1 - r/(2 x0); exp(-1.702|x|) ~ eps/d
        s = floor(2**F * (d if q >= 0 else eps) / (d + eps))   # sigmoid(1.702 x) = s / 2**F
        y = q * s
    """
    cfg = _gelu_config(cfg)
    q = check_int_array("GELU input", q, cfg.in_width)
    k = gelu_constants(scale, cfg)
    return gelu_from_constants(q, k, cfg), k.y_scale


def gelu_from_constants(q, k, cfg):
    """The integer part of :func:`gelu`: ``y`` for int64 ``q``, already checked, and the
    integer fields of constants ``k`` (what the unit computes from its constant ports)."""
    a = np.abs(q)
    if cfg.variant == "ibert":
        t = k.beta - np.minimum(a << k.k, k.beta)
        e = round_shift(k.c - t * t, k.n)
        s = np.where(q < 0, k.one - e, k.one + e)
    else:
        u = np.minimum(a * SHIFT_GELU_MULT, k.umax)
        z = u // k.x0
        r = u - z * k.x0
        eps = ((k.x0 - (r >> 1)) << k.zs) >> z
        s = (np.where(q < 0, eps, k.d) << cfg.frac_width) // (k.d + eps)
    return q * s
