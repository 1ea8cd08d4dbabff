"""RUN LINEAR's per-channel constants: a bias, a multiplier and a shift per output column,
attached to the rows on their way into the requantizer."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .dispatch import engine_config
from .isa import Buf, buffer_specs, channel_shift_width, channel_tiles
from .memory import uncontended
from .requant import lane_beat_layout
from .stream import Countdown

__all__ = ["requant_width", "channel_write_layout", "ChannelStage"]


def requant_width(cfg):
    """The input width of the top's requantizer: the engine's accumulators, one bit wider with
    LINEAR (the sum of an accumulator and an ``acc_width``-bit bias never wraps)."""
    return engine_config(cfg).acc_width + (1 if cfg.linear.enabled else 0)


def channel_write_layout(cfg):
    """A ``WRITE_BUFFER CHAN`` word, as :class:`hw.buffers.Buffers` forwards it: its address
    and its bits."""
    spec = buffer_specs(cfg, 1)[Buf.CHAN]
    return data.StructLayout({"addr": range(spec.depth), "data": unsigned(spec.width)})


class ChannelStage(wiring.Component):
    """Attaches RUN LINEAR's per-channel constants to the rows bound for the requantizer.

    Holds the CHAN buffer (``3*T`` words of C lanes, :func:`hw.isa.channel_tiles`), written
    through ``write``, as one memory of ``T`` rows, each row the biases, multipliers and
    shifts of one column tile (a write enables one of the row's three parts). During a LINEAR
    run it follows the engine's output order (row tile of R rows, column tile of C columns,
    row: ``M`` and ``N`` from the registers) and reads the row of the current column tile;
    each row ``acc`` leaves as ``acc[j] + bias[j]`` (the bias added at the drain, before the
    requantizer: the same integers as a preload into the accumulator), with each lane's
    multiplier and shift. Other runs' rows pass with a bias of 0 and the ``multiplier`` and
    ``shift`` inputs in every lane.

    A bias lane is read in its low ``acc_width`` bits (two's complement), a multiplier lane in
    its low ``mult_width`` bits and a shift lane in its low
    :func:`hw.isa.channel_shift_width` bits (the host checks the values). The sum is one bit
    wider than the engine's accumulator (:func:`requant_width`), so it never wraps.

    The tile counters reload from ``M`` and ``N`` while no run is in progress (``running``
    low) and count the rows of a LINEAR run; the run's registers do not change while it runs.

    Parameters
    ----------
    cfg : AccelConfig
        With ``linear.enabled``.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(engine acc_width), C)))
        Rows of the engine (or of attention), in its output order.
    o : Out(stream.Signature(lane_beat_layout(C, requant_width(cfg), mult_width)))
        The requantizer's beats.
    write : In(stream.Signature(channel_write_layout(cfg), always_ready=True))
        CHAN words from the command port.
    linear, running : In(1)
        The run is LINEAR (for the handshake and the tile walk); a run is in progress.
    linear_lanes : In(2)
        Copies of ``linear`` (:func:`hw.fanout.register_copies`) for the first and the second
        half of the lanes' constants, so that no one select net reaches every lane.
    m, n : In(range(max_m + 1)), In(range(max_n + 1))
        The GEMM shape registers.
    multiplier, shift : In(unsigned(mult_width)), In(range(requant_width + mult_width))
        The constants of the other runs.

    Latency: none (combinational) for a row; the constants of the next column tile are ready
    2 cycles after the last row of a tile is taken (a bubble of 2 cycles per column tile:
    the memory's read, then a register after it). A write reaches the memory a cycle after it
    is offered. Throughput: one row per cycle within a tile.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        C = cfg.array.cols
        self.tiles = channel_tiles(cfg)
        self.elem = buffer_specs(cfg, 1)[Buf.CHAN].elem_width
        rq_w, mw = requant_width(cfg), cfg.requant.mult_width
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(engine_config(cfg).acc_width), C))),
            "o": Out(stream.Signature(lane_beat_layout(C, rq_w, mw))),
            "write": In(stream.Signature(channel_write_layout(cfg), always_ready=True)),
            "linear": In(1),
            "linear_lanes": In(2),
            "running": In(1),
            "m": In(range(cfg.gemm.max_m + 1)),
            "n": In(range(cfg.gemm.max_n + 1)),
            "multiplier": In(unsigned(mw)),
            "shift": In(range(rq_w + mw)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, T, C = self.cfg, self.tiles, self.cfg.array.cols
        part = C * self.elem
        # In block RAM even where it is shallow enough for LUT RAM (32 rows at 8x8, where Yosys
        # chose it): as LUT RAM a row of 3 * part bits is hundreds of cells across the die, all
        # on one read address.
        mem = Memory(shape=unsigned(3 * part), depth=T, init=[],
                     attrs=uncontended({"ram_style": "block"}))
        m.submodules.table = mem
        # The command's write, registered: which third of a row (biases, multipliers, shifts),
        # and the row.
        wp = mem.write_port(granularity=part)
        w = self.write.payload
        sel = Signal(3)
        row = Signal(range(T))
        wdata = Signal(part)
        m.d.sync += [
            sel.eq(Mux(self.write.valid, Mux(w.addr >= 2 * T, 0b100,
                                             Mux(w.addr >= T, 0b010, 0b001)), 0)),
            row.eq(Mux(w.addr >= 2 * T, w.addr - 2 * T, Mux(w.addr >= T, w.addr - T, w.addr))),
            wdata.eq(w.data),
        ]
        m.d.comb += [wp.en.eq(sel), wp.addr.eq(row), wp.data.eq(wdata.replicate(3))]

        # The column tile of the row on ``i``, and its constants: read (the memory reads every
        # cycle), then registered, but held while a beat waits on ``o`` (so that a write then
        # cannot change the beat offered). ``changed`` marks the 2 cycles after the tile
        # changes, while the new tile's constants are read and registered.
        tile = Signal(range(T))
        rp = mem.read_port()
        words = Signal(3 * part, reset_less=True)
        m.d.comb += rp.addr.eq(tile)
        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += words.eq(rp.data)
        changed = [Signal(name=f"changed_{k}") for k in (1, 2)]
        m.d.sync += changed[1].eq(changed[0])
        take = self.i.valid & self.i.ready
        tile_end = self._walk(m, tile, take & self.linear)
        m.d.sync += changed[0].eq(tile_end)

        # ``ok``, from a flip-flop: a beat may pass (not LINEAR, or neither ``changed`` flag
        # set, so the tile's constants are in ``words``); the flags a cycle ahead are
        # ``tile_end`` and ``changed[0]``. ``linear`` holds during a run and changes only
        # between runs, when no beat waits.
        ok = Signal(init=1)
        m.d.sync += ok.eq((~tile_end & ~changed[0]) | ~self.linear)
        m.d.comb += [self.o.valid.eq(self.i.valid & ok), self.i.ready.eq(self.o.ready & ok)]
        lanes = data.ArrayLayout(signed(self.elem), 3 * C)(words)
        sw = channel_shift_width(cfg)
        mw = cfg.requant.mult_width
        beat = self.o.payload
        for j in range(C):
            bias = lanes[j][:cfg.acc_width].as_signed()
            mult, shift = lanes[C + j], lanes[2 * C + j]
            linear = self.linear_lanes[2 * j // C]
            m.d.comb += [
                beat.acc[j].eq(self.i.payload[j] + Mux(linear, bias, 0)),
                beat.multiplier[j].eq(Mux(linear, mult.as_unsigned()[:mw], self.multiplier)),
                beat.shift[j].eq(Mux(linear, shift.as_unsigned()[:sw], self.shift)),
            ]
        return m

    def _walk(self, m, tile, step):
        """The engine's output walk: row tile, column tile, row. Reloaded from ``m`` and ``n``
        while no run is in progress; ``step`` takes a row. Returns "a tile's last row is taken
        this cycle"."""
        R, C, g = self.cfg.array.rows, self.cfg.array.cols, self.cfg.gemm
        rows = m.submodules.rows = Countdown(g.max_m, step=R)   # rows from this row tile on
        cols = m.submodules.cols = Countdown(g.max_n, step=C)   # columns from this tile on
        here = m.submodules.here = Countdown(R)                 # rows left in this tile

        def up_to_r(value):
            return Mux(value >= R, R, value)

        idle = ~self.running
        tile_end = step & here.last
        next_row_tile = tile_end & cols.last
        m.d.comb += [
            rows.load.eq(idle), rows.total.eq(self.m), rows.en.eq(next_row_tile),
            cols.load.eq(idle | next_row_tile), cols.total.eq(self.n),
            cols.en.eq(tile_end),
            here.load.eq(idle | tile_end), here.en.eq(step),
            here.total.eq(Mux(idle, up_to_r(self.m),
                              Mux(cols.last, up_to_r(rows.left - R), up_to_r(rows.left)))),
        ]
        with m.If(idle | next_row_tile):
            m.d.sync += tile.eq(0)
        with m.Elif(tile_end):
            m.d.sync += tile.eq(tile + 1)
        return tile_end
