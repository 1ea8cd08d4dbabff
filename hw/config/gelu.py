"""The GELU unit's config."""

from dataclasses import dataclass

from .checks import check_bool, check_int, check_variant

__all__ = ["GeluConfig"]


@dataclass(frozen=True)
class GeluConfig:
    """Integer GELU, elementwise.

    Parameters
    ----------
    enabled : bool
        Whether the accelerator includes the unit.
    lanes : int
        Elements per beat.
    in_width : int
        Signed input width.
    variant : str
        ``"ibert"`` (I-BERT i-GELU) or ``"shift"`` (I-ViT ShiftGELU).
    poly_width : int
        ``"ibert"`` only: unsigned width of the erf polynomial's operand ``t``, so the squarer is
        ``poly_width x poly_width``. The erf is evaluated at a resolution that gives the clip point
        ``-b`` between ``2**(poly_width-1)`` and ``2**poly_width`` steps, so this sets its
        precision and the smallest accepted scale.
    frac_width : int
        Fraction bits of the erf value (``"ibert"``) or of the sigmoid (``"shift"``): the factor
        that multiplies ``q`` is below ``2**(frac_width+1)``.

    Attributes
    ----------
    out_width : int
        Signed width of the output ``y = q * s`` with ``0 <= s <= 2**(frac_width+1)`` (and
        ``s <= 2**frac_width`` where ``q < 0``), so ``-2**(in_width+frac_width) <= y <
        2**(in_width+frac_width)``: it cannot overflow.
    exp_width : int
        ``"shift"`` only: unsigned width of the base-2 exponent ``u = SHIFT_MULT*|q|`` (also the
        width of the scale-derived constant ``x0``, and so of the smallest accepted scale).
    den_width : int
        ``"shift"`` only: unsigned width of the sigmoid divider's divisor.
    quot_width : int
        ``"shift"`` only: width of the integer part ``z`` of the exponent.
    """

    #: ``"shift"``: 1.702*log2(e)*|x| ~ (SHIFT_MULT / 2**SHIFT_SHIFT) * |x|, with
    #: ``621 = 27 * 23`` (I-ViT's shift-and-add 1.6875 * 1.4375, made exact by pre-shifting).
    SHIFT_MULT = 621
    SHIFT_SHIFT = 8

    enabled: bool = True
    lanes: int = 1
    in_width: int = 8
    variant: str = "ibert"
    poly_width: int = 10
    frac_width: int = 14

    def __post_init__(self):
        check_bool("GELU enabled", self.enabled)
        check_int("GELU lanes", self.lanes, lo=1, hi=16)
        check_int("GELU in_width", self.in_width, lo=4, hi=16)
        check_variant("GELU variant", self.variant)
        check_int("GELU poly_width", self.poly_width, lo=6, hi=16)
        check_int("GELU frac_width", self.frac_width, lo=6, hi=24)

    @property
    def out_width(self):
        return self.in_width + self.frac_width + 1

    @property
    def exp_width(self):
        return (self.SHIFT_MULT << (self.in_width - 1)).bit_length()

    @property
    def den_width(self):
        return max(self.frac_width + 2, self.exp_width) + 1

    @property
    def quot_width(self):
        return max(self.frac_width + 2, self.exp_width).bit_length()
