"""The RUNs of each program op on a board: the splits that keep every RUN within the buffers,
the bytes the host driver sends and receives over the link, and modelled cycles."""

from dataclasses import dataclass, field

from boards import framing, splits
from hw.isa import (
    ATTENTION_REGS,
    RESIDUAL_REGS,
    Buf,
    LinMode,
    Op,
    Reg,
    buffer_specs,
    channel_tiles,
    gelu_registers,
    narrow,
    register_specs,
    vector_lanes,
)
from sim import cyclemodel, golden, layout, ops
from sim.portmodel import run_checks

from . import program as P

__all__ = ["OpPlan", "Session"]


@dataclass
class OpPlan:
    """What one program op costs on a board, for one batch of sequences.

    Attributes
    ----------
    runs : int
        RUN commands.
    cycles : int
        Modelled accelerator cycles of those runs, each from its RUN command's first byte to
        ``busy`` low (:mod:`sim.cyclemodel`'s run models plus
        :data:`~sim.cyclemodel.RUN_PORT_CYCLES`; the link's time is apart).
    sent, received : int
        Link bytes from the host and to it (every frame, polls included).
    macs : int
        Useful multiply-accumulates (GEMM-like ops; 0 for the others).
    note : str
        The shape and its split.
    buffers : dict of str to int
        Of ``sent + received``, the bytes of each buffer's WRITE_BUFFER and READ_BUFFER frames
        (both ways), by buffer name; the rest is SET_REG, RUN and STATUS.
    """

    runs: int = 0
    cycles: int = 0
    sent: int = 0
    received: int = 0
    macs: int = 0
    note: str = ""
    buffers: dict = field(default_factory=dict)


def _blocks(n, size):
    """``[(length, count)]`` of the blocks of ``size`` that cover ``n``: full ones, then the
    rest."""
    full, rest = divmod(n, size)
    return [(size, full)] * bool(full) + [(rest, 1)] * bool(rest)


class Session:
    """A forward on ``Accelerator(cfg)`` (buffers of ``cfg.buffers.depth`` words) through
    :class:`boards.host.Client`,
    counted, not run: each op's commands in the driver's order and with its splits
    (:func:`boards.splits.gemm_block`, :func:`~boards.splits.k_chunk`,
    :func:`~boards.splits.rows_per_run`, :func:`~boards.splits.residual_per_run`), its link
    bytes from :class:`boards.framing.LinkCount`, every RUN checked against the buffers with
    :func:`sim.portmodel.run_checks` (the dispatcher's rule) and every register value against
    :func:`hw.isa.register_specs`.

    The board's registers persist from op to op, as the driver's do (a SET_REG of the value
    held is skipped). Each op writes its operands and constants and reads its result: weights
    are sent every forward, as the buffers hold one block at a time.
    """

    def __init__(self, cfg, *, max_payload=255):
        self.cfg, self.depth, self.max_payload = cfg, cfg.buffers.depth, max_payload
        self.specs = buffer_specs(cfg)
        self.results = narrow(self.specs, Buf.C)     # where requantized results are read
        self.reg_max = {reg: hi for reg, (_, hi) in register_specs(cfg).items()}
        self.lanes = vector_lanes(cfg)
        self.regs = {}
        self._memo = {}

    def plan(self, op, L, width, *, batch=1, chained=False, after=None):
        """The :class:`OpPlan` of program op ``op`` on a batch of ``batch`` sequences of ``L``
        tokens, as :func:`intformer.model.accel.execute` runs it: the row ops (Linear,
        LayerNorm, GELU, the residual add) on all ``batch * L`` rows at once, so that a
        Linear's weights are sent once a block of those rows rather than once a sequence, and
        attention item by item. ``width`` maps
        tensor names to their channel counts. Raises :exc:`ValueError` naming the op, the
        run's shape and the limit when a RUN cannot fit.

        An op whose result stays on chip for the next (``chained``,
        :func:`~intformer.model.compiler.chained_ops`) costs nothing of its own: the op that
        reads it (given it as ``after``) counts the pair, a residual add and its LayerNorm as
        :meth:`boards.host.Client.residual_layernorm` sends them, a Linear and its GELU as
        :meth:`boards.host.Client.linear_gelu` does."""
        c, rows = _Count(self, op), batch * L
        if chained and isinstance(op, P.Linear):
            c.note = "results kept in C for the next GELU (GELU_IN_C)"
        elif chained:
            c.note = "sum kept on chip for the next LayerNorm (RES_TO_X)"
        elif after is not None and isinstance(op, P.Gelu):
            c.note = self._linear(c, after, rows, gelu=op) + ", then GELU over C"
        elif after is not None:
            c.note = self._residual_layernorm(c, after, op, rows)
        elif isinstance(op, P.Linear):
            c.note = self._linear(c, op, rows)
        elif isinstance(op, P.Attention):
            c.note = self._attention(c, op, L, width[op.q], batch)
        elif isinstance(op, P.LayerNorm):
            c.note = self._layernorm(c, op, rows)
        elif isinstance(op, P.Gelu):
            c.note = self._gelu(c, op, rows * width[op.input])
        elif isinstance(op, P.Residual):
            c.note = self._residual(c, op, rows * width[op.a])
        else:
            c.note = "host (no RUN op)"
        return OpPlan(c.runs, c.cycles, c.link.sent, c.link.received, c.macs, c.note,
                      c.buffers)

    # -- GEMM-like ops ---------------------------------------------------------------------------

    def _gemm_block(self, c, m, k, n, hwop, times, write_b):
        """``times`` blocks of :meth:`boards.host.Client._gemm_block`."""
        R, C = self.cfg.array.rows, self.cfg.array.cols
        if times <= 0:
            return
        c.write(Buf.A, -(-m // R) * k, times)
        if write_b:
            c.write(Buf.B, -(-n // C) * k, times)
        for reg, v in ((Reg.M, m), (Reg.K, k), (Reg.N, n)):
            c.set(reg, v)
        model = cyclemodel.gemm_raw_cycles if hwop == Op.GEMM_RAW else cyclemodel.linear_cycles
        c.run(hwop, self._cycles(model, m, k, n), times)
        c.read(Buf.C if hwop == Op.GEMM_RAW else self.results, m * -(-n // C), times)

    def _gemm(self, c, M, K, N):
        """:meth:`boards.host.Client.gemm` with exact accumulators: K chunks, blocks."""
        kmax = splits.k_chunk(self.cfg, self.depth)
        if K > kmax:
            for k0 in range(0, K, kmax):
                self._gemm(c, M, min(kmax, K - k0), N)
            return
        self._blocks(c, M, K, N, Op.GEMM_RAW)

    def _blocks(self, c, M, K, N, hwop):
        """The blocks of :meth:`boards.host.Client.gemm`: per column block, B written once,
        then the row blocks."""
        mb, nb = splits.gemm_block(self.cfg, self.depth, M, K, N)
        for n, ncount in _blocks(N, nb):
            for _ in range(ncount):
                for i, (m, mcount) in enumerate(_blocks(M, mb)):
                    self._gemm_block(c, m, K, n, hwop, 1, write_b=i == 0)
                    self._gemm_block(c, m, K, n, hwop, mcount - 1, write_b=False)

    def _linear(self, c, op, M, *, gelu=None):
        """:meth:`boards.host.Client.linear`: the whole sum on chip (the RUN LINEARs of
        :func:`boards.splits.linear_runs`), or, where C cannot hold it, GEMM_RAW digits and K
        chunks summed on the host. With ``gelu`` (the Gelu op after it),
        :meth:`boards.host.Client.linear_gelu`: each block's results through a GELU over C,
        then read whole."""
        cfg, iw = self.cfg, self.cfg.array.in_width
        if gelu is not None:
            self._gelu_constants(c, gelu)
            c.set(Reg.GELU_IN_C, 1)
        K, N = op.weight.shape
        c.macs = M * K * N
        passes = ops.linear_passes(op.x_width, iw)
        kmax = splits.k_chunk(cfg, self.depth)
        if not splits.sums_on_chip(cfg, ops.linear_acc_width(op.bias, K, op.x_width, iw),
                                   passes):
            for _ in range(passes):
                self._gemm(c, M, K, N)
            how = [f"GEMM_RAW, K in chunks of {kmax}"] if K > kmax else ["GEMM_RAW"]
            if passes > 1:
                how.append(f"{passes} passes of {op.x_width}-bit inputs")
            how.append("sums and requantization on the host")
            mb, nb = splits.gemm_block(cfg, self.depth, M, min(K, kmax), N)
            return f"{M}x{K}x{N}, {', '.join(how)}, blocks of {mb}x{min(K, kmax)}x{nb}"
        split = splits.linear_split(cfg, self.depth, M, K, N, passes)
        kc = split.k_chunk
        R, C = cfg.array.rows, cfg.array.cols
        for r in splits.linear_runs(cfg, self.depth, M, K, N, passes, split):
            if r.write_chan:        # as Client.write_channels
                for _, count in layout.channel_pieces(r.n, C, channel_tiles(cfg)):
                    c.write(Buf.CHAN, count)
            c.set(Reg.LIN_MODE, r.mode.value)
            c.write(Buf.A, -(-r.m // R) * r.k)
            if r.write_b:
                c.write(Buf.B, -(-r.n // C) * r.k)
            for reg, v in ((Reg.M, r.m), (Reg.K, r.k), (Reg.N, r.n)):
                c.set(reg, v)
            raw = LinMode.RAW in r.mode
            c.run(Op.LINEAR, self._cycles(cyclemodel.linear_cycles, r.m, r.k, r.n, raw))
            words = r.m * -(-r.n // C)
            if r.read_c and gelu is not None:   # GELU over C, its outputs read from C
                c.set(Reg.ROW_LEN, C)
                c.set(Reg.ROWS, words)
                c.run(Op.GELU, cyclemodel.gelu_cycles(cfg, words, C, in_c=True))
                c.read(Buf.C, words)
            elif r.read_c:  # the sum's last run: requantized, through C_OUT, unless RAW
                c.read(Buf.C if raw else self.results, words)
        how = ["LINEAR"]
        if K > kc or passes > 1:
            how.append(f"K in chunks of {kc}" if K > kc else "")
            how.append(f"{passes} passes of {op.x_width}-bit inputs" if passes > 1 else "")
            how = [h for h in how if h] + ["summed in C"]
        mb, nb = splits.gemm_block(cfg, self.depth, M, kc, N, split.rows_first)
        return f"{M}x{K}x{N}, {', '.join(how)}, blocks of {mb}x{kc}x{nb}"

    def _attention(self, c, op, L, hidden, batch):
        """:meth:`boards.host.Client.attention` of each of ``batch`` items: one RUN ATTENTION
        a head."""
        cfg, H = self.cfg, op.heads
        R, C, d = cfg.array.rows, cfg.array.cols, hidden // op.heads
        k = golden.attention_constants(op.q_scale, op.k_scale, op.v_scale, float(op.scale), d,
                                       cfg)
        for reg, v in ((Reg.ATT_LEN, L), (Reg.ATT_DIM, d), (Reg.ATT_CAUSAL, 0),
                       (Reg.ATT_KEYS, 0), (Reg.ATT_MULT, k.multiplier), (Reg.ATT_SHIFT, k.shift)):
            c.set(reg, v)
        for name in cfg.attention_softmax.constant_widths:
            c.set(ATTENTION_REGS[name], getattr(k.softmax, name))
        heads = H * batch
        c.write(Buf.A, -(-L // R) * d, heads)
        c.write(Buf.B, -(-L // C) * d, heads)
        c.write(Buf.V, -(-d // C) * L, heads)
        c.run(Op.ATTENTION, self._cycles(cyclemodel.attention_run_cycles, L, d), heads)
        c.read(self.results, -(-d // C) * L, heads)
        c.macs = 2 * heads * L * L * d
        return f"{batch} x {H} heads, L={L}, d={d}" if batch > 1 else f"{H} heads, L={L}, d={d}"

    # -- row ops ---------------------------------------------------------------------------------

    def _rows(self, c, hwop, rows, length):
        """:meth:`boards.host.Client._rows`: ``rows`` rows through X and Y, as many a run as
        X holds."""
        beats = -(-length // self.lanes)
        per = splits.rows_per_run(self.depth, beats)
        model = _ROW_MODELS[hwop]
        c.set(Reg.ROW_LEN, length)
        for n, count in _blocks(rows, per):
            c.set(Reg.ROWS, n)
            c.write(splits.row_input(self.cfg, hwop), n * beats, count)
            c.run(hwop, self._cycles(model, n, length), count)
            c.read(splits.row_output(self.cfg, hwop), n * beats, count)
        return per

    def _layernorm(self, c, op, L):
        n = len(op.gamma)
        c.write(Buf.COEF, -(-n // self.cfg.layernorm.lanes))
        per = self._rows(c, Op.LAYERNORM, L, n)
        return f"{L} rows of {n}, {min(per, L)} a run"

    def _gelu_constants(self, c, op):
        for reg, value in gelu_registers(golden.gelu_constants(op.in_scale, self.cfg.gelu)).items():
            c.set(reg, value)

    def _gelu(self, c, op, size):
        self._gelu_constants(c, op)
        if Reg.GELU_IN_C in self.reg_max:
            c.set(Reg.GELU_IN_C, 0)
        length = min(size, self.depth * self.lanes)
        self._rows(c, Op.GELU, -(-size // length), length)
        return f"{size} elements, rows of {length}"

    def _residual(self, c, op, size):
        for reg, v in zip(RESIDUAL_REGS.values(), (op.ma, op.mb, op.shift), strict=True):
            c.set(reg, v)
        c.set(Reg.ROWS, 1)
        if Reg.RES_TO_X in self.reg_max:
            c.set(Reg.RES_TO_X, 0)
        per = splits.residual_per_run(self.depth, self.lanes)
        for n, count in _blocks(size, per):
            q = -(-n // self.lanes)
            c.write(splits.row_input(self.cfg, Op.RESIDUAL), 2 * q, count)
            c.set(Reg.ROW_LEN, n)
            c.run(Op.RESIDUAL, self._cycles(cyclemodel.residual_cycles, 1, n), count)
            c.read(splits.row_output(self.cfg, Op.RESIDUAL), q, count)
        return f"{size} elements, {min(per, size)} a run"

    def _residual_layernorm(self, c, res, op, L):
        """:meth:`boards.host.Client.residual_layernorm`: whole rows, both halves in X."""
        n, VL = len(op.gamma), self.lanes
        beats = -(-n // VL)
        for reg, v in zip(RESIDUAL_REGS.values(), (res.ma, res.mb, res.shift), strict=True):
            c.set(reg, v)
        c.write(Buf.COEF, -(-n // self.cfg.layernorm.lanes))
        c.set(Reg.ROW_LEN, n)
        per = splits.rows_per_run(self.depth // 2, beats)
        for rows, count in _blocks(L, per):
            c.write(splits.row_input(self.cfg, Op.RESIDUAL), 2 * rows * beats, count)
            c.set(Reg.ROWS, rows)
            c.set(Reg.RES_TO_X, 1)
            c.run(Op.RESIDUAL, self._cycles(cyclemodel.residual_cycles, rows, n), count)
            c.run(Op.LAYERNORM, self._cycles(cyclemodel.layernorm_cycles, rows, n), count)
            c.read(splits.row_output(self.cfg, Op.LAYERNORM), rows * beats, count)
        return f"{L} rows of {n}, {min(per, L)} a run, after the residual add on chip"

    def _cycles(self, model, *shape):
        key = (model, *shape)
        if key not in self._memo:
            self._memo[key] = model(self.cfg, *shape)
        return self._memo[key]


class _Count:
    """One op's commands, counted (see :class:`Session`)."""

    def __init__(self, session, op):
        self.s, self.op = session, op
        self.link = framing.LinkCount(session.max_payload)
        self.runs = self.cycles = self.macs = 0
        self.note = ""
        self.buffers = {}           # buffer name -> its commands' bytes, both ways

    def _name(self):
        return f"{self.op.kind} {self.op.output!r}"

    def set(self, reg, value):
        hi = self.s.reg_max.get(reg)
        if hi is None:
            raise ValueError(f"{self._name()} needs register {reg.name}, which config "
                             f"{self.s.cfg.name!r} leaves out")
        if not 0 <= value <= hi:
            raise ValueError(f"{self._name()}: register {reg.name} must be at most {hi} on "
                             f"{self.s.cfg.name!r} (depth {self.s.depth}), not {value}")
        if self.s.regs.get(reg) != value:
            self.link.set_reg(value)
            self.s.regs[reg] = value

    def _buffer(self, what, buf, words, times):
        if times <= 0:
            return
        spec = self.s.specs[buf]
        if buf in (Buf.COEF, Buf.CHAN) and words > spec.depth:    # RUN checks the others
            raise ValueError(f"{self._name()} needs {words} words of {buf.name}, beyond its "
                             f"depth of {spec.depth}")
        key = (what, buf, words)
        if key not in self.s._memo:
            link = framing.LinkCount(self.s.max_payload)
            getattr(link, f"{what}_buffer")(spec, words)
            self.s._memo[key] = link.sent, link.received, link.commands
        sent, received, commands = self.s._memo[key]
        self.link.sent += times * sent
        self.link.received += times * received
        self.link.commands += times * commands
        self.buffers[buf.name] = self.buffers.get(buf.name, 0) + times * (sent + received)

    def write(self, buf, words, times=1):
        self._buffer("write", buf, words, times)

    def read(self, buf, words, times=1):
        self._buffer("read", buf, words, times)

    def run(self, hwop, cycles, times=1):
        if times <= 0:
            return
        key = ("run", hwop, *sorted((r.value, v) for r, v in self.s.regs.items()))
        if key not in self.s._memo:
            self.s._memo[key] = run_checks(self.s.cfg, self.s.depth, hwop, self.s.regs)
        bad = self.s._memo[key]
        if bad:
            what, value, limit = bad[0]
            shape = ", ".join(f"{r.name}={self.s.regs.get(r, 0)}" for r in _SHAPE_REGS[hwop])
            raise ValueError(f"{self._name()} cannot be split to fit the buffers of "
                             f"{self.s.cfg.name!r} (depth {self.s.depth}): RUN {hwop.name} of "
                             f"{shape} needs {value} {what}, at most {limit}")
        self.link.run(times)
        self.runs += times
        self.cycles += times * (cycles + cyclemodel.RUN_PORT_CYCLES)


#: The cycle model of each row op the plan runs.
_ROW_MODELS = {Op.GELU: cyclemodel.gelu_cycles, Op.LAYERNORM: cyclemodel.layernorm_cycles}

_SHAPE_REGS = {
    **{op: (Reg.M, Reg.K, Reg.N) for op in (Op.GEMM, Op.GEMM_RAW, Op.LINEAR)},
    Op.ATTENTION: (Reg.ATT_LEN, Reg.ATT_DIM),
    **{op: (Reg.ROW_LEN, Reg.ROWS) for op in (Op.SOFTMAX, Op.GELU, Op.LAYERNORM, Op.RESIDUAL)},
}
