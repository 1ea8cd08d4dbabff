"""The golden GEMM and requantizer: the exact integer product and the dyadic INT32 -> INT8 step."""

import numpy as np

from hw.config import AccelConfig

from .integers import check_int_array, round_shift, saturate


def check_gemm_operands(a, b, *, in_width=8):
    """Check two GEMM operands (integer dtype, in range, 2-D, matching K); return them as int64."""
    a = check_int_array("GEMM operand a", a, in_width, ndim=2)
    b = check_int_array("GEMM operand b", b, in_width, ndim=2)
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"GEMM inner dimensions must match, not a {a.shape} @ b {b.shape} "
            f"(K={a.shape[1]} vs {b.shape[0]})"
        )
    if 0 in a.shape or b.shape[1] == 0:
        raise ValueError(f"GEMM dimensions must be positive, not a {a.shape} @ b {b.shape}")
    return a, b


def gemm(a, b, *, in_width=8, cfg=None):
    """Exact product of two signed integer matrices: ``(M x K) @ (K x N)`` as int64.

    Parameters
    ----------
    a, b : array of int
        Operands, each value in the signed ``in_width``-bit range.
    cfg : AccelConfig or None
        If given, the engine the product is for: its ``array.in_width`` replaces ``in_width``
        and M, K, N must be within ``gemm.max_m``, ``gemm.max_k`` and ``gemm.max_n`` (raises
        :exc:`ValueError` naming the limit otherwise).
    """
    if cfg is not None:
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"GEMM config must be an AccelConfig, not {cfg!r}")
        in_width = cfg.array.in_width
    a, b = check_gemm_operands(a, b, in_width=in_width)
    if cfg is not None:
        g = cfg.gemm
        for what, value, limit in (("M", a.shape[0], g.max_m), ("K", a.shape[1], g.max_k),
                                   ("N", b.shape[1], g.max_n)):
            if value > limit:
                raise ValueError(f"GEMM {what} must be at most {limit} "
                                 f"(gemm.max_{what.lower()}), not {value}")
    # int64 matmul is exact here: |sum| <= K * 2**30 for 16-bit operands, far below 2**63.
    return a @ b



def requantize(acc, multiplier, shift, *, acc_width=32, mult_width=16, out_width=8):
    """INT32 -> INT8 with a dyadic multiplier: ``clamp((acc*m + 2**(s-1)) >> s)``.

    Parameters
    ----------
    acc : array of int
        Accumulators, signed ``acc_width``-bit.
    multiplier : int
        ``m``, unsigned ``mult_width``-bit.
    shift : int
        ``s``, 0 <= s < acc_width + mult_width.
    """
    acc = check_int_array("Requantizer input", acc, acc_width)
    if isinstance(multiplier, bool) or not isinstance(multiplier, int | np.integer):
        raise TypeError(f"Requantizer multiplier must be an integer, not {multiplier!r}")
    if not 0 <= multiplier < (1 << mult_width):
        raise ValueError(
            f"Requantizer multiplier must be an integer from 0 to {(1 << mult_width) - 1}, "
            f"not {multiplier}"
        )
    max_shift = acc_width + mult_width - 1
    if isinstance(shift, bool) or not isinstance(shift, int | np.integer):
        raise TypeError(f"Requantizer shift must be an integer, not {shift!r}")
    if not 0 <= shift <= max_shift:
        raise ValueError(f"Requantizer shift must be an integer from 0 to {max_shift}, not {shift}")
    if acc_width + mult_width > 62:
        raise ValueError(
            f"Requantizer acc_width + mult_width must be at most 62, not {acc_width + mult_width}"
        )
    return saturate(round_shift(acc * int(multiplier), int(shift)), out_width)


def quantize_multiplier(real, *, mult_width=16, max_shift=62):
    """The dyadic pair ``(m, s)`` with ``m / 2**s`` closest to ``real`` and ``m`` as wide as fits.

    ``m`` is an unsigned ``mult_width``-bit integer; its relative error is below
    ``2**-(mult_width-1)`` whenever ``real >= 2**-(max_shift - mult_width)``.
    """
    real = float(real)
    if not np.isfinite(real) or real <= 0:
        raise ValueError(f"Requantization scale must be a positive finite number, not {real}")
    top = (1 << mult_width) - 1
    if round(real) > top:
        raise ValueError(
            f"Requantization scale must be at most {top} for a {mult_width}-bit multiplier, "
            f"not {real}"
        )
    s = 0
    while s < max_shift and round(real * (1 << (s + 1))) <= top:
        s += 1
    m = int(round(real * (1 << s)))
    if m == 0:
        raise ValueError(f"Requantization scale must be at least 2**-{max_shift + 1}, not {real}")
    return m, s
