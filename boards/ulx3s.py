"""The ULX3S (LFE5U-85F) board top: :class:`~boards.link.LinkTop` on the UART and LEDs, on a PLL."""

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Const,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib.cdc import AsyncFFSynchronizer
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from hw.config import AccelConfig

from .framing import BAUD
from .link import LinkTop
from .pins import input_pin, output_pin
from .uart import uart_divisor

__all__ = ["BOARD_CLK_FREQ", "CLK_FREQ", "BAUD", "ecp5_pll", "make_platform", "ULX3STop"]

#: The ULX3S oscillator (pin G2).
BOARD_CLK_FREQ = 25e6
#: System clock: the oscillator times 25/8 through the PLL (`ecp5_pll`), a clock every nextpnr
#: seed of the ulx3s preset meets (docs/timing.md).
CLK_FREQ = 78.125e6


def ecp5_pll(f_in, f_out):
    """``EHXPLLL`` parameters making ``f_out`` from ``f_in`` (both in Hz), CLKOP fed back.

    ``f_out = f_in * CLKFB_DIV / CLKI_DIV`` with the phase detector input ``f_in/CLKI_DIV`` in
    3.125-400 MHz and the VCO ``f_out * CLKOP_DIV`` in 400-800 MHz (the ECP5 sysCLOCK limits,
    as used by ``ecppll``). The closest reachable frequency is chosen.

    Returns
    -------
    dict
        ``CLKI_DIV, CLKFB_DIV, CLKOP_DIV`` and ``freq`` (the frequency reached, in Hz).

    Raises
    ------
    ValueError
        When no setting reaches ``f_out`` within 1%.
    """
    best = None
    for clki in range(1, 129):
        f_pfd = f_in / clki
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            f = f_pfd * clkfb
            if not 3.125e6 <= f <= 400e6:
                continue
            clkop = next((d for d in range(1, 129) if 400e6 <= f * d <= 800e6), None)
            if clkop is None:
                continue
            if best is None or abs(f - f_out) < abs(best["freq"] - f_out):
                best = {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop, "freq": f}
    if best is None or abs(best["freq"] - f_out) > 0.01 * f_out:
        raise ValueError(f"PLL output frequency must be reachable from {f_in / 1e6:g} MHz "
                         f"(3.125 to 400 MHz), not {f_out / 1e6:g} MHz")
    return best


def make_platform():
    """The ULX3S platform with the LFE5U-85F."""
    return ULX3S_85F_Platform()


class ULX3STop(Elaboratable):
    """:class:`~boards.link.LinkTop` on the ULX3S's pins.

    The 25 MHz oscillator drives an ``EHXPLLL`` that makes the ``sync`` clock
    (:func:`ecp5_pll`); ``sync`` is held in reset until the PLL locks (the reset is
    distributed on a global network, through a DCCA). The UART is the FTDI
    link (``M1``/``L4``) at ``baud``; LEDs 0, 1, 2 show heartbeat, busy and error.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator configuration (normally ``AccelConfig.preset("ulx3s")``). Its
        ``buffers.depth`` is the buffers' depth (no override: the host reads the same config).
    clk_freq : float
        The ``sync`` clock in Hz; the PLL setting closest to it is used (:attr:`clk_freq` holds
        the frequency reached, which sets the UART divisor and the timing constraint).
    baud : int
        UART bit rate.

    Attributes
    ----------
    clk_freq : float
        The ``sync`` frequency really made.
    pll : dict
        The PLL parameters (:func:`ecp5_pll`).
    link : LinkTop
        The wrapped top.
    """

    def __init__(self, cfg, *, clk_freq=CLK_FREQ, baud=BAUD):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Config must be an AccelConfig, not {cfg!r}")
        self.pll = ecp5_pll(BOARD_CLK_FREQ, clk_freq)
        self.clk_freq = self.pll["freq"]
        self.cfg, self.baud = cfg, baud
        divisor = uart_divisor(self.clk_freq, baud)
        # The link's inter-byte timeout counter is 16 bits: at most 16 byte times.
        self.link = LinkTop(cfg, divisor, timeout_bytes=min(16, 0xffff // (10 * divisor)))

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        clk25 = input_pin(m, "clk25_buf", platform.request("clk25", 0, dir="-"))
        locked = Signal()
        p = self.pll
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{BOARD_CLK_FREQ / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.clk_freq / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP",
            i_CLKI=clk25, i_CLKFB=ClockSignal("sync"),
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=ClockSignal("sync"), o_LOCK=locked,
        )
        # The reset reaches most flip-flops of the design: routed on the fabric it is slow to the
        # far ones, so it goes through a global buffer (DCCA) and rides one of the primary clock
        # networks, which reach every slice's LSR and CE with a small, even delay.
        # Asserted asynchronously when the PLL loses lock, released synchronously.
        rst = Signal()
        m.submodules.reset_sync = AsyncFFSynchronizer(~locked, rst, o_domain="sync")
        m.submodules.reset_buf = Instance("DCCA", i_CLKI=rst, i_CE=Const(1),
                                          o_CLKO=ResetSignal("sync"))

        m.submodules.link = link = self.link
        uart = platform.request("uart", 0, dir="-")
        m.d.comb += [
            link.rx.eq(input_pin(m, "uart_rx_buf", uart.rx)),
            output_pin(m, "uart_tx_buf", uart.tx).eq(link.tx),
            output_pin(m, "led_0_buf", platform.request("led", 0, dir="-")).eq(link.led_heartbeat),
            output_pin(m, "led_1_buf", platform.request("led", 1, dir="-")).eq(link.led_busy),
            output_pin(m, "led_2_buf", platform.request("led", 2, dir="-")).eq(link.led_error),
        ]
        return m
