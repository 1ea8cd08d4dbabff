"""UART receiver and transmitter (8N1) with byte streams."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.stream import Countdown

__all__ = ["uart_divisor", "UARTReceiver", "UARTTransmitter"]


def uart_divisor(clk_freq, baud):
    """Clock cycles per bit, ``round(clk_freq / baud)``; at least 4, and within 2 % of the
    requested rate (a UART tolerates about 4 % in total)."""
    if not (isinstance(clk_freq, int | float) and clk_freq > 0):
        raise ValueError(f"Clock frequency must be a positive number, not {clk_freq!r}")
    if not (isinstance(baud, int | float) and baud > 0):
        raise ValueError(f"Baud rate must be a positive number, not {baud!r}")
    divisor = round(clk_freq / baud)
    if divisor < 4:
        raise ValueError(f"Baud rate must be at most clk_freq/4 = {clk_freq / 4:g}, not {baud}")
    if abs(clk_freq / divisor - baud) > 0.02 * baud:
        raise ValueError(f"Baud rate must be within 2% of clk_freq/divisor for an integer "
                         f"divisor, not {baud} (nearest {clk_freq / divisor:g})")
    return divisor


class _BitClocked(wiring.Component):
    """A component timed by a bit timer of ``divisor`` cycles (a :class:`~hw.stream.Countdown`
    whose ``last`` marks a bit period's end)."""

    def __init__(self, divisor):
        if isinstance(divisor, bool) or not isinstance(divisor, int):
            raise TypeError(f"UART divisor must be an integer, not {divisor!r}")
        if divisor < 4:
            raise ValueError(f"UART divisor must be an integer of at least 4, not {divisor}")
        self.divisor = divisor
        super().__init__()

    def timer(self, m):
        """The bit timer, in ``m``: load it with ``total`` cycles, and step it with ``en``."""
        m.submodules.timer = timer = Countdown(self.divisor)
        return timer


class UARTReceiver(_BitClocked):
    """Receives 8N1 bytes from ``rx``.

    ``rx`` goes through a two-flop synchronizer. A falling edge starts a byte; the start bit is
    checked again at its middle (``divisor // 2`` cycles later; a glitch is ignored), then the
    8 data bits (LSB first) and the stop bit are sampled at their middles, every ``divisor``
    cycles. A byte whose stop bit is 0 is dropped and pulses ``framing_error``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (:func:`uart_divisor`), at least 4.

    Members
    -------
    rx : In(1, init=1)
        The serial line (idle high).
    o : Out(stream.Signature(8))
        Received bytes. The byte is held until taken; a byte completed while the previous
        one is still waiting replaces it and pulses ``overrun``.
    framing_error : Out(1)
        One-cycle pulse: a stop bit was 0.
    overrun : Out(1)
        One-cycle pulse: a byte was lost because ``o`` was not taken in time.

    Latency: ``o.valid`` rises ``9.5 * divisor + 3`` cycles after the start bit's falling edge.
    Throughput: one byte per ``10 * divisor`` cycles.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    framing_error: Out(1)
    overrun: Out(1)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        sync0, line = Signal(init=1), Signal(init=1)
        m.d.sync += [sync0.eq(self.rx), line.eq(sync0)]

        timer = self.timer(m)
        bits = Signal(range(10))
        shreg = Signal(8)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):        # wait for a start bit's falling edge
                with m.If(~line):
                    m.d.comb += [timer.load.eq(1), timer.total.eq(d // 2)]
                    m.next = "START"
            with m.State("START"):       # to the middle of the start bit; still low?
                with m.If(~timer.last):
                    m.d.comb += timer.en.eq(1)
                with m.Elif(line):
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [timer.load.eq(1), timer.total.eq(d)]
                    m.d.sync += bits.eq(0)
                    m.next = "DATA"
            with m.State("DATA"):        # sample 8 data bits and the stop bit at their middles
                with m.If(~timer.last):
                    m.d.comb += timer.en.eq(1)
                with m.Elif(bits != 8):
                    m.d.comb += [timer.load.eq(1), timer.total.eq(d)]
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), bits.eq(bits + 1)]
                with m.Else():
                    with m.If(line):
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.d.comb += self.overrun.eq(self.o.valid & ~self.o.ready)
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                    m.next = "STOP"
            with m.State("STOP"):        # a framing error may leave the line low: wait for high
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTransmitter(_BitClocked):
    """Sends 8N1 bytes on ``tx``: a start bit (0), 8 data bits LSB first, a stop bit (1), each
    ``divisor`` cycles.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send; taken when the transmitter is idle.
    tx : Out(1, init=1)
        The serial line (idle high).

    Latency: the start bit begins the cycle after the byte is taken.
    Throughput: one byte per ``10 * divisor`` cycles.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        shreg = Signal(10, init=0x3ff)    # bits still to send, LSB first
        bits = Signal(range(11))
        timer = self.timer(m)
        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq(bits == 0), timer.total.eq(d)]
        with m.If(self.i.valid & self.i.ready):
            m.d.comb += timer.load.eq(1)
            m.d.sync += [shreg.eq(Cat(0, self.i.payload, 1)), bits.eq(10)]
        with m.Elif(bits != 0):
            with m.If(~timer.last):
                m.d.comb += timer.en.eq(1)
            with m.Else():
                m.d.comb += timer.load.eq(1)
                m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), bits.eq(bits - 1)]
        return m
