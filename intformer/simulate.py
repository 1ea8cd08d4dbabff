"""Cycle-accurate RTL simulation of each unit: same arguments as the golden model, plus stats.

Each function returns a :class:`sim.bench.SimResult` with ``output`` (bit-exact with the golden
model), ``cycles`` and, where the array is used, ``utilization``. ``stall`` is the probability
that a testbench source withholds ``valid`` or a sink withholds ``ready`` on a cycle.
"""

from sim.bench import SimResult, run_gemm, run_requant

__all__ = ["SimResult", "gemm", "requantize"]


def gemm(cfg, a, b, stall=0.0, seed=0):
    """``a @ b`` on :class:`hw.gemm.GemmEngine`; ``output`` equals :func:`sim.golden.gemm`."""
    return run_gemm(cfg, a, b, stall=stall, seed=seed)


def requantize(cfg, acc, multiplier, shift, stall=0.0, seed=0):
    """:class:`hw.requant.Requantizer` on ``acc``; ``output`` equals
    ``golden.requantize(acc, multiplier, shift, acc_width=cfg.acc_width)``."""
    return run_requant(cfg, acc, multiplier, shift, stall=stall, seed=seed)


# == Softmax =====================================================================================

# == GELU ========================================================================================

# == LayerNorm ===================================================================================
