"""The config of ``RUN RESIDUAL``."""

from dataclasses import dataclass

from .checks import check_bool, check_int

__all__ = ["ResidualConfig"]


@dataclass(frozen=True)
class ResidualConfig:
    """``RUN RESIDUAL``: ``y = saturate(round_shift(a*ma + b*mb, shift), out_width)``,
    elementwise (:func:`sim.ops.residual_add`).

    Parameters
    ----------
    enabled : bool
        Whether the accelerator includes the unit (its lanes are the X/Y buffers', those of
        the nonlinear units, :func:`hw.isa.vector_lanes`).
    in_width : int
        Signed width of ``a`` and ``b``.
    mult_width : int
        Unsigned width of ``ma`` and ``mb``.
    out_width : int
        Signed, saturated output width.
    """

    enabled: bool = True
    in_width: int = 16
    mult_width: int = 16
    out_width: int = 16

    def __post_init__(self):
        check_bool("Residual enabled", self.enabled)
        check_int("Residual in_width", self.in_width, lo=2, hi=24)
        check_int("Residual mult_width", self.mult_width, lo=1, hi=18)
        check_int("Residual out_width", self.out_width, lo=2, hi=24)

    @property
    def max_shift(self):
        """The largest ``shift`` (as :func:`sim.ops.residual_add` accepts)."""
        return self.in_width + self.mult_width
