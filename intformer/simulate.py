"""Cycle-accurate RTL simulation of each unit: same arguments as the golden model, plus stats.

Each function returns a :class:`sim.bench.SimResult` with ``output`` (bit-exact with the golden
model), ``cycles`` and, where the array is used, ``utilization``. ``stall`` is the probability
that a testbench source withholds ``valid`` or a sink withholds ``ready`` on a cycle.

``backend`` chooses the simulator:

* ``"amaranth"`` (the default): Amaranth's simulator, the reference;
* ``"verilator"``: the unit's Verilog, Verilated with a harness generated from its signature
  (:mod:`sim.verilator`), about a thousand times faster once built. The first run of a unit and
  config builds it (seconds to a minute, cached under ``build/verilator/``). The same seed gives
  the same stall pattern, so outputs and cycle counts equal the Amaranth backend's;
* ``"auto"``: Verilator for runs the cycle model puts above :data:`AUTO_CYCLES` cycles when a
  C++ compiler is there, else Amaranth (with a warning saying why).

``extra["backend"]`` names the backend that ran.
"""

import warnings

import numpy as np

from sim import cyclemodel
from sim.bench import (
    BACKENDS,
    SimResult,
    run_attention,
    run_gelu,
    run_gemm,
    run_layernorm,
    run_requant,
    run_residual,
    run_softmax,
)

__all__ = ["SimResult", "AUTO_CYCLES", "choose_backend", "gemm", "requantize", "softmax", "gelu",
           "layernorm", "attention", "residual"]

#: ``backend="auto"`` runs on Verilator from this many (estimated) cycles on: a few seconds of
#: Amaranth's simulator, about what a small Verilator build costs the first time.
AUTO_CYCLES = 10_000


def choose_backend(backend, cycles):
    """The backend to run: ``backend`` itself, or for ``"auto"`` Verilator when ``cycles``
    reaches :data:`AUTO_CYCLES` and Verilator can build, else Amaranth."""
    if backend in BACKENDS:
        if backend == "verilator":
            from sim.verilator.toolchain import check_available

            check_available()            # one line saying what to install
        return backend
    if backend != "auto":
        raise ValueError(f"Simulation backend must be one of {', '.join(BACKENDS)} or auto, "
                         f"not {backend!r}")
    if cycles < AUTO_CYCLES:
        return "amaranth"
    from sim.verilator.toolchain import VerilatorUnavailable, check_available

    try:
        check_available()
    except VerilatorUnavailable as e:
        warnings.warn(f"backend='auto' uses amaranth for {cycles} cycles: {e}", stacklevel=3)
        return "amaranth"
    return "verilator"


def _run(runner, backend, estimate, *args, **kwargs):
    cycles = 0
    if backend == "auto":
        try:
            cycles = estimate()
        except (ValueError, TypeError, IndexError):
            pass                        # bad arguments: the runner says what is wrong
    chosen = choose_backend(backend, cycles)
    result = runner(*args, backend=chosen, **kwargs)
    result.extra["backend"] = chosen
    return result


def _beats(shape, lanes):
    rows = 1
    for n in shape[:-1]:
        rows *= n
    return rows * -(-(shape[-1] if shape else 1) // lanes)


def gemm(cfg, a, b, stall=0.0, seed=0, *, backend="amaranth"):
    """``a @ b`` on :class:`hw.gemm.GemmEngine`; ``output`` equals :func:`sim.golden.gemm`."""
    def estimate():
        return cyclemodel.gemm_cycles(cfg, np.shape(a)[0], np.shape(a)[1], np.shape(b)[1])

    return _run(run_gemm, backend, estimate, cfg, a, b, stall=stall, seed=seed)


def requantize(cfg, acc, multiplier, shift, stall=0.0, seed=0, *, backend="amaranth"):
    """:class:`hw.requant.Requantizer` on ``acc``; ``output`` equals
    ``golden.requantize(acc, multiplier, shift, acc_width=cfg.acc_width)``."""
    def estimate():
        return -(-np.size(acc) // cfg.array.cols)

    return _run(run_requant, backend, estimate, cfg, acc, multiplier, shift, stall=stall,
                seed=seed)


def residual(cfg, a, b, mult_a, mult_b, shift, stall=0.0, seed=0, *, backend="amaranth"):
    """:class:`hw.residual.Residual` (configured by ``cfg.residual``, with the X/Y lanes of
    ``cfg``) on ``a`` and ``b`` of any one shape; ``output`` equals
    ``sim.ops.residual_add(a, b, mult_a, mult_b, shift)`` at ``cfg.residual``'s widths."""
    from hw.isa import vector_lanes

    lanes = vector_lanes(cfg)

    def estimate():
        return -(-np.size(a) // lanes)

    return _run(run_residual, backend, estimate, cfg.residual, a, b, mult_a, mult_b, shift,
                lanes=lanes, stall=stall, seed=seed)


def softmax(cfg, q, scale, stall=0.0, seed=0, *, backend="amaranth"):
    """:class:`hw.softmax.Softmax` (configured by ``cfg.softmax``) on rows ``q`` (last axis);
    ``output`` equals ``golden.softmax(q, scale, cfg.softmax)[0]`` and ``scale`` its
    ``2**-out_width``."""
    def estimate():
        return 3 * _beats(np.shape(q), cfg.softmax.lanes)

    return _run(run_softmax, backend, estimate, cfg.softmax, q, scale, stall=stall, seed=seed)


def gelu(cfg, q, scale, stall=0.0, seed=0, *, backend="amaranth"):
    """:class:`hw.gelu.Gelu` (configured by ``cfg.gelu``) on ``q`` of any shape; ``output`` equals
    ``golden.gelu(q, scale, cfg.gelu)[0]`` and ``scale`` its ``y_scale``."""
    def estimate():
        return -(-np.size(q) // cfg.gelu.lanes)

    return _run(run_gelu, backend, estimate, cfg, q, scale, stall=stall, seed=seed)


def layernorm(cfg, q, scale, gamma=None, beta=None, stall=0.0, seed=0, *, backend="amaranth"):
    """:class:`hw.layernorm.LayerNorm` (configured by ``cfg.layernorm``) on the rows of ``q``
    (last axis), back to back; ``output`` equals
    ``golden.layernorm(q, scale, gamma, beta, cfg.layernorm)[0]`` and ``scale`` its
    ``y_scale``."""
    def estimate():
        return 2 * _beats(np.shape(q), cfg.layernorm.lanes)

    return _run(run_layernorm, backend, estimate, cfg, q, scale, gamma, beta, stall=stall,
                seed=seed)


def attention(cfg, q, k, v, q_scale, k_scale, v_scale, o_scale, *, causal=False, keys=None,
              stall=0.0, seed=0, backend="amaranth"):
    """Attention on :class:`hw.attention_unit.AttentionUnit`, one command per head.

    Same arguments as :func:`sim.golden.attention` after ``cfg``; ``output`` equals its first
    result. ``cycles`` runs from the first command to the last output row, loading included
    (masked keys are computed all the same: ``keys`` changes no cycle count);
    ``utilization`` counts useful MACs (only unmasked scores when causal) per array slot;
    ``extra`` holds ``array_busy`` (cycles the array took operands) and ``softmax_wait``
    (cycles the next job waited for the softmax).
    """
    def estimate():
        shape = np.shape(q)
        heads = shape[0] if len(shape) == 3 else 1
        return cyclemodel.attention_cycles(cfg, shape[-2], shape[-1], causal, heads)

    return _run(run_attention, backend, estimate, cfg, q, k, v, q_scale, k_scale, v_scale,
                o_scale, causal=causal, keys=keys, stall=stall, seed=seed)
