"""The accelerator top: on-chip buffers, the units the config includes, and a byte command port."""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out

from .gemm import GemmEngine
from .isa import (
    ATTENTION_REGS,
    GELU_REGS,
    NONLINEAR_OPS,
    SOFTMAX_REGS,
    Buf,
    Command,
    Error,
    Op,
    Reg,
    buffer_specs,
    register_specs,
    vector_lanes,
)
from .memory import uncontended
from .requant import Requantizer
from .skid import SkidBuffer

__all__ = ["Accelerator"]


def _times(value, constant):
    """``value * constant`` for a small constant, as shifts and adds (no multiplier)."""
    terms = [value << i for i in range(constant.bit_length()) if constant >> i & 1]
    out = Const(0, 1)
    for t in terms:
        out = out + t
    return out


class _Reader:
    """Reads a buffer as a stream, addresses ``i*si + j*sj + k`` for ``i < I, j < J, k < K``
    (k innermost; I, J, K at least 1). ``start`` (a one-cycle pulse, set with ``m.d.sync``)
    empties the queue; the loop bounds and strides, set by then, are loaded the cycle after
    into the reader's own registers, and nothing outside the reader is read again until the
    next ``start``: a walk cannot be changed once it has begun.

    Everything on the memory's side is registered, for timing: the address is a register
    stepped by one adder (``+1``, or a jump to the next j or i block, kept ready beside it), the
    loops count down to registered "last" flags, and the decision to read is a flip-flop driven
    by a credit counter (slots of the queue neither full nor claimed by a read in flight). The
    memory's output is registered (the block RAM's slow clock-to-output ends there), then goes
    into a small FIFO (distributed RAM), whose ``valid``/``data``/``ready`` are the stream. A
    register slice (:class:`~hw.skid.SkidBuffer`) follows the FIFO, so the consumer's ``ready``
    reaches only the slice's flip-flops.

    Latency: 2 cycles from ``start`` to the first read, whose word is on the stream 5 cycles
    later. Throughput: one word per cycle (the queue covers the credit loop).
    """

    DEPTH = 12

    def __init__(self, m, name, rp, addr_width):
        self.rp = rp
        aw = addr_width + 1
        self.count_i, self.count_j, self.count_k = (Signal(aw, name=f"{name}_{x}") for x in "IJK")
        self.si, self.sj = Signal(aw, name=f"{name}_si"), Signal(aw, name=f"{name}_sj")
        self.start = Signal(name=f"{name}_start")
        self.active = Signal(name=f"{name}_active")
        m.d.sync += self.start.eq(0)   # a pulse: set for one cycle by ``m.d.sync`` statements
        fifo = ResetInserter(self.start)(SyncFIFOBuffered(width=len(rp.data), depth=self.DEPTH))
        m.submodules[f"{name}_fifo"] = fifo
        skid = ResetInserter(self.start)(SkidBuffer(len(rp.data)))
        m.submodules[f"{name}_skid"] = skid
        m.d.comb += [skid.i.valid.eq(fifo.r_rdy), skid.i.payload.eq(fifo.r_data),
                     fifo.r_en.eq(skid.i.ready)]
        self.valid, self.data, self.ready = skid.o.valid, skid.o.payload, skid.o.ready

        load = Signal(name=f"{name}_load")
        issue = Signal(name=f"{name}_issue")       # a read is issued this cycle (a flip-flop)
        issued = Signal(name=f"{name}_issued")     # a word leaves the memory this cycle
        landed = Signal(name=f"{name}_landed")     # ... and is in ``landed_data`` this cycle
        landed_data = Signal.like(rp.data, name=f"{name}_landed_data")
        consumed = Signal(name=f"{name}_consumed")   # a word left the FIFO last cycle
        credits = Signal(range(self.DEPTH + 1), name=f"{name}_credits")
        active_next = Signal(name=f"{name}_active_next")
        credits_next = Signal.like(credits, name=f"{name}_credits_next")
        m.d.comb += [
            fifo.w_en.eq(landed), fifo.w_data.eq(landed_data),
            active_next.eq(self.active),
            credits_next.eq(credits - issue + consumed),
        ]
        m.d.sync += [
            issued.eq(issue & ~self.start),
            landed.eq(issued & ~self.start),
            landed_data.eq(rp.data),
            consumed.eq(fifo.r_en & fifo.r_rdy & ~self.start),
            load.eq(self.start),
            credits.eq(Mux(self.start, self.DEPTH, credits_next)),
            issue.eq(~self.start & active_next & (credits_next != 0)),
            self.active.eq(active_next),
        ]

        # Down-counters with "last" flags, and the address with its next j and i block starts.
        k_rem, j_rem, i_rem = (Signal(aw, name=f"{name}_{x}_rem") for x in "kji")
        k_last, j_last, i_last = (Signal(name=f"{name}_{x}_last") for x in "kji")
        k_top, j_top = Signal(aw, name=f"{name}_k_top"), Signal(aw, name=f"{name}_j_top")
        k_one, j_one = Signal(name=f"{name}_k_one"), Signal(name=f"{name}_j_one")
        si, sj = Signal(aw, name=f"{name}_si_run"), Signal(aw, name=f"{name}_sj_run")
        addr = Signal(2 * aw, name=f"{name}_addr")
        next_j = Signal(2 * aw, name=f"{name}_next_j")
        next_i = Signal(2 * aw, name=f"{name}_next_i")
        self.addr = addr[:addr_width]
        with m.If(self.start):
            m.d.comb += active_next.eq(0)
        with m.Elif(load):
            m.d.comb += active_next.eq(1)
            m.d.sync += [
                k_top.eq(self.count_k - 1), j_top.eq(self.count_j - 1),
                k_one.eq(self.count_k == 1), j_one.eq(self.count_j == 1),
                k_rem.eq(self.count_k - 1), j_rem.eq(self.count_j - 1), i_rem.eq(self.count_i - 1),
                k_last.eq(self.count_k == 1), j_last.eq(self.count_j == 1),
                i_last.eq(self.count_i == 1),
                addr.eq(0), next_j.eq(self.sj), next_i.eq(self.si),
                si.eq(self.si), sj.eq(self.sj),
            ]
        with m.Elif(issue):
            with m.If(~k_last):
                m.d.sync += [k_rem.eq(k_rem - 1), k_last.eq(k_rem == 1), addr.eq(addr + 1)]
            with m.Else():
                m.d.sync += [k_rem.eq(k_top), k_last.eq(k_one)]
                with m.If(~j_last):
                    m.d.sync += [j_rem.eq(j_rem - 1), j_last.eq(j_rem == 1),
                                 addr.eq(next_j), next_j.eq(next_j + sj)]
                with m.Else():
                    m.d.sync += [j_rem.eq(j_top), j_last.eq(j_one)]
                    with m.If(~i_last):
                        m.d.sync += [i_rem.eq(i_rem - 1), i_last.eq(i_rem == 1),
                                     addr.eq(next_i), next_j.eq(next_i + sj),
                                     next_i.eq(next_i + si)]
                    with m.Else():
                        m.d.comb += active_next.eq(0)


class Accelerator(wiring.Component):
    """The accelerator: buffers, the configured units, and a byte-stream command port.

    Every command is ``opcode, length (2 bytes, little-endian), payload (length bytes)`` on
    ``cmd``; every command gets exactly one response ``status, length (2 bytes), payload`` on
    ``rsp``, ``status`` an :class:`Error` (``OK`` = 0). Multi-byte fields are little-endian.
    The top always consumes exactly ``length`` payload bytes, so a rejected command leaves no
    residue, and a rejected command changes no buffer and no register.

    Commands (:class:`Command`):

    ========================  ===================================  ===========================
    opcode                    payload                              response payload
    ========================  ===================================  ===========================
    ``STATUS`` 0x01           none                                 ``flags, error``: flags bit 0
                                                                   busy, bit 1 done (a RUN
                                                                   finished); ``error`` the
                                                                   last non-OK status, cleared
                                                                   by this read
    ``WRITE_BUFFER`` 0x02     ``buf, addr(2), count(2), words``    none
    ``READ_BUFFER`` 0x03      ``buf, addr(2), count(2)``           ``count`` words
    ``SET_REG`` 0x04          ``reg, value`` (1 to 8 bytes)        none
    ``RUN`` 0x05              ``op`` (an :class:`Op`)              none; answered when the run
                                                                   has started (poll STATUS)
    ========================  ===================================  ===========================

    A word of buffer ``b`` is ``buffer_specs(cfg, depth)[b].nbytes`` bytes (:class:`BufferSpec`).
    Buffers are :class:`Buf`: A and B hold the GEMM operands in the engine's beat order (A word
    ``tm*K + k`` is ``A[tm*R:(tm+1)*R, k]``, B word ``tn*K + k`` is ``B[k, tn*C:(tn+1)*C]``), C
    the result rows as the engine emits them (row tile, column tile, row), X/Y the nonlinear
    rows, each row padded to whole beats of ``lanes`` elements, COEF the LayerNorm coefficient
    beats (write-only; a word is the gamma lanes then the beta lanes).

    Attention (``RUN ATTENTION``, one head of sequence length L and head dimension d) reads Q
    from A, K from B and V from V, all in the scratchpad order of
    :class:`hw.attention.AttentionController` (A word ``b*d + j`` is ``Q[b*R:(b+1)*R, j]``, B
    word ``t*d + j`` is ``K[t*C:(t+1)*C, j]``, V word ``t*L + i`` is ``V[i, t*C:(t+1)*C]``;
    lanes past L or d are ignored), and writes the int8 output to C, sign-extended in C's
    lanes, in the controller's order: for each row block b and column tile t of d, the rows
    ``O[b*R + r, t*C:(t+1)*C]`` (``ceil(d/C)*L`` words). Heads are separate runs.

    Registers (:class:`Reg`, see :func:`register_specs` for widths and maxima): ``M, K, N``
    (GEMM shape), ``ROW_LEN, ROWS`` (nonlinear rows), ``RQ_MULT, RQ_SHIFT`` (the requantizer's
    ``m`` and ``s``), each enabled unit's constant ports ``SM_*`` (the fields of
    :class:`sim.golden.SoftmaxConstants`) and ``GELU_*`` (the fields of the GELU constants of
    the configured variant), and for attention ``ATT_LEN, ATT_DIM, ATT_CAUSAL`` (L, d, the
    causal mask), ``ATT_MULT, ATT_SHIFT`` and ``ATT_SHIFT_RIGHT`` ... ``ATT_EXP_SHIFT`` (the
    fields of :class:`sim.golden.AttentionConstants`: the requantization of ``P V`` and the
    softmax constants at the score scale). They reset to 0.

    ``RUN`` checks, before anything moves: the op exists and its unit is in the config
    (``UNIT``), the shape is nonzero and within the config (``M <= max_m``..., ``ROW_LEN <=
    max_len`` of the unit, ``ATT_LEN <= max_seq_len``, ``ATT_DIM <= max_head_dim``) and fits
    the buffers (``ceil(M/R)*K`` A words, ``ceil(N/C)*K`` B words, ``M*ceil(N/C)`` C words,
    ``ROWS*ceil(ROW_LEN/lanes)`` X and Y words; attention ``ceil(L/R)*d`` A words,
    ``ceil(L/C)*d`` B words, ``ceil(d/C)*L`` V and C words), else ``SHAPE``. The run then
    streams its input buffer(s) through the unit into its output buffer. While it runs, only
    ``STATUS`` is accepted (others answer ``BUSY``).

    Checks are made in this order, the first failure answering: opcode, length, buffer /
    register / op, busy, range / value / shape.

    Parameters
    ----------
    cfg : AccelConfig
        Which units exist (``cfg.<unit>.enabled``) and their sizes.
    depth : int
        Words per buffer (A, B, C, X, Y, V). The default 256 keeps the tiny and icebreaker
        presets to a few EBRs per buffer.

    Members
    -------
    cmd : In(stream.Signature(8))
        Command bytes.
    rsp : Out(stream.Signature(8))
        Response bytes.
    busy : Out(1)
        A RUN is in progress.
    error : Out(1)
        A command failed since the last ``STATUS``.

    Attributes
    ----------
    register_file : dict of Reg to Signal
        The registers, for inspection in simulation (``boards.simtop.SimTop.state``).
    buffer_data : dict of Buf to MemoryData
        The buffers' storage (all but COEF, which the LayerNorm unit holds), likewise.

    Run isolation: everything a run reads is its own from launch (its op in ``run_op``, each
    reader's loop latched at its start, each unit's command taken at launch), and the register
    file is written only by an accepted ``SET_REG``, which ``BUSY`` excludes during a run; so no
    later command, accepted or refused, changes a running operation.

    Latency: a command is answered a few cycles after its last byte (``RUN``: after
    ``max(M/R, N/C)``, ``ROW_LEN/lanes`` or ``max(L/R, L/C, d/C)`` cycles of shape checks).
    An attention run takes the controller's load time (its three streams are read in
    parallel, one word a cycle each) plus its compute time
    (:func:`sim.cyclemodel.attention_cycles`). Throughput: one command byte per cycle in, one
    response byte per cycle out; a run streams one beat per cycle.
    """

    def __init__(self, cfg, *, depth=256):
        self.cfg = cfg
        self.depth = depth
        self.buffers = buffer_specs(cfg, depth)
        self.registers = register_specs(cfg, depth)
        self.lanes = vector_lanes(cfg)
        # The architectural state, made here so that a testbench can inspect it: the register
        # file (reset to 0) and the storage of every buffer but COEF (which lives in the
        # LayerNorm unit).
        self.register_file = {reg: Signal(width, name=f"reg_{reg.name.lower()}")
                              for reg, (width, _) in self.registers.items()}
        self.buffer_data = {buf: MemoryData(shape=unsigned(spec.width), depth=depth, init=[])
                            for buf, spec in self.buffers.items() if buf != Buf.COEF}
        super().__init__({
            "cmd": In(stream.Signature(8)),
            "rsp": Out(stream.Signature(8)),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, R, Cc = self.cfg, self.cfg.array.rows, self.cfg.array.cols
        depth, VL = self.depth, self.lanes
        aw = max(1, (depth - 1).bit_length())

        # -- Units -------------------------------------------------------------------------
        # With attention, RUN GEMM borrows the attention controller's engine and requantizer
        # (AttentionController(shared=True)): one array on the chip, not two.
        units = {}
        if cfg.softmax.enabled:
            from .softmax import Softmax
            m.submodules.softmax = units[Op.SOFTMAX] = Softmax(cfg.softmax)
        if cfg.gelu.enabled:
            from .gelu import Gelu
            m.submodules.gelu = units[Op.GELU] = Gelu(cfg.gelu)
        if cfg.layernorm.enabled:
            from .layernorm import LayerNorm
            m.submodules.layernorm = units[Op.LAYERNORM] = LayerNorm(cfg.layernorm)
        att = None
        if cfg.attention.enabled:
            from .attention import AttentionController
            m.submodules.attention = att = AttentionController(cfg, shared=True)
            g_cmd, g_a, g_b, g_out = att.gemm_cmd, att.gemm_a, att.gemm_b, att.gemm_out
            rq_o = att.o
        else:
            m.submodules.gemm = gemm = GemmEngine(cfg)
            m.submodules.requant = rq = Requantizer(Cc, cfg.acc_width, cfg.requant)
            g_cmd, g_a, g_b, g_out = gemm.cmd, gemm.a, gemm.b, gemm.out
            rq_o = rq.o

        # -- Registers -----------------------------------------------------------------------
        regs = self.register_file
        if att is None:
            m.d.comb += [rq.multiplier.eq(regs[Reg.RQ_MULT]), rq.shift.eq(regs[Reg.RQ_SHIFT])]
        if Op.SOFTMAX in units:
            for name, reg in SOFTMAX_REGS.items():
                m.d.comb += getattr(units[Op.SOFTMAX], name).eq(regs[reg])
            m.d.comb += units[Op.SOFTMAX].length.eq(regs[Reg.ROW_LEN])
        if Op.GELU in units:
            for name in units[Op.GELU].constant_names:
                m.d.comb += getattr(units[Op.GELU], name).eq(regs[GELU_REGS[name]])
        if Op.LAYERNORM in units:
            m.d.comb += units[Op.LAYERNORM].length.eq(regs[Reg.ROW_LEN])
        # The run's own state: set at LAUNCH from the accepted RUN, and read by the run from
        # then on. Nothing that decodes a later command (its argument bytes, the op decode of
        # the checks) reaches a running operation: the readers take their loops from these
        # and latch them at their start, the units take their commands at launch, and the
        # register file they read is written only by an accepted SET_REG, which BUSY excludes
        # while a run is in flight.
        run_op = Signal(Op)
        run_gemm = Signal()     # run_op is GEMM or GEMM_RAW
        # Decoded into flip-flops (one cycle after LAUNCH sets run_op; no word reaches a unit
        # before that).
        att_run, raw = Signal(name="att_run"), Signal(name="raw")
        m.d.sync += [att_run.eq(run_op == Op.ATTENTION), raw.eq(run_op == Op.GEMM_RAW)]
        if att is not None:
            # The shared requantizer takes the registers of the op that runs (through a register:
            # run_op is set many cycles before the first row reaches the requantizer).
            m.d.sync += [
                att.multiplier.eq(Mux(att_run, regs[Reg.ATT_MULT], regs[Reg.RQ_MULT])),
                att.shift.eq(Mux(att_run, regs[Reg.ATT_SHIFT], regs[Reg.RQ_SHIFT])),
                att.gemm_requant.eq(~raw),
            ]
            for name in cfg.attention_softmax.constant_widths:
                m.d.comb += getattr(att, name).eq(regs[ATTENTION_REGS[name]])

        # -- Buffers: one read port and one write port each -----------------------------------
        mems, rps, wps = {}, {}, {}
        for buf, storage in self.buffer_data.items():
            # Written by WRITE_BUFFER or a run, read by READ_BUFFER or a run that writes
            # other buffers: commands do not overlap and a run refuses buffer commands.
            mem = Memory(data=storage, attrs=uncontended())
            m.submodules[f"buf_{buf.name.lower()}"] = mems[buf] = mem
            rps[buf], wps[buf] = mem.read_port(), mem.write_port()

        # -- Run state -------------------------------------------------------------------------
        running = Signal()
        done = Signal()
        out_words = Signal(range(depth + 1))   # words the run writes
        written = Signal(range(depth + 1))
        m.d.comb += self.busy.eq(running)

        rd_a = _Reader(m, "rd_a", rps[Buf.A], aw)
        rd_b = _Reader(m, "rd_b", rps[Buf.B], aw)
        rd_x = _Reader(m, "rd_x", rps[Buf.X], aw) if Buf.X in rps else None
        rd_v = _Reader(m, "rd_v", rps[Buf.V], aw) if Buf.V in rps else None

        # GEMM: A, B readers -> engine -> (requantizer) -> C.
        # Attention: A (Q), B (K), V readers -> controller -> C.
        m.d.comb += [
            g_a.valid.eq(rd_a.valid & ~att_run), g_a.payload.eq(rd_a.data),
            g_b.valid.eq(rd_b.valid & ~att_run), g_b.payload.eq(rd_b.data),
        ]
        if att is not None:
            m.d.comb += [
                att.q.valid.eq(rd_a.valid & att_run), att.q.payload.eq(rd_a.data),
                att.k.valid.eq(rd_b.valid & att_run), att.k.payload.eq(rd_b.data),
                att.v.valid.eq(rd_v.valid & att_run), att.v.payload.eq(rd_v.data),
                rd_v.ready.eq(att.v.ready),
                rd_a.ready.eq(Mux(att_run, att.q.ready, g_a.ready)),
                rd_b.ready.eq(Mux(att_run, att.k.ready, g_b.ready)),
                g_out.ready.eq(1),
            ]
        else:
            m.d.comb += [rd_a.ready.eq(g_a.ready), rd_b.ready.eq(g_b.ready),
                         rq.i.payload.eq(gemm.out.payload),
                         rq.i.valid.eq(gemm.out.valid & ~raw),
                         gemm.out.ready.eq(Mux(raw, 1, rq.i.ready))]
        c_word = Signal(data.ArrayLayout(signed(cfg.acc_width), Cc))
        c_we = Signal()
        m.d.comb += rq_o.ready.eq(1)
        with m.If(raw):
            # Exact rows; the shared engine's lanes may be wider, the values fit acc_width.
            m.d.comb += c_we.eq(g_out.valid)
            for c in range(Cc):
                m.d.comb += c_word[c].eq(g_out.payload[c])
        with m.Else():   # requantized GEMM rows, or attention's output
            m.d.comb += c_we.eq(rq_o.valid)
            for c in range(Cc):
                m.d.comb += c_word[c].eq(rq_o.payload[c])

        # Nonlinear: X reader -> the selected unit -> Y.
        y_word = y_we = None
        if rd_x is not None:
            xs, ys = self.buffers[Buf.X], self.buffers[Buf.Y]
            x_word = data.ArrayLayout(signed(xs.elem_width), VL)(rd_x.data)
            y_word = Signal(data.ArrayLayout(signed(ys.elem_width), VL))
            y_we = Signal()
            for op, unit in units.items():
                sel = Signal(name=f"sel_{op.name.lower()}")
                m.d.sync += sel.eq(run_op == op)
                m.d.comb += [unit.i.valid.eq(rd_x.valid & sel), unit.o.ready.eq(1)]
                for lane in range(VL):
                    m.d.comb += unit.i.payload[lane].eq(x_word[lane])
                with m.If(sel):
                    m.d.comb += [rd_x.ready.eq(unit.i.ready), y_we.eq(unit.o.valid)]
                    for lane in range(VL):
                        m.d.comb += y_word[lane].eq(unit.o.payload[lane])

        # -- Command interpreter --------------------------------------------------------------
        # Both byte streams are decoupled (timing): commands through a small FIFO (its input
        # ends in memory, with no logic, so a block RAM may drive it, as the board link's frame
        # buffer does), responses through a register slice. The interpreter sees a registered
        # valid and payload, the outside world a registered ready and valid.
        m.submodules.cmd_fifo = cmd_fifo = SyncFIFOBuffered(width=8, depth=4)
        m.submodules.rsp_skid = rsp_skid = SkidBuffer(8)
        wiring.connect(m, wiring.flipped(self.cmd), cmd_fifo.w_stream)
        wiring.connect(m, rsp_skid.o, wiring.flipped(self.rsp))
        cmd, rsp = cmd_fifo.r_stream, rsp_skid.i
        opcode = Signal(8)
        length = Signal(16)
        remaining = Signal(16)
        args = [Signal(8, name=f"arg{i}") for i in range(9)]
        arg_zero = [Signal(name=f"arg{i}_zero") for i in range(9)]   # args[i] == 0
        # Registered decodes of the opcode and the payload length, read from DECODE on.
        is_cmd = {c: Signal(name=f"is_{c.name.lower()}") for c in Command}
        len_is = {n: Signal(name=f"len_is_{n}") for n in (0, 1, 5)}
        len_ge5, len_2_to_9 = Signal(name="len_ge5"), Signal(name="len_2_to_9")
        verdict_bad = Signal()    # verdict != 0
        for c in Command:
            m.d.sync += is_cmd[c].eq(opcode == c.value)
        nargs = Signal(range(10))
        argi = Signal(range(10))
        # One-hot: the argument byte the next command byte goes to; nonzero only in state ARGS
        # (set on entering it, cleared with its last byte), so a byte's capture enable is one
        # gate of two flip-flops.
        arg_sel = Signal(9)
        for i, a in enumerate(args):
            with m.If(cmd.valid & arg_sel[i]):
                m.d.sync += [a.eq(cmd.payload), arg_zero[i].eq(cmd.payload == 0)]
        status = Signal(8)
        last_error = Signal(8)
        rlen = Signal(16)
        m.d.comb += self.error.eq(last_error != 0)

        buf_id = args[0]
        addr = Signal(17)
        count = Signal(17)
        arg_addr = Cat(args[1], args[2])
        arg_count = Cat(args[3], args[4])
        value = Cat(*args[1:9])

        # Facts about the command's arguments, computed in registered stages while the arguments
        # are held (FACT1, FACT2; FACT3 turns them into a verdict), so that CHECK acts on
        # flip-flops.
        # Stage 1: the addressed buffer and register, and whether the value fits each register
        # width.
        known_buf, readable = Signal(name="known_buf"), Signal(name="readable")
        last_byte = Signal(range(64))      # a word's bytes are 0 .. last_byte
        buf_depth = Signal(17)
        arg_end = Signal(18)               # addr + count
        m.d.sync += [known_buf.eq(0), readable.eq(0), last_byte.eq(0), buf_depth.eq(0),
                     arg_end.eq(arg_addr + arg_count)]
        for buf, spec in self.buffers.items():
            with m.If(buf_id == buf.value):
                m.d.sync += [known_buf.eq(1), readable.eq(spec.readable),
                             last_byte.eq(spec.nbytes - 1), buf_depth.eq(spec.depth)]
        rlen_val = Signal(24)  # count*nbytes
        for buf, spec in self.buffers.items():
            with m.If(buf_id == buf.value):
                m.d.sync += rlen_val.eq(_times(arg_count, spec.nbytes))
        reg_hit = {reg: Signal(name=f"hit_{reg.name.lower()}") for reg in self.registers}
        fits = {}      # (width, max) -> registered "value <= max"
        for reg, (width, hi) in self.registers.items():
            m.d.sync += reg_hit[reg].eq(args[0] == reg.value)
            if (width, hi) not in fits:
                # value <= hi as "no bit above hi's width, and the low bits <= hi": no 64-bit
                # comparator. Whole bytes above the width are tested by their zero flags.
                low_ok = value[:width] <= hi if hi != (1 << width) - 1 else 1
                whole = -(-width // 8)          # value bytes 0 .. whole-1 hold the width
                high_zero = Cat(value[width:8 * whole] == 0, *arg_zero[1 + whole:9]).all()
                fits[width, hi] = Signal(name=f"fits_{width}_{hi}")
                m.d.sync += fits[width, hi].eq(high_zero & low_ok)
        # Stage 2: from the registered facts.
        known_reg, value_ok = Signal(name="known_reg"), Signal(name="value_ok")
        in_range = Signal()
        wlen_ok = Signal()     # length == 5 + count*nbytes
        rlen_big = Signal()    # the response would exceed 65535 bytes
        verdict = Signal(8)    # FACT3: the command's status code (0: go ahead)
        count_zero = Signal()
        hits = [reg_hit[reg] for reg in self.registers]
        oks = [reg_hit[reg] & fits[spec] for reg, spec in self.registers.items()]
        m.d.sync += [
            known_reg.eq(Cat(*hits).any()), value_ok.eq(Cat(*oks).any()),
            in_range.eq(arg_end <= buf_depth),
            wlen_ok.eq(length == rlen_val + 5), rlen_big.eq(rlen_val > 0xffff),
        ]

        # Word assembly for writes, and the latched word for reads.
        max_bytes = max(s.nbytes for s in self.buffers.values())
        word = Signal(8 * max_bytes)           # a word being written
        rword = Signal(8 * max_bytes)          # a word being read out
        bytei = Signal(range(max_bytes + 1))
        wpending = Signal()
        waddr = Signal(17)
        m.d.sync += wpending.eq(0)
        # A run's output words reach C or Y through a register stage (timing: the units' output
        # logic and the block RAM are far apart); the port select is a per-buffer copy of
        # ``running`` a cycle late, which still covers the last, delayed write.
        run_addr = Signal.like(written)
        m.d.sync += run_addr.eq(written)
        run_words = {Buf.C: (c_we, c_word), Buf.Y: (y_we, y_word)}
        for buf, wp in wps.items():
            by_run = Signal(name=f"by_run_{buf.name.lower()}")
            m.d.sync += by_run.eq(running)
            if buf in run_words and run_words[buf][0] is not None:
                we, data_in = run_words[buf]
                run_we = Signal(name=f"run_we_{buf.name.lower()}")
                run_data = Signal.like(data_in, name=f"run_data_{buf.name.lower()}")
                m.d.sync += [run_we.eq(running & we), run_data.eq(data_in)]
                with m.If(by_run):
                    m.d.comb += [wp.en.eq(run_we), wp.addr.eq(run_addr), wp.data.eq(run_data)]
            with m.If(~by_run):
                m.d.comb += [wp.en.eq(wpending & (buf_id == buf.value)), wp.addr.eq(waddr),
                             wp.data.eq(word)]
        if Op.LAYERNORM in units:
            coef = units[Op.LAYERNORM].coef
            ln = cfg.layernorm
            gw = ln.gamma_width * ln.lanes
            m.d.comb += [
                coef.valid.eq(wpending & (buf_id == Buf.COEF.value)),
                coef.payload.addr.eq(waddr),
                coef.payload.gamma.eq(word[:gw]),
                coef.payload.beta.eq(word[gw:gw + ln.beta_width * ln.lanes]),
            ]
        with m.If(running & (c_we | (y_we if y_we is not None else 0))):
            m.d.sync += written.eq(written + 1)

        # Read ports: addressed by the reader while running, by the command otherwise. They
        # read every cycle (``en`` is left at 1): a reader keeps only the words it asked for,
        # and a command read holds its address for two cycles. The select is a copy of
        # ``running`` a cycle late, one per buffer (timing: a short, low-fanout net to each
        # block RAM); readers start two cycles after a run does and end before it does.
        for buf, rp in rps.items():
            reader = {Buf.A: rd_a, Buf.B: rd_b, Buf.X: rd_x, Buf.V: rd_v}.get(buf)
            if reader is not None:
                by_reader = Signal(name=f"by_reader_{buf.name.lower()}")
                m.d.sync += by_reader.eq(running)
                m.d.comb += rp.addr.eq(Mux(by_reader, reader.addr, addr))
            else:
                m.d.comb += rp.addr.eq(addr)
        # A command read registers every buffer's output (BRAM clock-to-output is most of a
        # cycle), then ANDs each byte with a flag flip-flop (buffer == argument, a cycle late;
        # the argument is held from its byte to the end of the command) and ORs them into a
        # register, not a mux on the decoded buffer number, whose net would reach every bit
        # (timing; docs/timing.md has the measured variants).
        rdata = Signal(8 * max_bytes)
        terms = []
        for buf, rp in rps.items():
            held = Signal.like(rp.data, name=f"held_{buf.name.lower()}")
            m.d.sync += held.eq(rp.data)
            for i in range(0, len(held), 8):
                sel = Signal(name=f"read_sel_{buf.name.lower()}_{i // 8}")
                m.d.sync += sel.eq(buf_id == buf.value)
                byte = held[i:i + 8]
                terms.append(Cat(Const(0, i), byte & sel.replicate(len(byte))))
        m.d.sync += rdata.eq(functools.reduce(operator.or_, terms))

        # Shape preparation for RUN (iterative, no multipliers).
        rem_a, rem_b, rem_c = (Signal(17, name=f"rem_{x}") for x in "abc")
        words_a, words_b, words_c = (Signal(34, name=f"words_{x}") for x in "abc")
        tiles_m, tiles_n = Signal(17, name="tiles_m"), Signal(17, name="tiles_n")
        over_abc, over_a = Signal(name="over_abc"), Signal(name="over_a")   # beyond the buffers
        launch_bad = Signal()     # the RUN's op is over_abc (GEMM, attention) or over_a
        op_arg = args[0]
        # The op decoded into flip-flops (the argument is held from FACT1 to the end of RUN).
        gemm_op, att_op = Signal(name="gemm_op"), Signal(name="att_op")
        is_gemm = (op_arg == Op.GEMM.value) | (op_arg == Op.GEMM_RAW.value)
        is_att = op_arg == Op.ATTENTION.value
        m.d.sync += gemm_op.eq(is_gemm)
        att_len = regs.get(Reg.ATT_LEN, Const(0, 1))
        att_dim = regs.get(Reg.ATT_DIM, Const(0, 1))
        # Registered (read in FACT3): the op is in the config, its shape registers are valid.
        # Each op's shape verdict is kept in a flip-flop at all times (the registers change only
        # in a SET_REG's CHECK, commands before the RUN), then selected by the op.
        present = Signal()
        shape_ok = Signal()
        op_shape_ok = Signal(name="gemm_shape_ok")
        m.d.sync += [present.eq(0), shape_ok.eq(0),
                     op_shape_ok.eq((regs[Reg.M] != 0) & (regs[Reg.K] != 0) & (regs[Reg.N] != 0))]
        with m.If(is_gemm):
            m.d.sync += [present.eq(1), shape_ok.eq(op_shape_ok)]
        if att is not None:
            op_shape_ok = Signal(name="att_shape_ok")
            m.d.sync += [att_op.eq(is_att),
                         op_shape_ok.eq((att_len != 0) & (att_len <= cfg.attention.max_seq_len) &
                                        (att_dim != 0) & (att_dim <= cfg.attention.max_head_dim))]
            with m.If(is_att):
                m.d.sync += [present.eq(1), shape_ok.eq(op_shape_ok)]
        for op, name in NONLINEAR_OPS.items():
            if op in units:
                unit_cfg = getattr(cfg, name)
                row_max = unit_cfg.max_len if op != Op.GELU else depth * VL
                op_shape_ok = Signal(name=f"{name}_shape_ok")
                m.d.sync += op_shape_ok.eq((regs[Reg.ROW_LEN] != 0) & (regs[Reg.ROWS] != 0) &
                                           (regs[Reg.ROW_LEN] <= row_max))
                with m.If(op_arg == op.value):
                    m.d.sync += [present.eq(1), shape_ok.eq(op_shape_ok)]
        gemm_cmd_valid = Signal()
        m.d.comb += [g_cmd.valid.eq(gemm_cmd_valid), g_cmd.payload.m.eq(regs[Reg.M]),
                     g_cmd.payload.k.eq(regs[Reg.K]), g_cmd.payload.n.eq(regs[Reg.N])]
        with m.If(g_cmd.valid & g_cmd.ready):
            m.d.sync += gemm_cmd_valid.eq(0)
        att_cmd_valid = Signal()
        if att is not None:
            m.d.comb += [att.cmd.valid.eq(att_cmd_valid),
                         att.cmd.payload.length.eq(regs[Reg.ATT_LEN]),
                         att.cmd.payload.head_dim.eq(regs[Reg.ATT_DIM]),
                         att.cmd.payload.causal.eq(regs[Reg.ATT_CAUSAL])]
            with m.If(att.cmd.valid & att.cmd.ready):
                m.d.sync += att_cmd_valid.eq(0)

        # The readers' loops follow the run's op at all times, without an enable (loaded from
        # the command FSM they would have one enable net across the chip); run_gemm is set at
        # LAUNCH, the loops are registered from it a cycle later, and a reader latches them the
        # cycle after that (two cycles after LAUNCH).
        # GEMM: A walks i = row tile (stride K), j = column tile (stride 0), then k; B the same
        # walk with the strides swapped. Attention and the nonlinear units read linearly (Q, K
        # and V are in the controller's scratchpad order).
        K = regs[Reg.K]
        m.d.sync += [
            rd_a.count_i.eq(Mux(run_gemm, tiles_m, 1)), rd_a.count_j.eq(Mux(run_gemm, tiles_n, 1)),
            rd_a.count_k.eq(Mux(run_gemm, K, words_a)), rd_a.si.eq(Mux(run_gemm, K, 0)),
            rd_a.sj.eq(0),
            rd_b.count_i.eq(Mux(run_gemm, tiles_m, 1)), rd_b.count_j.eq(Mux(run_gemm, tiles_n, 1)),
            rd_b.count_k.eq(Mux(run_gemm, K, words_b)), rd_b.si.eq(0),
            rd_b.sj.eq(Mux(run_gemm, K, 0)),
        ]
        for rd, n in ((rd_x, words_a), (rd_v, words_c)):
            if rd is not None:
                m.d.sync += [rd.count_i.eq(1), rd.count_j.eq(1), rd.count_k.eq(n), rd.si.eq(0),
                             rd.sj.eq(0)]

        # RUN's shape preparation (state PREP), by repeated subtraction: GEMM words_a =
        # ceil(M/R)*K, words_b = ceil(N/C)*K, words_c = M*ceil(N/C), tiles_m = ceil(M/R),
        # tiles_n = ceil(N/C); attention ceil(L/R)*d (Q), ceil(L/C)*d (K), ceil(d/C)*L (V and
        # O); nonlinear words_a = ROWS*ceil(ROW_LEN/lanes). The next values and the "more to
        # count" flags are registered every cycle from the current ones, and committed every
        # other cycle, so each commit's enable is one gate from two flip-flops (timing; PREP
        # takes twice as many cycles, a few dozen at most, once per RUN).
        prep_phase = Signal()     # high on PREP's commit cycles only
        a_step = Signal(range(max(R, VL) + 1))
        a_inc, b_inc, c_inc = (Signal(17, name=f"{x}_inc") for x in "abc")
        a_go, b_go, c_go, wc_go = (Signal(name=f"{x}_go") for x in ("a", "b", "c", "wc"))
        rem_a_nx, rem_b_nx, rem_c_nx = (Signal(17, name=f"rem_{x}_nx") for x in "abc")
        words_a_nx, words_b_nx, words_c_nx = (Signal(34, name=f"words_{x}_nx") for x in "abc")
        tiles_m_nx, tiles_n_nx = Signal(17, name="tiles_m_nx"), Signal(17, name="tiles_n_nx")
        m.d.sync += [
            a_step.eq(Mux(gemm_op | att_op, R, VL)),
            a_inc.eq(Mux(gemm_op, K, Mux(att_op, att_dim, regs[Reg.ROWS]))),
            b_inc.eq(Mux(att_op, att_dim, K)),
            c_inc.eq(Mux(att_op, att_len, regs[Reg.M])),
            a_go.eq(rem_a != 0), b_go.eq(rem_b != 0), c_go.eq(rem_c != 0),
            wc_go.eq(Mux(att_op, rem_c != 0, rem_b != 0)),
            rem_a_nx.eq(Mux(rem_a > a_step, rem_a - a_step, 0)),
            rem_b_nx.eq(Mux(rem_b > Cc, rem_b - Cc, 0)),
            rem_c_nx.eq(Mux(rem_c > Cc, rem_c - Cc, 0)),
            words_a_nx.eq(words_a + a_inc), words_b_nx.eq(words_b + b_inc),
            words_c_nx.eq(words_c + c_inc),
            tiles_m_nx.eq(tiles_m + 1), tiles_n_nx.eq(tiles_n + 1),
        ]
        # Pulses from CHECK, acted on a cycle later outside the command FSM (so that the wide
        # enables come from one flip-flop each): start RUN's counts; write SET_REG's register.
        prep_init, set_reg = Signal(), Signal()
        m.d.sync += [prep_init.eq(0), set_reg.eq(0)]
        with m.If(prep_init):
            m.d.sync += [rem_a.eq(Mux(gemm_op, regs[Reg.M], Mux(att_op, att_len,
                                                                 regs[Reg.ROW_LEN]))),
                         rem_b.eq(Mux(gemm_op, regs[Reg.N], Mux(att_op, att_len, 0))),
                         rem_c.eq(Mux(att_op, att_dim, 0)),
                         words_a.eq(0), words_b.eq(0), words_c.eq(0), tiles_m.eq(0),
                         tiles_n.eq(0)]
        with m.If(set_reg):
            for reg, sig in regs.items():
                with m.If(reg_hit[reg]):
                    m.d.sync += sig.eq(value)
        with m.If(prep_phase):
            with m.If(a_go):
                m.d.sync += [rem_a.eq(rem_a_nx), words_a.eq(words_a_nx), tiles_m.eq(tiles_m_nx)]
            with m.If(b_go):
                m.d.sync += [rem_b.eq(rem_b_nx), words_b.eq(words_b_nx), tiles_n.eq(tiles_n_nx)]
            with m.If(c_go):
                m.d.sync += rem_c.eq(rem_c_nx)
            with m.If(wc_go):
                m.d.sync += words_c.eq(words_c_nx)

        # A run ends when its last output word is written.
        with m.If(running & (written == out_words) & ~gemm_cmd_valid & ~att_cmd_valid):
            m.d.sync += [running.eq(0), done.eq(1)]

        with m.FSM(name="cmd"):
            with m.State("OPCODE"):      # wait for a command's opcode
                m.d.comb += cmd.ready.eq(1)
                with m.If(cmd.valid):
                    m.d.sync += opcode.eq(cmd.payload)
                    m.next = "LEN0"
            with m.State("LEN0"):        # payload length, low byte
                m.d.comb += cmd.ready.eq(1)
                with m.If(cmd.valid):
                    m.d.sync += length[:8].eq(cmd.payload)
                    m.next = "LEN1"
            with m.State("LEN1"):        # payload length, high byte
                m.d.comb += cmd.ready.eq(1)
                with m.If(cmd.valid):
                    full = Cat(length[:8], cmd.payload)
                    m.d.sync += [length[8:].eq(cmd.payload), remaining.eq(full), argi.eq(0)]
                    m.d.sync += [a.eq(0) for a in args] + [z.eq(1) for z in arg_zero]
                    m.d.sync += [flag.eq(full == n) for n, flag in len_is.items()]
                    m.d.sync += [len_ge5.eq(full >= 5), len_2_to_9.eq((full >= 2) & (full <= 9))]
                    m.next = "DECODE"
            with m.State("DECODE"):      # opcode and length known: how many argument bytes
                def fail(code):
                    m.d.sync += status.eq(code.value)
                    m.next = "DISCARD"
                with m.If(is_cmd[Command.STATUS]):
                    with m.If(len_is[0]):
                        m.d.sync += [status.eq(0), rlen.eq(2)]
                        m.next = "RSP0"
                    with m.Else():
                        fail(Error.LENGTH)
                # The other commands: the length check, then ``nargs`` argument bytes.
                for command, length_ok, n in (
                        (Command.WRITE_BUFFER, len_ge5, 5), (Command.READ_BUFFER, len_is[5], 5),
                        (Command.SET_REG, len_2_to_9, length), (Command.RUN, len_is[1], 1)):
                    with m.Elif(is_cmd[command]):
                        with m.If(length_ok):
                            m.d.sync += [nargs.eq(n), arg_sel.eq(1)]
                            m.next = "ARGS"
                        with m.Else():
                            fail(Error.LENGTH)
                with m.Else():
                    fail(Error.OPCODE)
            with m.State("ARGS"):        # argument bytes into args[]
                m.d.comb += cmd.ready.eq(1)
                with m.If(cmd.valid):
                    m.d.sync += [argi.eq(argi + 1), remaining.eq(remaining - 1),
                                 arg_sel.eq(arg_sel << 1)]
                    with m.If(argi + 1 == nargs):
                        m.d.sync += arg_sel.eq(0)
                        m.next = "FACT1"
            with m.State("FACT1"):       # argument facts, stage 1 (registered)
                m.next = "FACT2"
            with m.State("FACT2"):       # argument facts, stage 2 (registered)
                m.next = "FACT3"
            with m.State("FACT3"):       # the verdict, registered: status code, or 0
                m.d.sync += [verdict.eq(0), verdict_bad.eq(0)]

                def verdict_is(code):
                    m.d.sync += [verdict.eq(code.value), verdict_bad.eq(1)]

                # Per command, its checks in order (the first failing one answers): the target,
                # busy, then the range or value.
                checks = {
                    Command.WRITE_BUFFER: [(~known_buf, Error.BUFFER), (running, Error.BUSY),
                                           (~wlen_ok, Error.LENGTH), (~in_range, Error.RANGE)],
                    Command.READ_BUFFER: [(~known_buf | ~readable, Error.BUFFER),
                                          (running, Error.BUSY),
                                          (~in_range | rlen_big, Error.RANGE)],
                    Command.SET_REG: [(~known_reg, Error.REGISTER), (running, Error.BUSY),
                                      (~value_ok, Error.VALUE)],
                    Command.RUN: [(~present, Error.UNIT), (running, Error.BUSY),
                                  (~shape_ok, Error.SHAPE)],
                }
                for command, command_checks in checks.items():
                    with m.If(is_cmd[command]):
                        for i, (failed, code) in enumerate(command_checks):
                            with (m.If if i == 0 else m.Elif)(failed):
                                verdict_is(code)
                m.d.sync += count_zero.eq(arg_count == 0)
                m.next = "CHECK"
            with m.State("CHECK"):       # act on the verdict; a failure discards the rest
                m.d.sync += [addr.eq(arg_addr), waddr.eq(arg_addr), count.eq(arg_count),
                             bytei.eq(0), rlen.eq(0), status.eq(verdict)]
                with m.If(verdict_bad):
                    m.next = "DISCARD"
                with m.Else():
                    with m.If(is_cmd[Command.WRITE_BUFFER]):
                        m.next = "WDATA"
                        with m.If(count_zero):
                            m.next = "RSP0"
                    with m.Elif(is_cmd[Command.READ_BUFFER]):
                        m.d.sync += rlen.eq(rlen_val)
                        m.next = "RSP0"
                    with m.Elif(is_cmd[Command.SET_REG]):
                        m.d.sync += set_reg.eq(1)     # the register is written next cycle
                        m.next = "RSP0"
                    with m.Elif(is_cmd[Command.RUN]):
                        m.d.sync += prep_init.eq(1)
                        m.next = "PREP0"
            with m.State("PREP0"):       # RUN: the counts start (prep_init), see above
                m.next = "PREP"
            with m.State("PREP"):        # RUN: tile/beat counts by repeated subtraction
                # Every other cycle (prep_phase) commits the next values registered meanwhile
                # (above); done when nothing is left to count.
                m.d.sync += prep_phase.eq(~prep_phase)
                with m.If(prep_phase & ~a_go & ~b_go & ~c_go):
                    m.next = "FIT"
            with m.State("FIT"):         # RUN: the capacity checks, registered
                m.d.sync += [over_abc.eq((words_a > depth) | (words_b > depth) |
                                         (words_c > depth)),
                             over_a.eq(words_a > depth)]
                m.next = "FIT2"
            with m.State("FIT2"):        # RUN: the capacity verdict of the op, registered
                m.d.sync += launch_bad.eq(Mux(gemm_op | att_op, over_abc, over_a))
                m.next = "LAUNCH"
            with m.State("LAUNCH"):      # RUN: capacity verdict, then start the readers
                with m.If(launch_bad):
                    m.d.sync += status.eq(Error.SHAPE.value)
                with m.Elif(gemm_op):
                    m.d.sync += [running.eq(1), done.eq(0), run_op.eq(op_arg), run_gemm.eq(1),
                                 written.eq(0), out_words.eq(words_c), gemm_cmd_valid.eq(1)]
                    m.d.sync += [rd_a.start.eq(1), rd_b.start.eq(1)]
                with m.Elif(att_op):
                    if att is not None:
                        m.d.sync += [running.eq(1), done.eq(0), run_op.eq(op_arg),
                                     run_gemm.eq(0), written.eq(0), out_words.eq(words_c),
                                     att_cmd_valid.eq(1)]
                        m.d.sync += [rd.start.eq(1) for rd in (rd_a, rd_b, rd_v)]
                with m.Else():
                    m.d.sync += [running.eq(1), done.eq(0), run_op.eq(op_arg), run_gemm.eq(0),
                                 written.eq(0), out_words.eq(words_a)]
                    if rd_x is not None:
                        m.d.sync += rd_x.start.eq(1)
                m.next = "RSP0"
            with m.State("WDATA"):       # WRITE_BUFFER: words, nbytes bytes each
                m.d.comb += cmd.ready.eq(1)
                with m.If(cmd.valid):
                    for i in range(max_bytes):
                        with m.If(bytei == i):
                            m.d.sync += word[8 * i:8 * i + 8].eq(cmd.payload)
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(bytei == last_byte):
                        m.d.sync += [bytei.eq(0), wpending.eq(1)]
                        with m.If(remaining == 1):
                            m.next = "RSP0"
                    with m.Else():
                        m.d.sync += bytei.eq(bytei + 1)
                with m.If(wpending):
                    m.d.sync += waddr.eq(waddr + 1)
            with m.State("DISCARD"):     # drop what is left of a rejected command's payload
                m.d.comb += cmd.ready.eq(remaining != 0)
                with m.If(remaining == 0):
                    m.next = "RSP0"
                with m.Elif(cmd.valid):
                    m.d.sync += remaining.eq(remaining - 1)
            with m.State("RSP0"):        # response: status
                m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(status)]
                with m.If(rsp.ready):
                    with m.If(status != 0):
                        m.d.sync += [last_error.eq(status), rlen.eq(0)]
                    m.next = "RSP1"
            with m.State("RSP1"):        # response: length, low byte
                m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(rlen[:8])]
                with m.If(rsp.ready):
                    m.next = "RSP2"
            with m.State("RSP2"):        # response: length, high byte
                m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(rlen[8:])]
                with m.If(rsp.ready):
                    with m.If(rlen == 0):
                        m.next = "OPCODE"
                    with m.Elif(is_cmd[Command.STATUS]):
                        m.next = "STATUS0"
                    with m.Else():
                        m.next = "RREAD"
            with m.State("STATUS0"):     # STATUS payload: flags
                m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(Cat(running, done))]
                with m.If(rsp.ready):
                    m.next = "STATUS1"
            with m.State("STATUS1"):     # STATUS payload: last error (read-clear)
                m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(last_error)]
                with m.If(rsp.ready):
                    m.d.sync += last_error.eq(0)
                    m.next = "OPCODE"
            with m.State("RREAD"):       # READ_BUFFER: read one word
                m.d.sync += bytei.eq(0)
                m.next = "RLATCH"
            with m.State("RLATCH"):      # READ_BUFFER: the word reaches the holding registers
                m.next = "RHOLD"
            with m.State("RHOLD"):       # READ_BUFFER: the addressed buffer's word is selected
                m.next = "RSELECT"
            with m.State("RSELECT"):     # READ_BUFFER: take it
                m.d.sync += [rword.eq(rdata), addr.eq(addr + 1)]
                m.next = "RSEND"
            with m.State("RSEND"):       # READ_BUFFER: send its bytes, low first
                m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(rword[:8])]
                with m.If(rsp.ready):
                    m.d.sync += [rword.eq(rword >> 8), bytei.eq(bytei + 1)]
                    with m.If(bytei == last_byte):
                        m.d.sync += count.eq(count - 1)
                        with m.If(count == 1):
                            m.next = "OPCODE"
                        with m.Else():
                            m.next = "RREAD"
        return m
