"""The systolic array's config."""

from dataclasses import dataclass

from .checks import check_bool, check_int

__all__ = ["ArrayConfig"]


@dataclass(frozen=True)
class ArrayConfig:
    """Systolic array shape and operand width.

    Parameters
    ----------
    rows, cols : int
        Processing elements in each dimension, any values >= 1 (R x C).
    in_width : int
        Width of the signed operands (8 for INT8).
    dsp_pairs : bool
        Build the products of rows 2k and 2k+1 of each column as one pair (see
        :func:`hw.dsp.registered_product_pair`): on iCE40, with ``in_width <= 8``, one SB_MAC16
        in its dual 8x8 mode, so that an R x C array takes ``ceil(R/2) * C`` of them.
    """

    rows: int = 2
    cols: int = 2
    in_width: int = 8
    dsp_pairs: bool = False

    def __post_init__(self):
        check_int("Array rows", self.rows, lo=1, hi=64)
        check_int("Array cols", self.cols, lo=1, hi=64)
        check_int("Array in_width", self.in_width, lo=4, hi=16)
        check_bool("Array dsp_pairs", self.dsp_pairs)
