"""A ceiling divider by repeated subtraction, for the shape counts a command needs."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CeilDivider"]


class CeilDivider(wiring.Component):
    """``quotient = ceil(total / step)`` and ``product = quotient * inc``, by repeated
    subtraction: no divider and no multiplier, one step a cycle.

    The shapes it serves are counted while something slower happens (a command's checks, a
    head's scratchpads loading), so a count of ``ceil(total / step)`` cycles costs nothing.
    ``load`` starts a count of ``total``; then every cycle with ``en`` while ``busy`` subtracts
    ``step`` from the remainder, adds 1 to ``quotient`` and ``inc`` to ``product``. ``step`` and
    ``inc`` are read at every step, so they must hold until ``busy`` falls. ``busy`` is a
    flip-flop (the remainder is not zero), so the caller's enable and "done" are one gate from
    registers.

    Latency: ``busy`` falls ``ceil(total / step)`` steps after ``load`` (``load`` of 0: on the
    next cycle). Throughput: one step per cycle.

    Parameters
    ----------
    limit : int
        The largest ``total``.
    max_step : int
        The largest ``step`` (at least 1).
    max_inc : int
        The largest ``inc``; 0 leaves out ``inc`` and ``product``.

    Members
    -------
    load : In(1)
        Start a count of ``total``.
    total : In(range(limit + 1))
        Read on ``load``.
    step : In(range(max_step + 1))
        The divisor, at least 1.
    inc : In(range(max_inc + 1)), when ``max_inc`` is not 0
        The factor of ``product``.
    en : In(1)
        Take a step this cycle (when ``busy``).
    busy : Out(1)
        Steps remain.
    quotient : Out(range(limit + 1))
        Steps taken since ``load``.
    product : Out(range(limit * max_inc + 1)), when ``max_inc`` is not 0
        ``quotient * inc``.
    """

    def __init__(self, limit, max_step, max_inc=0):
        if max_step < 1:
            raise ValueError(f"The largest step must be at least 1, not {max_step}")
        self.limit, self.max_step, self.max_inc = limit, max_step, max_inc
        ports = {
            "load": In(1),
            "total": In(range(limit + 1)),
            "step": In(range(max_step + 1)),
            "en": In(1),
            "busy": Out(1),
            "quotient": Out(range(limit + 1)),
        }
        if max_inc:
            ports.update({"inc": In(range(max_inc + 1)),
                          "product": Out(range(limit * max_inc + 1))})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        rem = Signal(range(self.limit + 1))
        with m.If(self.load):
            m.d.sync += [rem.eq(self.total), self.busy.eq(self.total != 0),
                         self.quotient.eq(0)]
            if self.max_inc:
                m.d.sync += self.product.eq(0)
        with m.Elif(self.en & self.busy):
            m.d.sync += [rem.eq(Mux(rem > self.step, rem - self.step, 0)),
                         self.busy.eq(rem > self.step),
                         self.quotient.eq(self.quotient + 1)]
            if self.max_inc:
                m.d.sync += self.product.eq(self.product + self.inc)
        return m
