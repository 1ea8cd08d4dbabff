"""Arbiters of the accelerator top: its one GEMM engine and its one softmax, each shared by the
runs that use it."""

from amaranth.hdl import Const, Module, Mux, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dispatch import engine_config, register_layout
from .fanout import register_copies
from .gemm import gemm_cmd_layout
from .isa import ATTENTION_REGS, SOFTMAX_REGS, Op

__all__ = ["EngineArbiter", "SoftmaxArbiter"]


class EngineArbiter(wiring.Component):
    """Gives the top's :class:`~hw.gemm.GemmEngine` to the client of the run in progress: RUN
    GEMM's operands (``gemm_*``) or, with attention, the
    :class:`~hw.attention.AttentionController`'s jobs (``att_*``).

    Only one run is active at a time, so the owner is a registered select decoded from
    ``run_op`` (set at launch; a run's first command reaches the engine a cycle or more later,
    and a command offered earlier waits, as a stream may). The owner's streams pass to the
    engine, the other client sees ``valid`` and ``ready`` low. Payloads are resized: the GEMM
    client's int8 operands are sign-extended to the engine's operand width, the attention
    client's commands zero-extended to the engine's, and the engine's rows cut to the attention
    client's accumulator width (its jobs' sums fit it). Without attention the arbiter is a
    pass-through.

    Parameters
    ----------
    cfg : AccelConfig
        The engine is :func:`hw.dispatch.engine_config` of it.

    Members
    -------
    run_op : In(Op)
        The run in progress.
    gemm_cmd : In(stream.Signature(gemm_cmd_layout(engine.gemm)))
    gemm_a : In(stream.Signature(ArrayLayout(signed(in_width), R)))
    gemm_b : In(stream.Signature(ArrayLayout(signed(in_width), C)))
    gemm_out : Out(stream.Signature(ArrayLayout(signed(engine.acc_width), C)))
        The GEMM client.
    att_cmd, att_a, att_b : In(the controller's ``gemm_cmd``, ``gemm_a``, ``gemm_b``)
    att_out : Out(the controller's ``gemm_out``)
        The attention client, with attention only.
    cmd, a, b : Out(the engine's ``cmd``, ``a``, ``b``)
    out : In(the engine's ``out``)
        The engine.

    Latency: none (multiplexers), the select a cycle after ``run_op``. Throughput: the
    engine's.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        ecfg = engine_config(cfg)
        R, C, w = cfg.array.rows, cfg.array.cols, cfg.array.in_width
        ew, eacc = ecfg.array.in_width, ecfg.acc_width

        def operands(width, lanes):
            return stream.Signature(data.ArrayLayout(signed(width), lanes))

        ecmd = stream.Signature(gemm_cmd_layout(ecfg.gemm))
        ports = {
            "run_op": In(Op),
            "gemm_cmd": In(ecmd),
            "gemm_a": In(operands(w, R)),
            "gemm_b": In(operands(w, C)),
            "gemm_out": Out(operands(eacc, C)),
            "cmd": Out(ecmd),
            "a": Out(operands(ew, R)),
            "b": Out(operands(ew, C)),
            "out": In(operands(eacc, C)),
        }
        if cfg.attention.enabled:
            at = cfg.attention_gemm
            ports.update({
                "att_cmd": In(stream.Signature(gemm_cmd_layout(at.gemm))),
                "att_a": In(operands(at.array.in_width, R)),
                "att_b": In(operands(at.array.in_width, C)),
                "att_out": Out(operands(at.acc_width, C)),
            })
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        R, C = self.cfg.array.rows, self.cfg.array.cols
        if self.cfg.attention.enabled:
            # Each client's select as four flip-flops (handshakes, command, A, B): one select
            # for every operand bit would be a net across the die.
            clients = [(name, register_copies(m, platform, decode, 4, name=f"{name}_owns"))
                       for name, decode in (("gemm", self.run_op != Op.ATTENTION),
                                            ("att", self.run_op == Op.ATTENTION))]
        else:
            clients = [("gemm", [Const(1, 1)] * 4)]
        for name, (owns, owns_cmd, owns_a, owns_b) in clients:
            cmd, a, b, out = (getattr(self, f"{name}_{x}") for x in ("cmd", "a", "b", "out"))
            m.d.comb += [
                cmd.ready.eq(owns & self.cmd.ready),
                a.ready.eq(owns & self.a.ready),
                b.ready.eq(owns & self.b.ready),
                out.valid.eq(owns & self.out.valid),
            ]
            for c in range(C):      # the engine's rows, cut to the client's width
                m.d.comb += out.payload[c].eq(self.out.payload[c])
            with m.If(owns):
                m.d.comb += [self.cmd.valid.eq(cmd.valid), self.a.valid.eq(a.valid),
                             self.b.valid.eq(b.valid), self.out.ready.eq(out.ready)]
            with m.If(owns_cmd):
                m.d.comb += [
                    self.cmd.payload.m.eq(cmd.payload.m), self.cmd.payload.k.eq(cmd.payload.k),
                    self.cmd.payload.n.eq(cmd.payload.n),
                ]
            with m.If(owns_a):      # operands sign-extended to the engine's width
                for r in range(R):
                    m.d.comb += self.a.payload[r].eq(a.payload[r])
            with m.If(owns_b):
                for c in range(C):
                    m.d.comb += self.b.payload[c].eq(b.payload[c])
        return m


class SoftmaxArbiter(wiring.Component):
    """Gives the top's one :class:`~hw.softmax.Softmax`
    (:attr:`~hw.config.AccelConfig.shared_softmax`) to RUN SOFTMAX's rows (``rows_*``) or the
    attention controller's (``att_*``), whichever run is in progress.

    As :class:`EngineArbiter`, the owner is a flip-flop decoded from ``run_op``. Scores are
    sign-extended to the unit's (wider or equal) score width; the row length and the constants
    (``SM_*`` registers for RUN SOFTMAX, ``ATT_*`` for attention) are registered from the
    owner's, and stay constant during a run: a run's first row reaches the unit several cycles
    after launch.

    Parameters
    ----------
    cfg : AccelConfig
        With ``shared_softmax`` not ``None``.
    depth : int
        Words per buffer (the register layout depends on it).

    Members
    -------
    run_op : In(Op)
    regs : In(hw.dispatch.register_layout(cfg, depth))
    rows_i : In(stream.Signature(ArrayLayout(signed(softmax.in_width), lanes)))
    rows_o : Out(stream.Signature(ArrayLayout(unsigned(softmax.out_width), lanes)))
        RUN SOFTMAX's rows (length ``ROW_LEN``).
    att_i, att_o, att_length : the controller's ``softmax_i``, ``softmax_o``, ``softmax_length``
    i, o, length, <constant> : the unit's ports.

    Latency: none (multiplexers); the owner, the length and the constants a cycle after
    ``run_op`` and ``regs``. Throughput: the unit's.
    """

    def __init__(self, cfg, depth):
        self.cfg = cfg
        sh, s, a = cfg.shared_softmax, cfg.softmax, cfg.attention_softmax

        def rows(width, lanes, sign=signed):
            return stream.Signature(data.ArrayLayout(sign(width), lanes))

        ports = {
            "run_op": In(Op),
            "regs": In(register_layout(cfg, depth)),
            "rows_i": In(rows(s.in_width, s.lanes)),
            "rows_o": Out(rows(s.out_width, s.lanes, unsigned)),
            "att_i": In(rows(a.in_width, a.lanes)),
            "att_o": Out(rows(a.out_width, a.lanes, unsigned)),
            "att_length": In(range(cfg.attention.max_seq_len + 1)),
            "i": Out(rows(sh.in_width, sh.lanes)),
            "o": In(rows(sh.out_width, sh.lanes, unsigned)),
            "length": Out(range(sh.max_len + 1)),
        }
        for name, width in sh.constant_widths.items():
            ports[name] = Out(unsigned(width))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        lanes, regs = self.cfg.softmax.lanes, self.regs
        # Each owner's select as flip-flops of their own (handshakes, scores; and attention's
        # for the registers), not one net to every bit (see EngineArbiter).
        att, att_rows, att_regs = register_copies(m, platform, self.run_op == Op.ATTENTION, 3,
                                                  name="att_owns")
        rows, rows_rows = register_copies(m, platform, self.run_op != Op.ATTENTION, 2,
                                          name="rows_own")
        m.d.sync += self.length.eq(Mux(att_regs, self.att_length, regs.row_len))
        for name, reg in SOFTMAX_REGS.items():
            m.d.sync += getattr(self, name).eq(
                Mux(att_regs, regs[ATTENTION_REGS[name].name.lower()], regs[reg.name.lower()]))
        for owns, owns_rows, i, o in ((rows, rows_rows, self.rows_i, self.rows_o),
                                      (att, att_rows, self.att_i, self.att_o)):
            m.d.comb += [i.ready.eq(owns & self.i.ready), o.valid.eq(owns & self.o.valid),
                         o.payload.eq(self.o.payload)]
            with m.If(owns):
                m.d.comb += [self.i.valid.eq(i.valid), self.o.ready.eq(o.ready)]
            with m.If(owns_rows):
                for lane in range(lanes):
                    m.d.comb += self.i.payload[lane].eq(i.payload[lane])
        return m
