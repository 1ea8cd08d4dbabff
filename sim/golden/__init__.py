"""Bit-exact NumPy models of every unit: the specification the RTL must match.

Integers in, integers out. A real value is ``q * scale``. Nothing here imports Amaranth. One module
a unit: :mod:`.integers` (checked integer arrays, the rounding rule), :mod:`.gemm_model` (GEMM and
requantizer), :mod:`.softmax_model`, :mod:`.gelu_model`, :mod:`.layernorm_model` and
:mod:`.attention_model`; every public name is re-exported here, so ``golden.softmax`` is the
softmax.
"""

from .attention_model import (  # noqa: F401 (re-exported)
    AttentionConstants,
    attention,
    attention_constants,
    attention_from_constants,
    check_attention_input,
    check_keys,
)
from .gelu_model import (  # noqa: F401 (re-exported)
    GELU_A,
    GELU_B,
    IBERT_GELU_A,
    IBERT_GELU_B,
    SHIFT_GELU_MULT,
    SHIFT_GELU_SHIFT,
    IBertGeluConstants,
    ShiftGeluConstants,
    gelu,
    gelu_constants,
    gelu_from_constants,
    gelu_scale_range,
)
from .gemm_model import (  # noqa: F401 (re-exported)
    check_gemm_operands,
    gemm,
    quantize_multiplier,
    requantize,
)
from .integers import (  # noqa: F401 (re-exported)
    bit_length,
    check_int_array,
    exact_matmul,
    round_shift,
    saturate,
)
from .layernorm_model import (  # noqa: F401 (re-exported)
    LAYERNORM_RECIP_BITS,
    LAYERNORM_SQRT_WIDTH,
    LayerNormConstants,
    check_layernorm_constants,
    check_layernorm_input,
    isqrt,
    layernorm,
    layernorm_constants,
    layernorm_from_integers,
    layernorm_row_stats,
)
from .softmax_model import (  # noqa: F401 (re-exported)
    IBERT_EXP_A,
    IBERT_EXP_B,
    IBERT_EXP_C,
    SoftmaxConstants,
    check_softmax_input,
    softmax,
    softmax_constants,
    softmax_exp,
    softmax_from_constants,
)

__all__ = [
    "check_int_array",
    "check_gemm_operands",
    "gemm",
    "round_shift",
    "saturate",
    "requantize",
    "quantize_multiplier",
    "SoftmaxConstants",
    "softmax_constants",
    "softmax_exp",
    "check_softmax_input",
    "softmax",
    "softmax_from_constants",
    "GELU_A",
    "GELU_B",
    "IBERT_GELU_A",
    "IBERT_GELU_B",
    "IBertGeluConstants",
    "ShiftGeluConstants",
    "gelu_scale_range",
    "gelu_constants",
    "gelu",
    "gelu_from_constants",
    "isqrt",
    "bit_length",
    "LayerNormConstants",
    "layernorm_constants",
    "layernorm_row_stats",
    "check_layernorm_constants",
    "check_layernorm_input",
    "layernorm",
    "layernorm_from_integers",
    "AttentionConstants",
    "attention_constants",
    "attention_from_constants",
    "check_attention_input",
    "attention",
]
