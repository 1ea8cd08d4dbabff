"""Per-operation adapters of the accelerator top: the streams a run reads, fed to its unit,
and the unit's results, turned into the words the run writes."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .accumulate import Accumulate
from .channels import ChannelStage, channel_write_layout, requant_width
from .dispatch import engine_config, register_layout
from .fanout import register_copies
from .isa import ROW_OPS, Buf, LinMode, Op, buffer_specs, gelu_in_c, lin_mode_bit, vector_lanes
from .requant import lane_beat_layout, saturate
from .residual import residual_pair_layout
from .skid import SkidBuffer

__all__ = ["MatrixAdapter", "RowAdapter"]


class MatrixAdapter(wiring.Component):
    """RUN GEMM, GEMM_RAW, LINEAR and ATTENTION: the A and B (and V) readers' words into the
    GEMM engine's client port (or the attention controller), the results into C's words,
    through the top's one requantizer where they need it.

    GEMM: ``a``, ``b`` -> the engine (``gemm_a``, ``gemm_b``, through
    :class:`hw.arbiter.EngineArbiter`); its rows (``gemm_out``) -> C, exact for GEMM_RAW, else
    through the requantizer (``rq_*``, with ``RQ_MULT``, ``RQ_SHIFT``). Attention: ``a`` (Q),
    ``b`` (K), ``v`` -> the controller (``att_q`` ...); its exact ``P V`` rows (``att_rows``)
    -> the requantizer (``ATT_MULT``, ``ATT_SHIFT``) -> C. LINEAR: as GEMM, with each row's
    bias added and each lane's multiplier and shift taken from the CHAN buffer by a
    :class:`~hw.channels.ChannelStage` (``chan`` its writes) before the register slice; with
    LINEAR in the config every run's rows pass it, and the requantizer is per-lane.

    With LINEAR in the config, the engine's rows first pass a register slice, so that the
    engine's output ``ready`` is a flip-flop, then an :class:`~hw.accumulate.Accumulate`
    stage (one register, every GEMM, GEMM_RAW and LINEAR run): a LINEAR run with ``LIN_MODE``'s
    ACCUMULATE adds C's old words (``c_old``, read ahead by C's reader) to its rows, the rows
    shifted by ``in_width`` with SHIFT; one with RAW writes the sums into C as GEMM_RAW does
    (:class:`hw.isa.LinMode`). The old words pass a register slice on the way in, so that the
    stage's ``ready``, which follows the requantizer's, does not reach C's reader's output
    register (a word wide, across the die from the stage); the reader runs far enough ahead
    that the slice's cycle never shows.

    The selects are flip-flops decoded from ``run_op`` (a cycle after launch sets it; no word
    reaches a unit before that); the constants follow ``regs`` (unchanged during a run), with
    attention through a register that picks the op's multiplier and shift. The rows bound for
    the requantizer pass a register slice (:class:`~hw.skid.SkidBuffer`) after their select, so
    that neither the select's fanout nor the requantizer's ``ready`` reaches across it.

    Parameters
    ----------
    cfg : AccelConfig
    depth : int
        Words per buffer (the register layout depends on it).

    Members
    -------
    run_op : In(Op)
    regs : In(hw.dispatch.register_layout(cfg, depth))
    a, b : In(stream.Signature(unsigned(width)))
        A's and B's words, from their readers.
    v : In(stream.Signature(unsigned(width))), with attention only
        V's words.
    c : Out(stream.Signature(unsigned(width), always_ready=True))
        C's words.
    gemm_a, gemm_b : Out(stream.Signature(ArrayLayout(signed(in_width), R or C)))
    gemm_out : In(stream.Signature(ArrayLayout(signed(acc_width), C)))
        The engine's client port (``acc_width`` of :func:`hw.dispatch.engine_config`).
    rq_i : Out(stream.Signature(ArrayLayout(signed(acc_width), C)))
        With LINEAR, ``Out(stream.Signature(lane_beat_layout(C, requant_width(cfg),
        mult_width)))`` (:func:`hw.requant.lane_beat_layout`, :func:`hw.channels.requant_width`).
    rq_o : In(stream.Signature(ArrayLayout(signed(requant.out_width), C)))
    rq_multiplier, rq_shift : Out(...), without LINEAR only
        The requantizer.
    running : In(1), chan : In(stream.Signature(channel_write_layout(cfg))), with LINEAR only
        A run is in progress; CHAN's writes (:class:`~hw.channels.ChannelStage`).
    c_old : In(stream.Signature(unsigned(width))), with LINEAR only
        C's words, from C's reader, for an accumulating LINEAR run.
    att_q, att_k, att_v, att_rows : with attention only
        The attention controller's ports.

    Latency: 1 cycle into the requantizer (the register slice), and with LINEAR 2 cycles more
    for the engine's rows (their register slice and the accumulate stage, before the
    requantizer or C); none
    (combinational) elsewhere, but for the selects and, with attention, the requantizer's
    constants, one register each.
    Throughput: one word per cycle.
    """

    def __init__(self, cfg, depth):
        self.cfg = cfg
        specs = buffer_specs(cfg, depth)
        R, C, w = cfg.array.rows, cfg.array.cols, cfg.array.in_width
        eacc = engine_config(cfg).acc_width
        rq = cfg.requant
        word = {buf: stream.Signature(unsigned(spec.width)) for buf, spec in specs.items()}
        rows = stream.Signature(data.ArrayLayout(signed(eacc), C))
        ports = {
            "run_op": In(Op),
            "regs": In(register_layout(cfg, depth)),
            "a": In(word[Buf.A]),
            "b": In(word[Buf.B]),
            "c": Out(stream.Signature(unsigned(specs[Buf.C].width), always_ready=True)),
            "gemm_a": Out(stream.Signature(data.ArrayLayout(signed(w), R))),
            "gemm_b": Out(stream.Signature(data.ArrayLayout(signed(w), C))),
            "gemm_out": In(rows),
            "rq_o": In(stream.Signature(data.ArrayLayout(signed(rq.out_width), C))),
        }
        if cfg.linear.enabled:
            ports.update({
                "rq_i": Out(stream.Signature(lane_beat_layout(C, requant_width(cfg),
                                                              rq.mult_width))),
                "running": In(1),
                "chan": In(stream.Signature(channel_write_layout(cfg), always_ready=True)),
                "c_old": In(word[Buf.C]),
            })
        else:
            ports.update({
                "rq_i": Out(rows),
                "rq_multiplier": Out(unsigned(rq.mult_width)),
                "rq_shift": Out(range(eacc + rq.mult_width)),
            })
        if cfg.attention.enabled:
            att_rows = data.ArrayLayout(signed(cfg.attention_gemm.acc_width), C)
            ports.update({
                "v": In(word[Buf.V]),
                "att_q": Out(stream.Signature(data.ArrayLayout(signed(w), R))),
                "att_k": Out(stream.Signature(data.ArrayLayout(signed(w), C))),
                "att_v": Out(stream.Signature(data.ArrayLayout(signed(w), C))),
                "att_rows": In(stream.Signature(att_rows)),
            })
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg, regs, C = self.cfg, self.regs, self.cfg.array.cols
        # The run's selects as flip-flops of their own for each group of loads: the operand
        # handshakes, attention's row handshake, the registers, each half of the rows (one
        # select for every bit of a row would be a net across the die; hw.fanout).
        att_run, att_ready, att_regs, *att_rows = register_copies(
            m, platform, self.run_op == Op.ATTENTION, 5, name="att_run")
        linear_op = self.run_op == Op.LINEAR
        mode = regs.lin_mode if cfg.linear.enabled else 0
        is_raw = self.run_op == Op.GEMM_RAW
        if cfg.linear.enabled:      # a LINEAR run with RAW writes its exact sums too
            is_raw = is_raw | (linear_op & mode[lin_mode_bit(LinMode.RAW)])
        raw, *raw_rows = register_copies(m, platform, is_raw, 3, name="raw")
        g_a, g_b, g_out = self.gemm_a, self.gemm_b, self.gemm_out
        m.submodules.rq_slice = rq_slice = SkidBuffer(self.rq_i.payload.shape())
        wiring.connect(m, rq_slice.o, wiring.flipped(self.rq_i))
        rq_i = rq_slice.i
        if cfg.linear.enabled:
            # Every run's rows pass the channel stage (LINEAR's bias and constants, the others'
            # register pair in every lane) on their way into the slice.
            m.submodules.channels = ch = ChannelStage(cfg)
            wiring.connect(m, ch.o, rq_slice.i)
            wiring.connect(m, wiring.flipped(self.chan), ch.write)
            linear, *linear_lanes = register_copies(m, platform, self.run_op == Op.LINEAR, 3,
                                                    name="linear_run")
            m.d.comb += [ch.linear.eq(linear), ch.linear_lanes.eq(Cat(*linear_lanes)),
                         ch.running.eq(self.running), ch.m.eq(regs.m), ch.n.eq(regs.n)]
            rq_i, rq_mult, rq_shift = ch.i, ch.multiplier, ch.shift
            # The engine's rows, plus C's old words in an accumulating LINEAR run.
            m.submodules.accumulate = acc = Accumulate(C, cfg.acc_width,
                                                       engine_config(cfg).acc_width,
                                                       cfg.array.in_width)
            # The engine's rows reach the stage through a register slice, so that the engine's
            # output ready (and the arbiter's row register enable behind it) is a flip-flop, not
            # the stage's handshake, which follows the channel stage's and the requantizer's.
            # The rows' lanes come from columns spread over the die: a skid flag for each.
            m.submodules.row_slice = row_slice = SkidBuffer(g_out.payload.shape(), copies=C)
            wiring.connect(m, wiring.flipped(g_out), row_slice.i)
            wiring.connect(m, row_slice.o, acc.i)
            m.submodules.c_old_slice = c_old_slice = SkidBuffer(self.c_old.payload.shape())
            wiring.connect(m, wiring.flipped(self.c_old), c_old_slice.i)
            wiring.connect(m, c_old_slice.o, acc.old)
            m.d.comb += [acc.accumulate.eq(linear_op & mode[lin_mode_bit(LinMode.ACCUMULATE)]),
                         acc.shift.eq(linear_op & mode[lin_mode_bit(LinMode.SHIFT)])]
            g_out = acc.o
        else:
            rq_mult, rq_shift = self.rq_multiplier, self.rq_shift
        m.d.comb += [
            g_a.valid.eq(self.a.valid & ~att_run), g_a.payload.eq(self.a.payload),
            g_b.valid.eq(self.b.valid & ~att_run), g_b.payload.eq(self.b.payload),
            self.a.ready.eq(g_a.ready), self.b.ready.eq(g_b.ready),
            # GEMM rows: exact to C, or into the requantizer.
            rq_i.payload.eq(g_out.payload),
            rq_i.valid.eq(g_out.valid & ~raw),
            g_out.ready.eq(Mux(raw, 1, rq_i.ready)),
        ]
        if cfg.attention.enabled:
            # The requantizer takes the registers of the op that runs (through a register:
            # run_op is set many cycles before the first row reaches it).
            m.d.sync += [
                rq_mult.eq(Mux(att_regs, regs.att_mult, regs.rq_mult)),
                rq_shift.eq(Mux(att_regs, regs.att_shift, regs.rq_shift)),
            ]
            q, k, v, rows = self.att_q, self.att_k, self.att_v, self.att_rows
            m.d.comb += [
                q.valid.eq(self.a.valid & att_run), q.payload.eq(self.a.payload),
                k.valid.eq(self.b.valid & att_run), k.payload.eq(self.b.payload),
                v.valid.eq(self.v.valid & att_run), v.payload.eq(self.v.payload),
                self.v.ready.eq(v.ready),
                rows.ready.eq(att_ready & rq_i.ready),
            ]
            with m.If(att_run):
                # Attention's rows into the requantizer, sign-extended to its width.
                m.d.comb += [self.a.ready.eq(q.ready), self.b.ready.eq(k.ready),
                             rq_i.valid.eq(rows.valid)]
            for c in range(C):
                with m.If(att_rows[2 * c // C]):
                    m.d.comb += rq_i.payload[c].eq(rows.payload[c])
        else:
            m.d.comb += [rq_mult.eq(regs.rq_mult), rq_shift.eq(regs.rq_shift)]
        c_word = Signal(data.ArrayLayout(signed(cfg.acc_width), C))
        m.d.comb += [self.rq_o.ready.eq(1), self.c.payload.eq(c_word)]
        # Exact rows (the shared engine's lanes may be wider, the values fit acc_width), or
        # requantized GEMM rows, or attention's output.
        m.d.comb += self.c.valid.eq(Mux(raw, g_out.valid, self.rq_o.valid))
        for c in range(C):
            m.d.comb += c_word[c].eq(Mux(raw_rows[2 * c // C], g_out.payload[c],
                                         self.rq_o.payload[c]))
        return m


class RowAdapter(wiring.Component):
    """RUN SOFTMAX, GELU and LAYERNORM: the X reader's words into the unit of the run, its
    beats into Y's words.

    Each unit's input is valid only while its op runs (a flip-flop decoded from ``run_op``),
    and its output is always taken: a unit emits only the rows it was given. X lanes are cut to
    the unit's input width, Y lanes extended (sign or zero, as the unit's output) to Y's.

    Parameters
    ----------
    cfg : AccelConfig
        The enabled nonlinear units (their configs give the lanes' widths).
    depth : int
        Words per buffer.

    Members
    -------
    run_op : In(Op)
    x : In(stream.Signature(unsigned(width)))
        X's words, from its reader.
    y : Out(stream.Signature(unsigned(width), always_ready=True))
        Y's words.
    <unit>_i : Out(stream.Signature(ArrayLayout(signed(<unit>.in_width), lanes)))
    <unit>_o : In(stream.Signature(ArrayLayout(signed(<unit>.out_width), lanes)))
        For each unit (``softmax``, ``gelu``, ``layernorm``, ``residual``; softmax's output is
        unsigned): the signatures of :class:`hw.softmax.Softmax` and the others for their
        configs (``residual_i``'s payload is :func:`hw.residual.residual_pair_layout`).

    RUN RESIDUAL's reader walks the two halves of X alternately (``a`` word 0, ``b`` word 0,
    ``a`` word 1, ...): the adapter holds each ``a`` word and offers it with the next word,
    its ``b``, as one pair.

    RUN GELU over C (``GELU_IN_C``, where :func:`hw.isa.gelu_in_c`): C's words (``c``, from
    C's reader) are held one at a time and offered as ``cols/lanes`` beats, lanes 0 first,
    each lane saturated to GELU's ``in_width``; the results are shifted into a word that goes
    to C (``c_out``) with the word's last beat, and Y gets nothing.

    Members (besides those above), with ``GELU_IN_C`` only
    ------------------------------------------------------
    in_c : In(1)
        The run is a GELU over C (set at launch, held through the run).
    c : In(stream.Signature(unsigned(C's width)))
        C's words, from its reader. Taken only over C (``ready`` low otherwise), so ``valid``
        may be the reader's in any run.
    c_out : Out(stream.Signature(unsigned(C's width), always_ready=True))
        GELU's results, a word of C each, sign-extended in C's lanes.

    Latency: none (combinational), but for the selects; over C, one cycle more for the
    word's assembly. Throughput: one word per cycle (one pair every two cycles for the residual
    add; a C word every ``cols/lanes`` cycles over C).
    """

    def __init__(self, cfg, depth):
        self.cfg = cfg
        self.ops = tuple(op for op, name in ROW_OPS.items() if getattr(cfg, name).enabled)
        specs = buffer_specs(cfg, depth)
        self.lanes = vector_lanes(cfg)
        self.x_elem, self.y_elem = specs[Buf.X].elem_width, specs[Buf.Y].elem_width
        self.over_c = gelu_in_c(cfg)
        ports = {
            "run_op": In(Op),
            "x": In(stream.Signature(unsigned(specs[Buf.X].width))),
            "y": Out(stream.Signature(unsigned(specs[Buf.Y].width), always_ready=True)),
        }
        if self.over_c:
            self.c_elem, c_width = specs[Buf.C].elem_width, specs[Buf.C].width
            ports.update({
                "in_c": In(1),
                "c": In(stream.Signature(unsigned(c_width))),
                "c_out": Out(stream.Signature(unsigned(c_width), always_ready=True)),
            })
        for op in self.ops:
            name = ROW_OPS[op]
            ucfg = getattr(cfg, name)
            o_sign = unsigned if op == Op.SOFTMAX else signed
            i_shape = data.ArrayLayout(signed(ucfg.in_width), self.lanes)
            if op == Op.RESIDUAL:
                i_shape = residual_pair_layout(ucfg, self.lanes)
            ports[f"{name}_i"] = Out(stream.Signature(i_shape))
            ports[f"{name}_o"] = In(stream.Signature(
                data.ArrayLayout(o_sign(ucfg.out_width), self.lanes)))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        VL = self.lanes
        x_word = data.ArrayLayout(signed(self.x_elem), VL)(self.x.payload)
        y_word = Signal(data.ArrayLayout(signed(self.y_elem), VL))
        m.d.comb += self.y.payload.eq(y_word)
        for op in self.ops:
            name = ROW_OPS[op]
            i, o = getattr(self, f"{name}_i"), getattr(self, f"{name}_o")
            sel = Signal(name=f"sel_{name}")
            m.d.sync += sel.eq(self.run_op == op)
            m.d.comb += o.ready.eq(1)
            to_y = sel
            if op == Op.RESIDUAL:
                x_ready = self._pairs(m, sel, x_word, i)
            elif op == Op.GELU and self.over_c:
                in_c = Signal(name="gelu_in_c")
                m.d.sync += in_c.eq(self.in_c)
                x_ready = self._over_c(m, sel, x_word, i, o)
                to_y = sel & ~in_c
            else:
                m.d.comb += i.valid.eq(self.x.valid & sel)
                for lane in range(VL):
                    m.d.comb += i.payload[lane].eq(x_word[lane])
                x_ready = i.ready
            with m.If(sel):
                m.d.comb += self.x.ready.eq(x_ready)
            with m.If(to_y):
                m.d.comb += self.y.valid.eq(o.valid)
                for lane in range(VL):
                    m.d.comb += y_word[lane].eq(o.payload[lane])
        return m

    def _over_c(self, m, sel, x_word, i, o):
        """GELU's input from X, or over C (``in_c``): each C word held and shifted down by
        ``lanes`` lanes a beat, the results shifted in at the top and written with the word's
        last beat. Returns the ``ready`` of X."""
        C, VL, c_elem = self.cfg.array.cols, self.lanes, self.c_elem
        beats = C // VL
        # `sel & in_c` and `beat == beats - 1` as flip-flops of their own, so that C's `ready`,
        # which enables the C reader's wide output register across the die, is one logic level
        # from flip-flops (GELU's input is always ready: its output's ready is 1).
        over = Signal(name="c_over")
        m.d.sync += over.eq((self.run_op == Op.GELU) & self.in_c)
        lanes = data.ArrayLayout(signed(c_elem), C)
        held = Signal(lanes, name="c_held")         # the word in the unit, beat 0 in lanes 0..
        full = Signal(name="c_full")
        beat = Signal(range(beats), name="c_beat")
        last = Signal(name="c_last")                # beat == beats - 1
        take = self.c.valid & self.c.ready
        m.d.comb += [self.c.ready.eq(over & (~full | (i.ready & last))),
                     i.valid.eq(Mux(over, full, self.x.valid & sel))]
        for lane in range(VL):
            m.d.comb += i.payload[lane].eq(Mux(over, saturate(held[lane], self.cfg.gelu.in_width),
                                               x_word[lane]))
        with m.If(~over):
            m.d.sync += full.eq(0)
        with m.Elif(take):
            m.d.sync += [held.eq(self.c.payload), full.eq(1), beat.eq(0), last.eq(beats == 1)]
        with m.Elif(i.valid & i.ready):
            m.d.sync += [beat.eq(beat + 1), last.eq(beat + 1 == beats - 1)]
            for lane in range(C - VL):
                m.d.sync += held[lane].eq(held[lane + VL])
            with m.If(last):
                m.d.sync += full.eq(0)
        # The results, shifted in at the top lanes; the word leaves with its last beat.
        out = Signal(lanes, name="c_assembled")
        out_beat = Signal(range(beats), name="c_out_beat")
        done = Signal(name="c_out_valid")
        m.d.sync += done.eq(0)
        with m.If(~over):
            m.d.sync += out_beat.eq(0)
        with m.Elif(o.valid):
            m.d.sync += out_beat.eq(Mux(out_beat == beats - 1, 0, out_beat + 1))
            m.d.sync += done.eq(out_beat == beats - 1)
            for lane in range(C - VL):
                m.d.sync += out[lane].eq(out[lane + VL])
            for lane in range(VL):
                m.d.sync += out[C - VL + lane].eq(o.payload[lane])
        m.d.comb += [self.c_out.valid.eq(done), self.c_out.payload.eq(out)]
        return Mux(over, 0, i.ready)

    def _pairs(self, m, sel, x_word, i):
        """RUN RESIDUAL's pairs: each ``a`` word held until its ``b`` word comes. Returns the
        ``ready`` of X."""
        held = Signal.like(i.payload.a, name="held_a")
        full = Signal(name="held_full")      # ``held_a`` holds this pair's ``a``
        ready = ~full | i.ready
        m.d.comb += [i.valid.eq(self.x.valid & sel & full), i.payload.a.eq(held)]
        for lane in range(self.lanes):
            m.d.comb += i.payload.b[lane].eq(x_word[lane])
        with m.If(~sel):
            m.d.sync += full.eq(0)
        with m.Elif(self.x.valid & ready):
            m.d.sync += full.eq(~full)
            with m.If(~full):
                for lane in range(self.lanes):
                    m.d.sync += held[lane].eq(x_word[lane])
        return ready
