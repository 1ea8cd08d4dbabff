"""Buffer reader: a buffer walked in three nested loops and delivered as a stream."""

from types import SimpleNamespace

from amaranth.hdl import Module, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .skid import SkidBuffer
from .stream import Countdown, Credits, Queue

__all__ = ["reader_loop_layout", "reader_control_signature", "read_port_signature",
           "BufferReader"]


def reader_loop_layout(addr_width):
    """A walk ``i*si + j*sj + k`` for ``i < count_i, j < count_j, k < count_k`` (k innermost)."""
    aw = addr_width + 1
    return data.StructLayout({"count_i": aw, "count_j": aw, "count_k": aw, "si": aw, "sj": aw})


def reader_control_signature(addr_width):
    """What starts a reader, as its driver sees it: a ``start`` pulse and the ``loop`` of the
    walk (:func:`reader_loop_layout`), which must be set by the cycle after ``start``."""
    return wiring.Signature({"start": Out(1), "loop": Out(reader_loop_layout(addr_width))})


def read_port_signature(addr_width, width):
    """A memory read port as its user sees it: ``addr`` out, ``data`` of that address back a
    cycle later (a synchronous read port that reads every cycle)."""
    return wiring.Signature({"addr": Out(addr_width), "data": In(width)})


class BufferReader(wiring.Component):
    """Reads a buffer as a stream, addresses ``i*si + j*sj + k`` for ``i < I, j < J, k < K``
    (k innermost; I, J, K at least 1), from a memory whose word comes ``latency`` cycles after
    its address.

    ``control.start`` (a one-cycle pulse) empties the queue; the loop bounds and strides
    (``control.loop``), set by then, are loaded the cycle after into the reader's own registers,
    and ``control.loop`` is not read again until the next ``start``: a walk cannot be changed
    once it has begun.

    Everything on the memory's side is registered, for timing: the address is a register
    stepped by one adder (``+1``, or a jump to the next j or i block, kept ready beside it), the
    loops count down to registered "last" flags (:class:`~hw.stream.Countdown`), and the
    decision to read is two flip-flops, the walk's ``active`` and the ``room`` of a
    :class:`~hw.stream.Credits` (slots of the queue neither full nor claimed by a read in
    flight). The memory's output is registered (the block
    RAM's slow clock-to-output ends there), then goes into a small :class:`~hw.stream.Queue`
    (distributed RAM). A register slice (:class:`~hw.skid.SkidBuffer`) follows the queue, so the
    consumer's ``ready`` reaches only the slice's flip-flops.

    Parameters
    ----------
    addr_width : int
        Address bits of the buffer.
    width : int
        Bits of a buffer word.
    latency : int
        Cycles from ``mem.addr`` to the word on ``mem.data``: 1 for a synchronous read port, 2
        behind an address register (:meth:`hw.buffers.Buffers.read_latency`).
    formal : bool
        Elaborate for a formal proof: the queue's storage is shown in ``formal_view`` (see
        :class:`~hw.stream.Queue`). Never set in hardware.

    Members
    -------
    control : In(reader_control_signature(addr_width))
        ``start`` pulse and the walk's ``loop``.
    mem : Out(read_port_signature(addr_width, width))
        The buffer's read port: ``addr`` out, ``data`` in a cycle later.
    o : Out(stream.Signature(unsigned(width)))
        The words, in walk order.

    Latency: 2 cycles from ``start`` to the first read, whose word is on ``o`` ``4 + latency``
    cycles later. Throughput: one word per cycle (the queue covers the credit loop).

    Attributes
    ----------
    formal_view : SimpleNamespace
        Set by ``elaborate``, for the formal proofs (:mod:`formal.kit`); no logic of its own. The
        parts (``fifo``, ``skid``, ``credits``), the reads in flight (``issue``; ``flight``, one
        flag per cycle of the memory's latency, the last of them ``issued``; ``landed`` and
        ``landed_data``, ``consumed``), the walk's state (``load``, ``active``)
        and its registers (``addr``, ``next_j``, ``next_i``, ``si``, ``sj``; the loops' counters
        ``k``, ``j`` and ``i``, each a :class:`~hw.stream.Countdown`).
    """

    #: Entries of the queue behind a memory of latency 1: the reads in flight (issue, memory,
    #: landing register) and the FIFO's own output latency, so that a steady consumer never
    #: waits. Each further cycle of latency adds one (:attr:`depth`).
    DEPTH = 12

    def __init__(self, addr_width, width, *, latency=1, formal=False):
        if not isinstance(latency, int) or latency < 1:
            raise ValueError(f"A memory's read latency is a positive integer, not {latency!r}")
        self.addr_width = addr_width
        self.width = width
        self.latency = latency
        #: Entries of this reader's queue.
        self.depth = self.DEPTH + latency - 1
        self.formal = formal
        super().__init__({
            "control": In(reader_control_signature(addr_width)),
            "mem": Out(read_port_signature(addr_width, width)),
            "o": Out(stream.Signature(unsigned(width))),
        })

    def elaborate(self, platform):
        m = Module()
        start, loop = self.control.start, self.control.loop
        # ``start`` empties the queue, its slice and the credits.
        fifo = ResetInserter(start)(Queue(unsigned(self.width), self.depth, formal=self.formal))
        skid = ResetInserter(start)(SkidBuffer(self.width))
        credits = ResetInserter(start)(Credits(self.depth))
        m.submodules.fifo, m.submodules.skid, m.submodules.credits = fifo, skid, credits
        wiring.connect(m, fifo.o, skid.i)
        wiring.connect(m, skid.o, wiring.flipped(self.o))

        active = Signal()
        load = Signal()
        issue = Signal()        # a read is issued this cycle
        # A read's flag, one cycle further into the memory each: the last is high when its word
        # leaves the memory.
        issued = Signal()       # a word leaves the memory this cycle
        flight = [*(Signal(name=f"flight_{n}") for n in range(self.latency - 1)), issued]
        landed = Signal()       # ... and is in ``landed_data`` this cycle
        landed_data = Signal(self.width)
        consumed = Signal()     # a word left the queue last cycle
        active_next = Signal()
        m.d.comb += [
            fifo.i.valid.eq(landed), fifo.i.payload.eq(landed_data),
            active_next.eq(active),
            credits.take.eq(issue), credits.give.eq(consumed),
            # A read issued on ``start``'s cycle is dropped (``issued``); ``active`` is low after.
            issue.eq(active & credits.room),
        ]
        m.d.sync += [
            flight[0].eq(issue & ~start),
            *(flight[n + 1].eq(flight[n] & ~start) for n in range(self.latency - 1)),
            landed.eq(issued & ~start),
            landed_data.eq(self.mem.data),
            consumed.eq(fifo.o.valid & fifo.o.ready & ~start),
            load.eq(start),
            active.eq(active_next),
        ]

        # The loops count down to registered "last" flags (k and j wrapping), beside the address
        # and its next j and i block starts.
        aw = self.addr_width + 1
        step = issue & ~start
        counts = {}
        for x, wrap in (("k", True), ("j", True), ("i", False)):
            counts[x] = m.submodules[f"{x}_loop"] = Countdown((1 << aw) - 1, wrap=wrap)
            m.d.comb += [counts[x].load.eq(load), counts[x].total.eq(getattr(loop, f"count_{x}"))]
        k, j, i = counts["k"], counts["j"], counts["i"]
        m.d.comb += [k.en.eq(step), j.en.eq(step & k.last), i.en.eq(step & k.last & j.last)]
        si, sj = Signal(aw), Signal(aw)
        addr = Signal(2 * aw)
        next_j = Signal(2 * aw)
        next_i = Signal(2 * aw)
        m.d.comb += self.mem.addr.eq(addr[:self.addr_width])
        with m.If(start):
            m.d.comb += active_next.eq(0)
        with m.Elif(load):
            m.d.comb += active_next.eq(1)
            m.d.sync += [addr.eq(0), next_j.eq(loop.sj), next_i.eq(loop.si),
                         si.eq(loop.si), sj.eq(loop.sj)]
        with m.Elif(issue):
            with m.If(~k.last):
                m.d.sync += addr.eq(addr + 1)
            with m.Elif(~j.last):
                m.d.sync += [addr.eq(next_j), next_j.eq(next_j + sj)]
            with m.Elif(~i.last):
                m.d.sync += [addr.eq(next_i), next_j.eq(next_i + sj), next_i.eq(next_i + si)]
            with m.Else():
                m.d.comb += active_next.eq(0)
        self.formal_view = SimpleNamespace(
            fifo=fifo, skid=skid, credits=credits, issue=issue, flight=flight, issued=issued,
            landed=landed,
            landed_data=landed_data, consumed=consumed, load=load, active=active, addr=addr,
            next_j=next_j, next_i=next_i, si=si, sj=sj, k=k, j=j, i=i)
        return m
