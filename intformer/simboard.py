"""``intformer sim-board``: the board top (``boards.link.LinkTop``, UART RTL included) on
Verilator, behind a pseudo-terminal that the real host driver opens as a serial port.

The Verilated design is :class:`HostWiredBoard`: ``LinkTop`` with a host-side UART
(``boards.uart``) on its pins, so that the harness generated from its signature feeds and
collects bytes as streams; every byte crosses the board's real UART receiver and transmitter
as 8N1 bits, ``divisor`` clock cycles per bit (a short bit time keeps simulation fast; the
line's baud rate is not simulated).

The clock runs while anything is under way (bytes in or out, a run busy) and for the link's
inter-byte timeout after the last byte, as a board's would, and stops while the line is idle.
The server ends cleanly when its peer closes the port (after having talked to it), or on
SIGINT/SIGTERM.
"""

import errno
import os
import select
import signal
import sys
import time
import tty

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from boards.link import LinkTop
from boards.uart import UARTReceiver, UARTTransmitter
from sim.verilator.build import build_component
from sim.verilator.model import Model
from sim.verilator.toolchain import VerilatorBuildError, VerilatorUnavailable

__all__ = ["HostWiredBoard", "SimBoard", "add_parser"]


class HostWiredBoard(wiring.Component):
    """``LinkTop`` with a host-side UART wired to its ``rx``/``tx`` pins; its buffers are the
    config's (``cfg.buffers.depth``), as on a board.

    Members
    -------
    host_tx : In(stream.Signature(8))
        Bytes the host sends (through a :class:`~boards.uart.UARTTransmitter` to ``rx``).
    host_rx : Out(stream.Signature(8))
        Bytes the board sent (``tx`` through a :class:`~boards.uart.UARTReceiver`); the
        receiver cannot wait, so the consumer must always be ready.
    led_busy, led_error : Out(1)
        The board's LEDs.
    """

    host_tx: In(stream.Signature(8))
    host_rx: Out(stream.Signature(8))
    led_busy: Out(1)
    led_error: Out(1)

    def __init__(self, cfg, *, divisor=8):
        self.board = LinkTop(cfg, divisor)
        self.uart_tx, self.uart_rx = UARTTransmitter(divisor), UARTReceiver(divisor)
        self.timeout = self.board.timeout
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.board = self.board
        m.submodules.uart_tx = self.uart_tx
        m.submodules.uart_rx = self.uart_rx
        connect(m, wiring.flipped(self.host_tx), self.uart_tx.i)
        connect(m, self.uart_rx.o, wiring.flipped(self.host_rx))
        m.d.comb += [self.board.rx.eq(self.uart_tx.tx), self.uart_rx.rx.eq(self.board.tx),
                     self.led_busy.eq(self.board.led_busy),
                     self.led_error.eq(self.board.led_error)]
        return m


class SimBoard:
    """The Verilated board and the byte pump between it and a file descriptor.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator's configuration; its buffers are ``cfg.buffers.depth`` words deep, as
        on a board built from it (no override: the host reads the same config).
    divisor : int
        Clock cycles per UART bit.
    log : callable
        Where build messages go.
    """

    def __init__(self, cfg, *, divisor=8, log=print):
        design = HostWiredBoard(cfg, divisor=divisor)
        self.idle_after = design.timeout + 40 * divisor     # past the link's timeout
        self.chunk = 20 * divisor                           # two byte times
        self.build = build_component(design, "intformer_simboard",
                                     key=("simboard", cfg, divisor), log=log)
        self.model = Model(self.build)
        self.model.configure("host_tx", budget=1 << 62)
        self.model.configure("host_rx", budget=1 << 62, greedy=True)
        self.quiet = self.idle_after                        # cycles since anything happened

    @property
    def active(self):
        """Something is under way: the clock should run."""
        return self.quiet < self.idle_after

    def feed(self, data):
        """Queue bytes from the host."""
        if data:
            self.model.push("host_tx", np.frombuffer(data, dtype=np.uint8).astype("<u4")[:, None])
            self.quiet = 0

    def step(self):
        """Run one chunk of cycles; return the bytes the board sent meanwhile."""
        self.model.run(Model.RUN_CYCLES, self.chunk)
        out = bytes(self.model.take("host_rx", words=True)[:, 0].astype(np.uint8))
        pending = self.model.stats("host_tx")[3]
        if out or pending or self.model.get_output("led_busy"):
            self.quiet = 0
        else:
            self.quiet += self.chunk
        return out

    def serve(self, fd):
        """Pump bytes between ``fd`` (a pty master) and the board until the peer closes it
        (after having opened it) or a signal stops the process."""
        seen_peer = False
        while True:
            timeout = 0 if self.active else 0.05
            ready = select.poll()
            ready.register(fd, select.POLLIN)
            events = ready.poll(timeout * 1000)
            for _, event in events:
                if event & select.POLLIN:
                    try:
                        data = os.read(fd, 4096)
                    except OSError as e:
                        if e.errno != errno.EIO:
                            raise
                        data = b""
                    if data:
                        seen_peer = True
                        self.feed(data)
                        continue
                if event & (select.POLLHUP | select.POLLERR):
                    if seen_peer:
                        return "the peer closed the port"
                    time.sleep(0.05)        # no peer yet: wait for one to open the port
            if self.active:
                out = self.step()
                if out:
                    try:
                        os.write(fd, out)
                    except OSError as e:
                        if e.errno == errno.EIO:
                            return "the peer closed the port"
                        raise


def _stop(signum, frame):
    raise SystemExit(0)


def cmd_sim_board(args, load_config):
    cfg = load_config(args)
    try:
        board = SimBoard(cfg, divisor=args.divisor,
                         log=lambda s: print(s, file=sys.stderr, flush=True))
    except (VerilatorUnavailable, VerilatorBuildError) as e:
        print(f"intformer sim-board: error: {e}", file=sys.stderr)
        return 2
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)              # the peer's open() is what the server waits for
    signal.signal(signal.SIGTERM, _stop)
    print(f"simulated {cfg.name} board on {path} (UART {args.divisor} cycles per bit, buffers "
          f"of {cfg.buffers.depth} words); connect with boards.board.Board({path!r}, cfg)",
          flush=True)
    try:
        reason = board.serve(master)
    except (KeyboardInterrupt, SystemExit):
        reason = "stopped"
    finally:
        os.close(master)
    print(f"sim-board: {reason} after {board.model.cycle:,} cycles", flush=True)
    return 0


def add_parser(sub, add_config_args, load_config):
    """Register ``sim-board`` on the CLI's subparsers."""
    p = sub.add_parser("sim-board", help="the board top on Verilator behind a pseudo-terminal "
                                         "(boards.board.Board opens it as a serial port)")
    add_config_args(p)
    p.add_argument("--divisor", type=int, default=8,
                   help="clock cycles per UART bit in simulation (default 8)")
    p.set_defaults(func=lambda args: cmd_sim_board(args, load_config))
