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
    half_rate : bool
        Keep a pipeline lane per element, but pass each accumulator's low and then its high
        part through one multiplier: a beat every 2 cycles on ``lanes`` DSP blocks, in place of
        one a cycle on ``2 * lanes``. The GEMM engine gives a tile's rows two cycles apart, so
        behind it this halves the requantizer's DSPs at the cost of a cycle of latency (and of
        a cycle a tile when ``K < 2 * rows``). Not with ``serial``, which shares one
        multiplier among all lanes already.
    """

    mult_width: int = 16
    out_width: int = 8
    serial: bool = False
    half_rate: bool = False

    def __post_init__(self):
        check_int("Requant mult_width", self.mult_width, lo=2, hi=18)
        check_int("Requant out_width", self.out_width, lo=2, hi=16)
        check_bool("Requant serial", self.serial)
        check_bool("Requant half_rate", self.half_rate)
        if self.serial and self.half_rate:
            raise ValueError("Requant half_rate applies to a lane per element; serial already "
                             "shares one multiplier among all lanes: set one of them, not both")
