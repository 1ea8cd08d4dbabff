"""The top's buffers: their memories, who writes each one, who reads it, and the read-back."""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out

from .dsp import is_ice40
from .isa import Buf, buffer_specs, residual_to_x
from .memory import uncontended
from .reader import read_port_signature

__all__ = ["READ_BUFFERS", "read_buffers", "host_signature", "Buffers"]

#: The buffers a run may read through a :class:`~hw.reader.BufferReader`, in port order: the
#: operands (A, B, X, V), and C, which an accumulating ``RUN LINEAR`` reads ahead of its writes
#: (:class:`hw.isa.LinMode`).
READ_BUFFERS = (Buf.A, Buf.B, Buf.X, Buf.V, Buf.C)


def read_buffers(specs):
    """The buffers of :data:`READ_BUFFERS` that a top of buffer specs ``specs``
    (:func:`hw.isa.buffer_specs`) reads through a reader: those it has, C only with LINEAR (its
    CHAN buffer)."""
    return tuple(buf for buf in READ_BUFFERS
                 if buf in specs and (buf != Buf.C or Buf.CHAN in specs))


def host_signature(word_width):
    """The command port's access to the buffers, as the command port sees it: ``buf`` and
    ``addr`` select a word to read (``rdata``, four cycles after the address; three on iCE40,
    see :class:`Buffers`), ``wen`` writes ``wdata`` to word ``waddr`` of ``buf``."""
    return wiring.Signature({
        "buf": Out(8), "addr": Out(17), "rdata": In(word_width),
        "wen": Out(1), "waddr": Out(17), "wdata": Out(word_width),
    })


class Buffers(wiring.Component):
    """The buffers of :class:`hw.top.Accelerator` (all of :func:`hw.isa.buffer_specs` but COEF
    and CHAN, which the LayerNorm unit and :class:`~hw.channels.ChannelStage` hold, and whose
    writes this component forwards): one
    :class:`~amaranth.lib.memory.Memory` each, named ``buf_<name>``, with one read port and one
    write port.

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
    the read ports' selects are copies of ``running`` a cycle late, one per memory. Readers
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
    takes it at the same cycle, after ``addr`` has held for three).

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
    data : dict of Buf to MemoryData
        The memories' storage.

    Latency: a command read's word is in ``host.rdata`` four cycles after ``host.addr`` (iCE40:
    three); a command write reaches the memory a cycle after ``host.wen``, a run write a cycle
    after ``write_*`` (iCE40: on the same cycle). Throughput: one word a cycle per port.
    """

    def __init__(self, cfg, depth):
        self.cfg = cfg
        self.specs = buffer_specs(cfg, depth)
        self.depth = depth
        self.addr_width = max(1, (depth - 1).bit_length())
        self.word_width = 8 * max(s.nbytes for s in self.specs.values())
        self.data = {buf: MemoryData(shape=unsigned(spec.width), depth=depth, init=[])
                     for buf, spec in self.specs.items() if buf not in (Buf.COEF, Buf.CHAN)}
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

    def elaborate(self, platform):
        m = Module()
        host = self.host
        rps, wps = {}, {}
        for buf, storage in self.data.items():
            mem = Memory(data=storage, attrs=uncontended())
            m.submodules[f"buf_{buf.name.lower()}"] = mem
            rps[buf], wps[buf] = mem.read_port(), mem.write_port()

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
        for buf, wp in wps.items():
            name = buf.name.lower()
            we = Signal(name=f"we_{name}")
            waddr = Signal.like(wp.addr, name=f"waddr_{name}")
            wdata = Signal.like(wp.data, name=f"wdata_{name}")
            # The command's buffer select is decoded from its argument, across the die from
            # most block RAMs: it reaches them through this register.
            host_we = host.wen & (host.buf == buf.value)
            if buf in run_words:
                port = run_words[buf]
                m.d[write_domain] += [we.eq(Mux(self.running, port.valid, host_we)),
                                      waddr.eq(Mux(self.running, self.run_addr, host.waddr)),
                                      wdata.eq(Mux(self.running, port.payload, host.wdata))]
            else:
                m.d[write_domain] += [we.eq(host_we & ~self.running), waddr.eq(host.waddr),
                                      wdata.eq(host.wdata)]
            m.d.comb += [wp.en.eq(we), wp.addr.eq(waddr), wp.data.eq(wdata)]
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

        # Read ports: addressed by the reader while running, by the command otherwise. They
        # read every cycle (``en`` is left at 1): a reader keeps only the words it asked for,
        # and a command read holds its address for two cycles.
        for buf, rp in rps.items():
            reader = getattr(self, f"read_{buf.name.lower()}", None)
            if reader is not None:
                by_reader = Signal(name=f"by_reader_{buf.name.lower()}")
                m.d.sync += by_reader.eq(self.running)
                m.d.comb += [rp.addr.eq(Mux(by_reader, reader.addr, host.addr)),
                             reader.data.eq(rp.data)]
            else:
                m.d.comb += rp.addr.eq(host.addr)

        # The read-back: registered outputs, byte-wise AND with a select flip-flop, OR-tree.
        terms = []
        for buf, rp in rps.items():
            held = Signal.like(rp.data, name=f"held_{buf.name.lower()}")
            m.d["comb" if is_ice40(platform) else "sync"] += held.eq(rp.data)
            for i in range(0, len(held), 8):
                sel = Signal(name=f"read_sel_{buf.name.lower()}_{i // 8}")
                m.d.sync += sel.eq(host.buf == buf.value)
                byte = held[i:i + 8]
                terms.append(Cat(Const(0, i), byte & sel.replicate(len(byte))))
        m.d.sync += host.rdata.eq(functools.reduce(operator.or_, terms))
        return m
