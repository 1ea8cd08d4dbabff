"""Fitting an integer program to an accelerator config: limit checks, the splits of each
operation into RUNs that fit the buffers, modelled cycles (:mod:`sim.cyclemodel`) and link
bytes (:mod:`intformer.model.plan`)."""

import dataclasses
import importlib
import itertools
from dataclasses import dataclass

from boards import host, splits
from hw.config import AccelConfig, GemmConfig
from hw.isa import Buf, buffer_specs, gelu_in_c, residual_to_x
from sim import ops

from . import program as P
from .plan import Session

__all__ = ["requirements", "check_config", "fit_config", "config_value", "board_clock", "Step",
           "Compiled", "compile_program", "fit_depth", "group_key", "gops", "rate_columns",
           "chained_residuals", "chained_gelus", "chained_ops"]


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
    """A copy of ``cfg`` with every limit :func:`check_config` would refuse raised, and its
    buffers' depth raised until every op fits them (:func:`fit_depth`), named
    ``<name>+model``; ``cfg`` itself when it fits. The array, lanes and GEMM maxima stay, so
    cycles stay comparable. The copy carries its depth (``buffers.depth``): a board built
    from it and the host driving it agree."""
    fitted = _fit_limits(cfg, prog, seq_len)
    fitted = fit_depth(prog, fitted, seq_len)
    if fitted is cfg:
        return cfg
    return dataclasses.replace(fitted, name=f"{cfg.name}+model")


def _fit_limits(cfg, prog, seq_len):
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
    return dataclasses.replace(cfg, **sections)


def board_clock(cfg):
    """``(clock in Hz or None, baud)`` of the board a config is built for: the board module's
    ``CLK_FREQ`` and ``BAUD`` (``boards.ulx3s``, ``boards.icebreaker``) for a preset named after
    one (``ulx3s+model`` included); no clock and the driver's default baud otherwise."""
    board = cfg.name.split("+")[0]
    if board in ("ulx3s", "icebreaker"):
        module = importlib.import_module(f"boards.{board}")
        return module.CLK_FREQ, module.BAUD
    return None, host.BAUD


def group_key(op, by="layer"):
    """The row of program op ``op`` in a per-layer table (``emb``, ``L0`` ..., ``embedding``:
    its output's name up to the first dot) or, with ``by="kind"``, in a per-kind one."""
    return op.kind if by == "kind" else op.output.split(".")[0]


def gops(macs, cycles, clock):
    """Achieved GOPS: ``2*macs`` operations in ``cycles`` at ``clock`` Hz (None without a
    clock, cycles or MACs)."""
    if not (clock and cycles and macs):
        return None
    return 2 * macs / (cycles / clock) / 1e9


def rate_columns(macs, cycles, clock, peak):
    """``GOPS peak%`` as two right-aligned columns (6 and 5 wide; dashes when there is no rate)."""
    g = gops(macs, cycles, clock)
    return f"{'-':>6} {'-':>5}" if g is None else f"{g:6.2f} {100 * g / peak:5.1f}"


@dataclass
class Step:
    """One op on a config: its RUNs (``runs``, also ``calls``), modelled ``cycles``, link bytes
    ``sent`` and ``received`` (of them, ``buffers``: each buffer's commands), useful ``macs``
    and a ``note`` (see :class:`plan.OpPlan`)."""

    op: P.Op
    runs: int
    cycles: int
    sent: int
    received: int
    macs: int
    note: str
    buffers: dict = dataclasses.field(default_factory=dict)

    @property
    def calls(self):
        return self.runs

    @property
    def link_bytes(self):
        return self.sent + self.received


@dataclass
class Compiled:
    """A program fitted to a config and its buffers (:attr:`depth` words, the config's), with
    per-op RUNs, modelled cycles and link bytes for a forward of ``batch`` sequences of
    ``seq_len`` tokens; ``clock`` (Hz, or None) and ``baud`` turn them into seconds."""

    program: P.Program
    cfg: AccelConfig
    seq_len: int
    steps: list
    clock: float | None = None
    baud: int = host.BAUD
    #: The ops whose results stay on chip for the next op (:func:`chained_ops`): ``{index:
    #: index of the op that reads it}``.
    chained: dict = dataclasses.field(default_factory=dict)
    #: Sequences a forward runs at once (:meth:`plan.Session.plan`).
    batch: int = 1

    @property
    def after(self):
        """``{index: the op before it}`` of :attr:`chained`: the LayerNorms that run with the
        residual add before them, the Gelus with the Linear before them."""
        return _after(self.program, self.chained)

    @property
    def depth(self):
        """The buffers' depth in words, ``cfg.buffers.depth``."""
        return self.cfg.buffers.depth

    @property
    def cycles(self):
        return sum(s.cycles for s in self.steps)

    @property
    def link_bytes(self):
        return sum(s.link_bytes for s in self.steps)

    @property
    def buffer_bytes(self):
        """Of :attr:`link_bytes`, each buffer's WRITE_BUFFER and READ_BUFFER frames (both
        ways), by buffer name, the most first; the rest is SET_REG, RUN and STATUS."""
        out = {}
        for s in self.steps:
            for name, n in s.buffers.items():
                out[name] = out.get(name, 0) + n
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    @property
    def compute_seconds(self):
        """The modelled cycles at ``clock`` (None without a clock)."""
        return None if self.clock is None else self.cycles / self.clock

    @property
    def link_seconds(self):
        """The link bytes at ``baud``, ``BITS_PER_BYTE`` bits each (the link carries one
        direction at a time: a request, then its response)."""
        return self.link_bytes * host.BITS_PER_BYTE / self.baud

    @property
    def peak_gops(self):
        """The array's peak, ``2*R*C*clock`` operations a second, in GOPS."""
        a = self.cfg.array
        return None if self.clock is None else 2 * a.rows * a.cols * self.clock / 1e9

    def __str__(self):
        clk, a = self.clock, self.cfg.array
        clock = f"{clk / 1e6:g} MHz" if clk else "no clock (latency needs --clock-mhz)"
        lines = [f"program of {len(self.steps)} ops on {self.cfg.name} ({a.rows}x{a.cols} array, "
                 f"buffers of {self.depth} words, {clock}, link {self.baud} baud), "
                 f"{self.sequences}:",
                 f"{'#':>3} {'op':<10} {'output':<12} {'runs':>6} {'cycles':>11} "
                 f"{'latency ms':>10} {'GOPS':>6} {'peak%':>5} {'link kB':>9} {'link s':>8}"
                 f"  shape"]
        for i, s in enumerate(self.steps):
            ms = f"{s.cycles / clk * 1e3:10.3f}" if clk else f"{'-':>10}"
            rate = rate_columns(s.macs, s.cycles, clk, self.peak_gops)
            link_s = s.link_bytes * host.BITS_PER_BYTE / self.baud
            lines.append(f"{i:3d} {s.op.kind:<10} {s.op.output:<12} {s.runs:6d} {s.cycles:11,d} "
                         f"{ms} {rate} {s.link_bytes / 1e3:9.1f} {link_s:8.2f}  {s.note}")
        runs = sum(s.runs for s in self.steps)
        sent, received = (sum(getattr(s, f) for s in self.steps) for f in ("sent", "received"))
        compute = (f"{self.compute_seconds * 1e3:,.3f} ms at {clk / 1e6:g} MHz" if clk
                   else "no clock")
        g = gops(sum(s.macs for s in self.steps), self.cycles, clk)
        rate = f", {g:.2f} GOPS, {100 * g / self.peak_gops:.1f}% of the {self.peak_gops:.2f} " \
               f"peak" if g else ""
        lines.append(f"total {runs:,d} runs, {self.cycles:,d} modelled cycles ({compute}{rate}); "
                     f"link {self.link_bytes:,d} bytes "
                     f"({sent:,d} sent, {received:,d} received), {self.link_seconds:,.1f} s at "
                     f"{self.baud} baud")
        if self.link_bytes:
            share = {**self.buffer_bytes}
            share["SET_REG, RUN, STATUS"] = self.link_bytes - sum(share.values())
            lines.append("link by buffer: " + ", ".join(
                f"{name} {n:,d} ({100 * n / self.link_bytes:.1f}%)" for name, n in share.items()))
        return "\n".join(lines + ["", self.table("layer")])

    @property
    def sequences(self):
        """What a forward runs, in words: one sequence of L tokens, or a batch of them."""
        if self.batch == 1:
            return f"one sequence of {self.seq_len} tokens"
        return f"a batch of {self.batch} sequences of {self.seq_len} tokens"

    def table(self, by="layer"):
        """The plan per layer (:func:`group_key`) or per op kind: ops, runs, modelled cycles,
        their latency at ``clock``, achieved GOPS and % of the peak, link bytes and seconds."""
        clk = self.clock
        groups = {}
        for s in self.steps:
            groups.setdefault(group_key(s.op, by), []).append(s)
        lines = [f"{by:<10} {'ops':>4} {'runs':>6} {'cycles':>12} {'latency ms':>10} "
                 f"{'GOPS':>6} {'peak%':>5} {'link bytes':>12} {'link s':>8}"]
        for name, steps in [*groups.items(), ("total", self.steps)]:
            cycles = sum(s.cycles for s in steps)
            link = sum(s.link_bytes for s in steps)
            ms = f"{cycles / clk * 1e3:10.3f}" if clk else f"{'-':>10}"
            rate = rate_columns(sum(s.macs for s in steps), cycles, clk, self.peak_gops)
            lines.append(f"{name:<10} {len(steps):4d} {sum(s.runs for s in steps):6,d} "
                         f"{cycles:12,d} {ms} {rate} {link:12,d} "
                         f"{link * host.BITS_PER_BYTE / self.baud:8.2f}")
        return "\n".join(lines)


def chained_residuals(prog, cfg):
    """The residual adds of ``prog`` whose sums stay on chip on ``Accelerator(cfg)``:
    ``{index of the Residual: index of the LayerNorm after it}`` for each Residual that the
    next op, a LayerNorm, reads and no other op does, where the top can write the sums into X
    (``RES_TO_X``, :func:`hw.isa.residual_to_x`), the LayerNorm reads them whole
    (``layernorm.in_width >= residual.out_width``) and a row of each half fits X. Such a pair
    runs as :meth:`boards.host.Client.residual_layernorm`: the sums never cross the link."""
    if not residual_to_x(cfg) or cfg.layernorm.in_width < cfg.residual.out_width:
        return {}
    x = buffer_specs(cfg)[Buf.X]
    if 2 * -(-prog.hidden // x.lanes) > x.depth:
        return {}
    readers = _readers(prog)
    return {i: i + 1 for i, (op, nxt) in enumerate(itertools.pairwise(prog.ops))
            if isinstance(op, P.Residual) and isinstance(nxt, P.LayerNorm)
            and nxt.input == op.output and readers[op.output] == 1}


def chained_gelus(prog, cfg):
    """The Linears of ``prog`` whose results stay on chip on ``Accelerator(cfg)``: ``{index
    of the Linear: index of the Gelu after it}`` for each Linear that the next op, a Gelu,
    reads and no other op does, where the top runs GELU over C (``GELU_IN_C``,
    :func:`hw.isa.gelu_in_c`), the Linear's output width is GELU's input width and its sums
    are made on chip (:func:`boards.splits.sums_on_chip`). Such a pair runs as
    :meth:`boards.host.Client.linear_gelu`: the Linear's results never cross the link."""
    if not gelu_in_c(cfg):
        return {}
    iw, readers = cfg.array.in_width, _readers(prog)
    return {i: i + 1 for i, (op, nxt) in enumerate(itertools.pairwise(prog.ops))
            if isinstance(op, P.Linear) and isinstance(nxt, P.Gelu)
            and nxt.input == op.output and readers[op.output] == 1
            and op.out_width == cfg.gelu.in_width
            and splits.sums_on_chip(cfg, ops.linear_acc_width(op.bias, op.weight.shape[0],
                                                              op.x_width, iw),
                                    ops.linear_passes(op.x_width, iw))}


def chained_ops(prog, cfg):
    """Every pair of ops of ``prog`` that runs as one on ``Accelerator(cfg)``, the first's
    result kept on chip: :func:`chained_residuals` and :func:`chained_gelus`, ``{index of the
    first: index of the second}``."""
    return {**chained_residuals(prog, cfg), **chained_gelus(prog, cfg)}


def _readers(prog):
    """How many ops read each tensor of ``prog``."""
    readers = {}
    for op in prog.ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    return readers


def _after(prog, chained):
    return {j: prog.ops[i] for i, j in chained.items()}


def compile_program(prog, cfg, seq_len=128, *, batch=1, clock=None, baud=None):
    """Check ``cfg`` against ``prog`` (:func:`check_config`) and plan every op for a forward of
    ``batch`` sequences of ``seq_len`` tokens on ``Accelerator(cfg)``, its buffers
    ``cfg.buffers.depth`` words deep (:class:`plan.Session`): the
    RUNs each op splits into so that each fits the buffers, their modelled cycles and the link
    bytes the host driver sends and receives. Raises :exc:`ValueError` naming the op, the
    run's shape and the limit when an op cannot be split to fit. ``clock`` (Hz) and ``baud``
    default to the config's board (:func:`board_clock`)."""
    check_config(prog, cfg, seq_len)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"Batch must be a positive integer, not {batch!r}")
    board_hz, board_baud = board_clock(cfg)
    session = Session(cfg)
    width, steps = {}, []
    chained = chained_ops(prog, cfg)
    after = _after(prog, chained)
    for i, op in enumerate(prog.ops):
        plan = session.plan(op, seq_len, width, batch=batch, chained=i in chained,
                            after=after.get(i))
        steps.append(Step(op, **dataclasses.asdict(plan)))
        width[op.output] = _width(op, width, prog.hidden)
    return Compiled(prog, cfg, seq_len, steps, board_hz if clock is None else clock,
                    board_baud if baud is None else baud, chained, batch)


def fit_depth(prog, cfg, seq_len):
    """``cfg`` with the smallest buffer depth of ``cfg.buffers.depth * 2**i`` (at most 65536)
    at which every op of ``prog`` fits its buffers (a row longer than X, an attention head
    larger than A, B or V need more): ``cfg`` itself when it already fits, else a copy with
    ``buffers.depth`` raised. ``cfg`` must meet the program's limits (:func:`fit_config`
    raises both)."""
    check_config(prog, cfg, seq_len)
    fitted = cfg
    while True:
        try:
            compile_program(prog, fitted, seq_len)
            return fitted
        except ValueError:
            depth = fitted.buffers.depth
            if depth * 2 > 1 << 16:
                raise
            fitted = cfg.replace(buffers=dataclasses.replace(cfg.buffers, depth=depth * 2))


def _width(op, width, hidden):
    if isinstance(op, P.Linear):
        return op.weight.shape[1]
    if isinstance(op, P.Requantize):
        return len(op.multipliers)
    if isinstance(op, P.Gelu):
        return width[op.input]
    return hidden
