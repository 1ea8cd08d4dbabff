"""The iCEBreaker board top: :class:`~boards.link.LinkTop` on the UART and LEDs, on a PLL."""

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards.icebreaker import ICEBreakerPlatform

from hw.config import AccelConfig

from .framing import BAUD
from .link import LinkTop
from .pins import input_pin, output_pin
from .uart import uart_divisor

__all__ = ["BOARD_CLK_FREQ", "CLK_FREQ", "BAUD", "ice40_pll", "make_platform", "ICEBreakerTop"]

#: The iCEBreaker's oscillator (pin 35, a PLL-capable global input).
BOARD_CLK_FREQ = 12e6
#: Default system clock made by the PLL (see the README's resource table for the Fmax reached).
CLK_FREQ = 24e6


def ice40_pll(f_in, f_out):
    """``SB_PLL40_*`` parameters making ``f_out`` from ``f_in`` (both in Hz), as ``icepll`` does.

    ``f_out = f_in * (DIVF+1) / ((DIVR+1) * 2**DIVQ)`` with the phase detector input
    ``f_in/(DIVR+1)`` in 10-133 MHz and the VCO ``f_in*(DIVF+1)/(DIVR+1)`` in 533-1066 MHz (the
    iCE40 sysCLOCK limits). The closest reachable frequency is chosen.

    Returns
    -------
    dict
        ``DIVR, DIVF, DIVQ, FILTER_RANGE`` and ``freq`` (the frequency reached, in Hz).

    Raises
    ------
    ValueError
        When no setting reaches ``f_out`` within 1%.
    """
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f = f_vco / (1 << divq)
                if best is None or abs(f - f_out) < abs(best["freq"] - f_out):
                    filt = next(i for i, hi in enumerate((17e6, 26e6, 44e6, 66e6, 101e6), 1)
                                if f_pfd < hi) if f_pfd < 101e6 else 6
                    best = {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filt,
                            "freq": f}
    if best is None or abs(best["freq"] - f_out) > 0.01 * f_out:
        raise ValueError(f"PLL output frequency must be reachable from {f_in / 1e6:g} MHz "
                         f"(8.3 to 533 MHz), not {f_out / 1e6:g} MHz")
    return best


def make_platform():
    """The iCEBreaker platform with its snap-off LED/button PMOD (fitted by default) added."""
    platform = ICEBreakerPlatform()
    platform.add_resources(platform.break_off_pmod)
    return platform


class ICEBreakerTop(Elaboratable):
    """:class:`~boards.link.LinkTop` on the iCEBreaker's pins.

    The 12 MHz oscillator drives an ``SB_PLL40_PAD`` that makes the ``sync`` clock
    (:func:`ice40_pll`); ``sync`` is held in reset until the PLL locks. The UART (FTDI channel
    B, pins 6/9) runs at ``baud``; the LEDs show ``led_r`` (red, 11) = error, ``led_g`` (green,
    37) = heartbeat, snap-off PMOD LED 2 = busy. With ``clk_freq == 12e6`` there is no PLL.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator configuration (normally ``AccelConfig.preset("icebreaker")``). Its
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
    pll : dict or None
        The PLL parameters (:func:`ice40_pll`), ``None`` without a PLL.
    link : LinkTop
        The wrapped top.
    """

    def __init__(self, cfg, *, clk_freq=CLK_FREQ, baud=BAUD):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Config must be an AccelConfig, not {cfg!r}")
        if clk_freq == BOARD_CLK_FREQ:
            self.pll = None
            self.clk_freq = BOARD_CLK_FREQ
        else:
            self.pll = ice40_pll(BOARD_CLK_FREQ, clk_freq)
            self.clk_freq = self.pll["freq"]
        self.cfg, self.baud = cfg, baud
        divisor = uart_divisor(self.clk_freq, baud)
        # The link's inter-byte timeout counter is 16 bits: at most 16 byte times.
        self.link = LinkTop(cfg, divisor, timeout_bytes=min(16, 0xffff // (10 * divisor)))

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        if self.pll is None:
            m.d.comb += ClockSignal("sync").eq(
                input_pin(m, "clk12_buf", platform.request("clk12", 0, dir="-")))
            locked = Signal(init=1)
        else:
            clk12 = platform.request("clk12", 0, dir="-")
            locked = Signal()
            p = self.pll
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE",
                p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
                p_FILTER_RANGE=p["FILTER_RANGE"],
                io_PACKAGEPIN=clk12.io,
                i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=ClockSignal("sync"),
                o_LOCK=locked,
            )
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")

        m.submodules.link = link = self.link
        uart = platform.request("uart", 0, dir="-")
        m.d.comb += [
            link.rx.eq(input_pin(m, "uart_rx_buf", uart.rx)),
            output_pin(m, "uart_tx_buf", uart.tx).eq(link.tx),
            output_pin(m, "led_r_0_buf", platform.request("led_r", 0, dir="-")).eq(link.led_error),
            output_pin(m, "led_g_0_buf", platform.request("led_g", 0, dir="-")).eq(
                link.led_heartbeat),
            output_pin(m, "led_2_buf", platform.request("led", 2, dir="-")).eq(link.led_busy),
        ]
        return m
