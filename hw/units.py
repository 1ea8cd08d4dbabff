"""The registry of synthesizable units: name -> constructor from an :class:`AccelConfig`."""

from .gemm import GemmEngine
from .requant import Requantizer

__all__ = ["UNITS", "build_unit"]

#: Unit name -> function building the component from a config.
UNITS = {
    "gemm": GemmEngine,
    "requant": lambda cfg: Requantizer(cfg.array.cols, cfg.acc_width, cfg.requant),
    # == Softmax ==
    # == GELU ==
    # == LayerNorm ==
}


def build_unit(name, cfg):
    """Build unit ``name`` for ``cfg``."""
    if name not in UNITS:
        raise ValueError(f"Unit must be one of {', '.join(UNITS)}, not {name!r}")
    return UNITS[name](cfg)
