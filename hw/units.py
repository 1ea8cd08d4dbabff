"""The registry of synthesizable units: name -> constructor from an :class:`AccelConfig`."""

from .attention_unit import AttentionUnit
from .gelu import Gelu
from .gemm import GemmEngine
from .isa import vector_lanes
from .layernorm import LayerNorm
from .requant import Requantizer
from .residual import Residual
from .softmax import Softmax
from .top import Accelerator

__all__ = ["UNITS", "build_unit"]

#: Unit name -> function building the component from a config.
UNITS = {
    "gemm": GemmEngine,
    "requant": lambda cfg: Requantizer(cfg.array.cols, cfg.acc_width, cfg.requant),
    "softmax": lambda cfg: Softmax(cfg.softmax),
    "gelu": lambda cfg: Gelu(cfg.gelu),
    "layernorm": lambda cfg: LayerNorm(cfg.layernorm),
    "attention": AttentionUnit,
    "residual": lambda cfg: Residual(cfg.residual, vector_lanes(cfg)),
    "top": Accelerator,     # the whole accelerator (buffers, command port, every enabled unit)
}


def build_unit(name, cfg):
    """Build unit ``name`` for ``cfg``."""
    if name not in UNITS:
        raise ValueError(f"Unit must be one of {', '.join(UNITS)}, not {name!r}")
    return UNITS[name](cfg)
