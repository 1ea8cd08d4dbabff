"""The RTL and board executors: an integer program run on the accelerator through
:class:`boards.host.Client`, op by op, each result checked against the golden executor's to the
integer."""

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from boards import host
from boards.board import Board
from hw.config import AccelConfig
from sim import golden, ops

from . import compiler, executor
from . import program as P

__all__ = ["TARGETS", "MismatchError", "OpRecord", "Execution", "check_program", "connect",
           "execute"]

#: Where a program runs: the golden models, the Verilated top, a board on a serial port.
TARGETS = ("golden", "sim", "board")


class MismatchError(AssertionError):
    """An op's result on the accelerator differs from the golden executor's on the same inputs.

    Attributes
    ----------
    op : Op
    index : tuple of int
        The first differing index (C order).
    got, want : int
        The two values there.
    """

    def __init__(self, op, target, index, got, want):
        self.op, self.index, self.got, self.want = op, index, got, want
        super().__init__(f"{op.kind} {op.output!r} on {target} differs from golden at index "
                         f"{index}: {got}, golden {want}")


def _layernorm(client, op, env, lengths):
    return client.layernorm(env[op.input], op.in_scale,
                            constants=executor.layernorm_constants(op))[0]


def _linear(client, op, env, lengths):
    x = env[op.input]
    y = client.linear(x.reshape(-1, x.shape[-1]), op.weight, op.bias, op.multipliers,
                      op.shifts, x_width=op.x_width, out_width=op.out_width)
    return y.reshape(x.shape[:-1] + (y.shape[-1],))


def _attention(client, op, env, lengths):
    """Each item's heads, its queries seeing its ``lengths[b]`` keys (``ATT_KEYS``), as
    :func:`sim.ops.masked_attention`."""
    q, k, v = (env[n] for n in (op.q, op.k, op.v))
    (B, L, D), H = q.shape, op.heads
    heads = [t.reshape(B, L, H, D // H).transpose(0, 2, 1, 3) for t in (q, k, v)]
    out = np.empty((B, H, L, D // H), dtype=np.int64)
    for b in range(B):
        out[b] = client.attention(*(t[b] for t in heads), op.q_scale, op.k_scale, op.v_scale,
                                  float(op.scale), keys=int(lengths[b]))[0]
    # The unit requantizes to requant.out_width; the program feeds a GEMM with in_width bits
    # (the golden executor's out_width): saturating the wider result is the same rounding.
    out = golden.saturate(out, client.cfg.array.in_width)
    return out.transpose(0, 2, 1, 3).reshape(B, L, D)


def _gelu(client, op, env, lengths):
    return client.gelu(env[op.input], op.in_scale)[0]


def _residual(client, op, env, lengths):
    return client.residual(env[op.a], env[op.b], op.ma, op.mb, op.shift)


def _linear_gelu(client, op, env, lengths, *, after):
    """GELU ``op`` of Linear ``after``, the Linear's results kept in C."""
    x = env[after.input]
    y = client.linear_gelu(x.reshape(-1, x.shape[-1]), after.weight, after.bias,
                           after.multipliers, after.shifts, op.in_scale, x_width=after.x_width,
                           out_width=after.out_width)[0]
    return y.reshape(x.shape[:-1] + (y.shape[-1],))


def _residual_layernorm(client, op, env, lengths, *, after):
    """LayerNorm ``op`` of residual add ``after``, the sum kept on chip."""
    return client.residual_layernorm(env[after.a], env[after.b], after.ma, after.mb,
                                     after.shift, constants=executor.layernorm_constants(op))[0]


#: The program ops the accelerator runs, and how: ``run(client, op, env, lengths)`` (the others
#: run on the host, golden code). The row ops take every row of the padded batch, as golden.
ACCEL = {P.LayerNorm: _layernorm, P.Linear: _linear, P.Attention: _attention, P.Gelu: _gelu,
         P.Residual: _residual}
#: The ops that run with the op before them, its result kept on chip
#: (:func:`compiler.chained_ops`): ``run(client, op, env, lengths, after=that op)``.
CHAINED = {P.LayerNorm: _residual_layernorm, P.Gelu: _linear_gelu}


def check_program(prog, cfg, seq_len, batch=1):
    """Refuse, before anything runs, a program the accelerator ``Accelerator(cfg)`` (buffers of
    ``cfg.buffers.depth`` words) cannot run on ``batch`` sequences of ``seq_len`` tokens: an op
    reading a tensor no earlier op writes, an integer constant missing or of the wrong shape,
    widths the units do not have, a RUN beyond a buffer (:func:`compiler.compile_program`). Each
    :exc:`ValueError` names the op. Returns the :class:`compiler.Compiled` plan (modelled
    cycles and link bytes per op, for the batch)."""
    written, width = set(), {}
    for op in prog.ops:
        name = f"{op.kind} {op.output!r}"
        for t in op.inputs:
            if t not in written:
                raise ValueError(f"{name} must read tensors written by earlier ops, not {t!r}")
        for f in dataclasses.fields(op):
            if f.type is np.ndarray and getattr(op, f.name) is None:
                raise ValueError(f"{name} must have its constant {f.name!r}, not None")
        for what, arr, shape in _constant_shapes(op, width, prog.hidden):
            if np.shape(arr) != shape:
                raise ValueError(f"{name} {what} must have shape {shape}, not "
                                 f"{np.shape(arr)}")
        if isinstance(op, P.Residual):
            r = cfg.residual
            if (op.out_width, op.out_width) != (r.in_width, r.out_width):
                raise ValueError(f"{name} must be {r.in_width}-bit in and {r.out_width}-bit "
                                 f"out (residual.in_width, out_width), not {op.out_width}-bit")
        written.add(op.output)
        width[op.output] = compiler._width(op, width, prog.hidden)
    return compiler.compile_program(prog, cfg, seq_len, batch=batch)


def _constant_shapes(op, width, hidden):
    if isinstance(op, P.Linear):
        K, N = width[op.input], op.weight.shape[-1]
        return [("weight", op.weight, (K, N)), *((f, getattr(op, f), (N,))
                                                 for f in ("bias", "multipliers", "shifts"))]
    if isinstance(op, P.LayerNorm):
        return [(f, getattr(op, f), (width[op.input],)) for f in ("gamma", "beta")]
    if isinstance(op, P.Requantize):
        return [(f, getattr(op, f), (width[op.input],)) for f in ("multipliers", "shifts")]
    return []


def connect(target, cfg, *, port=None, log=print, **kwargs):
    """The :class:`boards.host.Client` of ``target``: for ``"sim"`` a
    :class:`boards.verilatortop.VerilatorTop` of ``Accelerator(cfg)`` (built once, cached by
    hash under ``build/verilator/``), for ``"board"`` a :class:`boards.board.Board` on serial
    ``port`` (a board built with this config, or ``intformer sim-board`` of it). Both have the
    config's buffers, ``cfg.buffers.depth`` words."""
    if target == "sim":
        from boards.verilatortop import VerilatorTop

        log(f"building the {cfg.name} top (buffers of {cfg.buffers.depth} words) on Verilator "
            f"(cached)")
        return VerilatorTop(cfg, budget=kwargs.pop("budget", 1 << 22), **kwargs)
    if target == "board":
        if port is None:
            raise ValueError("Target 'board' must have a serial port (port=...), not None")
        return Board(port, cfg, **kwargs)
    raise ValueError(f"Accelerator target must be 'sim' or 'board', not {target!r}")


@dataclass
class OpRecord:
    """One op of an :class:`Execution`.

    Attributes
    ----------
    op : Op
    where : str
        ``"accelerator"``, ``"host"`` (an op with no RUN: ``Embed``, ``Requantize``, ``Pool``)
        or ``"on chip"`` (an op whose result the next op reads on chip,
        :func:`compiler.chained_ops`: a residual add before its LayerNorm, a Linear before its
        GELU; its runs and bytes are that next op's).
    runs : int
        RUN commands sent.
    cycles : int or None
        Measured RTL cycles, summed over the runs, each from its RUN command's first byte to
        ``busy`` low (``None`` on a board, which does not report cycles).
    model_cycles : int
        The plan's modelled cycles for the batch (:func:`compiler.compile_program`).
    link_bytes : int
        Bytes sent and received, as the plan counts them for the batch (a padded item's
        ``ATT_KEYS`` SET_REGs aside).
    macs : int
        Useful multiply-accumulates (the plan's; 0 but for GEMM-like ops).
    sent, received : int
        Bytes sent and received, counted on the link as the driver framed them.
    seconds : float
        Wall-clock time of the op.
    """

    op: P.Op
    where: str
    runs: int = 0
    cycles: int | None = None
    model_cycles: int = 0
    link_bytes: int = 0
    macs: int = 0
    sent: int = 0
    received: int = 0
    seconds: float = 0.0


@dataclass
class Execution:
    """A run of a program on a target: the output, every tensor (``keep=True``), and what
    each op cost."""

    target: str
    compiled: compiler.Compiled
    records: list = field(default_factory=list)
    output: object = None
    tensors: dict | None = None
    seconds: float = 0.0
    client: object = None
    checked: bool = True

    @property
    def cycles(self):
        """Measured RTL cycles of every run (None on a board)."""
        if self.target != "sim":
            return None
        return sum(r.cycles or 0 for r in self.records)

    def groups(self, by="layer"):
        """``{name: [records]}`` per layer (``emb``, ``L0`` ..., the pooling) or per op kind
        (``by="kind"``), in program order (:func:`compiler.group_key`)."""
        out = {}
        for r in self.records:
            out.setdefault(compiler.group_key(r.op, by), []).append(r)
        return out

    def table(self, by="layer"):
        """Measured against modelled, per layer or per op kind: runs, RTL and model cycles,
        the latency of the RTL cycles (on a board, the model's) at the config's clock, the
        GOPS achieved in them and their % of the array's peak, the plan's link bytes."""
        lines = [f"{by:<10} {'ops':>4} {'host':>4} {'runs':>6} {'RTL cycles':>12} "
                 f"{'model':>12} {'RTL/model':>9} {'latency ms':>10} {'GOPS':>6} {'peak%':>5} "
                 f"{'link bytes':>12} {'wall s':>7}"]
        for name, rs in self.groups(by).items():
            lines.append(self._row(name, rs))
        lines.append(self._row("total", self.records))
        return "\n".join(lines)

    def _row(self, name, rs):
        c = self.compiled
        runs = sum(r.runs for r in rs)
        model = sum(r.model_cycles for r in rs)
        host_ops = sum(r.where == "host" for r in rs)
        cycles = model
        if self.target == "sim":
            cycles = sum(r.cycles or 0 for r in rs)
            ratio = f"{cycles / model:9.3f}" if model else f"{'-':>9}"
            rtl = f"{cycles:12,d}"
        else:
            rtl, ratio = f"{'-':>12}", f"{'-':>9}"
        ms = f"{cycles / c.clock * 1e3:10.3f}" if c.clock else f"{'-':>10}"
        rate = compiler.rate_columns(sum(r.macs for r in rs), cycles, c.clock, c.peak_gops)
        return (f"{name:<10} {len(rs):4d} {host_ops:4d} {runs:6,d} {rtl} {model:12,d} {ratio} "
                f"{ms} {rate} {sum(r.link_bytes for r in rs):12,d} "
                f"{sum(r.seconds for r in rs):7.1f}")

    def summary(self):
        """One line: the forward's cycles (RTL, else modelled) and their latency at the clock,
        the GOPS achieved against the peak, and the link's bytes and time at the baud (the
        link carries the operands and results; the cycles count only the runs)."""
        c = self.compiled
        what = "RTL" if self.target == "sim" else "modelled"
        cycles = self.cycles if self.target == "sim" else c.cycles
        link_s = sum(r.link_bytes for r in self.records) * host.BITS_PER_BYTE / c.baud
        if not c.clock:
            compute = f"{cycles:,d} {what} cycles (no clock)"
        else:
            g = compiler.gops(sum(r.macs for r in self.records), cycles, c.clock)
            rate = (f", {g:.2f} GOPS of the array's {c.peak_gops:.2f} peak "
                    f"({100 * g / c.peak_gops:.1f}%)" if g else "")
            compute = (f"{cycles:,d} {what} cycles, {cycles / c.clock * 1e3:,.3f} ms at "
                       f"{c.clock / 1e6:g} MHz{rate}")
        return (f"compute: {compute}; link: {sum(r.link_bytes for r in self.records):,d} bytes, "
                f"{link_s:,.1f} s at {c.baud} baud")

    def __str__(self):
        c = self.compiled
        clock = f"{c.clock / 1e6:g} MHz" if c.clock else "no clock"
        where = {"sim": "the Verilated top", "board": "the board"}.get(self.target, "golden")
        on_acc = [r for r in self.records if r.where == "accelerator"]
        on_chip = [r for r in self.records if r.where == "on chip"]
        host = [r for r in self.records if r.where == "host"]
        on_host = sorted({r.op.kind for r in host})
        kept = (f"{len(on_chip)} kept on chip for the op after them "
                f"({', '.join(sorted({r.op.kind for r in on_chip}))}), " if on_chip else "")
        lat = ("no latency (no clock)" if not c.clock else
               f"latency: the {'RTL' if self.target == 'sim' else 'modelled'} cycles at {clock}")
        return "\n".join([
            f"{len(self.records)} ops on {where} ({c.cfg.name}, {c.cfg.array.rows}x"
            f"{c.cfg.array.cols} array, buffers of {c.depth} words), {c.sequences}, "
            f"{self.seconds:.1f} s: {len(on_acc)} on the accelerator, "
            f"{kept}{len(host)} on the host ({', '.join(on_host)}); "
            + ("every tensor equal to golden" if self.checked else "not checked against golden"),
            ("RTL cycles: measured on the top, from each RUN command's first byte to busy "
             "low; model: sim.cyclemodel's, the command port's 12 a run included; "
             if self.target == "sim" else "RTL cycles: not reported by a board; ")
            + f"{lat}; link bytes: the plan's count",
            self.summary(), self.table("layer"), "", self.table("kind")])


def execute(prog, cfg, ids, lengths, *, target, client=None, port=None, keep=False,
            progress=None, check=True, log=print):
    """Run ``prog`` on ``target`` (``"sim"`` or ``"board"``) op by op: the ops with a RUN
    through ``client`` (made by :func:`connect` when None; one given must have the config's
    buffer depth, ``cfg.buffers.depth``, which the plan splits by), the others on the host with the
    golden code. With ``check`` (the default) each op's result is compared with the golden
    executor's on the same inputs, and the first difference raises :exc:`MismatchError`
    naming the op and the index; so every tensor equals golden's.

    A padded batch (``lengths`` from 1 to ``L``) runs as the golden executor runs it: the row
    ops (Linear, LayerNorm, GELU, the residual add) on all ``B*L`` rows, padded ones included,
    and attention item by item, each item's heads with its ``lengths[b]`` keys (the top's key
    mask, ``ATT_KEYS``), as the plan of the batch counts them (:meth:`plan.Session.plan`); a
    padded item's ``ATT_KEYS`` SET_REGs are beyond its link bytes. The program is checked first
    (:func:`check_program`), before a model is built or a port opened.

    Returns an :class:`Execution` (``output``: the embeddings; ``tensors``: every tensor with
    ``keep``; ``client``: to pass to the next call).
    """
    if target not in TARGETS[1:]:
        raise ValueError(f"Accelerator target must be 'sim' or 'board', not {target!r}")
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Config must be an AccelConfig, not {cfg!r}")
    ids, lengths = np.asarray(ids), np.asarray(lengths)
    B, L = ids.shape
    executor.check_sequence(prog, cfg, L)
    lengths = ops.check_lengths("Sequence lengths", lengths, B, L)
    plan = check_program(prog, cfg, L, B)
    if client is None:
        client = connect(target, cfg, port=port, log=log)
    elif client.depth != cfg.buffers.depth:
        raise ValueError(f"Client buffer depth must be the config's buffers.depth "
                         f"({cfg.buffers.depth}), not {client.depth}")
    run = Execution(target, plan, client=client, checked=check)
    chained, after = plan.chained, plan.after
    env, t0 = {}, time.monotonic()
    for i, (op, step) in enumerate(zip(prog.ops, plan.steps, strict=True)):
        t = time.monotonic()
        where = "on chip" if i in chained else "accelerator" if type(op) in ACCEL else "host"
        r = OpRecord(op, where, model_cycles=step.cycles, link_bytes=step.link_bytes,
                     macs=step.macs)
        if r.where != "accelerator":
            # A chained op's result stays on chip, where the next op reads it (a residual add's
            # sum, a Linear's results): the tensor kept here is golden's, and the next op's
            # result is checked.
            out = executor._RUN[type(op)](op, env, cfg, ids, lengths)
        else:
            runs, cycles = client.runs, getattr(client, "run_cycles", None)
            sent, received = client.link.sent, client.link.received
            if i in after:
                out = CHAINED[type(op)](client, op, env, lengths, after=after[i])
            else:
                out = ACCEL[type(op)](client, op, env, lengths)
            r.runs = client.runs - runs
            if cycles is not None:
                r.cycles = client.run_cycles - cycles
            r.sent, r.received = client.link.sent - sent, client.link.received - received
            if check:
                _compare(op, target, out, executor._RUN[type(op)](op, env, cfg, ids, lengths))
        env[op.output] = out
        r.seconds = time.monotonic() - t
        run.records.append(r)
        if progress is not None:
            progress(i + 1, len(prog.ops), f"{op.kind} {op.output}")
    run.seconds = time.monotonic() - t0
    run.output = env[prog.ops[-1].output]
    run.tensors = env if keep else None
    return run


def _compare(op, target, got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise MismatchError(op, target, (), f"shape {got.shape}", f"shape {want.shape}")
    bad = np.argwhere(got != want)
    if len(bad):
        index = tuple(int(i) for i in bad[0])
        raise MismatchError(op, target, index, int(got[index]), int(want[index]))
