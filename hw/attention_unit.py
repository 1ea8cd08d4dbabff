"""One head of attention as a unit on its own: the controller with an engine, a softmax and a
requantizer of its own."""

from amaranth.hdl import Module
from amaranth.lib import wiring

from .attention import AttentionController
from .gemm import GemmEngine
from .requant import Requantizer
from .softmax import Softmax

__all__ = ["AttentionUnit"]


class AttentionUnit(wiring.Component):
    """One head of integer attention per command, with units of its own: an
    :class:`hw.attention.AttentionController`, a :class:`hw.gemm.GemmEngine`
    (``cfg.attention_gemm``), a :class:`hw.softmax.Softmax` (``cfg.attention_softmax``) and a
    :class:`hw.requant.Requantizer` after it; bit-exact with :func:`sim.golden.attention`.

    The unit on its own (simulation, generated Verilog, synthesis of one unit); the accelerator
    top instead makes the controller a client of its one engine and requantizer.

    Parameters
    ----------
    cfg : AccelConfig
        As :class:`hw.attention.AttentionController`, plus ``requant``.

    Members
    -------
    cmd, q, k, v : In(...)
        As :class:`hw.attention.AttentionController`.
    o : Out(stream.Signature(ArrayLayout(signed(requant.out_width), C)))
        The int8 output rows, in the controller's order (``b, t, r``).
    multiplier, shift : In(...)
        Requantization of ``P V`` (:attr:`sim.golden.AttentionConstants`), held constant.
    shift_right, shift_left, divisor, offset, poly_c, exp_shift : In(...)
        Softmax constants for the score scale, held constant.
    busy, error : Out(1)
        The controller's.

    Attributes
    ----------
    gemm : GemmEngine
        The engine (``gemm.a.ready`` is high on cycles the array takes an operand pair).
    waiting_for_softmax : Signal
        The controller's.

    Latency and throughput: the controller's (the requantizer adds its pipeline to the last
    row).
    """

    def __init__(self, cfg):
        self.controller = AttentionController(cfg)
        self.gemm = GemmEngine(cfg.attention_gemm)
        self.requant = Requantizer(cfg.array.cols, cfg.attention_gemm.acc_width, cfg.requant)
        self.softmax = Softmax(cfg.attention_softmax)
        self.waiting_for_softmax = self.controller.waiting_for_softmax
        members = self.controller.signature.members
        rq = self.requant.signature.members
        ports = {name: members[name] for name in ("cmd", "q", "k", "v")}
        ports.update({"o": rq["o"], "multiplier": rq["multiplier"], "shift": rq["shift"]})
        sm = self.softmax.signature.members
        ports.update({name: sm[name] for name in cfg.attention_softmax.constant_widths})
        ports.update({"busy": members["busy"], "error": members["error"]})
        super().__init__(ports)
        self.cfg = cfg

    def elaborate(self, platform):
        m = Module()
        m.submodules.controller = ctl = self.controller
        m.submodules.gemm = gemm = self.gemm
        m.submodules.requant = rq = self.requant
        m.submodules.softmax = sm = self.softmax
        for name in ("cmd", "q", "k", "v"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(ctl, name))
        for ours, theirs in ((ctl.gemm_cmd, gemm.cmd), (ctl.gemm_a, gemm.a),
                             (ctl.gemm_b, gemm.b), (gemm.out, ctl.gemm_out), (ctl.rows, rq.i),
                             (ctl.softmax_i, sm.i), (sm.o, ctl.softmax_o)):
            wiring.connect(m, ours, theirs)
        wiring.connect(m, rq.o, wiring.flipped(self.o))
        m.d.comb += [rq.multiplier.eq(self.multiplier), rq.shift.eq(self.shift),
                     self.busy.eq(ctl.busy), self.error.eq(ctl.error),
                     sm.length.eq(ctl.softmax_length)]
        for name in self.cfg.attention_softmax.constant_widths:
            m.d.comb += getattr(sm, name).eq(getattr(self, name))
        return m
