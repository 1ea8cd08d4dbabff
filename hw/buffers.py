"""The top's buffers: their memories, who writes each one, who reads it, and the read-back."""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out

from .dsp import is_ice40
from .fanout import register_copies, register_word_copies
from .isa import Buf, buffer_specs, residual_to_x
from .memory import uncontended
from .reader import read_port_signature
from .requant import saturate

__all__ = ["READ_BUFFERS", "REGISTERED_READS", "SLICE_BITS", "read_buffers", "host_signature",
           "BufferStorage", "Buffers"]

#: The buffers a run may read through a :class:`~hw.reader.BufferReader`, in port order: the
#: operands (A, B, X, V), and C, which an accumulating ``RUN LINEAR`` reads ahead of its writes
#: (:class:`hw.isa.LinMode`).
READ_BUFFERS = (Buf.A, Buf.B, Buf.X, Buf.V, Buf.C)


#: The buffers whose read address is registered after the choice of reader or command (where
#: :class:`Buffers` registers, not on iCE40): a read's word comes two cycles after its address.
#: C is the widest buffer (``cols * acc_width`` bits, 30 block RAMs at 8x8 and 2048 words, across
#: the die), and its reader (an accumulating LINEAR's) offers its words long before the first
#: row needs them, so its extra cycle changes no run's length.
REGISTERED_READS = (Buf.C,)

#: Bits of one memory of a buffer (:class:`BufferStorage`): a multiple of every ECP5 DP16KD data
#: width (9, 18, 36) and of the iCE40 block RAM's (2, 4, 8), so that slicing a word costs no block
#: RAM on ECP5 and none on iCE40 at 512 words or more.
SLICE_BITS = 72


def read_buffers(specs):
    """The buffers of :data:`READ_BUFFERS` that a top of buffer specs ``specs``
    (:func:`hw.isa.buffer_specs`) reads through a reader: those it has, C only with LINEAR (its
    CHAN buffer)."""
    return tuple(buf for buf in READ_BUFFERS
                 if buf in specs and (buf != Buf.C or Buf.CHAN in specs))


def host_signature(word_width):
    """The command port's access to the buffers, as the command port sees it: ``buf`` and
    ``addr`` select a word to read (``rdata``, four cycles after the address, five for
    :data:`REGISTERED_READS`; three on iCE40, see :class:`Buffers`), ``wen`` writes ``wdata``
    to word ``waddr`` of ``buf``."""
    return wiring.Signature({
        "buf": Out(8), "addr": Out(17), "rdata": In(word_width),
        "wen": Out(1), "waddr": Out(17), "wdata": Out(word_width),
    })


class BufferStorage:
    """The words of one buffer, kept in slices of at most :data:`SLICE_BITS` bits, one
    :class:`~amaranth.lib.memory.MemoryData` each (low bits first), so that each slice's block
    RAMs get their own copy of the address (:class:`Buffers`).

    Parameters
    ----------
    width : int
        Bits of a word.
    depth : int
        Words.

    Attributes
    ----------
    slices : tuple of (int, MemoryData)
        Each slice's lowest bit in the word, and its storage.
    """

    def __init__(self, width, depth):
        self.width, self.depth = width, depth
        self.slices = tuple(
            (low, MemoryData(shape=unsigned(min(SLICE_BITS, width - low)), depth=depth, init=[]))
            for low in range(0, width, SLICE_BITS))

    def word(self, ctx, index):
        """Word ``index``, read through a simulator's testbench context ``ctx``."""
        return sum(ctx.get(storage[index]) << low for low, storage in self.slices)


class Buffers(wiring.Component):
    """The buffers of :class:`hw.top.Accelerator` (all of :func:`hw.isa.buffer_specs` but COEF
    and CHAN, which the LayerNorm unit and :class:`~hw.channels.ChannelStage` hold, and whose
    writes this component forwards, and the narrow views of :data:`hw.isa.NARROW_VIEWS`, which
    a command reads or writes through their buffers' memories): each a :class:`BufferStorage`,
    one :class:`~amaranth.lib.memory.Memory` per slice of its word, named ``buf_<name>`` (a word
    of one slice) or ``buf_<name>_<k>``, each with one read port and one write port.

    Each memory is written by the command port, or by a run while ``running`` (C and Y; X
    with ``RES_TO_X``), and read by the command port, or by a run's reader while ``running``
    (A, B, X, V; C with LINEAR, whose accumulating runs read each word of C before they write
    it; RUN RESIDUAL with ``RES_TO_X`` writes X word i after it has read words i and n+i, and
    its reader never goes back). Commands do not overlap and a run refuses buffer commands, so
    a memory never uses a read of the address it writes in the same cycle: they are marked
    :func:`hw.memory.uncontended`.

    A write port takes its enable, address and data from one register each, loaded with the
    run's word while ``running`` and the command's otherwise (timing: the block RAM's inputs
    come straight from flip-flops, and no select fans out from one flip-flop to every block);
    a buffer of several slices adds a second register per slice, enable and address copied
    (:func:`hw.fanout.register_word_copies`), so that each slice's block RAMs, wherever the
    placer puts them, have their own. The read ports' selects are copies of ``running`` a
    cycle late, one per memory (per slice for :data:`REGISTERED_READS`). A buffer of
    :data:`REGISTERED_READS` registers each slice's read address after that choice, a copy
    each: its word comes two cycles after the reader's address (:meth:`read_latency`). Readers
    start two cycles after a run does and end before it does.

    A command read registers every buffer's output (block RAM clock-to-output is most of a
    cycle), then ANDs each byte with a flag flip-flop (``buf`` is the buffer, a cycle late;
    ``buf`` is held from its byte to the end of the command) and ORs them into a register,
    rather than a multiplexer on the decoded buffer number, whose select would reach every bit
    (timing; docs/timing.md).

    On iCE40 (``platform.family == "iCE40"``, 24 MHz with slack) both sets of registers are
    left out, since each bit of them is a logic cell: a write port takes the same selection
    straight from its sources, so a write reaches the memory on the cycle of ``host.wen`` or
    ``write_*`` (a cycle early, which no read can tell: commands do not overlap, and a run
    reads no word it writes later); a command read ANDs the memories' outputs themselves, so
    ``rdata`` holds the word a cycle early and for as long as ``addr`` holds (the command port
    takes it at the same cycle, after ``addr`` has held for three). A buffer of several slices
    has no second write register there either, and C's read address is not registered (its
    reader's latency is 1).

    Parameters
    ----------
    cfg : AccelConfig
    depth : int
        Words per buffer.

    Members
    -------
    host : In(host_signature(8 * max nbytes))
        The command port's reads and writes.
    running : In(1)
        A run owns the ports.
    run_addr : In(range(depth + 1))
        Word the run writes next (the count of words written).
    run_write : Out(1)
        The run writes a word this cycle (``write_c`` or ``write_y`` valid, before the register).
    read_a, read_b, read_x, read_v, read_c : In(read_port_signature(...)), those of
    :func:`read_buffers`
        The run's readers.
    write_c, write_y : In(stream.Signature(unsigned(width), always_ready=True)), as configured
        The run's result words, written at ``run_addr`` one cycle later.
    run_to_x : In(1), with ``RES_TO_X`` (:func:`hw.isa.residual_to_x`) only
        ``write_y``'s words go to X instead (RUN RESIDUAL with ``RES_TO_X``), each lane's low
        bits (the result fits them); set at launch, held through the run.
    coef : Out(stream.Signature(layernorm_coef_layout(cfg.layernorm))), with LayerNorm only
        WRITE_BUFFER COEF words, forwarded to the unit.
    chan : Out(stream.Signature(channel_write_layout(cfg), always_ready=True)), with LINEAR only
        WRITE_BUFFER CHAN words, forwarded to :class:`~hw.channels.ChannelStage`.

    Attributes
    ----------
    data : dict of Buf to BufferStorage
        The memories' storage.

    Latency: a command read's word is in ``host.rdata`` four cycles after ``host.addr``, five
    for :data:`REGISTERED_READS` (iCE40: three); a command write reaches the memory a cycle
    after ``host.wen``, a run write a cycle after ``write_*``, two in a buffer of several
    slices (iCE40: on the same cycle). A reader's word comes :meth:`read_latency` cycles after
    its address. Throughput: one word a cycle per port.
    """

    def __init__(self, cfg, depth):
        self.cfg = cfg
        self.specs = buffer_specs(cfg, depth)
        self.depth = depth
        self.addr_width = max(1, (depth - 1).bit_length())
        self.word_width = 8 * max(s.nbytes for s in self.specs.values())
        self.data = {buf: BufferStorage(spec.width, depth)
                     for buf, spec in self.specs.items()
                     if buf not in (Buf.COEF, Buf.CHAN) and spec.view_of is None}
        ports = {
            "host": In(host_signature(self.word_width)),
            "running": In(1),
            "run_addr": In(range(depth + 1)),
            "run_write": Out(1),
        }
        for buf in read_buffers(self.specs):
            ports[f"read_{buf.name.lower()}"] = In(
                read_port_signature(self.addr_width, self.specs[buf].width))
        for buf in (Buf.C, Buf.Y):
            if buf in self.data:
                ports[f"write_{buf.name.lower()}"] = In(
                    stream.Signature(unsigned(self.specs[buf].width), always_ready=True))
        if residual_to_x(cfg):
            ports["run_to_x"] = In(1)
        if Buf.COEF in self.specs:
            from .layernorm import layernorm_coef_layout
            ports["coef"] = Out(stream.Signature(layernorm_coef_layout(cfg.layernorm)))
        if Buf.CHAN in self.specs:
            from .channels import channel_write_layout
            ports["chan"] = Out(stream.Signature(channel_write_layout(cfg), always_ready=True))
        super().__init__(ports)

    @staticmethod
    def read_latency(buf, platform):
        """Cycles from a reader's address to its word for buffer ``buf`` on ``platform``: 2 for
        :data:`REGISTERED_READS` but on iCE40, 1 otherwise."""
        return 2 if buf in REGISTERED_READS and not is_ice40(platform) else 1

    def elaborate(self, platform):
        m = Module()
        rps, wps = {}, {}
        for buf, storage in self.data.items():
            name = buf.name.lower()
            rps[buf], wps[buf] = [], []
            for k, (_, data) in enumerate(storage.slices):
                mem = Memory(data=data, attrs=uncontended())
                m.submodules[f"buf_{name}" if len(storage.slices) == 1 else f"buf_{name}_{k}"] = mem
                rps[buf].append(mem.read_port())
                wps[buf].append(mem.write_port())
        self._writes(m, platform, wps)
        self._reads(m, platform, rps)
        return m

    def _writes(self, m, platform, wps):
        """The write ports (see the class), and the COEF and CHAN words forwarded."""
        host = self.host

        # Write ports: the run's words while it runs, the command's otherwise, chosen before
        # one register per port (enable, address, data), so that each block RAM's inputs come
        # straight from flip-flops and no select fans out from a flip-flop to every block.
        run_words = {}
        for buf in (Buf.C, Buf.Y):
            port = getattr(self, f"write_{buf.name.lower()}", None)
            if port is not None:
                run_words[buf] = port
        m.d.comb += self.run_write.eq(Cat(*(p.valid for p in run_words.values())).any())
        if residual_to_x(self.cfg):
            # RES_TO_X: Y's words, narrowed lane by lane to X's (the result fits them), go to
            # X, and Y is not written.
            y, to_x = self.write_y, self.run_to_x
            xs, ys = self.specs[Buf.X], self.specs[Buf.Y]
            to_y = stream.Signature(unsigned(ys.width), always_ready=True).create()
            into_x = stream.Signature(unsigned(xs.width), always_ready=True).create()
            m.d.comb += [
                to_y.valid.eq(y.valid & ~to_x), to_y.payload.eq(y.payload),
                into_x.valid.eq(y.valid & to_x),
                into_x.payload.eq(Cat(*(y.payload[i * ys.elem_width:][:xs.elem_width]
                                        for i in range(xs.lanes)))),
            ]
            run_words[Buf.Y], run_words[Buf.X] = to_y, into_x
        # iCE40: no registers (see above).
        write_domain = "comb" if is_ice40(platform) else "sync"
        for buf, ports in wps.items():
            name = buf.name.lower()
            we = Signal(name=f"we_{name}")
            waddr = Signal(self.addr_width, name=f"waddr_{name}")
            wdata = Signal(self.specs[buf].width, name=f"wdata_{name}")
            # The command's buffer select is decoded from its argument, across the die from
            # most block RAMs: it reaches them through this register.
            host_we, host_word = self._host_write(buf)
            if buf in run_words:
                port = run_words[buf]
                m.d[write_domain] += [we.eq(Mux(self.running, port.valid, host_we)),
                                      waddr.eq(Mux(self.running, self.run_addr, host.waddr)),
                                      wdata.eq(Mux(self.running, port.payload, host_word))]
            else:
                m.d[write_domain] += [we.eq(host_we & ~self.running), waddr.eq(host.waddr),
                                      wdata.eq(host_word)]
            self._slice_writes(m, platform, name, ports, we, waddr, wdata)
        if Buf.COEF in self.specs:
            ln = self.cfg.layernorm
            gw = ln.gamma_width * ln.lanes
            m.d.comb += [
                self.coef.valid.eq(host.wen & (host.buf == Buf.COEF.value)),
                self.coef.payload.addr.eq(host.waddr),
                self.coef.payload.gamma.eq(host.wdata[:gw]),
                self.coef.payload.beta.eq(host.wdata[gw:gw + ln.beta_width * ln.lanes]),
            ]
        if Buf.CHAN in self.specs:
            m.d.comb += [
                self.chan.valid.eq(host.wen & (host.buf == Buf.CHAN.value)),
                self.chan.payload.addr.eq(host.waddr),
                self.chan.payload.data.eq(host.wdata),
            ]

    def _host_write(self, buf):
        """A command's write of buffer ``buf``: its enable and word. Through a writable narrow
        view (X_IN) the word's lanes are the view's, each sign-extended into the buffer's."""
        host = self.host
        we, word = host.wen & (host.buf == buf.value), host.wdata
        for view, spec in self.specs.items():
            if spec.view_of == buf and spec.writable:
                extend = self.specs[buf].elem_width - spec.elem_width
                lanes = [host.wdata.word_select(i, spec.elem_width) for i in range(spec.lanes)]
                through = host.buf == view.value
                we = we | (host.wen & through)
                word = Mux(through, Cat(*(Cat(lane, lane[-1].replicate(extend))
                                          for lane in lanes)), word)
        return we, word

    def _slice_writes(self, m, platform, name, ports, we, waddr, wdata):
        """Each slice's write port ``ports[k]`` takes ``we``, ``waddr`` and its bits of
        ``wdata``: straight, for a buffer of one slice or on iCE40; through a second register per
        slice otherwise, enable and address copied, so that no flip-flop's net reaches every
        slice's block RAMs."""
        second = len(ports) > 1 and not is_ice40(platform)
        if not second:
            copies = [(we, waddr)] * len(ports)
        else:
            copies = list(zip(register_word_copies(m, platform, we, len(ports), name=f"we2_{name}"),
                              register_word_copies(m, platform, waddr, len(ports),
                                                   name=f"waddr2_{name}"), strict=True))
        low = 0
        for k, (port, (en, addr)) in enumerate(zip(ports, copies, strict=True)):
            data = wdata[low:low + len(port.data)]
            low += len(port.data)
            if second:
                held = Signal.like(port.data, name=f"wdata2_{name}_{k}")
                m.d.sync += held.eq(data)
                data = held
            m.d.comb += [port.en.eq(en), port.addr.eq(addr), port.data.eq(data)]

    def _reads(self, m, platform, rps):
        """The read ports, addressed by the reader while running, by the command otherwise; the
        command's read-back."""
        host = self.host
        # Each buffer's word, the slices' outputs side by side.
        words = {buf: Cat(*(port.data for port in ports)) for buf, ports in rps.items()}
        # The ports read every cycle (``en`` is left at 1): a reader keeps only the words it
        # asked for, and a command read holds its address for two cycles.
        for buf, ports in rps.items():
            name = buf.name.lower()
            reader = getattr(self, f"read_{name}", None)
            registered = self.read_latency(buf, platform) == 2
            copies = len(ports) if registered else 1
            if reader is None:
                choices = [host.addr[:self.addr_width]] * copies
            else:
                # The select: ``running`` a cycle late, a copy per slice when registered.
                by_reader = register_copies(m, platform, self.running, copies,
                                            name=f"by_reader_{name}")
                choices = [Mux(sel, reader.addr, host.addr)[:self.addr_width] for sel in by_reader]
            if registered:
                # Each slice's address register, a copy of its own.
                addrs = [register_word_copies(m, platform, choice, 1, name=f"raddr_{name}_{k}")[0]
                         for k, choice in enumerate(choices)]
            else:
                addrs = choices * len(ports)
            for port, port_addr in zip(ports, addrs, strict=True):
                m.d.comb += port.addr.eq(port_addr)
            if reader is not None:
                m.d.comb += reader.data.eq(words[buf])

        # The read-back: registered outputs, byte-wise AND with a select flip-flop, OR-tree. A
        # readable narrow view (C_OUT, Y_OUT) is its buffer's registered word, each lane
        # saturated to the view's bits.
        terms, held = [], {}
        for buf, word in words.items():
            held[buf] = Signal(self.specs[buf].width, name=f"held_{buf.name.lower()}")
            m.d["comb" if is_ice40(platform) else "sync"] += held[buf].eq(word)
        for buf, spec in self.specs.items():
            if spec.view_of is not None and spec.readable:
                whole = self.specs[spec.view_of]
                lanes = [held[spec.view_of].word_select(i, whole.elem_width).as_signed()
                         for i in range(spec.lanes)]
                held[buf] = Cat(*(saturate(lane, spec.elem_width)[:spec.elem_width]
                                  for lane in lanes))
        for buf, word in held.items():
            for i in range(0, len(word), 8):
                sel = Signal(name=f"read_sel_{buf.name.lower()}_{i // 8}")
                m.d.sync += sel.eq(host.buf == buf.value)
                byte = word[i:i + 8]
                terms.append(Cat(Const(0, i), byte & sel.replicate(len(byte))))
        m.d.sync += host.rdata.eq(functools.reduce(operator.or_, terms))
