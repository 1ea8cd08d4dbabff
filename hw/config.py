"""Configuration dataclasses: one frozen dataclass per unit, gathered in :class:`AccelConfig`."""

import dataclasses
import importlib.resources
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import tomli_w

__all__ = [
    "ArrayConfig",
    "GemmConfig",
    "RequantConfig",
    "SoftmaxConfig",
    "GeluConfig",
    "LayerNormConfig",
    "AttentionConfig",
    "LinearConfig",
    "ResidualConfig",
    "AccelConfig",
    "PRESETS",
    "BUILD_DIR_ENV",
    "build_dir",
    "required_acc_width",
]

#: The named presets, shipped as package data: ``hw/presets/<name>.toml``.
PRESETS = ("tiny", "icebreaker", "ulx3s")
#: The environment variable naming the build folder (see :func:`build_dir`).
BUILD_DIR_ENV = "INTFORMER_BUILD_DIR"


def build_dir():
    """The folder that generated output goes to: ``$INTFORMER_BUILD_DIR`` (the CLI's
    ``--build-dir`` sets it), else ``build/`` under the current directory."""
    return Path(os.environ.get(BUILD_DIR_ENV, "build")).resolve()


def _check_int(what, value, *, lo, hi):
    """Raise unless ``value`` is an ``int`` (not a bool) in ``[lo, hi]``.

    Messages follow Amaranth's form: "<what> must be <constraint>, not <value>".
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value}")


def required_acc_width(in_width, max_k):
    """Signed accumulator width that holds any sum of ``max_k`` products of two
    ``in_width``-bit signed integers without overflow.

    The product of largest magnitude is ``(-2**(w-1))**2 = 2**(2w-2)``, positive; every sum of
    ``max_k`` products lies in ``[-max_k*2**(2w-2), max_k*2**(2w-2)]``, which needs
    ``bit_length(max_k * 2**(2w-2)) + 1`` bits (one for the sign).
    """
    return (max_k << (2 * in_width - 2)).bit_length() + 1


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
        _check_int("Array rows", self.rows, lo=1, hi=64)
        _check_int("Array cols", self.cols, lo=1, hi=64)
        _check_int("Array in_width", self.in_width, lo=4, hi=16)
        _check_bool("Array dsp_pairs", self.dsp_pairs)


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
        _check_int("GEMM max_m", self.max_m, lo=1, hi=1 << 16)
        _check_int("GEMM max_k", self.max_k, lo=1, hi=1 << 16)
        _check_int("GEMM max_n", self.max_n, lo=1, hi=1 << 16)
        if self.acc_width is not None:
            _check_int("GEMM acc_width", self.acc_width, lo=2, hi=48)


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
        _check_int("Requant mult_width", self.mult_width, lo=2, hi=18)
        _check_int("Requant out_width", self.out_width, lo=2, hi=16)
        _check_bool("Requant serial", self.serial)


VARIANTS = ("ibert", "shift")


def _check_variant(what, value):
    if value not in VARIANTS:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, VARIANTS))}, not {value!r}")


def _check_bool(what, value):
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a boolean, not {value!r}")


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
        _check_bool("Softmax enabled", self.enabled)
        _check_int("Softmax lanes", self.lanes, lo=1, hi=16)
        _check_int("Softmax max_len", self.max_len, lo=1, hi=4096)
        _check_int("Softmax in_width", self.in_width, lo=16, hi=32)
        _check_int("Softmax out_width", self.out_width, lo=4, hi=16)
        _check_variant("Softmax variant", self.variant)

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
        _check_bool("GELU enabled", self.enabled)
        _check_int("GELU lanes", self.lanes, lo=1, hi=16)
        _check_int("GELU in_width", self.in_width, lo=4, hi=16)
        _check_variant("GELU variant", self.variant)
        _check_int("GELU poly_width", self.poly_width, lo=6, hi=16)
        _check_int("GELU frac_width", self.frac_width, lo=6, hi=24)

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
        _check_bool("LayerNorm enabled", self.enabled)
        _check_int("LayerNorm lanes", self.lanes, lo=1, hi=16)
        _check_int("LayerNorm max_len", self.max_len, lo=1, hi=4096)
        _check_int("LayerNorm in_width", self.in_width, lo=4, hi=24)
        _check_int("LayerNorm out_width", self.out_width, lo=2, hi=16)
        _check_int("LayerNorm gamma_width", self.gamma_width, lo=self.out_width + 2, hi=32)
        _check_int("LayerNorm beta_width", self.beta_width,
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


@dataclass(frozen=True)
class AttentionConfig:
    """Tiled attention controller: softmax(Q K^T / sqrt(d)) V, one head per command.

    Parameters
    ----------
    enabled : bool
        Whether the accelerator includes the controller.
    max_seq_len : int
        Longest sequence L; the score buffer holds full rows of this length.
    max_head_dim : int
        Largest head dimension d.
    softmax_lanes : int
        Lanes of the controller's own softmax unit; must divide the array's columns.
    """

    enabled: bool = True
    max_seq_len: int = 64
    max_head_dim: int = 32
    softmax_lanes: int = 1

    def __post_init__(self):
        _check_bool("Attention enabled", self.enabled)
        _check_int("Attention max_seq_len", self.max_seq_len, lo=1, hi=1024)
        _check_int("Attention max_head_dim", self.max_head_dim, lo=1, hi=256)
        _check_int("Attention softmax_lanes", self.softmax_lanes, lo=1, hi=16)


@dataclass(frozen=True)
class LinearConfig:
    """``RUN LINEAR``: the GEMM with a per-channel bias and per-channel requantization, whose
    constants come from the CHAN buffer (:mod:`hw.isa`).

    Parameters
    ----------
    enabled : bool
        Whether the accelerator includes the op (the CHAN buffer, a per-lane requantizer).
    """

    enabled: bool = True

    def __post_init__(self):
        _check_bool("Linear enabled", self.enabled)


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
        _check_bool("Residual enabled", self.enabled)
        _check_int("Residual in_width", self.in_width, lo=2, hi=24)
        _check_int("Residual mult_width", self.mult_width, lo=1, hi=18)
        _check_int("Residual out_width", self.out_width, lo=2, hi=24)

    @property
    def max_shift(self):
        """The largest ``shift`` (as :func:`sim.ops.residual_add` accepts)."""
        return self.in_width + self.mult_width


_SECTIONS = {
    "array": ArrayConfig,
    "gemm": GemmConfig,
    "requant": RequantConfig,
    "softmax": SoftmaxConfig,
    "gelu": GeluConfig,
    "layernorm": LayerNormConfig,
    "attention": AttentionConfig,
    "linear": LinearConfig,
    "residual": ResidualConfig,
}


@dataclass(frozen=True)
class AccelConfig:
    """The whole accelerator, built from per-unit configs. Validated on construction.

    Parameters
    ----------
    name : str
        A label (the preset name, or ``"custom"``).
    array, gemm, requant, softmax, gelu, layernorm, attention, linear, residual
        Per-unit configs; see :class:`ArrayConfig` and the others. A unit or op whose
        ``enabled`` is false is left out of the accelerator.

    Attributes
    ----------
    acc_width : int
        The GEMM accumulator width, derived from ``gemm.max_k`` and ``array.in_width`` unless
        ``gemm.acc_width`` sets it explicitly.
    """

    name: str = "custom"
    array: ArrayConfig = field(default_factory=ArrayConfig)
    gemm: GemmConfig = field(default_factory=GemmConfig)
    requant: RequantConfig = field(default_factory=RequantConfig)
    softmax: SoftmaxConfig = field(default_factory=SoftmaxConfig)
    gelu: GeluConfig = field(default_factory=GeluConfig)
    layernorm: LayerNormConfig = field(default_factory=LayerNormConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    residual: ResidualConfig = field(default_factory=ResidualConfig)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Config name must be a non-empty string, not {self.name!r}")
        for key, cls in _SECTIONS.items():
            value = getattr(self, key)
            if not isinstance(value, cls):
                raise TypeError(f"Config section '{key}' must be a {cls.__name__}, not {value!r}")
        need = required_acc_width(self.array.in_width, self.gemm.max_k)
        if self.gemm.acc_width is not None and self.gemm.acc_width < need:
            raise ValueError(
                f"GEMM acc_width must be at least {need} to sum max_k={self.gemm.max_k} "
                f"products of {self.array.in_width}-bit operands without overflow, "
                f"not {self.gemm.acc_width}"
            )
        if self.acc_width > 48:
            raise ValueError(
                f"GEMM accumulator width must be at most 48 bits, not {self.acc_width} "
                f"(lower gemm.max_k or array.in_width)"
            )
        if self.requant.serial and self.linear.enabled:
            raise ValueError("Requant serial must be false with linear enabled (RUN LINEAR "
                             "needs each lane's own multiplier), or disable linear")
        at = self.attention
        if at.enabled and self.array.cols % at.softmax_lanes:
            raise ValueError(
                f"Attention softmax_lanes must divide array cols ({self.array.cols}), "
                f"not {at.softmax_lanes}"
            )

    @property
    def attention_gemm(self):
        """The config of the attention controller's GEMM engine: one row block (M <= R) per
        job; K and N up to the larger of max_seq_len and max_head_dim; operands one bit wider
        than ``array.in_width``, so that unsigned ``in_width``-bit probabilities are operands of
        P V (an INT8 x INT9 product still takes one MULT18X18D or SB_MAC16)."""
        at = self.attention
        big = max(at.max_seq_len, at.max_head_dim)
        return dataclasses.replace(
            self,
            array=dataclasses.replace(self.array, in_width=self.array.in_width + 1),
            gemm=GemmConfig(max_m=self.array.rows, max_k=big, max_n=big))

    @property
    def shared_gemm(self):
        """The config of the one GEMM engine of an accelerator top with attention, shared by
        ``RUN GEMM`` and the attention controller: the operands of :attr:`attention_gemm` and
        the larger of its and :attr:`gemm`'s limits (and accumulator width), so that both kinds
        of job fit it exactly."""
        at = self.attention_gemm
        acc = max(self.acc_width, at.acc_width,
                  required_acc_width(at.array.in_width, max(self.gemm.max_k, at.gemm.max_k)))
        return dataclasses.replace(at, gemm=GemmConfig(
            max_m=max(self.gemm.max_m, at.gemm.max_m), max_k=max(self.gemm.max_k, at.gemm.max_k),
            max_n=max(self.gemm.max_n, at.gemm.max_n), acc_width=acc))

    @property
    def attention_softmax(self):
        """The config of the attention controller's softmax: rows of max_seq_len scores as wide
        as the accumulators, and unsigned ``in_width``-bit probabilities (scale
        ``2**-in_width``)."""
        return SoftmaxConfig(
            lanes=self.attention.softmax_lanes,
            max_len=self.attention.max_seq_len,
            in_width=max(16, self.attention_gemm.acc_width),
            out_width=self.array.in_width,
            variant=self.softmax.variant,
        )

    @property
    def shared_softmax(self):
        """The config of the one softmax of an accelerator top with both ``RUN SOFTMAX`` and
        attention, shared by the two: :attr:`softmax` with the longer rows and wider scores of
        :attr:`attention_softmax` where they are longer or wider (the unit's results depend only
        on the values, so both uses stay bit-exact). ``None`` when the top has only one of the
        two, or when they differ in lanes, output width or variant: then it holds two units."""
        if not (self.softmax.enabled and self.attention.enabled):
            return None
        s, a = self.softmax, self.attention_softmax
        if (s.lanes, s.out_width, s.variant) != (a.lanes, a.out_width, a.variant):
            return None
        return dataclasses.replace(s, max_len=max(s.max_len, a.max_len),
                                   in_width=max(s.in_width, a.in_width))

    @property
    def acc_width(self):
        if self.gemm.acc_width is not None:
            return self.gemm.acc_width
        return required_acc_width(self.array.in_width, self.gemm.max_k)

    # -- construction from and to TOML ---------------------------------------------------------

    @classmethod
    def from_dict(cls, data):
        """Build a config from nested dicts, as read from TOML. Unknown keys are errors."""
        if not isinstance(data, dict):
            raise TypeError(f"Config must be a table, not {data!r}")
        known = {"name", *_SECTIONS}
        for key in data:
            if key not in known:
                raise ValueError(
                    f"Config key must be one of {', '.join(sorted(known))}, not {key!r}"
                )
        kwargs = {}
        if "name" in data:
            kwargs["name"] = data["name"]
        for key, section_cls in _SECTIONS.items():
            if key not in data:
                continue
            table = data[key]
            if not isinstance(table, dict):
                raise TypeError(f"Config section '{key}' must be a table, not {table!r}")
            names = {f.name for f in fields(section_cls)}
            for sub in table:
                if sub not in names:
                    raise ValueError(
                        f"Key in section '{key}' must be one of {', '.join(sorted(names))}, "
                        f"not {sub!r}"
                    )
            kwargs[key] = section_cls(**table)
        return cls(**kwargs)

    def to_dict(self):
        """Nested dicts of plain values; ``None`` entries (derived values) are omitted."""
        out = {"name": self.name}
        for key in _SECTIONS:
            section = dataclasses.asdict(getattr(self, key))
            out[key] = {k: v for k, v in section.items() if v is not None}
        return out

    @classmethod
    def from_toml(cls, path):
        """Read a config from a TOML file."""
        path = Path(path)
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ValueError(f"Config file must exist, not {str(path)!r}") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"Config file must be valid TOML, not {str(path)!r} ({e})") from None
        data.setdefault("name", path.stem)
        return cls.from_dict(data)

    def to_toml(self, path=None):
        """Return the config as TOML text, and write it to ``path`` if given."""
        text = tomli_w.dumps(self.to_dict())
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def preset(cls, name):
        """A named preset, ``hw/presets/<name>.toml`` (package data): one of
        :data:`PRESETS`."""
        if name not in PRESETS:
            raise ValueError(f"Preset must be one of {', '.join(PRESETS)}, not {name!r}")
        with importlib.resources.as_file(
                importlib.resources.files(__package__) / "presets" / f"{name}.toml") as path:
            return cls.from_toml(path)

    def replace(self, **sections):
        """A copy with whole sections replaced, e.g. ``cfg.replace(array=ArrayConfig(4, 4))``."""
        return dataclasses.replace(self, **sections)

    @property
    def peak_macs_per_cycle(self):
        return self.array.rows * self.array.cols

    def __str__(self):
        a = self.array
        return f"{self.name}: {a.rows}x{a.cols} INT{a.in_width} array, acc {self.acc_width} bits"

