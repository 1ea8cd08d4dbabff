"""Fitting an integer program to an accelerator config: limit checks, the splits of each
operation into engine calls, and modelled cycles (:mod:`sim.cyclemodel`)."""

import dataclasses
from dataclasses import dataclass

from hw.config import AccelConfig, GemmConfig
from sim import cyclemodel, ops

from . import program as P

__all__ = ["requirements", "check_config", "fit_config", "config_value", "Step", "Compiled",
           "compile_program"]


def requirements(prog, seq_len):
    """What ``prog`` needs of a config for sequences of up to ``seq_len`` tokens: a list of
    ``(section, field, rule, value)`` with rule ``"=="`` or ``">="``."""
    ln, ge, rq = (prog.units[k] for k in ("layernorm", "gelu", "requant"))
    acc = max(ops.linear_acc_width(op.bias, op.weight.shape[0], op.x_width)
              for op in prog.ops if isinstance(op, P.Linear))
    return [
        ("array", "in_width", "==", 8),
        ("requant", "mult_width", ">=", rq["mult_width"]),
        ("requant", "out_width", ">=", rq["out_width"]),
        ("layernorm", "enabled", "==", True),
        ("layernorm", "max_len", ">=", prog.hidden),
        *(("layernorm", f, "==", ln[f]) for f in ("in_width", "out_width", "gamma_width",
                                                 "beta_width")),
        ("gelu", "enabled", "==", True),
        *(("gelu", f, "==", ge[f]) for f in ("variant", "in_width", "poly_width",
                                            "frac_width")),
        ("attention", "enabled", "==", True),
        ("attention", "max_head_dim", ">=", prog.hidden // prog.heads),
        ("attention", "max_seq_len", ">=", seq_len),
        ("gemm", "acc_width", ">=", acc),
    ]


def config_value(cfg, section, name):
    """The value of limit ``section.name`` of config ``cfg`` (``gemm.acc_width`` is the
    config's accumulator width)."""
    if (section, name) == ("gemm", "acc_width"):
        return cfg.acc_width
    return getattr(getattr(cfg, section), name)


def check_config(prog, cfg, seq_len):
    """Raise one :exc:`ValueError` listing every limit of ``cfg`` too small for ``prog`` (and
    the value to raise it to); :func:`fit_config` makes a config that fits."""
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Config must be an AccelConfig, not {cfg!r}")
    bad = []
    for section, name, rule, need in requirements(prog, seq_len):
        have = config_value(cfg, section, name)
        if (have != need) if rule == "==" else (have < need):
            word = "be" if rule == "==" else "be at least"
            bad.append(f"{section}.{name} must {word} {need!r}, not {have!r}")
    if bad:
        raise ValueError(f"Config {cfg.name!r} must fit the model (raise these limits, or use "
                         f"fit_config / --fit): {'; '.join(bad)}")


def fit_config(cfg, prog, seq_len):
    """A copy of ``cfg`` with every limit :func:`check_config` would refuse raised (and named
    ``<name>+model``); the array, lanes and GEMM maxima stay, so cycles stay comparable."""
    changes = {}
    for section, name, rule, need in requirements(prog, seq_len):
        have = config_value(cfg, section, name)
        if (have != need) if rule == "==" else (have < need):
            changes.setdefault(section, {})[name] = need
    if not changes:
        return cfg
    sections = {}
    for section, fields in changes.items():
        base = getattr(cfg, section)
        if section == "gemm":
            base = GemmConfig(max_m=base.max_m, max_k=base.max_k, max_n=base.max_n)
        sections[section] = dataclasses.replace(base, **fields)
    return dataclasses.replace(cfg, name=f"{cfg.name}+model", **sections)


@dataclass
class Step:
    """One op on a config: engine calls it splits into and modelled cycles."""

    op: P.Op
    calls: int
    cycles: int
    note: str


def _linear_step(op, cfg, M):
    """``(calls, cycles, note)`` of a Linear on ``M`` tokens: a ``RUN LINEAR`` per block of
    ``gemm.max_m`` x ``max_k`` x ``max_n`` and per pass, each costing
    :func:`sim.cyclemodel.linear_cycles` (K chunks and passes are modelled as more such runs,
    which the top cannot chain yet: it has no accumulator preload)."""
    g = cfg.gemm
    K, N = op.weight.shape
    passes = ops.linear_passes(op.x_width, cfg.array.in_width)
    cycles = calls = 0
    for m0 in range(0, M, g.max_m):
        for n0 in range(0, N, g.max_n):
            for k0 in range(0, K, g.max_k):
                calls += passes
                cycles += passes * cyclemodel.linear_cycles(
                    cfg, min(g.max_m, M - m0), min(g.max_k, K - k0), min(g.max_n, N - n0))
    split = [f"{-(-d // lim)} x {w}" for d, lim, w in ((M, g.max_m, "M"), (K, g.max_k, "K"),
                                                       (N, g.max_n, "N")) if d > lim]
    if passes > 1:
        split.append(f"{passes} passes of {op.x_width}-bit inputs")
    return calls, cycles, f"{M}x{K}x{N}" + (f", split {', '.join(split)}" if split else "")


def _stream(elements, lanes):
    """A streaming unit at one beat per cycle (latency left out)."""
    return -(-elements // lanes)


def _step(op, cfg, L, hidden, width):
    """``Step`` of ``op`` on one sequence of ``L`` tokens; ``width`` maps tensor names to
    their channel counts."""
    if isinstance(op, P.Linear):
        return Step(op, *_linear_step(op, cfg, L))
    if isinstance(op, P.Attention):
        d = hidden // op.heads
        return Step(op, op.heads, cyclemodel.attention_cycles(cfg, L, d, heads=op.heads),
                    f"{op.heads} heads, L={L}, d={d}")
    if isinstance(op, P.LayerNorm):
        n = len(op.gamma)
        return Step(op, 1, L * _stream(n, cfg.layernorm.lanes), f"{L} rows of {n}")
    if isinstance(op, P.Gelu):
        return Step(op, 1, _stream(L * width[op.input], cfg.gelu.lanes), "elementwise")
    if isinstance(op, P.Requantize):
        n = len(op.multipliers)
        return Step(op, 1, L * n, f"{L}x{n}, one per cycle")
    if isinstance(op, P.Residual):
        # One RUN RESIDUAL of L rows (X deep enough for both halves): a beat every 2 cycles.
        return Step(op, 1, cyclemodel.residual_cycles(cfg, L, hidden),
                    f"{L} rows of {hidden}, a beat every 2 cycles")
    if isinstance(op, P.Pool):
        return Step(op, 1, L * hidden, "sum over tokens")
    return Step(op, 0, 0, "host (table lookup)")


@dataclass
class Compiled:
    """A program fitted to a config, with per-op engine calls and modelled cycles for one
    sequence of ``seq_len`` tokens."""

    program: P.Program
    cfg: AccelConfig
    seq_len: int
    steps: list

    @property
    def cycles(self):
        return sum(s.cycles for s in self.steps)

    def __str__(self):
        lines = [f"program of {len(self.steps)} ops on {self.cfg.name} "
                 f"({self.cfg.array.rows}x{self.cfg.array.cols} array), one sequence of "
                 f"{self.seq_len} tokens:",
                 f"{'#':>3} {'op':<10} {'output':<12} {'calls':>5} {'cycles':>10}  shape"]
        for i, s in enumerate(self.steps):
            lines.append(f"{i:3d} {s.op.kind:<10} {s.op.output:<12} {s.calls:5d} "
                         f"{s.cycles:10,d}  {s.note}")
        lines.append(f"total {self.cycles:,d} modelled cycles")
        return "\n".join(lines)


def compile_program(prog, cfg, seq_len=128):
    """Check ``cfg`` against ``prog`` (:func:`check_config`) and plan every op for one sequence
    of ``seq_len`` tokens: the engine calls each GEMM splits into (M, K and N beyond
    ``gemm.max_*``; K chunks preload the previous chunk's accumulators) and modelled cycles."""
    check_config(prog, cfg, seq_len)
    width, steps = {}, []
    for op in prog.ops:
        steps.append(_step(op, cfg, seq_len, prog.hidden, width))
        width[op.output] = _width(op, width, prog.hidden)
    return Compiled(prog, cfg, seq_len, steps)


def _width(op, width, hidden):
    if isinstance(op, P.Linear):
        return op.weight.shape[1]
    if isinstance(op, P.Requantize):
        return len(op.multipliers)
    if isinstance(op, P.Gelu):
        return width[op.input]
    return hidden
