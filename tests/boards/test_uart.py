"""UART receiver and transmitter: 8N1 bit timing, glitches, framing errors, back-pressure."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import Module, UnusedElaboratable

from boards import icebreaker, ulx3s
from boards.flow import synth_board
from boards.framing import BAUD
from boards.uart import UARTReceiver, UARTTransmitter, uart_divisor
from hw.config import AccelConfig
from sim.bench import StreamSink, StreamSource, run

DIVISOR = 5


def bits_of(byte, stop=1):
    return [0, *((byte >> i) & 1 for i in range(8)), stop]


def test_receiver():
    dut = UARTReceiver(DIVISOR)
    data = [0x00, 0xff, 0xa5, 0x3c]
    got, errors = [], []

    async def line(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(7)
        ctx.set(dut.rx, 0)                      # a glitch shorter than half a bit: ignored
        await ctx.tick()
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * DIVISOR)
        for i, byte in enumerate(data):
            for bit in bits_of(byte, stop=0 if i == 2 else 1):   # byte 2: framing error
                ctx.set(dut.rx, bit)
                await ctx.tick().repeat(DIVISOR)
            ctx.set(dut.rx, 1)
            await ctx.tick().repeat(2 * DIVISOR)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(60 * DIVISOR):
            _, _, valid, payload, ferr = await ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                 dut.framing_error)
            if valid:
                got.append(payload)
            if ferr:
                errors.append(len(got))

    run(dut, line, sink)
    assert got == [0x00, 0xff, 0x3c]
    assert errors == [2]


@pytest.mark.parametrize("stall", [0.0, 0.7])
def test_loopback(stall):
    # Transmitter into receiver: random bytes survive, whatever the stalls of both streams.
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(DIVISOR)
    m.submodules.rx = rx = UARTReceiver(DIVISOR)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [int(v) for v in np.random.default_rng(1).integers(0, 256, 12)]
    src = StreamSource(tx.i, data, name="uart tx", rng=np.random.default_rng(2), stall=stall,
                       budget=20 * DIVISOR)
    # The receiver keeps a byte for 10 bit times: a sink slower than that would overrun.
    sink = StreamSink(rx.o, len(data), name="uart rx", rng=np.random.default_rng(3),
                      stall=min(stall, 0.5), budget=200 * DIVISOR)
    run(m, src.run, sink.run)
    assert sink.items == data


def test_board_clocks_divide_the_link_rate():
    # The link's rate (3 Mbaud, the FT231X's highest) in a whole number of each board's cycles:
    # exactly on the iCEBreaker (24 MHz / 8); on the ULX3S 78.125 MHz / 26 = 3.005 Mbaud, 0.16%
    # over the FT231X's rate, far inside what a UART tolerates (uart_divisor allows 2%).
    assert (uart_divisor(ulx3s.CLK_FREQ, BAUD), uart_divisor(icebreaker.CLK_FREQ, BAUD)) == (26, 8)
    assert uart_divisor(icebreaker.CLK_FREQ, BAUD) * BAUD == icebreaker.CLK_FREQ
    assert 0 < ulx3s.CLK_FREQ / uart_divisor(ulx3s.CLK_FREQ, BAUD) / BAUD - 1 < 0.002


def test_board_clock_that_misses_the_link_rate_is_refused(tmp_path):
    # Refused before anything runs, naming the rate it could give; a rate it divides is taken.
    cfg = AccelConfig.preset("icebreaker")
    # (the PLL makes 19.875 MHz of the 20 asked for: 7 cycles a bit give 2.839 Mbaud)
    with pytest.raises(ValueError, match=r"within 2% of clk_freq/divisor for an integer "
                                         r"divisor, not 3000000 \(nearest 2\.83929e\+06\)"):
        synth_board(cfg, "icebreaker", clk_freq=20e6, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_divisor():
    assert uart_divisor(12e6, 115200) == 104
    assert uart_divisor(24_000_000, 3_000_000) == 8
    with pytest.raises(ValueError, match="Baud rate must be at most clk_freq/4 = 3e"):
        uart_divisor(12e6, 4e6)
    with pytest.raises(ValueError, match="Baud rate must be within 2% of clk_freq/divisor"):
        uart_divisor(12e6, 2.6e6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="UART divisor must be an integer of at least 4, "
                                             "not 3"):
            UARTReceiver(3)
        with pytest.raises(TypeError, match="UART divisor must be an integer, not 4.0"):
            UARTTransmitter(4.0)
        gc.collect()
