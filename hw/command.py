"""The command port of the accelerator top: command bytes in, command fields out, response
bytes back."""

from amaranth.hdl import Array, Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .buffers import host_signature
from .dsp import is_ice40
from .fanout import register_copies
from .isa import Command, Error
from .skid import SkidBuffer

__all__ = ["MAX_ARGS", "command_layout", "request_signature", "CommandPort"]

#: Argument bytes a command may carry before its data: SET_REG's register and 8 value bytes.
MAX_ARGS = 9

#: A one-hot decode of the opcode, a field per :class:`~hw.isa.Command`.
command_layout = data.StructLayout({c.name.lower(): 1 for c in Command})


def request_signature():
    """What the command port asks of the dispatcher (:class:`hw.dispatch.Dispatcher`), as the
    command port sees it.

    ``command`` (decoded), ``length`` and the argument bytes ``args`` (with ``arg_zero``, a
    flag per byte) are held from the arguments' last byte to the end of the command. The
    dispatcher answers with a ``verdict`` (an :class:`~hw.isa.Error`, 0 to go ahead, and
    ``refused`` = verdict != 0) three cycles after the last argument byte, and the buffer facts
    ``rlen`` (a READ_BUFFER's response bytes) and ``last_byte`` (a word's bytes are 0 ..
    last_byte) as soon. ``set_reg`` and ``run`` are one-cycle pulses acting on an accepted
    command; a run answers ``launched`` (one cycle), with ``launch_bad`` if the shape does not
    fit the buffers. ``running`` and ``done`` are the STATUS flags.
    """
    return wiring.Signature({
        "command": Out(command_layout),
        "length": Out(16),
        "args": Out(data.ArrayLayout(8, MAX_ARGS)),
        "arg_zero": Out(MAX_ARGS),
        "set_reg": Out(1),
        "run": Out(1),
        "verdict": In(8),
        "refused": In(1),
        "rlen": In(24),
        "last_byte": In(6),
        "launched": In(1),
        "launch_bad": In(1),
        "running": In(1),
        "done": In(1),
    })


class CommandPort(wiring.Component):
    """Decodes the command bytes of :class:`hw.top.Accelerator` and encodes its responses.

    A command is ``opcode, length (2 bytes, little-endian), payload``; its response
    ``status, length (2 bytes), payload``. The port takes the header, the argument bytes (five
    for buffer commands, the whole payload for SET_REG, one for RUN), asks the dispatcher for a
    verdict (``dispatch``), then acts: a refused command's payload is discarded, WRITE_BUFFER's
    words are assembled and written (``host``), READ_BUFFER's words are read back and sent low
    byte first, SET_REG and RUN are handed to the dispatcher. STATUS answers the dispatcher's
    flags and the last error code (cleared by the read); ``error`` is high while one is held.

    Both byte streams are decoupled (timing): commands through a small FIFO (its input ends in
    memory, with no logic, so a block RAM may drive it, as the board link's frame buffer does),
    responses through a register slice. The decoder sees a registered valid and payload, the
    outside world a registered ready and valid.

    Parameters
    ----------
    word_width : int
        Bits of the widest buffer word, whole bytes.

    Members
    -------
    cmd : In(stream.Signature(8))
        Command bytes.
    rsp : Out(stream.Signature(8))
        Response bytes.
    error : Out(1)
        A command failed since the last STATUS.
    dispatch : Out(request_signature())
        The decoded command and the dispatcher's answers.
    host : Out(hw.buffers.host_signature(word_width))
        Buffer reads and writes.

    A READ_BUFFER word is latched (``rword``) before its bytes are sent, and the next word's
    address is set meanwhile. On iCE40 (``platform.family == "iCE40"``), where a flip-flop is a
    logic cell, the bytes are sent from ``host.rdata`` itself, which holds the word as long as
    ``host.addr`` does (:class:`~hw.buffers.Buffers`), and the address steps after the word's
    last byte instead, in time for the next word on the same cycles.

    Latency: a command is answered 6 cycles after its last argument byte (the verdict takes
    3), plus the dispatcher's preparation for RUN; a READ_BUFFER word takes 4 cycles, then a
    byte per cycle. Throughput: one command byte per cycle in, one response byte per cycle out.
    """

    def __init__(self, word_width):
        self.word_width = word_width
        self.max_bytes = word_width // 8
        super().__init__({
            "cmd": In(stream.Signature(8)),
            "rsp": Out(stream.Signature(8)),
            "error": Out(1),
            "dispatch": Out(request_signature()),
            "host": Out(host_signature(word_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.cmd_fifo = cmd_fifo = SyncFIFOBuffered(width=8, depth=4)
        m.submodules.rsp_skid = rsp_skid = SkidBuffer(8)
        wiring.connect(m, wiring.flipped(self.cmd), cmd_fifo.w_stream)
        wiring.connect(m, rsp_skid.o, wiring.flipped(self.rsp))
        s = _State(self, m, platform, cmd_fifo.r_stream, rsp_skid.i,
                   latch=not is_ice40(platform))
        with m.FSM(name="cmd"):
            self._request_states(m, s)
            self._action_states(m, s)
            self._response_states(m, s)
        return m

    def _request_states(self, m, s):
        """Header, argument bytes and the verdict."""
        d, cmd = self.dispatch, s.cmd
        with m.State("OPCODE"):      # wait for a command's opcode
            m.d.comb += cmd.ready.eq(1)
            with m.If(cmd.valid):
                m.d.sync += s.opcode.eq(cmd.payload)
                m.next = "LEN0"
        with m.State("LEN0"):        # payload length, low byte
            m.d.comb += cmd.ready.eq(1)
            with m.If(cmd.valid):
                m.d.sync += d.length[:8].eq(cmd.payload)
                m.next = "LEN1"
        with m.State("LEN1"):        # payload length, high byte
            m.d.comb += cmd.ready.eq(1)
            with m.If(cmd.valid):
                full = Cat(d.length[:8], cmd.payload)
                m.d.sync += [d.length[8:].eq(cmd.payload), s.remaining.eq(full), s.argi.eq(0)]
                m.d.sync += [d.args[i].eq(0) for i in range(MAX_ARGS)]
                m.d.sync += d.arg_zero.eq(-1)
                m.d.sync += [flag.eq(full == n) for n, flag in s.len_is.items()]
                m.d.sync += [s.len_ge5.eq(full >= 5),
                             s.len_2_to_9.eq((full >= 2) & (full <= 9))]
                m.next = "DECODE"
        with m.State("DECODE"):      # opcode and length known: how many argument bytes
            def fail(code):
                m.d.sync += s.status.eq(code.value)
                m.next = "DISCARD"
            with m.If(d.command.status):
                with m.If(s.len_is[0]):
                    m.d.sync += [s.status.eq(0), s.rlen.eq(2)]
                    m.next = "RSP0"
                with m.Else():
                    fail(Error.LENGTH)
            # The other commands: the length check, then ``nargs`` argument bytes.
            for command, length_ok, n in (
                    ("write_buffer", s.len_ge5, 5), ("read_buffer", s.len_is[5], 5),
                    ("set_reg", s.len_2_to_9, d.length), ("run", s.len_is[1], 1)):
                with m.Elif(d.command[command]):
                    with m.If(length_ok):
                        m.d.sync += [s.nargs.eq(n), s.arg_sel.eq(1)]
                        m.next = "ARGS"
                    with m.Else():
                        fail(Error.LENGTH)
            with m.Else():
                fail(Error.OPCODE)
        with m.State("ARGS"):        # argument bytes into args[]
            m.d.comb += cmd.ready.eq(1)
            with m.If(cmd.valid):
                m.d.sync += [s.argi.eq(s.argi + 1), s.remaining.eq(s.remaining - 1),
                             s.arg_sel.eq(s.arg_sel << 1)]
                with m.If(s.argi + 1 == s.nargs):
                    m.d.sync += s.arg_sel.eq(0)
                    m.next = "FACT1"
        with m.State("FACT1"):       # the dispatcher's facts, stage 1 (registered)
            m.next = "FACT2"
        with m.State("FACT2"):       # the dispatcher's facts, stage 2 (registered)
            m.next = "FACT3"
        with m.State("FACT3"):       # the dispatcher's verdict, registered
            m.d.sync += s.count_zero.eq(s.arg_count == 0)
            m.next = "CHECK"

    def _action_states(self, m, s):
        """Acting on the verdict: discard, write words, hand SET_REG and RUN over."""
        d, cmd, host = self.dispatch, s.cmd, self.host
        with m.State("CHECK"):       # act on the verdict; a failure discards the rest
            m.d.sync += [host.addr.eq(s.arg_addr), host.waddr.eq(s.arg_addr),
                         s.count.eq(s.arg_count), s.bytei.eq(0), s.rlen.eq(0),
                         s.status.eq(d.verdict)]
            with m.If(d.refused):
                m.next = "DISCARD"
            with m.Else():
                with m.If(d.command.write_buffer):
                    m.next = "WDATA"
                    with m.If(s.count_zero):
                        m.next = "RSP0"
                with m.Elif(d.command.read_buffer):
                    m.d.sync += s.rlen.eq(d.rlen)
                    m.next = "RSP0"
                with m.Elif(d.command.set_reg):
                    m.d.sync += d.set_reg.eq(1)     # the register is written next cycle
                    m.next = "RSP0"
                with m.Elif(d.command.run):
                    m.d.sync += d.run.eq(1)
                    m.next = "RUN"
        with m.State("RUN"):         # RUN: the dispatcher prepares the shape and launches
            with m.If(d.launched):
                with m.If(d.launch_bad):
                    m.d.sync += s.status.eq(Error.SHAPE.value)
                m.next = "RSP0"
        with m.State("WDATA"):       # WRITE_BUFFER: words, nbytes bytes each
            m.d.comb += cmd.ready.eq(1)
            with m.If(cmd.valid):
                m.d.sync += [s.wbyte.valid.eq(1), s.wbyte.data.eq(cmd.payload),
                             s.wbyte.index.eq(s.bytei), s.wbyte.last.eq(s.bytei == s.last_byte),
                             s.remaining.eq(s.remaining - 1)]
                with m.If(s.bytei == s.last_byte):
                    m.d.sync += s.bytei.eq(0)
                    with m.If(s.remaining == 1):
                        m.next = "RSP0"
                with m.Else():
                    m.d.sync += s.bytei.eq(s.bytei + 1)
        with m.State("DISCARD"):     # drop what is left of a rejected command's payload
            m.d.comb += cmd.ready.eq(s.remaining != 0)
            with m.If(s.remaining == 0):
                m.next = "RSP0"
            with m.Elif(cmd.valid):
                m.d.sync += s.remaining.eq(s.remaining - 1)

    def _response_states(self, m, s):
        """The response: status, length, then STATUS's flags or READ_BUFFER's words."""
        d, rsp, host = self.dispatch, s.rsp, self.host
        with m.State("RSP0"):        # response: status
            m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(s.status)]
            with m.If(rsp.ready):
                with m.If(s.status != 0):
                    m.d.sync += [s.last_error.eq(s.status), s.rlen.eq(0)]
                m.next = "RSP1"
        with m.State("RSP1"):        # response: length, low byte
            m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(s.rlen[:8])]
            with m.If(rsp.ready):
                m.next = "RSP2"
        with m.State("RSP2"):        # response: length, high byte
            m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(s.rlen[8:])]
            with m.If(rsp.ready):
                with m.If(s.rlen == 0):
                    m.next = "OPCODE"
                with m.Elif(d.command.status):
                    m.next = "STATUS0"
                with m.Else():
                    m.next = "RREAD"
        with m.State("STATUS0"):     # STATUS payload: flags
            m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(Cat(d.running, d.done))]
            with m.If(rsp.ready):
                m.next = "STATUS1"
        with m.State("STATUS1"):     # STATUS payload: last error (read-clear)
            m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(s.last_error)]
            with m.If(rsp.ready):
                m.d.sync += s.last_error.eq(0)
                m.next = "OPCODE"
        with m.State("RREAD"):       # READ_BUFFER: read one word
            m.d.sync += s.bytei.eq(0)
            if s.latch:
                m.d.comb += s.rsel_next.eq(0)
            m.next = "RLATCH"
        with m.State("RLATCH"):      # READ_BUFFER: the word reaches the holding registers
            m.next = "RHOLD"
        with m.State("RHOLD"):       # READ_BUFFER: the addressed buffer's word is selected
            m.d.sync += s.take_word.eq(1)
            m.next = "RSELECT"
        with m.State("RSELECT"):     # READ_BUFFER: take it (``take_word``)
            if s.latch:
                m.d.sync += host.addr.eq(host.addr + 1)
            m.next = "RSEND"
        with m.State("RSEND"):       # READ_BUFFER: send its bytes, low first
            m.d.comb += [rsp.valid.eq(1), rsp.payload.eq(s.rbyte)]
            with m.If(rsp.ready):
                m.d.sync += s.bytei.eq(s.bytei + 1)
                if s.latch:
                    m.d.comb += s.rsel_next.eq(s.rsel + 1)
                with m.If(s.bytei == s.last_byte):
                    if not s.latch:
                        m.d.sync += host.addr.eq(host.addr + 1)
                    m.d.sync += s.count.eq(s.count - 1)
                    with m.If(s.count == 1):
                        m.next = "OPCODE"
                    with m.Else():
                        m.next = "RREAD"


class _State:
    """The command port's registers, and the logic that runs beside its state machine."""

    def __init__(self, port, m, platform, cmd, rsp, *, latch):
        d, host = port.dispatch, port.host
        self.latch = latch
        self.cmd, self.rsp = cmd, rsp    # the command FIFO's output, the response slice's input
        self.opcode = Signal(8)
        self.remaining = Signal(16)
        # Registered decodes of the opcode and the payload length, read from DECODE on.
        self.len_is = {n: Signal(name=f"len_is_{n}") for n in (0, 1, 5)}
        self.len_ge5, self.len_2_to_9 = Signal(name="len_ge5"), Signal(name="len_2_to_9")
        for c in Command:
            m.d.sync += d.command[c.name.lower()].eq(self.opcode == c.value)
        self.nargs = Signal(range(MAX_ARGS + 1))
        self.argi = Signal(range(MAX_ARGS + 1))
        # One-hot: the argument byte the next command byte goes to; nonzero only in state ARGS
        # (set on entering it, cleared with its last byte), so a byte's capture enable is one
        # gate of two flip-flops.
        self.arg_sel = Signal(MAX_ARGS)
        for i in range(MAX_ARGS):
            with m.If(cmd.valid & self.arg_sel[i]):
                m.d.sync += [d.args[i].eq(cmd.payload), d.arg_zero[i].eq(cmd.payload == 0)]
        self.status = Signal(8)
        self.last_error = Signal(8)
        self.rlen = Signal(16)
        self.count = Signal(17)
        self.count_zero = Signal()
        self.arg_addr = Cat(d.args[1], d.args[2])
        self.arg_count = Cat(d.args[3], d.args[4])
        # The latched word for reads, and the byte loops' count. The word is loaded by a flag
        # flip-flop alone (``take_word``, high in RSELECT) and its bytes are selected by
        # copies of ``bytei`` (``_read_select``; ``bytei`` itself stays the state machine's
        # count), rather than shifted out: a shift's enable would come through the state
        # machine's logic and the response's ready to every bit of the word, across the die
        # to the buffers' read-out (timing).
        # Without ``latch`` (iCE40) the word is ``host.rdata`` itself (see CommandPort), its
        # byte selected by ``bytei``.
        self.rword = Signal(port.word_width, name="rword") if latch else host.rdata
        self.bytei = Signal(range(port.max_bytes + 1))
        self.take_word = Signal()
        m.d.sync += self.take_word.eq(0)
        if latch:
            with m.If(self.take_word):
                m.d.sync += self.rword.eq(host.rdata)
            self._read_select(port, m, platform)
        else:
            self.rbyte = self.rword.word_select(self.bytei, 8)
        # The dispatcher's last_byte (set in FACT1, read from WDATA or RSEND on), copied here so
        # that the byte loops' compare is local to the port, not a net from the dispatcher.
        self.last_byte = Signal.like(d.last_byte)
        m.d.sync += self.last_byte.eq(d.last_byte)
        m.d.sync += [host.wen.eq(0), d.set_reg.eq(0), d.run.eq(0)]
        m.d.comb += [host.buf.eq(d.args[0]), port.error.eq(self.last_error != 0)]
        self._assemble(port, m)

    def _read_select(self, port, m, platform):
        """``rbyte``, the latched word's byte at ``bytei``, selected in two levels: a byte in
        each group of 8, then the group. Each group's select, and the last level's, is a copy
        of ``bytei`` of its own (``rsel``, the same count: 0 in RREAD, one up with each byte
        sent; :func:`hw.fanout.register_copies`), placed beside the group's bits of the word:
        one ``bytei`` for a 33-byte word was a net across the die to the bits' block RAMs
        (timing). The state machine sets ``rsel_next``; by default the copies hold."""
        groups = -(-port.max_bytes // 8)
        self.rsel_next = Signal.like(self.bytei)
        bits = [register_copies(m, platform, self.rsel_next[b], groups + 1, name=f"rsel{b}")
                for b in range(len(self.bytei))]
        copies = [Cat(bit[g] for bit in bits) for g in range(groups + 1)]
        self.rsel = copies[-1]
        m.d.comb += self.rsel_next.eq(self.rsel)
        word = [self.rword[8 * i:8 * i + 8] for i in range(port.max_bytes)]
        picks = [Array(word[8 * g:8 * g + 8])[copies[g][:3]] for g in range(groups)]
        self.rbyte = Array(picks)[self.rsel[3:]] if groups > 1 else picks[0]

    def _assemble(self, port, m):
        """WRITE_BUFFER's word assembly, a cycle behind the state machine: each payload byte
        taken in WDATA is registered (``wbyte``: the byte, its index in the word, whether it
        is the word's last) and then stored into ``host.wdata``; a word's last byte raises
        ``host.wen`` and the next word goes to the next address. The state machine's own
        decisions read none of these registers, so the wide word register, placed by the
        buffers, shares no logic with them (timing)."""
        host = port.host
        self.wbyte = Signal(data.StructLayout({"valid": 1, "data": 8,
                                               "index": range(port.max_bytes + 1), "last": 1}))
        m.d.sync += self.wbyte.valid.eq(0)
        with m.If(self.wbyte.valid):
            for i in range(port.max_bytes):
                with m.If(self.wbyte.index == i):
                    m.d.sync += host.wdata[8 * i:8 * i + 8].eq(self.wbyte.data)
            m.d.sync += host.wen.eq(self.wbyte.last)
        with m.If(host.wen):
            m.d.sync += host.waddr.eq(host.waddr + 1)

