"""The run dispatcher of the accelerator top: the register file, the checks of every command,
the shape preparation of RUN and the launch of a run."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .buffers import read_buffers
from .command import request_signature
from .divider import CeilDivider
from .gemm import gemm_cmd_layout
from .isa import (
    NONLINEAR_OPS,
    Buf,
    Error,
    LinMode,
    Op,
    Reg,
    buffer_specs,
    gelu_in_c,
    lin_mode_bit,
    register_specs,
    residual_to_x,
    vector_lanes,
)
from .reader import reader_control_signature

__all__ = ["register_layout", "engine_config", "Dispatcher"]


def register_layout(cfg, depth):
    """The register file as a struct: a field ``reg.name.lower()`` per register of the config."""
    return data.StructLayout({reg.name.lower(): width
                              for reg, (width, _) in register_specs(cfg, depth).items()})


def engine_config(cfg):
    """The config of the top's GEMM engine: :attr:`~hw.config.AccelConfig.shared_gemm` with
    attention (whose jobs it also runs), else ``cfg``."""
    return cfg.shared_gemm if cfg.attention.enabled else cfg


def _times(value, constant):
    """``value * constant`` for a small constant, as shifts and adds (no multiplier)."""
    terms = [value << i for i in range(constant.bit_length()) if constant >> i & 1]
    out = Const(0, 1)
    for t in terms:
        out = out + t
    return out


class Dispatcher(wiring.Component):
    """Checks every command of :class:`hw.top.Accelerator`, holds its register file, and
    prepares and launches its runs.

    **Checks.** From the decoded command (``request``), facts are registered in two stages and
    a verdict in a third, so that the command port acts on flip-flops: the addressed buffer and
    register, whether the value fits the register's width and maximum, whether the range fits
    the buffer and the length matches the words, and for RUN whether the op's unit is present
    and its shape registers are nonzero and within the config (each op's shape verdict is
    kept in a flip-flop at all times and selected by the op). Per command, in order: the target,
    busy, then the range or value.

    **Registers.** An accepted SET_REG (``request.set_reg``) writes its register the cycle after.
    The register file reaches the units through ``regs``; BUSY excludes SET_REG during a run, so
    a run reads them unchanged.

    **Shape preparation.** An accepted RUN (``request.run``) computes, by repeated subtraction
    (:class:`~hw.divider.CeilDivider`: no multipliers or dividers), GEMM ``words_a =
    ceil(M/R)*K``, ``words_b = ceil(N/C)*K``, ``words_c = M*ceil(N/C)``, ``tiles_m = ceil(M/R)``,
    ``tiles_n = ceil(N/C)``; attention ``ceil(L/R)*d`` (Q), ``ceil(L/C)*d`` (K), ``ceil(d/C)*L``
    (V and O); nonlinear and residual ``words_a = ROWS*ceil(ROW_LEN/lanes)``, one step a cycle.
    Then the counts are checked against the buffers' depth (RESIDUAL: ``2*words_a``, its two
    halves of X; a GELU over C, ``GELU_IN_C``: ``ROWS`` words of C, within the depth by the
    register's maximum, with ``ROW_LEN`` the array's columns). LINEAR is checked and launched
    as GEMM; a GELU over C starts C's reader instead of X's and writes ``ROWS`` words.

    **Launch.** Run isolation: everything a run reads is its own from launch: its op in
    ``run_op``, each reader's loop latched at its start (the loops follow ``run_op`` at all
    times, registered, and a reader latches them two cycles after launch), each unit's command
    (``gemm``, ``attention``) taken from the registers at launch. Nothing that decodes a later
    command (its argument bytes, the op decode of the checks) reaches a running operation.
    A run ends when its last output word is written (``run_write`` counted in ``run_addr``).

    Parameters
    ----------
    cfg : AccelConfig
    depth : int
        Words per buffer.

    Members
    -------
    request : In(hw.command.request_signature())
        The decoded command, and the answers to it.
    regs : Out(register_layout(cfg, depth))
        The register file.
    running : Out(1)
        A run is in progress.
    run_op : Out(Op)
        The op of the current (or last) run, set at launch.
    run_addr : Out(range(depth + 1))
        Words the run has written.
    run_write : In(1)
        The run writes a word.
    run_to_x : Out(1), with ``RES_TO_X`` only
        The run is a RESIDUAL with ``RES_TO_X`` set at launch: its words go to X, not Y.
    run_in_c : Out(1), with ``GELU_IN_C`` only (:func:`hw.isa.gelu_in_c`)
        The run is a GELU with ``GELU_IN_C`` set at launch: it reads C's ``ROWS`` words (C's
        reader) and writes its words over them, not into Y.
    read_a, read_b, read_x, read_v, read_c : Out(reader_control_signature(...)), as configured
        The readers of A, B (GEMM, LINEAR, attention), X (nonlinear; RESIDUAL walks its two
        halves alternately), V (attention) and, with LINEAR, C (a LINEAR run with
        :attr:`~hw.isa.LinMode.ACCUMULATE` in ``LIN_MODE``: the words it writes, from 0, in
        order).
    gemm : Out(stream.Signature(gemm_cmd_layout(engine_config(cfg).gemm)))
        The GEMM command of a RUN GEMM (GEMM_RAW, LINEAR), from M, K, N.
    attention : Out(stream.Signature(attention_cmd_layout(cfg))), with attention only
        The head of a RUN ATTENTION, from ATT_LEN, ATT_DIM, ATT_CAUSAL, ATT_KEYS.

    Attributes
    ----------
    register_file : dict of Reg to Signal
        The registers (reset to 0).

    Latency: the verdict three cycles after the last argument byte; a RUN launches after
    ``2*max(M/R, N/C)``, ``2*ROW_LEN/lanes`` or ``2*max(L/R, L/C, d/C)`` cycles of preparation
    plus four. Throughput: one command at a time.
    """

    def __init__(self, cfg, depth):
        self.cfg = cfg
        self.depth = depth
        self.buffers = buffer_specs(cfg, depth)
        self.registers = register_specs(cfg, depth)
        self.lanes = vector_lanes(cfg)
        self.addr_width = max(1, (depth - 1).bit_length())
        self.register_file = {reg: Signal(width, name=f"reg_{reg.name.lower()}")
                              for reg, (width, _) in self.registers.items()}
        ports = {
            "request": In(request_signature()),
            "regs": Out(register_layout(cfg, depth)),
            "running": Out(1),
            "run_op": Out(Op),
            "run_addr": Out(range(depth + 1)),
            "run_write": In(1),
            "gemm": Out(stream.Signature(gemm_cmd_layout(engine_config(cfg).gemm))),
        }
        for buf in read_buffers(self.buffers):
            ports[f"read_{buf.name.lower()}"] = Out(reader_control_signature(self.addr_width))
        if residual_to_x(cfg):
            ports["run_to_x"] = Out(1)
        if gelu_in_c(cfg):
            ports["run_in_c"] = Out(1)
        if cfg.attention.enabled:
            from .attention import attention_cmd_layout
            ports["attention"] = Out(stream.Signature(attention_cmd_layout(cfg)))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        regs = self.register_file
        for reg, sig in regs.items():
            m.d.comb += self.regs[reg.name.lower()].eq(sig)
        v = _Values(self, m)
        self._facts(m, v)
        self._verdict(m, v)
        self._prepare(m, v)
        self._launch(m, v)
        return m

    def _facts(self, m, v):
        """Stages 1 and 2: facts about the command's arguments, registered."""
        req, args = self.request, self.request.args
        # Stage 1: the addressed buffer and register, and whether the value fits each register
        # width.
        m.d.sync += [v.known_buf.eq(0), v.readable.eq(0), v.writable.eq(0), req.last_byte.eq(0),
                     v.buf_depth.eq(0), v.arg_end.eq(v.arg_addr + v.arg_count)]
        for buf, spec in self.buffers.items():
            with m.If(args[0] == buf.value):
                m.d.sync += [v.known_buf.eq(1), v.readable.eq(spec.readable),
                             v.writable.eq(spec.writable),
                             req.last_byte.eq(spec.nbytes - 1), v.buf_depth.eq(spec.depth)]
        for buf, spec in self.buffers.items():
            with m.If(args[0] == buf.value):
                m.d.sync += req.rlen.eq(_times(v.arg_count, spec.nbytes))
        fits = {}      # (width, max) -> registered "value <= max"
        for reg, (width, hi) in self.registers.items():
            m.d.sync += v.reg_hit[reg].eq(args[0] == reg.value)
            if (width, hi) not in fits:
                # value <= hi as "no bit above hi's width, and the low bits <= hi": no 64-bit
                # comparator. Whole bytes above the width are tested by their zero flags.
                low_ok = v.value[:width] <= hi if hi != (1 << width) - 1 else 1
                whole = -(-width // 8)          # value bytes 0 .. whole-1 hold the width
                high_zero = Cat(v.value[width:8 * whole] == 0,
                                *(req.arg_zero[i] for i in range(1 + whole, 9))).all()
                fits[width, hi] = Signal(name=f"fits_{width}_{hi}")
                m.d.sync += fits[width, hi].eq(high_zero & low_ok)
        # Stage 2: from the registered facts.
        hits = [v.reg_hit[reg] for reg in self.registers]
        oks = [v.reg_hit[reg] & fits[spec] for reg, spec in self.registers.items()]
        m.d.sync += [
            v.known_reg.eq(Cat(*hits).any()), v.value_ok.eq(Cat(*oks).any()),
            v.in_range.eq(v.arg_end <= v.buf_depth),
            v.wlen_ok.eq(req.length == req.rlen + 5), v.rlen_big.eq(req.rlen > 0xffff),
        ]
        self._run_facts(m, v)

    def _run_facts(self, m, v):
        """RUN's facts: the op is in the config, its shape registers are valid (registered)."""
        cfg, regs, op_arg = self.cfg, self.register_file, self.request.args[0]
        is_gemm = (op_arg == Op.GEMM.value) | (op_arg == Op.GEMM_RAW.value)
        if cfg.linear.enabled:      # LINEAR: GEMM's shape, walk and checks
            is_gemm = is_gemm | (op_arg == Op.LINEAR.value)
        m.d.sync += v.gemm_op.eq(is_gemm)
        if cfg.linear.enabled:      # an accumulating LINEAR also reads C
            m.d.sync += v.acc_op.eq((op_arg == Op.LINEAR.value) &
                                    regs[Reg.LIN_MODE][lin_mode_bit(LinMode.ACCUMULATE)])
        op_shape_ok = Signal(name="gemm_shape_ok")
        m.d.sync += [v.present.eq(0), v.shape_ok.eq(0),
                     op_shape_ok.eq((regs[Reg.M] != 0) & (regs[Reg.K] != 0) & (regs[Reg.N] != 0))]
        with m.If(is_gemm):
            m.d.sync += [v.present.eq(1), v.shape_ok.eq(op_shape_ok)]
        if cfg.attention.enabled:
            op_shape_ok = Signal(name="att_shape_ok")
            is_att = op_arg == Op.ATTENTION.value
            m.d.sync += [v.att_op.eq(is_att),
                         op_shape_ok.eq((v.att_len != 0) &
                                        (v.att_len <= cfg.attention.max_seq_len) &
                                        (v.att_dim != 0) &
                                        (v.att_dim <= cfg.attention.max_head_dim) &
                                        (regs[Reg.ATT_KEYS] <= v.att_len))]
            with m.If(is_att):
                m.d.sync += [v.present.eq(1), v.shape_ok.eq(op_shape_ok)]
        for op, name in NONLINEAR_OPS.items():
            unit_cfg = getattr(cfg, name)
            if unit_cfg.enabled:
                row_max = unit_cfg.max_len if op != Op.GELU else self.depth * self.lanes
                op_shape_ok = Signal(name=f"{name}_shape_ok")
                row_ok = (regs[Reg.ROW_LEN] != 0) & (regs[Reg.ROWS] != 0) & \
                    (regs[Reg.ROW_LEN] <= row_max)
                if op == Op.GELU and gelu_in_c(cfg):
                    # Over C: one row a C word.
                    row_ok = row_ok & (~regs[Reg.GELU_IN_C] |
                                       (regs[Reg.ROW_LEN] == cfg.array.cols))
                    m.d.sync += v.in_c_op.eq((op_arg == op.value) & regs[Reg.GELU_IN_C])
                m.d.sync += op_shape_ok.eq(row_ok)
                with m.If(op_arg == op.value):
                    m.d.sync += [v.present.eq(1), v.shape_ok.eq(op_shape_ok)]
        if cfg.residual.enabled:
            op_shape_ok = Signal(name="residual_shape_ok")
            is_res = op_arg == Op.RESIDUAL.value
            m.d.sync += [v.res_op.eq(is_res),
                         op_shape_ok.eq((regs[Reg.ROW_LEN] != 0) & (regs[Reg.ROWS] != 0) &
                                        (regs[Reg.ROW_LEN] <= self.depth * self.lanes))]
            with m.If(is_res):
                m.d.sync += [v.present.eq(1), v.shape_ok.eq(op_shape_ok)]

    def _verdict(self, m, v):
        """Stage 3: the verdict, registered (the first failing check answers); the register
        write of an accepted SET_REG."""
        req = self.request
        checks = {
            "write_buffer": [(~v.known_buf | ~v.writable, Error.BUFFER),
                             (self.running, Error.BUSY),
                             (~v.wlen_ok, Error.LENGTH), (~v.in_range, Error.RANGE)],
            "read_buffer": [(~v.known_buf | ~v.readable, Error.BUFFER),
                            (self.running, Error.BUSY),
                            (~v.in_range | v.rlen_big, Error.RANGE)],
            "set_reg": [(~v.known_reg, Error.REGISTER), (self.running, Error.BUSY),
                        (~v.value_ok, Error.VALUE)],
            "run": [(~v.present, Error.UNIT), (self.running, Error.BUSY),
                    (~v.shape_ok, Error.SHAPE)],
        }
        m.d.sync += [req.verdict.eq(0), req.refused.eq(0)]
        for command, command_checks in checks.items():
            with m.If(req.command[command]):
                for i, (failed, code) in enumerate(command_checks):
                    with (m.If if i == 0 else m.Elif)(failed):
                        m.d.sync += [req.verdict.eq(code.value), req.refused.eq(1)]
        with m.If(req.set_reg):
            for reg, sig in self.register_file.items():
                with m.If(v.reg_hit[reg]):
                    m.d.sync += sig.eq(v.value)

    def _prepare(self, m, v):
        """RUN's shape preparation: three :class:`~hw.divider.CeilDivider` (see the class
        docstring), loaded by an accepted RUN."""
        R, Cc, VL, regs = self.cfg.array.rows, self.cfg.array.cols, self.lanes, self.register_file
        gemm_op, att_op, K = v.gemm_op, v.att_op, regs[Reg.K]
        limit = (1 << 17) - 1
        div_a = CeilDivider(limit, max(R, VL), limit)    # rows of A: tiles_m, words_a
        div_b = CeilDivider(limit, Cc, limit)            # columns of B: tiles_n, words_b
        div_c = CeilDivider(limit, Cc, limit)            # C's column tiles: words_c
        m.submodules.prep_a, m.submodules.prep_b, m.submodules.prep_c = div_a, div_b, div_c
        # The steps and factors follow the op, registered (the op is decoded cycles before RUN
        # is accepted, and holds until it ends).
        a_step = Signal(range(max(R, VL) + 1))
        a_inc, b_inc, c_inc = (Signal(17, name=f"{x}_inc") for x in "abc")
        m.d.sync += [
            a_step.eq(Mux(gemm_op | att_op, R, VL)),
            a_inc.eq(Mux(gemm_op, K, Mux(att_op, v.att_dim, regs[Reg.ROWS]))),
            b_inc.eq(Mux(att_op, v.att_dim, K)),
            c_inc.eq(Mux(att_op, v.att_len, regs[Reg.M])),
        ]
        m.d.comb += [
            div_a.total.eq(Mux(gemm_op, regs[Reg.M], Mux(att_op, v.att_len, regs[Reg.ROW_LEN]))),
            div_b.total.eq(Mux(gemm_op, regs[Reg.N], Mux(att_op, v.att_len, 0))),
            div_c.total.eq(Mux(att_op, v.att_dim, Mux(gemm_op, regs[Reg.N], 0))),
            div_a.step.eq(a_step), div_b.step.eq(Cc), div_c.step.eq(Cc),
            div_a.inc.eq(a_inc), div_b.inc.eq(b_inc), div_c.inc.eq(c_inc),
        ]
        for div in (div_a, div_b, div_c):
            m.d.comb += [div.load.eq(self.request.run), div.en.eq(1)]
        v.counting = div_a.busy | div_b.busy | div_c.busy
        v.words_a, v.words_b, v.words_c = div_a.product, div_b.product, div_c.product
        v.tiles_m, v.tiles_n = div_a.quotient, div_b.quotient

    def _launch(self, m, v):
        """The RUN state machine (prepare, check the fit, launch), the run's state, the
        readers' loops and the units' commands."""
        cfg, depth, regs, req = self.cfg, self.depth, self.register_file, self.request
        readers = {buf: getattr(self, f"read_{buf.name.lower()}", None)
                   for buf in (Buf.A, Buf.B, Buf.X, Buf.V, Buf.C)}
        rd_a, rd_b, rd_x, rd_v, rd_c = readers.values()
        done = req.done
        out_words = Signal(range(depth + 1))   # words the run writes
        written = self.run_addr
        run_gemm = Signal()                    # run_op is GEMM, GEMM_RAW or LINEAR
        gemm_cmd_valid, att_cmd_valid = Signal(), Signal()
        over_abc, over_a = Signal(name="over_abc"), Signal(name="over_a")   # beyond the buffers
        over_2a = Signal(name="over_2a")       # RESIDUAL: its two halves of X beyond X
        run_res = Signal()                     # run_op is RESIDUAL
        launch_bad = Signal()     # the RUN's op is over_abc (GEMM, attention), over_2a or over_a
        m.d.comb += [req.running.eq(self.running), req.launch_bad.eq(launch_bad)]
        for rd in readers.values():
            if rd is not None:
                m.d.sync += rd.start.eq(0)

        # A run ends when its last output word is written.
        with m.If(self.running & (written == out_words) & ~gemm_cmd_valid & ~att_cmd_valid):
            m.d.sync += [self.running.eq(0), done.eq(1)]
        with m.If(self.running & self.run_write):
            m.d.sync += written.eq(written + 1)

        with m.FSM(name="run"):
            with m.State("IDLE"):        # wait for an accepted RUN (its counts start then)
                with m.If(req.run):
                    m.next = "PREP"
            with m.State("PREP"):        # tile/beat counts, until nothing is left to count
                with m.If(~v.counting):
                    m.next = "FIT"
            with m.State("FIT"):         # the capacity checks, registered
                m.d.sync += [over_abc.eq((v.words_a > depth) | (v.words_b > depth) |
                                         (v.words_c > depth)),
                             over_a.eq(v.words_a > depth)]
                if cfg.residual.enabled:
                    m.d.sync += over_2a.eq(2 * v.words_a > depth)
                m.next = "FIT2"
            with m.State("FIT2"):        # the capacity verdict of the op, registered
                over_rows = Mux(v.res_op, over_2a, over_a) if cfg.residual.enabled else over_a
                # Over C the run's words are ROWS, within the depth by the register's maximum.
                over_rows = over_rows & ~v.in_c_op
                m.d.sync += launch_bad.eq(Mux(v.gemm_op | v.att_op, over_abc, over_rows))
                m.next = "LAUNCH"
            with m.State("LAUNCH"):      # capacity verdict, then start the readers
                m.d.comb += req.launched.eq(1)
                start = [self.running.eq(1), done.eq(0), self.run_op.eq(req.args[0]),
                         written.eq(0)]
                if cfg.residual.enabled:
                    start.append(run_res.eq(v.res_op))
                if residual_to_x(cfg):
                    start.append(self.run_to_x.eq(v.res_op & regs[Reg.RES_TO_X]))
                if gelu_in_c(cfg):
                    start.append(self.run_in_c.eq(v.in_c_op))
                with m.If(~launch_bad):
                    with m.If(v.gemm_op):
                        m.d.sync += [*start, run_gemm.eq(1), out_words.eq(v.words_c),
                                     gemm_cmd_valid.eq(1), rd_a.start.eq(1), rd_b.start.eq(1)]
                        if rd_c is not None:
                            m.d.sync += rd_c.start.eq(v.acc_op)
                    with m.Elif(v.att_op):
                        if rd_v is not None:
                            m.d.sync += [*start, run_gemm.eq(0), out_words.eq(v.words_c),
                                         att_cmd_valid.eq(1)]
                            m.d.sync += [rd.start.eq(1) for rd in (rd_a, rd_b, rd_v)]
                    if gelu_in_c(cfg):
                        with m.Elif(v.in_c_op):     # GELU over C: C's reader, C's words
                            m.d.sync += [*start, run_gemm.eq(0), out_words.eq(regs[Reg.ROWS]),
                                         rd_c.start.eq(1)]
                    with m.Else():
                        m.d.sync += [*start, run_gemm.eq(0), out_words.eq(v.words_a)]
                        if rd_x is not None:
                            m.d.sync += rd_x.start.eq(1)
                m.next = "IDLE"

        # The units' commands, from the registers at launch.
        g_cmd = self.gemm
        m.d.comb += [g_cmd.valid.eq(gemm_cmd_valid), g_cmd.payload.m.eq(regs[Reg.M]),
                     g_cmd.payload.k.eq(regs[Reg.K]), g_cmd.payload.n.eq(regs[Reg.N])]
        with m.If(g_cmd.valid & g_cmd.ready):
            m.d.sync += gemm_cmd_valid.eq(0)
        if cfg.attention.enabled:
            a_cmd = self.attention
            m.d.comb += [a_cmd.valid.eq(att_cmd_valid),
                         a_cmd.payload.length.eq(regs[Reg.ATT_LEN]),
                         a_cmd.payload.head_dim.eq(regs[Reg.ATT_DIM]),
                         a_cmd.payload.causal.eq(regs[Reg.ATT_CAUSAL]),
                         a_cmd.payload.keys.eq(regs[Reg.ATT_KEYS])]
            with m.If(a_cmd.valid & a_cmd.ready):
                m.d.sync += att_cmd_valid.eq(0)

        # The readers' loops follow the run's op at all times, without an enable (loaded from
        # the state machine they would have one enable net across the chip); run_gemm is set at
        # launch, the loops are registered from it a cycle later, and a reader latches them the
        # cycle after that (two cycles after launch).
        # GEMM: A walks i = row tile (stride K), j = column tile (stride 0), then k; B the same
        # walk with the strides swapped. Attention and the nonlinear units read linearly (Q, K
        # and V are in the controller's scratchpad order).
        K = regs[Reg.K]
        la, lb = rd_a.loop, rd_b.loop
        m.d.sync += [
            la.count_i.eq(Mux(run_gemm, v.tiles_m, 1)), la.count_j.eq(Mux(run_gemm, v.tiles_n, 1)),
            la.count_k.eq(Mux(run_gemm, K, v.words_a)), la.si.eq(Mux(run_gemm, K, 0)),
            la.sj.eq(0),
            lb.count_i.eq(Mux(run_gemm, v.tiles_m, 1)), lb.count_j.eq(Mux(run_gemm, v.tiles_n, 1)),
            lb.count_k.eq(Mux(run_gemm, K, v.words_b)), lb.si.eq(0),
            lb.sj.eq(Mux(run_gemm, K, 0)),
        ]
        # X: linearly, but for RESIDUAL, which walks its two halves alternately: i = word (stride
        # 1), j = half (stride words_a), k a single word.
        if rd_x is not None:
            lx, n = rd_x.loop, v.words_a
            m.d.sync += [lx.count_i.eq(Mux(run_res, n, 1)), lx.count_j.eq(Mux(run_res, 2, 1)),
                         lx.count_k.eq(Mux(run_res, 1, n)), lx.si.eq(run_res),
                         lx.sj.eq(Mux(run_res, n, 0))]
        # V and C (an accumulating LINEAR's words of C, in the order it writes them; GELU over
        # C's ROWS words): linearly.
        for rd in (rd_v, rd_c):
            if rd is not None:
                words = v.words_c
                if rd is rd_c and gelu_in_c(cfg):
                    words = Mux(self.run_in_c, regs[Reg.ROWS], v.words_c)
                m.d.sync += [rd.loop.count_i.eq(1), rd.loop.count_j.eq(1),
                             rd.loop.count_k.eq(words), rd.loop.si.eq(0), rd.loop.sj.eq(0)]


class _Values:
    """The dispatcher's registers shared between its parts."""

    def __init__(self, disp, m):
        regs, req = disp.register_file, disp.request
        self.arg_addr = Cat(req.args[1], req.args[2])
        self.arg_count = Cat(req.args[3], req.args[4])
        self.value = Cat(*(req.args[i] for i in range(1, 9)))
        self.att_len = regs.get(Reg.ATT_LEN, Const(0, 1))
        self.att_dim = regs.get(Reg.ATT_DIM, Const(0, 1))
        # Stage 1 and 2 facts.
        self.known_buf, self.readable = Signal(name="known_buf"), Signal(name="readable")
        self.writable = Signal(name="writable")
        self.buf_depth = Signal(17)
        self.arg_end = Signal(18)               # addr + count
        self.reg_hit = {reg: Signal(name=f"hit_{reg.name.lower()}") for reg in disp.registers}
        self.known_reg, self.value_ok = Signal(name="known_reg"), Signal(name="value_ok")
        self.in_range = Signal()
        self.wlen_ok = Signal()     # length == 5 + count*nbytes
        self.rlen_big = Signal()    # the response would exceed 65535 bytes
        # RUN: the op decoded into flip-flops (the argument is held from FACT1 to the end of
        # RUN), whether it is present and its shape valid.
        self.gemm_op, self.att_op = Signal(name="gemm_op"), Signal(name="att_op")
        self.res_op = Signal(name="res_op")
        self.acc_op = Signal(name="acc_op")     # LINEAR with LIN_MODE's ACCUMULATE
        self.in_c_op = Signal(name="in_c_op")   # GELU with GELU_IN_C: over C in place
        self.present = Signal()
        self.shape_ok = Signal()
        # Shape preparation (``_prepare``): ``counting``, ``words_a/b/c``, ``tiles_m/n``.
