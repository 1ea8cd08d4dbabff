"""The softmax unit's config."""

from dataclasses import dataclass

from .checks import check_bool, check_int, check_variant

__all__ = ["SoftmaxConfig"]


@dataclass(frozen=True)
class SoftmaxConfig:
    """Integer softmax over rows of wide scores.

    Parameters
    ----------
    enabled : bool
        Whether the accelerator includes the unit.
    lanes : int
        Elements per beat.
    max_len : int
        Longest row.
    in_width : int
        Signed score width (16 to 32: softmax needs wide scores).
    out_width : int
        Unsigned probability width; the output scale is ``2**-out_width``.
    variant : str
        ``"ibert"`` (I-BERT i-exp) or ``"shift"`` (I-ViT Shiftmax).
    """

    enabled: bool = True
    lanes: int = 1
    max_len: int = 64
    in_width: int = 24
    out_width: int = 8
    variant: str = "ibert"

    def __post_init__(self):
        check_bool("Softmax enabled", self.enabled)
        check_int("Softmax lanes", self.lanes, lo=1, hi=16)
        check_int("Softmax max_len", self.max_len, lo=1, hi=4096)
        check_int("Softmax in_width", self.in_width, lo=16, hi=32)
        check_int("Softmax out_width", self.out_width, lo=4, hi=16)
        check_variant("Softmax variant", self.variant)

    # Fixed internal widths of the algorithm; ``sim.golden.softmax`` derives and proves them.
    #: Width of the unsigned exponentials ``e``.
    EXP_WIDTH = 16
    #: Saturating width of the rescaled distance from the row max.
    X_WIDTH = 19
    #: Range-reduction clamp: at most 30 halvings.
    CLAMP = 30
    #: The rescaled input scale lies in ``[2**-SCALE_EXP, 2**(1-SCALE_EXP))``.
    SCALE_EXP = 14
    #: Largest left rescaling shift (so the largest input scale is 2).
    MAX_LEFT = 14

    @property
    def recip_bits(self):
        """``K``: the per-row normalizer is ``f = 2**K // sum(e)``."""
        return self.out_width + 20

    @property
    def max_cycles(self):
        """Cycles from a row's last beat to its max stored for the exp pass: the lanes' running
        maxima are reduced one level of comparisons a cycle, to the two that the exp pass's
        first stage compares (``hw.softmax.load``), so 1 for up to 4 lanes, 2 for 5 to 8, 3
        beyond."""
        levels = (self.lanes - 1).bit_length()      # ceil(log2(lanes)) levels of maxima
        return max(1, levels - 1)

    @property
    def constant_widths(self):
        """Unsigned widths of the integer constants (``sim.golden.SoftmaxConstants``), which
        ``hw.softmax.Softmax`` takes on input ports."""
        return {
            "shift_right": (self.in_width + 1).bit_length(),
            "shift_left": self.MAX_LEFT.bit_length(),
            "divisor": 15,
            "offset": 16,
            "poly_c": 28,
            "exp_shift": 4,
        }
