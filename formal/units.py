"""Proofs of the stream rules on the units' ports, over a depth that covers one small operation,
and of the two arbiters of the top."""

from types import SimpleNamespace

from amaranth.asserts import Initial
from amaranth.hdl import Assert, Assume, Cat, Cover, Mux, Signal, Value, signed
from amaranth.lib import data, wiring

from boards.link import FrameLink
from boards.uart import UARTReceiver, UARTTransmitter
from hw.accumulate import Accumulate
from hw.arbiter import EngineArbiter, SoftmaxArbiter
from hw.attention import AttentionController
from hw.channels import ChannelStage
from hw.config import (
    AccelConfig,
    ArrayConfig,
    AttentionConfig,
    GeluConfig,
    GemmConfig,
    LayerNormConfig,
    RequantConfig,
    ResidualConfig,
    SoftmaxConfig,
)
from hw.dispatch import engine_config
from hw.gelu import Gelu
from hw.gemm import GemmEngine
from hw.isa import Op
from hw.layernorm import LayerNorm
from hw.requant import Requantizer
from hw.residual import Residual
from hw.softmax import Softmax

from .proof import Proof
from .rules import transfer
from .scoreboard import Scoreboard
from .spec import Spec, stream_ports

__all__ = ["PROOFS", "SMALL"]

#: The smallest accelerator the units are proved on: a 2x2 array of 4-bit operands, problems
#: up to 2x2x2, rows up to 4; attention's softmax at one lane, so that attention shares RUN
#: SOFTMAX's unit, whose arbiter is proved ("auto" would give it two lanes of its own).
SMALL = AccelConfig(
    name="formal",
    array=ArrayConfig(rows=2, cols=2, in_width=4),
    gemm=GemmConfig(max_m=2, max_k=2, max_n=2),
    softmax=SoftmaxConfig(lanes=1, max_len=4, in_width=16, out_width=4),
    gelu=GeluConfig(lanes=1, in_width=4, poly_width=6, frac_width=6),
    layernorm=LayerNormConfig(lanes=1, max_len=4, in_width=4, out_width=4, gamma_width=6,
                              beta_width=24),
    attention=AttentionConfig(max_seq_len=2, max_head_dim=2, softmax_lanes=1),
    residual=ResidualConfig(in_width=4, mult_width=4, out_width=4),
)


def _beats(m, port, name):
    """A count of the beats transferred on ``port``."""
    count = Signal(4, name=f"{name}_beats")
    with m.If(transfer(port) & (count != 15)):
        m.d.sync += count.eq(count + 1)
    return count


def ports(make, *, free=(), assume=None, check=None, done=None):
    """Stream rules on every stream port of ``make()``; every other input held constant, except
    those named in ``free`` (a UART's ``rx`` line).
    ``done(spec, beats)`` (``beats[name]``, the count of a stream's transfers) returns the
    condition covered as "one complete operation". ``assume(dut)`` returns the condition the
    unit's documentation asks of its inputs (a row length in range); ``check(dut)`` one more
    property asserted."""
    def build(wrap):
        unit = make()
        s = Spec(wrap(unit))
        held = []
        for name, member in unit.signature.members.items():
            if member.flow == wiring.In and not member.is_signature and name not in free:
                held.append(getattr(s.dut, name))
        s.const(*held)
        if assume is not None:
            s.m.d.comb += Assume(assume(s.dut))
        if check is not None:
            s.m.d.comb += Assert(check(s.dut))
        s.stream_rules()
        if done is not None:
            beats = {name: _beats(s.m, port, name) for name, port, _ in stream_ports(s.dut)}
            s.m.d.comb += Cover(done(s, beats))
        return s
    return build


def _gemm_2x2(s, beats):
    """Both rows of a 2x2x2 product out, the first command's."""
    cmd = s.dut.cmd.payload
    first = Signal()
    with s.m.If(transfer(s.dut.cmd) & (beats["cmd"] == 0)):
        s.m.d.sync += first.eq((cmd.m == 2) & (cmd.k == 2) & (cmd.n == 2))
    return first & (beats["cmd"] == 1) & (beats["out"] == 2)


def _sign_extend(lanes, width):
    """The lanes of an ``ArrayLayout`` of signed values, each sign-extended to ``width``."""
    out = []
    for lane in lanes:
        lane = Value.cast(lane)
        out.append(Cat(lane, lane[-1].replicate(width - len(lane))))
    return Cat(*out)


def _engine_arbiter(cfg, track):
    def build(wrap):
        s = Spec(wrap(EngineArbiter(cfg)))
        m, a = s.m, s.dut
        s.stream_rules()
        # One run at a time: run_op changes only while no stream is offered (the top launches
        # a run when the previous one is done).
        op = Signal.like(a.run_op)
        m.d.sync += op.eq(a.run_op)
        quiet = ~(a.gemm_cmd.valid | a.gemm_a.valid | a.gemm_b.valid | a.att_cmd.valid
                  | a.att_a.valid | a.att_b.valid | a.out.valid)
        m.d.comb += Assume(quiet | (a.run_op == op))
        if track:
            # RUN GEMM's operands reach the engine unchanged (sign-extended), while it owns it.
            width = engine_config(cfg).array.in_width
            gemm_owns = op != Op.ATTENTION
            for name in ("a", "b"):
                engine = getattr(a, name)
                owned = SimpleNamespace(valid=engine.valid & gemm_owns, ready=engine.ready,
                                        payload=engine.payload)
                Scoreboard(m, getattr(a, f"gemm_{name}"), owned, capacity=0,
                           convert=lambda p: _sign_extend(p, width), name=f"gemm_{name}")
        for client in ("gemm", "att"):
            owns = (op == Op.ATTENTION) if client == "att" else (op != Op.ATTENTION)
            m.d.comb += Cover(owns & transfer(getattr(a, f"{client}_out")))
        return s
    return build


def _softmax_arbiter(cfg):
    def build(wrap):
        s = Spec(wrap(SoftmaxArbiter(cfg, depth=16)))
        m, a = s.m, s.dut
        s.const(a.regs)
        s.stream_rules()
        op = Signal.like(a.run_op)
        m.d.sync += op.eq(a.run_op)
        quiet = ~(a.rows_i.valid | a.att_i.valid | a.o.valid)
        m.d.comb += Assume(quiet | (a.run_op == op))
        for client in ("rows", "att"):
            m.d.comb += Cover(transfer(getattr(a, f"{client}_o")))
        return s
    return build


def _together(a, b):
    """Streams ``a`` and ``b`` are taken together: one ``ready``. The attention controller offers
    its operands as a pair and watches ``gemm_a.ready`` only; the engine gives both one
    ``ready``."""
    return lambda dut: getattr(dut, a).ready == getattr(dut, b).ready


def _length(max_len):
    return lambda dut: (dut.length >= 1) & (dut.length <= max_len)


def _row_of(n):
    """A row of ``n`` beats out, with the length ``n``."""
    return lambda s, beats: (s.dut.length == n) & (beats["o"] == n)


def _out(name, n):
    return lambda s, beats: beats[name] == n


def _transmitter(divisor):
    """The transmitter takes a byte only once the previous one's 10 bits are out: no byte is
    taken while one is being sent (and so lost)."""
    inner = ports(lambda: UARTTransmitter(divisor), done=_out("i", 2))

    def build(wrap):
        s = inner(wrap)
        m, i = s.m, s.dut.i
        since = Signal(range(10 * divisor + 1))
        sent = Signal()
        with m.If(transfer(i)):
            m.d.sync += [since.eq(0), sent.eq(1)]
        with m.Elif(since != 10 * divisor):
            m.d.sync += since.eq(since + 1)
        with m.If(transfer(i) & sent):
            m.d.comb += Assert(since >= 10 * divisor - 1, "uart: a byte taken while sending")
        return s
    return build


def _accumulate(lanes, acc_width, eacc, shift):
    """RUN LINEAR's sum stage: the stream rules, with ``accumulate`` and ``shift`` held (they
    hold during a run, and are read a cycle late: no row is offered on the first cycle). Its
    one register holds a row exactly while ``o`` offers one (none invented or lost); the row
    leaves as ``(i[j] << s) + old[j]`` wrapped to ``eacc`` bits (``s`` the shift with
    ``shift``, ``old[j]`` 0 unless accumulating); and one word of ``old`` is taken with each
    row while accumulating, none otherwise."""
    inner = ports(lambda: Accumulate(lanes, acc_width, eacc, shift),
                  assume=lambda dut: ~Initial() | ~dut.i.valid, done=_out("o", 2))

    def build(wrap):
        s = inner(wrap)
        m, a = s.m, s.dut
        old = data.ArrayLayout(signed(acc_width), lanes)(a.old.payload)
        by = Mux(a.shift, shift, 0)
        sums = [(a.i.payload[j] << by) + Mux(a.accumulate, old[j], 0) for j in range(lanes)]
        want = Signal(lanes * eacc, name="acc_want")
        full = Signal(name="acc_full")
        with m.If(transfer(a.i)):
            m.d.sync += [want.eq(Cat(*(v[:eacc] for v in sums))), full.eq(1)]
        with m.Elif(transfer(a.o)):
            m.d.sync += full.eq(0)
        m.d.comb += [
            Assert(a.o.valid == full, "accumulate: a row offered is the one held"),
            Assert(~a.o.valid | (Value.cast(a.o.payload) == want),
                   "accumulate: a row leaves as its sum"),
            Assert(transfer(a.old) == (transfer(a.i) & a.accumulate),
                   "accumulate: one old word taken with each row, while accumulating"),
            Cover(a.accumulate & a.shift & transfer(a.o), "accumulate: a shifted sum leaves"),
        ]
        return s
    return build


_ECFG = engine_config(SMALL)

PROOFS = [
    Proof("gemm.ports", "gemm", "bmc", 16,
          ports(lambda: GemmEngine(_ECFG), check=_together("a", "b"), done=_gemm_2x2),
          cover_depth=16, what="stream rules on cmd, a, b, out through a 2x2x2 product (its 2 "
          "rows out); a and b are taken together"),
    Proof("requant.ports", "requant", "bmc", 12,
          ports(lambda: Requantizer(2, _ECFG.acc_width, RequantConfig(mult_width=8)),
                done=_out("o", 2)), cover_depth=12,
          what="stream rules on i, o through 2 beats"),
    Proof("requant.lanes", "requant", "bmc", 12,
          ports(lambda: Requantizer(2, _ECFG.acc_width, RequantConfig(mult_width=8),
                                    per_lane=True), done=_out("o", 2)), cover_depth=12,
          what="stream rules on i, o through 2 beats, each lane's multiplier and shift in the "
          "beat (LINEAR's requantizer)"),
    Proof("residual.ports", "residual", "bmc", 12,
          ports(lambda: Residual(SMALL.residual), done=_out("o", 2)), cover_depth=12,
          what="stream rules on i, o through 2 beats"),
    Proof("accumulate.ports", "accumulate", "bmc", 12,
          _accumulate(2, SMALL.acc_width, _ECFG.acc_width, SMALL.array.in_width),
          cover_depth=12, what="stream rules on i, old, o through 2 rows (accumulate and shift "
          "held); each row leaves as (i << s) + old (or i << s), one old word taken per row"),
    Proof("channels.ports", "channels", "bmc", 12,
          ports(lambda: ChannelStage(SMALL), done=_out("o", 2)), cover_depth=12,
          what="stream rules on i, write, o through 2 rows (shape and run flags held)"),
    Proof("softmax.ports", "softmax", "bmc", 48,
          ports(lambda: Softmax(SMALL.softmax), assume=_length(4), done=_row_of(4)),
          cover_depth=48, what="stream rules on i, o through a row of 4"),
    Proof("gelu.ports", "gelu", "bmc", 20,
          ports(lambda: Gelu(SMALL.gelu), done=_out("o", 2)), cover_depth=20,
          what="stream rules on i, o through 2 beats"),
    Proof("layernorm.ports", "layernorm", "bmc", 76,
          ports(lambda: LayerNorm(SMALL.layernorm), assume=_length(4), done=_row_of(4)),
          cover_depth=76, slow=True, what="stream rules on i, coef, o through a row of 4"),
    Proof("attention.ports", "attention", "bmc", 16,
          ports(lambda: AttentionController(SMALL), assume=_together("gemm_a", "gemm_b"),
                done=_out("rows", 2)), cover_depth=16,
          what="stream rules on all 9 streams through a head of L=2, d=2 (its 2 rows out), "
          "with an engine that takes gemm_a and gemm_b together (gemm.ports proves it does)"),
    Proof("uart.rx", "uart", "bmc", 44,
          ports(lambda: UARTReceiver(4), free=("rx",), done=_out("o", 1)),
          cover_depth=44, what="stream rules on o through one byte (divisor 4)"),
    Proof("uart.tx", "uart", "bmc", 44, _transmitter(4), cover_depth=44,
          what="a byte taken only when the previous one's 10 bits are sent (divisor 4)"),
    Proof("link.ports", "link", "bmc", 20,
          ports(lambda: FrameLink(max_payload=2, timeout=8), done=_out("cmd", 1)),
          cover_depth=20, what="stream rules on tx, cmd, rsp through a frame"),
    Proof("arbiter.engine", "arbiter", "bmc", 12, _engine_arbiter(SMALL, track=True),
          cover_depth=8, what="stream rules on both clients and the engine; operands pass "
          "unchanged to the owner"),
    Proof("arbiter.softmax", "arbiter", "bmc", 12, _softmax_arbiter(SMALL), cover_depth=8,
          what="stream rules on both clients and the unit"),
]
