"""The whole accelerator's config, :class:`AccelConfig`: the per-unit configs, validated together,
the configs it derives, TOML and the named presets."""

import dataclasses
import importlib.resources
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import tomli_w

from .array import ArrayConfig
from .attention import AttentionConfig
from .buffers import BufferConfig
from .gelu import GeluConfig
from .gemm import GemmConfig, required_acc_width
from .layernorm import LayerNormConfig
from .linear import LinearConfig
from .requant import RequantConfig
from .residual import ResidualConfig
from .softmax import SoftmaxConfig

__all__ = ["AccelConfig", "PRESETS"]

#: The named presets, shipped as package data: ``hw/presets/<name>.toml``.
PRESETS = ("tiny", "icebreaker", "ulx3s")

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
    "buffers": BufferConfig,
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
    buffers
        The top's buffers, :class:`BufferConfig`: their depth in words (TOML ``[buffers]
        depth``).

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
    buffers: BufferConfig = field(default_factory=BufferConfig)

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
        if at.enabled and self.array.cols % self.attention_lanes:
            raise ValueError(
                f"Attention softmax_lanes must divide array cols ({self.array.cols}), "
                f"not {at.softmax_lanes}"
            )

    @property
    def attention_lanes(self):
        """Lanes of the attention controller's softmax: ``attention.softmax_lanes``, or with
        ``"auto"`` scaled with the array. The softmax of a row block (R rows of up to
        ``max_seq_len`` scores, ``R * L / lanes`` cycles) runs while the array computes the next
        block's scores (``ceil(L / C) * d`` cycles), so lanes of at least ``R * C / d`` keep
        pace; "auto" takes twice that, to cover the unit's latency as well: the fewest lanes
        that divide ``array.cols`` and are at least ``2 * R * C / max_head_dim``
        (``array.cols`` if none is). 1 at 2x2 and 4x4, 3 at 6x6, 4 at 8x8 (``d = 32``)."""
        if self.attention.softmax_lanes != "auto":
            return self.attention.softmax_lanes
        R, C = self.array.rows, self.array.cols
        need = -(-2 * R * C // self.attention.max_head_dim)
        return next((n for n in range(1, C + 1) if C % n == 0 and n >= need), C)

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
            lanes=self.attention_lanes,
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
                importlib.resources.files("hw") / "presets" / f"{name}.toml") as path:
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
