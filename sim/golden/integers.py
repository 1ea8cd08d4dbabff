"""Integer helpers of the golden models: checked integer arrays, the one rounding rule,
saturation, bit lengths and exact integer matrix products."""

import numpy as np


def check_int_array(name, x, width, *, signed=True, ndim=None):
    """Return ``x`` as an int64 array after checking dtype and range.

    Raises :exc:`TypeError` for a non-integer dtype and :exc:`ValueError` for a value outside
    the ``width``-bit range or a wrong number of dimensions.
    """
    x = np.asarray(x)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must be an array of integers, not of dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not shape {x.shape}")
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    if x.size:
        bad = (x < lo) | (x > hi)
        if bad.any():
            v = x[bad].flat[0]
            raise ValueError(
                f"{name} values must be in [{lo}, {hi}] ({'' if signed else 'un'}signed "
                f"{width}-bit), not {v}"
            )
    return x.astype(np.int64)


def round_shift(x, s):
    """``floor((x + 2**(s-1)) / 2**s)``: arithmetic right shift by ``s`` rounding half up.

    ``s = 0`` returns ``x``. This is the one rounding rule of intformer, mirrored in
    :mod:`hw.requant`.
    """
    x = np.asarray(x, dtype=np.int64)
    return (x + ((1 << s) >> 1)) >> s


def saturate(x, width):
    """Clamp to the signed ``width``-bit range."""
    return np.clip(x, -(1 << (width - 1)), (1 << (width - 1)) - 1)


def bit_length(x):
    """Elementwise ``int.bit_length`` of a non-negative int64 array (0 for 0)."""
    x = np.asarray(x, dtype=np.int64)
    out = np.zeros(x.shape, dtype=np.int64)
    for k in range(63):
        out += (x >> k) > 0
    return out


def exact_matmul(a, b):
    """``a @ b`` of int64 arrays, exact, through float64 BLAS: every product and partial sum
    is an integer below 2**53 in magnitude (checked from the operands' ranges), where float64
    is exact. Integer matmul in NumPy has no BLAS and is about 30x slower."""
    bound = int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * a.shape[-1]
    if bound >= 1 << 53:
        return a @ b
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
