"""The framed byte protocol between a UART and the accelerator's command port, and ``LinkTop``.

Frames (multi-byte fields little-endian):

* request ``0xA5, opcode, length (2), payload (length bytes), crc``;
* response ``0x5A, status, length (2), payload (length bytes), crc``;

``crc`` is CRC-8 (polynomial x^8 + x^2 + x + 1 = 0x07, initial value 0, no reflection, no final
xor; "CRC-8/SMBUS") over every byte after the sync byte. The opcode, status and payloads are
those of :class:`hw.top.Accelerator`'s command port, which the link feeds with
``opcode, length, payload`` and whose ``status, length, payload`` it frames.

The link keeps a whole request in a frame buffer and forwards it only when its checksum is
good, so a damaged frame never reaches the accelerator. Link-level failures answer a response
frame with no payload and a :class:`LinkError` status:

* ``CHECKSUM``: the crc did not match; the frame is dropped.
* ``TIMEOUT``: a frame stopped for ``timeout`` cycles before its end (truncated); dropped.
* ``OVERSIZE``: ``length`` above ``max_payload``; the rest of the frame is skipped until the
  line has been quiet for ``timeout`` cycles, then the error is answered.

Bytes outside a frame that are not the sync byte are ignored. One frame is handled at a time:
a host sends the next request after reading the response (bytes arriving meanwhile are
dropped).
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from hw.memory import uncontended
from hw.stream import Countdown
from hw.top import Accelerator

from .uart import UARTReceiver, UARTTransmitter

__all__ = ["SYNC", "RSP_SYNC", "LinkError", "crc8", "FrameLink", "LinkTop"]

#: First byte of a request frame.
SYNC = 0xA5
#: First byte of a response frame.
RSP_SYNC = 0x5A
#: CRC-8 polynomial (x^8 + x^2 + x + 1).
CRC_POLY = 0x07


class LinkError(enum.Enum, shape=8):
    """Link-level statuses (the accelerator's own start at 0x00, these at 0x10)."""
    CHECKSUM = 0x10   #: request crc mismatch
    TIMEOUT = 0x11    #: request truncated (inter-byte timeout)
    OVERSIZE = 0x12   #: request length above max_payload
    FRAME = 0x13      #: host side only: no response frame found


def crc8(data, crc=0):
    """CRC-8/SMBUS of ``data`` (bytes): polynomial 0x07, initial 0."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY if crc & 0x80 else crc << 1) & 0xff
    return crc


def _crc8_next(crc, byte):
    """Gateware twin of :func:`crc8` for one byte: each output bit is the xor of some bits of
    ``crc ^ byte`` (the CRC is linear), worked out here in Python."""
    bits = [{i} for i in range(8)]        # bit i of the running value, as a set of input bits
    for _ in range(8):
        top = bits[7]
        shifted = [set()] + bits[:7]
        bits = [shifted[i] ^ top if CRC_POLY >> i & 1 else shifted[i] for i in range(8)]
    c = crc ^ byte
    out = []
    for terms in bits:
        value = 0
        for i in sorted(terms):
            value = value ^ c[i]
        out.append(value)
    return Cat(*out)


class FrameLink(wiring.Component):
    """Frames a command port onto a byte stream, checks and buffers requests.

    Parameters
    ----------
    max_payload : int
        Largest request payload (the frame buffer holds ``3 + max_payload`` bytes).
    timeout : int
        Inter-byte timeout in cycles, inside a request frame.

    Members
    -------
    rx : In(stream.Signature(8, always_ready=True))
        Bytes from the line, always taken.
    tx : Out(stream.Signature(8))
        Bytes to the line.
    cmd : Out(stream.Signature(8))
        ``opcode, length, payload`` of each good request.
    rsp : In(stream.Signature(8))
        ``status, length, payload`` of each response.
    error : Out(1)
        The last frame failed at link level (cleared by the next good frame).

    Latency: a good request is forwarded starting 2 cycles after its crc byte; a response
    byte goes out the cycle after it is offered. Throughput: one byte per cycle each way.
    """

    rx: In(stream.Signature(8, always_ready=True))
    tx: Out(stream.Signature(8))
    cmd: Out(stream.Signature(8))
    rsp: In(stream.Signature(8))
    error: Out(1)

    def __init__(self, *, max_payload=255, timeout=1000):
        for what, v, lo in (("Link max_payload", max_payload, 1), ("Link timeout", timeout, 2)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{what} must be an integer, not {v!r}")
            if not lo <= v <= 0xffff:
                raise ValueError(f"{what} must be an integer from {lo} to 65535, not {v}")
        self.max_payload, self.timeout = max_payload, timeout
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        size = 3 + self.max_payload
        # Uncontended: written while a request arrives, read while it is forwarded.
        m.submodules.frame = frame = Memory(shape=8, depth=size, init=[], attrs=uncontended())
        wp, rp = frame.write_port(), frame.read_port()

        rx, cmd = self.rx, self.cmd
        idx = Signal(range(size + 1))         # bytes of the frame stored
        length = Signal(16)
        crc = Signal(8)
        quiet = Signal(range(self.timeout + 1))
        code = Signal(8)                      # link error to answer
        send_err = Signal()                   # the response is a link error frame
        start_tx = Signal()
        tx_done = Signal()
        got = rx.valid                        # rx is always taken
        m.d.comb += [wp.data.eq(rx.payload), wp.addr.eq(idx)]
        timed_out = Signal()                  # quiet == timeout, as a flip-flop
        with m.If(got):
            m.d.sync += [quiet.eq(0), timed_out.eq(0)]
        with m.Elif(~timed_out):
            m.d.sync += [quiet.eq(quiet + 1), timed_out.eq(quiet == self.timeout - 1)]
        last_idx = Signal.like(idx)           # idx of the last payload byte: length + 2

        fwd_addr = Signal(range(size + 1))
        fwd_left = Signal(range(size + 1))
        advance = ~cmd.valid | cmd.ready
        m.d.comb += [rp.addr.eq(fwd_addr), rp.en.eq(advance), cmd.payload.eq(rp.data)]
        ns = SimpleNamespace(wp=wp, idx=idx, length=length, crc=crc, code=code,
                             send_err=send_err, start_tx=start_tx, tx_done=tx_done, got=got,
                             timed_out=timed_out, last_idx=last_idx, fwd_addr=fwd_addr,
                             fwd_left=fwd_left, advance=advance)
        self._receiver(m, ns)
        self._transmitter(m, ns)
        return m

    def _receiver(self, m, ns):
        """The request side: hunt for a sync byte, store and check the frame, forward it."""
        rx, cmd = self.rx, self.cmd
        (wp, idx, length, crc, code, send_err, start_tx, tx_done, got, timed_out, last_idx,
         fwd_addr, fwd_left, advance) = (
            ns.wp, ns.idx, ns.length, ns.crc, ns.code, ns.send_err, ns.start_tx, ns.tx_done,
            ns.got, ns.timed_out, ns.last_idx, ns.fwd_addr, ns.fwd_left, ns.advance)
        with m.FSM(name="rx"):
            with m.State("HUNT"):        # skip bytes until a sync byte
                with m.If(got & (rx.payload == SYNC)):
                    m.d.sync += [idx.eq(0), crc.eq(0)]
                    m.next = "HEAD"
            with m.State("HEAD"):        # opcode, length: stored, checked against max_payload
                with m.If(got):
                    m.d.comb += wp.en.eq(1)
                    m.d.sync += [idx.eq(idx + 1), crc.eq(_crc8_next(crc, rx.payload))]
                    with m.If(idx == 1):
                        m.d.sync += length[:8].eq(rx.payload)
                    with m.If(idx == 2):
                        m.d.sync += length[8:].eq(rx.payload)
                        full = Cat(length[:8], rx.payload)
                        with m.If(full > self.max_payload):
                            m.d.sync += code.eq(LinkError.OVERSIZE.value)
                            m.next = "SKIP"
                        with m.Elif(full == 0):
                            m.next = "CRC"
                        with m.Else():
                            m.d.sync += last_idx.eq(full + 2)
                            m.next = "BODY"
                with m.Elif(timed_out):
                    m.d.sync += code.eq(LinkError.TIMEOUT.value)
                    m.next = "ERROR"
            with m.State("BODY"):        # payload bytes
                with m.If(got):
                    m.d.comb += wp.en.eq(1)
                    m.d.sync += [idx.eq(idx + 1), crc.eq(_crc8_next(crc, rx.payload))]
                    with m.If(idx == last_idx):
                        m.next = "CRC"
                with m.Elif(timed_out):
                    m.d.sync += code.eq(LinkError.TIMEOUT.value)
                    m.next = "ERROR"
            with m.State("CRC"):         # the checksum byte
                with m.If(got):
                    with m.If(rx.payload == crc):
                        m.d.sync += [fwd_addr.eq(0), fwd_left.eq(idx), cmd.valid.eq(0),
                                     self.error.eq(0)]
                        m.next = "FORWARD"
                    with m.Else():
                        m.d.sync += code.eq(LinkError.CHECKSUM.value)
                        m.next = "ERROR"
                with m.Elif(timed_out):
                    m.d.sync += code.eq(LinkError.TIMEOUT.value)
                    m.next = "ERROR"
            with m.State("SKIP"):        # oversize: drop bytes until the line is quiet
                with m.If(timed_out & ~got):
                    m.next = "ERROR"
            with m.State("FORWARD"):     # the stored request to the command port
                with m.If(advance):
                    m.d.sync += cmd.valid.eq(fwd_left != 0)
                    with m.If(fwd_left != 0):
                        m.d.sync += [fwd_addr.eq(fwd_addr + 1), fwd_left.eq(fwd_left - 1)]
                    with m.Else():
                        m.d.comb += start_tx.eq(1)
                        m.d.sync += send_err.eq(0)
                        m.next = "WAIT"
            with m.State("ERROR"):       # answer a link error frame
                m.d.comb += start_tx.eq(1)
                m.d.sync += [send_err.eq(1), self.error.eq(1)]
                m.next = "WAIT"
            with m.State("WAIT"):        # until the response frame is out
                with m.If(tx_done):
                    m.next = "HUNT"

    def _transmitter(self, m, ns):
        """The response side: sync, then status/length/payload (from the top or an error),
        then the checksum."""
        tx, rsp = self.tx, self.rsp
        code, send_err, start_tx, tx_done = ns.code, ns.send_err, ns.start_tx, ns.tx_done
        tcrc = Signal(8)
        tcount = Signal(3)                    # header bytes passed
        tlen_lo = Signal(8)                   # the length's low byte
        tlen_lo_zero = Signal()               # ... is 0
        # Payload bytes left, loaded with the length's high byte; `last` marks the final byte.
        m.submodules.tlen = tlen = Countdown(0xffff)
        src_valid, src_payload = Signal(), Signal(8)
        m.d.comb += tlen.total.eq(Cat(tlen_lo, src_payload))
        src_take = Signal()
        with m.If(send_err):
            m.d.comb += [src_valid.eq(1), src_payload.eq(Mux(tcount == 0, code, 0))]
        with m.Else():
            m.d.comb += [src_valid.eq(rsp.valid), src_payload.eq(rsp.payload),
                         rsp.ready.eq(src_take)]
        with m.FSM(name="tx"):
            with m.State("IDLE"):        # until a response starts
                with m.If(start_tx):
                    m.d.sync += [tcrc.eq(0), tcount.eq(0)]
                    m.next = "SYNC"
            with m.State("SYNC"):        # the response sync byte
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(RSP_SYNC)]
                with m.If(tx.ready):
                    m.next = "HEADER"
            with m.State("HEADER"):      # status, length
                m.d.comb += [tx.valid.eq(src_valid), tx.payload.eq(src_payload),
                             src_take.eq(tx.ready)]
                with m.If(src_valid & tx.ready):
                    m.d.sync += [tcount.eq(tcount + 1), tcrc.eq(_crc8_next(tcrc, src_payload))]
                    with m.If(tcount == 1):
                        m.d.sync += [tlen_lo.eq(src_payload), tlen_lo_zero.eq(src_payload == 0)]
                    with m.If(tcount == 2):
                        m.d.comb += tlen.load.eq(1)
                        with m.If((src_payload == 0) & tlen_lo_zero):
                            m.next = "CRC"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):     # response payload
                m.d.comb += [tx.valid.eq(src_valid), tx.payload.eq(src_payload),
                             src_take.eq(tx.ready)]
                with m.If(src_valid & tx.ready):
                    m.d.comb += tlen.en.eq(1)
                    m.d.sync += tcrc.eq(_crc8_next(tcrc, src_payload))
                    with m.If(tlen.last):
                        m.next = "CRC"
            with m.State("CRC"):         # the checksum
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(tcrc)]
                with m.If(tx.ready):
                    m.d.comb += tx_done.eq(1)
                    m.next = "IDLE"


class LinkTop(wiring.Component):
    """The accelerator behind a UART: what a board file puts on real pins.

    ``rx`` -> :class:`~boards.uart.UARTReceiver` -> :class:`FrameLink` ->
    :class:`hw.top.Accelerator` -> :class:`FrameLink` -> :class:`~boards.uart.UARTTransmitter`
    -> ``tx``.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator's configuration.
    divisor : int
        Clock cycles per UART bit (:func:`boards.uart.uart_divisor`).
    depth : int or None
        Accelerator buffer depth in words: by default the config's (``cfg.buffers.depth``);
        smaller for a simulated link test (:class:`hw.top.Accelerator`).
    max_payload : int
        Largest request payload.
    timeout_bytes : int
        Inter-byte timeout, in byte times (``10 * divisor`` cycles each).
    heartbeat_bits : int
        The heartbeat LED toggles every ``2**(heartbeat_bits-1)`` cycles.

    Members
    -------
    rx : In(1, init=1)
        UART receive pin (idle high).
    tx : Out(1, init=1)
        UART transmit pin.
    led_busy, led_error, led_heartbeat : Out(1)
        A run is in progress; a command or frame failed (cleared by STATUS and by a good
        frame); a blinking counter bit.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    led_busy: Out(1)
    led_error: Out(1)
    led_heartbeat: Out(1)

    def __init__(self, cfg, divisor, *, depth=None, max_payload=255, timeout_bytes=16,
                 heartbeat_bits=24):
        self.cfg, self.divisor = cfg, divisor
        self.max_payload = max_payload
        self.timeout = timeout_bytes * 10 * divisor
        self.heartbeat_bits = heartbeat_bits
        self.uart_rx = UARTReceiver(divisor)
        self.uart_tx = UARTTransmitter(divisor)
        self.link = FrameLink(max_payload=max_payload, timeout=self.timeout)
        self.accel = Accelerator(cfg, depth=depth)
        self.depth = self.accel.depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = self.uart_rx
        m.submodules.uart_tx = self.uart_tx
        m.submodules.link = self.link
        m.submodules.accel = self.accel
        connect(m, self.uart_rx.o, self.link.rx)
        connect(m, self.link.tx, self.uart_tx.i)
        connect(m, self.link.cmd, self.accel.cmd)
        connect(m, self.accel.rsp, self.link.rsp)
        beat = Signal(self.heartbeat_bits)
        m.d.sync += beat.eq(beat + 1)
        m.d.comb += [
            self.uart_rx.rx.eq(self.rx),
            self.tx.eq(self.uart_tx.tx),
            self.led_busy.eq(self.accel.busy),
            self.led_error.eq(self.accel.error | self.link.error),
            self.led_heartbeat.eq(beat[-1]),
        ]
        return m
