"""The GEMM engine's config, and the accumulator width it derives."""

from dataclasses import dataclass

from .checks import check_int

__all__ = ["GemmConfig", "required_acc_width"]


def required_acc_width(in_width, max_k):
    """Signed accumulator width that holds any sum of ``max_k`` products of two
    ``in_width``-bit signed integers without overflow.

    The product of largest magnitude is ``(-2**(w-1))**2 = 2**(2w-2)``, positive; every sum of
    ``max_k`` products lies in ``[-max_k*2**(2w-2), max_k*2**(2w-2)]``, which needs
    ``bit_length(max_k * 2**(2w-2)) + 1`` bits (one for the sign).
    """
    return (max_k << (2 * in_width - 2)).bit_length() + 1


@dataclass(frozen=True)
class GemmConfig:
    """Largest problem the GEMM engine accepts.

    Parameters
    ----------
    max_m, max_k, max_n : int
        Largest M, K, N of an ``(M x K) @ (K x N)`` product. ``max_k`` sets the accumulator width.
    acc_width : int or None
        Accumulator width. ``None`` derives the smallest width that cannot overflow at ``max_k``
        (see :func:`required_acc_width`); an explicit value must be at least that.
    """

    max_m: int = 64
    max_k: int = 256
    max_n: int = 64
    acc_width: int | None = None

    def __post_init__(self):
        check_int("GEMM max_m", self.max_m, lo=1, hi=1 << 16)
        check_int("GEMM max_k", self.max_k, lo=1, hi=1 << 16)
        check_int("GEMM max_n", self.max_n, lo=1, hi=1 << 16)
        if self.acc_width is not None:
            check_int("GEMM acc_width", self.acc_width, lo=2, hi=48)
