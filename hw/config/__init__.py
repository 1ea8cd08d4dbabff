"""Configuration dataclasses: one frozen dataclass per unit, gathered in :class:`AccelConfig`.

One module per config: :mod:`.array`, :mod:`.gemm` (with :func:`required_acc_width`),
:mod:`.requant`, :mod:`.softmax`, :mod:`.gelu`, :mod:`.layernorm`, :mod:`.attention`,
:mod:`.linear`, :mod:`.residual`, :mod:`.buffers` (the top's buffer depth), and :mod:`.accel`
(:class:`AccelConfig` and the presets); :mod:`.checks` holds the validation they share and
:mod:`.build` the build folder.
"""

from .accel import PRESETS, AccelConfig
from .array import ArrayConfig
from .attention import AttentionConfig
from .buffers import BufferConfig
from .build import BUILD_DIR_ENV, build_dir
from .gelu import GeluConfig
from .gemm import GemmConfig, required_acc_width
from .layernorm import LayerNormConfig
from .linear import LinearConfig
from .requant import RequantConfig
from .residual import ResidualConfig
from .softmax import SoftmaxConfig

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
    "BufferConfig",
    "AccelConfig",
    "PRESETS",
    "BUILD_DIR_ENV",
    "build_dir",
    "required_acc_width",
]
