"""The accelerator top: on-chip buffers, the units the config includes, and a byte command port."""

from amaranth.hdl import Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .adapter import MatrixAdapter, RowAdapter
from .arbiter import EngineArbiter, SoftmaxArbiter
from .buffers import Buffers, read_buffers
from .channels import requant_width
from .command import CommandPort
from .dispatch import Dispatcher, engine_config
from .gemm import GemmEngine
from .isa import (
    ATTENTION_REGS,
    GELU_REGS,
    RESIDUAL_REGS,
    ROW_OPS,
    SOFTMAX_REGS,
    Buf,
    Op,
    buffer_depth,
    buffer_specs,
    gelu_in_c,
    register_specs,
    residual_to_x,
    vector_lanes,
)
from .reader import BufferReader
from .requant import Requantizer
from .residual import Residual
from .softmax import Softmax

__all__ = ["Accelerator"]


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

    ``RUN LINEAR`` is ``RUN GEMM`` with per-channel constants: ``C = requantize_channels(A @ B
    + bias, multipliers, shifts)`` (:func:`sim.ops.linear`), the bias added at the drain before
    the requantizer, the constants of output channels ``t*C .. t*C+C-1`` from CHAN words
    ``t``, ``T + t`` and ``2*T + t`` (:class:`~hw.channels.ChannelStage`). ``RUN RESIDUAL`` is
    :func:`sim.ops.residual_add` elementwise, ``a`` and ``b`` the two halves of X (``n =
    ROWS*ceil(ROW_LEN/lanes)`` words each, ``a`` first), ``n`` words of Y out; with
    ``RES_TO_X`` (:func:`~hw.isa.residual_to_x`) over ``a`` instead, in the same rows, so that
    a RUN LAYERNORM next normalizes the sums where they are (the host sends ``a`` and ``b``
    and reads only LayerNorm's rows).

    Registers (:class:`Reg`, see :func:`register_specs` for widths and maxima): ``M, K, N``
    (GEMM shape), ``ROW_LEN, ROWS`` (nonlinear rows), ``RQ_MULT, RQ_SHIFT`` (the requantizer's
    ``m`` and ``s``), with LINEAR ``LIN_MODE`` (:class:`~hw.isa.LinMode`), each enabled
    unit's constant ports ``SM_*`` (the fields of
    :class:`sim.golden.SoftmaxConstants`) and ``GELU_*`` (the fields of the GELU constants of
    the configured variant), for attention ``ATT_LEN, ATT_DIM, ATT_CAUSAL, ATT_KEYS`` (L, d,
    the causal mask, the keys every query sees: 0 for L), ``ATT_MULT, ATT_SHIFT`` and
    ``ATT_SHIFT_RIGHT`` ... ``ATT_EXP_SHIFT`` (the fields of
    :class:`sim.golden.AttentionConstants`: the requantization of ``P V`` and the softmax
    constants at the score scale), and for the residual add ``RES_MULT_A,
    RES_MULT_B, RES_SHIFT`` and, where the sum fits X, ``RES_TO_X``; where
    :func:`~hw.isa.gelu_in_c`, ``GELU_IN_C`` (RUN GELU over ``ROWS`` words of C in place,
    ``ROW_LEN`` the array's columns). They reset to 0.

    ``RUN`` checks, before anything moves: the op exists and its unit is in the config
    (``UNIT``), the shape is nonzero and within the config (``M <= max_m``..., ``ROW_LEN <=
    max_len`` of the unit, ``ATT_LEN <= max_seq_len``, ``ATT_DIM <= max_head_dim``,
    ``ATT_KEYS <= ATT_LEN``) and fits the buffers (``ceil(M/R)*K`` A words, ``ceil(N/C)*K`` B
    words, ``M*ceil(N/C)`` C words, ``ROWS*ceil(ROW_LEN/lanes)`` X and Y words, twice as many
    X words for RESIDUAL; attention ``ceil(L/R)*d`` A words,
    ``ceil(L/C)*d`` B words, ``ceil(d/C)*L`` V and C words), else ``SHAPE``. The run then
    streams its input buffer(s) through the unit into its output buffer. While it runs, only
    ``STATUS`` is accepted (others answer ``BUSY``).

    Checks are made in this order, the first failure answering: opcode, length, buffer /
    register / op, busy, range / value / shape.

    Parameters
    ----------
    cfg : AccelConfig
        Which units exist (``cfg.<unit>.enabled``) and their sizes.
    depth : int or None
        Words per buffer (A, B, C, X, Y, V; COEF and CHAN are as deep as their units need):
        by default the config's, ``cfg.buffers.depth`` (:class:`~hw.config.BufferConfig`; the
        presets' 256 keeps the tiny and icebreaker tops to a few EBRs per buffer). An explicit
        depth (1 to 65536) builds a test or proof top with smaller buffers than its config's;
        the host must then be given the same depth (:class:`boards.host.Client`).

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
    buffer_data : dict of Buf to hw.buffers.BufferStorage
        The buffers' storage (all but COEF, which the LayerNorm unit holds), likewise.
    dispatcher : hw.dispatch.Dispatcher
    memories : hw.buffers.Buffers
        Two of its parts, for properties that watch their ports (``formal/top.py``).

    Run isolation: everything a run reads is its own from launch (its op in ``run_op``, each
    reader's loop latched at its start, each unit's command taken at launch), and the register
    file is written only by an accepted ``SET_REG``, which ``BUSY`` excludes during a run; so no
    later command, accepted or refused, changes a running operation.

    Structure: the :class:`~hw.command.CommandPort` decodes the bytes and encodes the responses;
    the :class:`~hw.dispatch.Dispatcher` checks every command, holds the registers, prepares and
    launches a run; the :class:`~hw.buffers.Buffers` hold the memories and arbitrate their
    ports; a :class:`~hw.reader.BufferReader` per read buffer streams a run's operands; the
    adapters (:class:`~hw.adapter.MatrixAdapter`, :class:`~hw.adapter.RowAdapter`) feed the
    units and turn their results into words. The chip has one :class:`~hw.gemm.GemmEngine`
    and one :class:`~hw.requant.Requantizer`; the :class:`~hw.arbiter.EngineArbiter` gives the
    engine to RUN GEMM or to the :class:`~hw.attention.AttentionController` (a client with
    stream ports to the engine), whichever run is in progress.

    Latency: a command is answered a few cycles after its last byte (``RUN``: after
    ``max(M/R, N/C)``, ``ROW_LEN/lanes`` or ``max(L/R, L/C, d/C)`` cycles of shape checks).
    An attention run takes the controller's load time (its three streams are read in
    parallel, one word a cycle each) plus its compute time
    (:func:`sim.cyclemodel.attention_cycles`). Throughput: one command byte per cycle in, one
    response byte per cycle out; a run streams one beat per cycle.
    """

    def __init__(self, cfg, *, depth=None):
        self.cfg = cfg
        self.depth = depth = buffer_depth(cfg, depth)
        self.buffers = buffer_specs(cfg, depth)
        self.registers = register_specs(cfg, depth)
        self.lanes = vector_lanes(cfg)
        # The architectural state, made here so that a testbench can inspect it: the register
        # file (reset to 0) and the storage of every buffer but COEF (which lives in the
        # LayerNorm unit).
        self.dispatcher = Dispatcher(cfg, depth)
        self.memories = Buffers(cfg, depth)
        self.register_file = self.dispatcher.register_file
        self.buffer_data = self.memories.data
        super().__init__({
            "cmd": In(stream.Signature(8)),
            "rsp": Out(stream.Signature(8)),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.command = command = CommandPort(self.memories.word_width)
        m.submodules.dispatcher = disp = self.dispatcher
        m.submodules.buffers = bufs = self.memories
        wiring.connect(m, wiring.flipped(self.cmd), command.cmd)
        wiring.connect(m, command.rsp, wiring.flipped(self.rsp))
        wiring.connect(m, command.dispatch, disp.request)
        wiring.connect(m, command.host, bufs.host)
        m.d.comb += [self.busy.eq(disp.running), self.error.eq(command.error),
                     bufs.running.eq(disp.running), bufs.run_addr.eq(disp.run_addr),
                     disp.run_write.eq(bufs.run_write)]
        if residual_to_x(self.cfg):
            m.d.comb += bufs.run_to_x.eq(disp.run_to_x)
        readers = {}
        for buf in read_buffers(self.buffers):
            name = buf.name.lower()
            rd = BufferReader(bufs.addr_width, self.buffers[buf].width,
                              latency=Buffers.read_latency(buf, platform))
            m.submodules[f"rd_{name}"] = readers[buf] = rd
            wiring.connect(m, getattr(disp, f"read_{name}"), rd.control)
            wiring.connect(m, rd.mem, getattr(bufs, f"read_{name}"))
        att, mx = self._matrix(m, disp, bufs, readers)
        rows = self._rows(m, disp, bufs, readers, self._softmax(m, disp, att))
        self._c_ports(m, disp, bufs, readers[Buf.C].o if Buf.C in readers else None, mx, rows)
        return m

    def _c_ports(self, m, disp, bufs, c_read, mx, rows):
        """C's reader and run writes: the matrix adapter's (LINEAR's old words, the results),
        or, in a GELU over C (``GELU_IN_C``), the row adapter's."""
        if c_read is not None:
            old = mx.c_old
            if gelu_in_c(self.cfg):
                # The row adapter takes a word only over C (its `ready` is low otherwise, from
                # a flip-flop of its own a cycle behind `run_in_c`, when the reader, which
                # offers its first word 8 cycles after launch, has none), so its `valid` is the
                # reader's: `run_in_c`, from across the die, stays off the enable of the word it
                # holds.
                over = disp.run_in_c
                m.d.comb += [old.valid.eq(c_read.valid & ~over),
                             rows.c.valid.eq(c_read.valid),
                             old.payload.eq(c_read.payload), rows.c.payload.eq(c_read.payload),
                             c_read.ready.eq(Mux(over, rows.c.ready, old.ready)),
                             rows.in_c.eq(over)]
            else:
                wiring.connect(m, c_read, old)
        if gelu_in_c(self.cfg):
            w = bufs.write_c
            m.d.comb += [w.valid.eq(mx.c.valid | rows.c_out.valid),
                         w.payload.eq(Mux(disp.run_in_c, rows.c_out.payload, mx.c.payload))]
        else:
            wiring.connect(m, mx.c, bufs.write_c)

    def _matrix(self, m, disp, bufs, readers):
        """GEMM and attention: A, B (and V) readers -> the engine (through the arbiter; the
        attention controller is its other client) -> the requantizer or not -> C (through
        :meth:`_c_ports`). Returns the attention controller (or None) and the
        :class:`~hw.adapter.MatrixAdapter`."""
        cfg = self.cfg
        ecfg = engine_config(cfg)
        m.submodules.gemm = gemm = GemmEngine(ecfg)
        m.submodules.requant = rq = Requantizer(cfg.array.cols, requant_width(cfg), cfg.requant,
                                                per_lane=cfg.linear.enabled)
        m.submodules.arbiter = arb = EngineArbiter(cfg)
        m.submodules.matrix = mx = MatrixAdapter(cfg, self.depth)
        m.d.comb += [mx.run_op.eq(disp.run_op), mx.regs.eq(disp.regs), arb.run_op.eq(disp.run_op)]
        if cfg.linear.enabled:
            m.d.comb += mx.running.eq(disp.running)
            wiring.connect(m, bufs.chan, mx.chan)
        else:
            m.d.comb += [rq.multiplier.eq(mx.rq_multiplier), rq.shift.eq(mx.rq_shift)]
        for ours, theirs in ((readers[Buf.A].o, mx.a), (readers[Buf.B].o, mx.b),
                             (disp.gemm, arb.gemm_cmd),
                             (mx.gemm_a, arb.gemm_a), (mx.gemm_b, arb.gemm_b),
                             (arb.gemm_out, mx.gemm_out),
                             (arb.cmd, gemm.cmd), (arb.a, gemm.a), (arb.b, gemm.b),
                             (gemm.out, arb.out), (mx.rq_i, rq.i), (rq.o, mx.rq_o)):
            wiring.connect(m, ours, theirs)
        if cfg.attention.enabled:
            from .attention import AttentionController
            m.submodules.attention = att = AttentionController(cfg)
            for ours, theirs in ((disp.attention, att.cmd), (readers[Buf.V].o, mx.v),
                                 (mx.att_q, att.q), (mx.att_k, att.k), (mx.att_v, att.v),
                                 (att.gemm_cmd, arb.att_cmd), (att.gemm_a, arb.att_a),
                                 (att.gemm_b, arb.att_b), (arb.att_out, att.gemm_out),
                                 (att.rows, mx.att_rows)):
                wiring.connect(m, ours, theirs)
            return att, mx
        return None, mx

    def _softmax(self, m, disp, att):
        """The softmax: one, behind :class:`~hw.arbiter.SoftmaxArbiter`, for RUN SOFTMAX and
        attention (:attr:`~hw.config.AccelConfig.shared_softmax`), else one for whichever of the
        two the config has, or two when they cannot share. Returns RUN SOFTMAX's ``(i, o)``, or
        ``None``."""
        cfg, regs = self.cfg, disp.regs
        if cfg.shared_softmax is not None:
            m.submodules.softmax = sm = Softmax(cfg.shared_softmax)
            m.submodules.softmax_arbiter = arb = SoftmaxArbiter(cfg, self.depth)
            m.d.comb += [arb.run_op.eq(disp.run_op), arb.regs.eq(disp.regs),
                         arb.att_length.eq(att.softmax_length), sm.length.eq(arb.length)]
            m.d.comb += [getattr(sm, name).eq(getattr(arb, name)) for name in SOFTMAX_REGS]
            for ours, theirs in ((arb.i, sm.i), (sm.o, arb.o), (att.softmax_i, arb.att_i),
                                 (arb.att_o, att.softmax_o)):
                wiring.connect(m, ours, theirs)
            return arb.rows_i, arb.rows_o
        ends = None
        for name, reg_names, unit_cfg, user in (
                ("softmax", SOFTMAX_REGS, cfg.softmax, None),
                ("attention_softmax", ATTENTION_REGS, cfg.attention_softmax, att)):
            if not unit_cfg.enabled or (name == "attention_softmax" and att is None):
                continue
            m.submodules[name] = sm = Softmax(unit_cfg)
            m.d.comb += [getattr(sm, n).eq(regs[reg.name.lower()]) for n, reg in reg_names.items()]
            if user is None:
                m.d.comb += sm.length.eq(regs.row_len)
                ends = sm.i, sm.o
            else:
                m.d.comb += sm.length.eq(user.softmax_length)
                wiring.connect(m, user.softmax_i, sm.i)
                wiring.connect(m, sm.o, user.softmax_o)
        return ends

    def _rows(self, m, disp, bufs, readers, softmax):
        """Nonlinear units: X reader -> the unit of the run -> Y; their constants from the
        registers. ``softmax``: RUN SOFTMAX's ``(i, o)`` ports. Returns the
        :class:`~hw.adapter.RowAdapter` (None without a row unit)."""
        cfg, regs = self.cfg, disp.regs
        units = {}
        if softmax is not None:
            units[Op.SOFTMAX] = softmax
        if cfg.gelu.enabled:
            from .gelu import Gelu
            m.submodules.gelu = gelu = Gelu(cfg.gelu)
            units[Op.GELU] = gelu.i, gelu.o
            for name in gelu.constant_names:
                m.d.comb += getattr(gelu, name).eq(regs[GELU_REGS[name].name.lower()])
        if cfg.layernorm.enabled:
            from .layernorm import LayerNorm
            m.submodules.layernorm = ln = LayerNorm(cfg.layernorm)
            units[Op.LAYERNORM] = ln.i, ln.o
            m.d.comb += ln.length.eq(regs.row_len)
            wiring.connect(m, bufs.coef, ln.coef)
        if cfg.residual.enabled:
            m.submodules.residual = res = Residual(cfg.residual, self.lanes)
            units[Op.RESIDUAL] = res.i, res.o
            m.d.comb += [getattr(res, name).eq(regs[reg.name.lower()])
                         for name, reg in RESIDUAL_REGS.items()]
        if not units:
            return None
        m.submodules.rows = rows = RowAdapter(cfg, self.depth)
        m.d.comb += rows.run_op.eq(disp.run_op)
        wiring.connect(m, readers[Buf.X].o, rows.x)
        wiring.connect(m, rows.y, bufs.write_y)
        for op, (i, o) in units.items():
            name = ROW_OPS[op]
            wiring.connect(m, getattr(rows, f"{name}_i"), i)
            wiring.connect(m, o, getattr(rows, f"{name}_o"))
        return rows
