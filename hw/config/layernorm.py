"""The LayerNorm unit's config."""

from dataclasses import dataclass

from .checks import check_bool, check_int

__all__ = ["LayerNormConfig"]


@dataclass(frozen=True)
class LayerNormConfig:
    """Integer LayerNorm over rows (the hidden dimension).

    Parameters
    ----------
    enabled : bool
        Whether the accelerator includes the unit.
    lanes : int
        Elements per beat.
    max_len : int
        Longest row.
    in_width : int
        Signed input width.
    out_width : int
        Signed, saturated output width.
    gamma_width : int
        Signed width of the per-channel integer gamma multiplier.
    beta_width : int
        Signed width of the per-channel integer beta offset (it is added before the final
        rounding shift, so it carries ``norm_frac + gamma_shift`` fraction bits).

    Attributes
    ----------
    norm_frac : int
        Fraction bits of the normalized value ``z = (q - mean) / std`` inside the unit (16).
    gamma_shift : int
        ``G``: fraction bits of the integer gamma. The final shift is ``norm_frac + G``.
    var_width : int
        Unsigned width of ``V = L*sum(q**2) - sum(q)**2``, the row's scaled variance.
    """

    enabled: bool = True
    lanes: int = 1
    max_len: int = 64
    in_width: int = 16
    out_width: int = 8
    gamma_width: int = 16
    beta_width: int = 32

    norm_frac = 16  # not a field: the fixed-point format of z, shared by golden and hw

    def __post_init__(self):
        check_bool("LayerNorm enabled", self.enabled)
        check_int("LayerNorm lanes", self.lanes, lo=1, hi=16)
        check_int("LayerNorm max_len", self.max_len, lo=1, hi=4096)
        check_int("LayerNorm in_width", self.in_width, lo=4, hi=24)
        check_int("LayerNorm out_width", self.out_width, lo=2, hi=16)
        check_int("LayerNorm gamma_width", self.gamma_width, lo=self.out_width + 2, hi=32)
        check_int("LayerNorm beta_width", self.beta_width,
                   lo=self.out_width + self.norm_frac + 2, hi=48)
        if self.var_width > 62:
            limit = 1
            while ((limit + 1) ** 2 << (2 * self.in_width - 2)).bit_length() <= 62:
                limit += 1
            raise ValueError(
                f"LayerNorm max_len must be at most {limit} for in_width={self.in_width} "
                f"(the row variance must fit 62 bits), not {self.max_len}"
            )

    @property
    def gamma_shift(self):
        # |gamma / y_scale| <= 2**(out_width-1) - 1 and |beta / y_scale| likewise (see
        # sim.golden.layernorm_constants), so G this large always fits both widths.
        return min(self.gamma_width - self.out_width,
                   self.beta_width - self.out_width - self.norm_frac)

    @property
    def var_width(self):
        # V <= L * sum(q**2) <= max_len**2 * 2**(2*in_width - 2)
        return (self.max_len ** 2 << (2 * self.in_width - 2)).bit_length()
