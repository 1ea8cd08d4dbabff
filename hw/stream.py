"""The stream kit: a queue, a credit counter and its room flag, a down-counter and delay lines.

Every stream in intformer is an :class:`amaranth.lib.stream.Signature` and obeys Amaranth's
four rules:

1. a beat transfers on a cycle where ``valid`` and ``ready`` are both high;
2. once ``valid`` is high, ``valid`` and ``payload`` hold until the transfer;
3. ``valid`` never waits for ``ready``;
4. ``ready`` may depend on ``valid``.

The register slice that cuts the ``valid``/``ready`` paths is :class:`hw.skid.SkidBuffer` (on
iCE40 the ``valid`` path only).
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Shape, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .dsp import is_ecp5, is_ice40
from .memory import uncontended

__all__ = ["Queue", "Credits", "queue_room", "Countdown", "delay", "delay_ram"]


class Queue(wiring.Component):
    """A first-in first-out queue of typed beats, over :class:`~amaranth.lib.fifo.SyncFIFOBuffered`.

    The FIFO's ``w_stream`` and ``r_stream`` carry bits; the queue gives them the payload
    ``shape``, so that producers and consumers connect with :func:`wiring.connect` and no
    ``Cat``-packing. Its output is registered (the FIFO's read port), so the consumer's ``ready``
    reaches the FIFO's level logic; put a :class:`~hw.skid.SkidBuffer` behind it where that path
    must be cut.

    On iCE40 (``platform.family == "iCE40"``) the FIFO's storage is marked
    :func:`hw.memory.uncontended`: its read port is enabled only while the storage holds a beat
    and its write port only while it has room, so the two never meet at one address, and the
    collision emulation Yosys would build around the block RAM (a register per bit on its
    write data and a multiplexer on its read data) is left out.

    Latency: 2 cycles from a transfer on ``i`` to ``o.valid`` (1 cycle with ``depth == 1``).
    Throughput: one beat per cycle with ``depth >= 3``; one every other cycle with a depth of 1
    or 2.

    Parameters
    ----------
    shape : shape-like
        The payload shape.
    depth : int
        The number of beats held.
    formal : bool
        Elaborate for a formal proof: the FIFO also gets an asynchronous read port on each row
        of its storage, for ``formal_view``. Never set in hardware.

    Members
    -------
    i : In(stream.Signature(shape))
        Beats in. ``i.ready`` is low while the queue is full.
    o : Out(stream.Signature(shape))
        The same beats, in order.
    level : Out(range(depth + 1))
        The beats held, including the one on ``o``.

    Attributes
    ----------
    formal_view : SimpleNamespace
        Set by ``elaborate``, for the formal proofs (:mod:`formal.views`); no logic of its own.
        ``fifo``, the :class:`~amaranth.lib.fifo.SyncFIFOBuffered`: its output register
        (``r_rdy``, ``r_data``) and ``level``. With ``formal``, also the FIFO's storage (all but
        the output register): ``rows``, each row's word, and ``produce`` and ``consume``, the
        rows written and read next.
    """

    def __init__(self, shape, depth, *, formal=False, lut_ram=False):
        if formal and depth < 2:
            raise ValueError(f"Queue depth must be at least 2 for a formal view, not {depth}")
        self.shape, self.depth, self.formal, self.lut_ram = shape, depth, formal, lut_ram
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self.shape).width
        if self.formal:
            fifo = _FormalFIFO(width=width, depth=self.depth)
        elif self.lut_ram and is_ecp5(platform) and self.depth >= 2:
            fifo = _MarkedFIFO(width=width, depth=self.depth, attrs={"ram_style": "distributed"})
        elif is_ice40(platform) and self.depth >= 2:
            fifo = _MarkedFIFO(width=width, depth=self.depth, attrs=uncontended())
        else:
            fifo = SyncFIFOBuffered(width=width, depth=self.depth)
        m.submodules.fifo = fifo
        m.d.comb += [
            fifo.w_stream.valid.eq(self.i.valid),
            fifo.w_stream.payload.eq(self.i.payload),
            self.i.ready.eq(fifo.w_stream.ready),
            self.o.valid.eq(fifo.r_stream.valid),
            self.o.payload.eq(fifo.r_stream.payload),
            fifo.r_stream.ready.eq(self.o.ready),
            self.level.eq(fifo.level),
        ]
        self.formal_view = SimpleNamespace(fifo=fifo)
        if self.formal:
            self.formal_view.rows = fifo.rows
            self.formal_view.produce, self.formal_view.consume = fifo.produce, fifo.consume
        return m


class _MarkedFIFO(SyncFIFOBuffered):
    """:class:`~amaranth.lib.fifo.SyncFIFOBuffered` (of depth 2 or more) as its own
    ``elaborate`` builds it, with ``attrs`` added to its storage's attributes: LUT RAM
    (``ram_style``, which Yosys' memory mapping reads) or :func:`hw.memory.uncontended` (see
    :class:`Queue`)."""

    def __init__(self, *, width, depth, attrs):
        super().__init__(width=width, depth=depth)
        self.storage_attrs = dict(attrs)

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.submodules.storage.attrs.update(self.storage_attrs)
        return m


class _FormalFIFO(SyncFIFOBuffered):
    """:class:`~amaranth.lib.fifo.SyncFIFOBuffered` (of depth 2 or more) as its own
    ``elaborate`` builds it, with an asynchronous read port added on each row of its storage
    (its submodule ``storage``, an :class:`amaranth.lib.memory.Memory`) for a formal proof:
    ``rows`` (each row's word), and ``produce`` and ``consume`` (the addresses of the storage's
    write and read ports)."""

    def __init__(self, *, width, depth):
        super().__init__(width=width, depth=depth)
        self.rows = [Signal(width, name=f"row{row}") for row in range(depth - 1)]
        self.produce = Signal(range(depth - 1))
        self.consume = Signal(range(depth - 1))

    def elaborate(self, platform):
        m = super().elaborate(platform)
        storage = m.submodules.storage
        (write,), (read,) = storage.write_ports, storage.read_ports
        m.d.comb += [self.produce.eq(write.addr), self.consume.eq(read.addr)]
        for row, word in enumerate(self.rows):
            port = storage.read_port(domain="comb")
            m.d.comb += [port.addr.eq(row), word.eq(port.data)]
        return m


class Credits(wiring.Component):
    """Counts the claimed slots of a queue of ``depth`` entries, with a registered "room" flag.

    A producer whose writes reach the queue a few cycles after it decides to send (a memory read
    in flight, a pipeline) claims a slot when it decides (``take``) and the slot is returned when
    the consumer frees it (``give``). ``room`` is a flip-flop, so the decision is one LUT level
    from it. Either register ``give`` (the consumer's transfer, a cycle late) or leave it out of
    ``room`` (``early_give=False``), so that the consumer's ``ready`` does not reach the flag:
    both only delay a claim, never overfill the queue.

    Latency: ``room`` reflects a ``take`` on the next cycle, and a ``give`` on the next cycle
    (``early_give``) or the one after. Throughput: one claim per cycle while slots are free.

    Parameters
    ----------
    depth : int
        The slots.
    early_give : bool
        Whether ``room`` counts this cycle's ``give`` (``count + take - give < depth``), or only
        its ``take`` (``count + take < depth``).

    Members
    -------
    take : In(1)
        A slot is claimed this cycle.
    give : In(1)
        A slot is freed this cycle.
    count : Out(range(depth + 1))
        The slots claimed, registered.
    room : Out(1)
        At least one slot is free, registered: see ``early_give``.
    """

    def __init__(self, depth, *, early_give=True):
        self.depth, self.early_give = depth, early_give
        super().__init__({
            "take": In(1),
            "give": In(1),
            "count": Out(range(depth + 1)),
            "room": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        count_next = Signal.like(self.count)
        m.d.comb += count_next.eq(self.count + self.take - self.give)
        seen = count_next if self.early_give else self.count + self.take
        m.d.sync += [self.count.eq(count_next), self.room.eq(seen < self.depth)]
        return m


def queue_room(m, queue, push, name):
    """A registered "may push" flag for ``queue``, written a few cycles after ``push`` (a memory
    read issued this cycle): a :class:`Credits` (submodule ``<name>_credits`` of ``m``) that
    counts entries plus reads in flight and leaves this cycle's pop out of the flag, so that
    neither the queue's level nor its reader's ``ready`` reaches the pusher's logic; being stale
    only ever delays a push."""
    m.submodules[f"{name}_credits"] = credits = Credits(queue.depth, early_give=False)
    m.d.comb += [credits.take.eq(push), credits.give.eq(queue.o.valid & queue.o.ready)]
    return credits.room


class Countdown(wiring.Component):
    """A down-counter over the items of a block, ``step`` at a time, with a registered ``last``.

    ``load`` starts a block of ``total`` items; each ``en`` consumes ``step`` of them. ``last`` is
    high while the current step is the block's last (``left <= step``): it is a flip-flop,
    computed when the previous step is taken, so that the logic it drives (a wrap, a ``ready``)
    needs no comparator. ``load`` wins over ``en``; loading on the last ``en`` starts the next
    block back to back. With ``wrap``, the counter keeps the loaded ``total`` and starts the
    next block of the same size by itself on the last ``en``: the inner loop of a loop nest,
    whose enable at the outer level is ``en & last``.

    Latency: ``left`` and ``last`` follow ``load`` or ``en`` on the next cycle. Throughput: one
    step per cycle.

    Parameters
    ----------
    limit : int
        The largest ``total``.
    step : int
        Items consumed per ``en``.
    wrap : bool
        Whether the last ``en`` of a block reloads the last ``total`` loaded.

    Members
    -------
    load : In(1)
        Start a block of ``total`` items (at least 1).
    total : In(range(limit + 1))
        The block's items, read on ``load``.
    en : In(1)
        Take the current step.
    left : Out(range(limit + 1))
        Items left, the current step's included.
    last : Out(1)
        The current step is the block's last: ``left <= step``.

    Attributes
    ----------
    formal_view : SimpleNamespace
        Set by ``elaborate``, for the formal proofs; no logic of its own. With ``wrap``,
        ``period`` and ``period_last``: the block size kept for the next block, and its
        ``last``.
    """

    def __init__(self, limit, step=1, *, wrap=False):
        self.limit, self.step, self.wrap = limit, step, wrap
        super().__init__({
            "load": In(1),
            "total": In(range(limit + 1)),
            "en": In(1),
            "left": Out(range(limit + 1)),
            "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        period = Signal.like(self.total, name="period")           # with wrap: the block size
        period_last = Signal(name="period_last")                  # ... and its first ``last``
        with m.If(self.load):
            m.d.sync += [self.left.eq(self.total), self.last.eq(self.total <= self.step)]
            if self.wrap:
                m.d.sync += [period.eq(self.total), period_last.eq(self.total <= self.step)]
        with m.Elif(self.en):
            if self.wrap:
                with m.If(self.last):
                    m.d.sync += [self.left.eq(period), self.last.eq(period_last)]
                with m.Else():
                    m.d.sync += [self.left.eq(self.left - self.step),
                                 self.last.eq(self.left <= 2 * self.step)]
            else:
                m.d.sync += [self.left.eq(self.left - self.step),
                             self.last.eq(self.left <= 2 * self.step)]
        self.formal_view = SimpleNamespace(period=period, period_last=period_last)
        return m


def delay(m, value, cycles, *, name, shape=None, **kwargs):
    """``value`` delayed by a chain of ``cycles`` registers, added to ``m.d.sync``.

    The registers load on every cycle, or under the caller's ``m.If`` (a pipeline's advance)
    when called inside one. They are named ``{name}_d0``, ``{name}_d1``, ...

    Latency: ``cycles``. Throughput: one value per cycle.

    Parameters
    ----------
    m : Module
        The module the registers go in.
    value : value-like
        The value delayed.
    cycles : int
        Registers in the chain; 0 returns ``value``.
    name : str
        The registers' name prefix.
    shape : shape-like, optional
        The registers' shape; by default that of ``value`` (with its ``init`` and
        ``reset_less`` when it is a signal, as :meth:`Signal.like`).
    **kwargs
        More :class:`Signal` arguments (``reset_less=True`` for data whose valid flag lives
        elsewhere).

    Returns
    -------
    value-like
        ``value``, ``cycles`` cycles later.
    """
    for i in range(cycles):
        if shape is None:
            reg = Signal.like(value, name=f"{name}_d{i}", **kwargs)
        else:
            reg = Signal(shape, name=f"{name}_d{i}", **kwargs)
        m.d.sync += reg.eq(value)
        value = reg
    return value


def delay_ram(m, value, cycles, *, name):
    """``value`` delayed by ``cycles`` cycles (at least 2) in a memory instead of a chain of
    registers: where a register costs a logic cell (iCE40), a block RAM holds the whole line.

    The memory (``cycles`` rounded up to a power of two words, ``ram_style`` block, submodule
    ``{name}_ram``) is written with ``value`` on every cycle at a pointer that steps every cycle
    (``{name}_ptr``), and read ``cycles - 1`` words behind it; the read port's register is the
    last cycle. The read never meets the write's address, so the memory is
    :func:`hw.memory.uncontended`. Nothing in the line is reset: for ``cycles`` cycles after a
    reset it gives what the memory held, so ``value`` must be data whose valid flag travels
    elsewhere, in registers. Unlike :func:`delay`, the line always moves (no enable).

    Latency: ``cycles``. Throughput: one value per cycle.

    Returns
    -------
    Value
        ``value``, ``cycles`` cycles later, of ``value``'s shape.
    """
    if not isinstance(cycles, int) or cycles < 2:
        raise ValueError(f"A delay in memory takes at least 2 cycles, not {cycles!r}")
    value = Value.cast(value)
    depth = 1 << (cycles - 1).bit_length()
    mem = Memory(shape=len(value), depth=depth, init=[],
                 attrs=uncontended({"ram_style": "block"}))
    m.submodules[f"{name}_ram"] = mem
    write, read = mem.write_port(), mem.read_port()
    ptr = Signal(range(depth), name=f"{name}_ptr")
    m.d.sync += ptr.eq(ptr + 1)
    m.d.comb += [write.en.eq(1), write.addr.eq(ptr), write.data.eq(value),
                 read.addr.eq(ptr - (cycles - 1))]
    return read.data.as_signed() if value.shape().signed else read.data
