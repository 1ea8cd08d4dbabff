"""intformer: integer-only transformer inference hardware for iCE40 and ECP5.

A thin facade over :mod:`hw` (gateware and configs), :mod:`sim` (golden models, simulation)
and :mod:`boards` (toolchain and synthesis).
"""

from hw.config import (
    AccelConfig,
    ArrayConfig,
    AttentionConfig,
    BufferConfig,
    GeluConfig,
    GemmConfig,
    LayerNormConfig,
    RequantConfig,
    SoftmaxConfig,
)
from sim import cyclemodel, golden

from . import model, simulate
from .generate import generate_verilog

__all__ = [
    "AccelConfig",
    "ArrayConfig",
    "GemmConfig",
    "RequantConfig",
    "SoftmaxConfig",
    "GeluConfig",
    "LayerNormConfig",
    "AttentionConfig",
    "BufferConfig",
    "golden",
    "cyclemodel",
    "simulate",
    "model",
    "generate_verilog",
]
