"""The requantizer's config."""

from dataclasses import dataclass

from .checks import check_bool, check_int

__all__ = ["RequantConfig"]


@dataclass(frozen=True)
class RequantConfig:
    """INT32 -> INT8 requantizer: ``clamp((acc*m + 2**(s-1)) >> s)``.

    Parameters
    ----------
    mult_width : int
        Width of the unsigned dyadic multiplier ``m``.
    out_width : int
        Width of the signed, saturated output.
    serial : bool
        Requantize the lanes of a beat one after another, through one lane of logic and one
        multiplier that takes the low and then the high part of each accumulator: a beat of
        ``lanes`` elements every ``2 * lanes`` cycles, on one DSP block (see
        :class:`hw.requant.Requantizer`), in place of one beat per cycle on ``2 * lanes``.
    """

    mult_width: int = 16
    out_width: int = 8
    serial: bool = False

    def __post_init__(self):
        check_int("Requant mult_width", self.mult_width, lo=2, hi=18)
        check_int("Requant out_width", self.out_width, lo=2, hi=16)
        check_bool("Requant serial", self.serial)
