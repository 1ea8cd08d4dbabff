"""GEMM engine: tiles any M x K x N product over the systolic array, with stream ports."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .dsp import is_ice40
from .pe import Flags, drain_layout
from .skid import SkidBuffer
from .stream import Countdown, Queue, delay, delay_ram
from .systolic import SystolicArray

__all__ = ["gemm_cmd_layout", "tile_gap", "GemmEngine"]


def gemm_cmd_layout(gemm_cfg):
    """Layout of a GEMM command: the problem size M, K, N."""
    return data.StructLayout({
        "m": unsigned(bits_for(gemm_cfg.max_m)),
        "k": unsigned(bits_for(gemm_cfg.max_k)),
        "n": unsigned(bits_for(gemm_cfg.max_n)),
    })


def tile_gap(cfg):
    """The fewest cycles between the last operand pairs of consecutive tiles of
    :class:`GemmEngine` for ``cfg``: ``2R - 1``, the drain chain's spacing (row r of a tile
    leaves ``2r`` cycles after row 0); ``2R`` when the requantizer after it is half-rate
    (``cfg.requant.half_rate``), which takes a row every 2 cycles, so that a full tile's rows
    are taken before the next tile's come. At ``2R - 1`` it would fall a cycle behind each full
    tile, until its backlog filled the output queue and the credit held the inputs back, which
    no closed-form cycle count follows; a tile with a K below ``2R`` costs a cycle more
    instead."""
    return 2 * cfg.array.rows - 1 + cfg.requant.half_rate


class GemmEngine(wiring.Component):
    """Computes ``A @ B`` for ``A`` of M x K and ``B`` of K x N, both signed, exactly.

    A command gives M, K and N. The engine then walks the output in tiles of R x C, row tile
    by row tile and, inside one, column tile by column tile. For each tile it takes K operand
    vectors from each input stream, one pair per beat:

    * ``a`` carries ``A[i0:i0+R, k]`` (R lanes; lanes past row M are ignored),
    * ``b`` carries ``B[k, j0:j0+C]`` (C lanes; lanes past column N are treated as zero),

    for k = 0 .. K-1, and it emits the tile's rows on ``out``, one beat per real row
    (rows past M are not emitted), each beat ``C[i, j0:j0+C]`` with zeros past column N. So the
    engine pads ragged edges itself: a producer may send anything in the lanes beyond M or N.

    The command and the operand pairs each pass a register stage on the way in (a command
    register, loaded while empty, and a two-entry skid buffer for the pairs), so that no
    producer's ``valid`` or payload logic meets the sequencer's in one cycle. Inputs are skewed
    (row r by r cycles, column c by c; on iCE40 each row's operand delayed two cycles or more
    in a block RAM, :func:`~hw.stream.delay_ram`, one per row) on their way into the array,
    and the finished tile drains
    up the columns and is de-skewed into rows while the next tile is already accumulating. Rows
    go through an output FIFO of ``3R + C + 8`` rows (one queue per lane, in LUT RAM on ECP5),
    enough for every row in flight at full rate, and a register slice
    (:class:`~hw.skid.SkidBuffer`) after it, so that the sink's ``ready`` reaches only
    flip-flops. A tile starts only when the rows started and not yet
    read out, plus ``2R`` (its own and a margin that lets the check be registered), fit the
    FIFO, so a stalled sink stops the inputs instead of losing results, and the array never
    needs a global clock enable. The sequencer's conditions (``last``, rows/columns left, the
    tile gap, the credit) are registered, and the ones ``fire`` needs are folded into one
    registered flag, so ``fire`` is one logic level from flip-flops.

    Parameters
    ----------
    cfg : AccelConfig
        Uses ``array.rows``, ``array.cols``, ``array.in_width``, ``array.dsp_pairs``,
        ``gemm.max_*`` and ``acc_width``.

    Members
    -------
    cmd : In(stream.Signature(gemm_cmd_layout(cfg.gemm)))
        One GEMM per command, accepted while the command register is empty (one command may
        wait there while the previous one issues its operands). A command with a zero size or a
        size above the configured maximum is consumed, sets ``error`` and does nothing else.
    a : In(stream.Signature(ArrayLayout(signed(in_width), R)))
    b : In(stream.Signature(ArrayLayout(signed(in_width), C)))
        Operand vectors. Both are taken on the same cycle (ready is asserted only when both are
        valid); up to two pairs are taken ahead of the sequencer, into the skid buffer.
    out : Out(stream.Signature(ArrayLayout(signed(acc_width), C)))
        Output rows, in tile order.
    busy : Out(1)
        A command is issuing operands or results are still in flight.
    error : Out(1)
        The last command was malformed.

    Latency: the first operand pair enters the array two cycles after the command is taken;
    row r of a tile is accepted by a ready sink ``2r + C + 7`` cycles after the tile's last
    operand pair enters the array, which is at least one cycle after ``a`` and ``b`` took it
    (:func:`sim.cyclemodel.gemm_cycles` gives whole-problem counts, exact without stalls).
    Throughput: one operand pair (R x C MACs) per cycle while K is at least :func:`tile_gap`
    (``2R - 1``, or ``2R`` with a half-rate requantizer); consecutive tiles finish that many cycles
    apart, so a tile with a smaller K still costs that many cycles.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.rows, self.cols = cfg.array.rows, cfg.array.cols
        self.in_width, self.acc_width = cfg.array.in_width, cfg.acc_width
        #: Output FIFO depth in rows.
        self.fifo_depth = 3 * self.rows + self.cols + 8
        #: Minimum distance, in cycles, between the last operand pairs of consecutive tiles.
        self.tile_gap = tile_gap(cfg)
        #: High when the engine would take an operand pair offered on ``a`` and ``b`` this cycle
        #: (its input register stage has room): a flip-flop, independent of the valids, for a
        #: producer that wants its read enable without the ``valid``/``ready`` loop. Not a port.
        self.pair_ready = Signal()
        super().__init__({
            "cmd": In(stream.Signature(gemm_cmd_layout(cfg.gemm))),
            "a": In(stream.Signature(data.ArrayLayout(signed(self.in_width), self.rows))),
            "b": In(stream.Signature(data.ArrayLayout(signed(self.in_width), self.cols))),
            "out": Out(stream.Signature(data.ArrayLayout(signed(self.acc_width), self.cols))),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        """Build the systolic array, the output queue and the input register stages (the command
        register and the operand pairs' skid buffer), then the sequencer, the array's hookup and the
        output queue's hookup by the methods below, in that order.
        """
        m = Module()
        R, C, g = self.rows, self.cols, self.cfg.gemm

        m.submodules.array = array = SystolicArray(R, C, self.in_width, self.acc_width,
                                                   dsp_pairs=self.cfg.array.dsp_pairs)
        # One queue per output lane, all moving together: each lane's write and read enables
        # come from its own level logic beside it, instead of one enable fanned out to the
        # whole row across the die. On ECP5 they are LUT RAM, read through one register,
        # because a block RAM's read data comes 5.8 ns after the clock.
        lanes = [Queue(signed(self.acc_width), self.fifo_depth, lut_ram=True) for _ in range(C)]
        for c, lane in enumerate(lanes):
            m.submodules[f"fifo{c}"] = lane

        # -- Inputs: the command and the operand pairs each enter through a register stage, so
        # that the producers' valid/payload logic and the sequencer's conditions time separately.
        # The command register is loaded while it is empty; operand pairs go through one skid
        # buffer (both streams are still taken on the same cycle).
        c_valid = Signal()
        c_cmd = Signal.like(self.cmd.payload, name="c_cmd")
        c_k_is_1 = Signal()   # c_cmd.k == 1
        m.d.comb += self.cmd.ready.eq(~c_valid)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [c_valid.eq(1), c_cmd.eq(self.cmd.payload),
                         c_k_is_1.eq(self.cmd.payload.k == 1)]
        m.submodules.operands = operands = SkidBuffer(unsigned((R + C) * self.in_width))
        op_a = data.ArrayLayout(signed(self.in_width), R)(operands.o.payload[:R * self.in_width])
        op_b = data.ArrayLayout(signed(self.in_width), C)(operands.o.payload[R * self.in_width:])
        both = self.a.valid & self.b.valid
        m.d.comb += [
            operands.i.valid.eq(both),
            operands.i.payload.eq(Cat(self.a.payload, self.b.payload)),
            self.a.ready.eq(both & operands.i.ready),
            self.b.ready.eq(both & operands.i.ready),
            self.pair_ready.eq(operands.i.ready),
        ]

        s = SimpleNamespace(platform=platform)
        s.R, s.C, s.g, s.array, s.lanes, s.c_valid, s.c_cmd = R, C, g, array, lanes, c_valid, c_cmd
        s.c_k_is_1, s.operands, s.op_a, s.op_b = c_k_is_1, operands, op_a, op_b
        self._sequencer(m, s)
        self._array_hookup(m, s)
        self._output_queue(m, s)
        return m

    def _sequencer(self, m, s):
        """Build the sequencer that loads a command and walks row tiles, column tiles and k: the
        tile counters, the registered conditions of `fire` (credit in the queue and the gap between
        tiles), and the count of rows occupying the queue.
        """
        g, R, C, c_cmd, c_valid, c_k_is_1 = s.g, s.R, s.C, s.c_cmd, s.c_valid, s.c_k_is_1
        operands = s.operands
        # -- Sequencer: walks row tiles, column tiles and k. ----------------------------------
        running = Signal()
        size_k = Signal(range(g.max_k + 1))
        size_n = Signal(range(g.max_n + 1))
        # Rows from this row tile to the end and columns from this column tile to the end,
        # counted down a tile at a time; their `last` flags mark the final row or column tile.
        m.submodules.rows = rows = Countdown(g.max_m, step=R)
        m.submodules.cols = cols = Countdown(g.max_n, step=C)
        rows_left, cols_left = rows.left, cols.left
        rows_here = Signal(range(R + 1))         # min(rows_left, R)
        k_left = Signal(range(g.max_k))          # operand pairs left in this tile after this one
        first = Signal()                         # the next pair is k = 0 of a tile
        occupied = Signal(range(self.fifo_depth + 1))  # rows started and not yet read out
        since_last = Signal(range(self.tile_gap + 1), init=self.tile_gap)
        # Registered conditions, so that `fire` is one LUT level from flip-flops.
        last = Signal()       # k_left == 0
        k_is_1 = Signal()     # size_k == 1
        gap_ok = Signal(init=1)  # since_last >= tile_gap
        # Their next values, and `ok`, the part of `fire`'s condition they make, registered from
        # them (so that `fire` is running & ok & the operands' valid).
        first_n, last_n, gap_ok_n = Signal(), Signal(), Signal()
        ok = Signal(init=1)
        m.d.comb += [first_n.eq(first), last_n.eq(last), gap_ok_n.eq(gap_ok)]
        m.d.sync += [first.eq(first_n), last.eq(last_n), gap_ok.eq(gap_ok_n)]

        cmd = c_cmd
        bad = ((cmd.m == 0) | (cmd.k == 0) | (cmd.n == 0) |
               (cmd.m > g.max_m) | (cmd.k > g.max_k) | (cmd.n > g.max_n))
        load = c_valid & ~running
        with m.If(load):
            # The sizes load unconditionally (they are unused unless running); only `running`
            # and `error` depend on the command being well formed.
            m.d.sync += [
                c_valid.eq(0),
                self.error.eq(bad), running.eq(~bad),
                size_k.eq(cmd.k), size_n.eq(cmd.n),
                rows_here.eq(Mux(cmd.m >= R, R, cmd.m)),
                k_left.eq(cmd.k - 1), k_is_1.eq(c_k_is_1),
            ]
            m.d.comb += [first_n.eq(1), last_n.eq(c_k_is_1)]

        # The credit check is registered, one cycle stale: rows in flight grow by at most R a
        # cycle, so a margin of 2R keeps it exact-safe and takes the adder out of the `fire` path.
        credit_ok = occupied + 2 * R <= self.fifo_depth
        m.d.sync += ok.eq((~first_n | credit_ok) & (~last_n | gap_ok_n))
        can = running & ok
        fire = Signal()
        m.d.comb += [
            fire.eq(can & operands.o.valid),
            operands.o.ready.eq(fire),
        ]

        # A tile ends: the next column tile, else the next row tile from column 0, else done.
        tile_end = fire & last
        m.d.comb += [
            rows.load.eq(load), rows.total.eq(cmd.m),
            rows.en.eq(tile_end & cols.last & ~rows.last),
            cols.load.eq(load | (tile_end & cols.last)),
            cols.total.eq(Mux(load, cmd.n, size_n)),
            cols.en.eq(tile_end),
        ]
        with m.If(fire):
            m.d.sync += k_left.eq(Mux(last, size_k - 1, k_left - 1))
            m.d.comb += [first_n.eq(last), last_n.eq(Mux(last, k_is_1, k_left == 1))]
        with m.If(tile_end & cols.last):
            with m.If(~rows.last):
                m.d.sync += rows_here.eq(Mux(rows_left >= 2 * R, R, rows_left - R))
            with m.Else():
                m.d.sync += running.eq(0)
        with m.If(fire & last):
            m.d.sync += since_last.eq(1)
            m.d.comb += gap_ok_n.eq(self.tile_gap <= 1)
        with m.Elif(~gap_ok):
            m.d.sync += since_last.eq(since_last + 1)
            m.d.comb += gap_ok_n.eq(since_last + 1 >= self.tile_gap)

        # Rows read out are counted a cycle late (registered), so that the sink's ready does not
        # reach the adder; that only overestimates the count.
        # occ_nz is occupied != 0, registered beside it (from the same terms, without the
        # adder: a tile adds rows_here >= 1, and taken <= occupied), so that ``busy`` is an OR
        # of flip-flops.
        taken = Signal()
        occ_nz = Signal()
        m.d.sync += [
            taken.eq(self.out.valid & self.out.ready),
            occupied.eq(occupied + Mux(fire & first, rows_here, 0) - taken),
            occ_nz.eq((fire & first) | Mux(taken, occupied > 1, occupied != 0)),
        ]
        s.running, s.rows_left, s.cols_left, s.first = running, rows_left, cols_left, first
        s.last, s.fire, s.occ_nz = last, fire, occ_nz

    def _array_hookup(self, m, s):
        """Build the skew of the operands and flags into the systolic array: row r's operand and
        flags delayed r cycles, column c's operand (zero past the last column) delayed c cycles.
        """
        R, fire, rows_left, first, last, array = s.R, s.fire, s.rows_left, s.first, s.last, s.array
        op_a, C, cols_left, op_b = s.op_a, s.C, s.cols_left, s.op_b
        # -- Skew into the array. --------------------------------------------------------------
        for r in range(R):
            flags = Signal(Flags, name=f"flags_{r}")
            m.d.comb += [
                flags.valid.eq(fire & (rows_left > r)),
                flags.first.eq(first),
                flags.last.eq(last),
            ]
            if is_ice40(s.platform) and r >= 2:
                a = delay_ram(m, op_a[r], r, name=f"a{r}")
            else:
                a = delay(m, op_a[r], r, shape=signed(self.in_width), name=f"a{r}")
            m.d.comb += [
                array.a[r].eq(a),
                array.flags[r].eq(delay(m, flags, r, shape=Flags, name=f"f{r}")),
            ]
        for c in range(C):
            lane = Mux(cols_left > c, op_b[c], 0)
            m.d.comb += array.b[c].eq(delay(m, lane, c, shape=signed(self.in_width),
                                                   name=f"b{c}"))

    def _output_queue(self, m, s):
        """Build the de-skew of the array's drain into rows, the lane queues they enter, the
        register slice that drives `out` from them, and `busy`.
        """
        array, C, lanes, c_valid, running = s.array, s.C, s.lanes, s.c_valid, s.running
        occ_nz = s.occ_nz
        # -- De-skew the drain into rows and queue them. ---------------------------------------
        aligned = [delay(m, array.drain[c], C - 1 - c, shape=drain_layout(self.acc_width),
                         name=f"d{c}") for c in range(C)]
        # The credit check leaves the queues room for every row, so their `i.ready` is not
        # needed; they take and give the same beats, so lane 0's `o.valid` stands for all. A
        # register slice after them: their read enable is its registered ready, so the sink's
        # ready (and whatever logic makes it) never reaches the queues' level logic.
        m.submodules.out_skid = out_skid = SkidBuffer(self.out.payload.shape())
        m.d.comb += self.busy.eq(c_valid | running | occ_nz)
        for lane, slot in zip(lanes, aligned, strict=True):
            m.d.comb += [
                lane.i.valid.eq(aligned[0].valid),
                lane.i.payload.eq(slot.data),
                lane.o.ready.eq(out_skid.i.ready),
            ]
        m.d.comb += [
            out_skid.i.valid.eq(lanes[0].o.valid),
            out_skid.i.payload.eq(Cat(*(lane.o.payload for lane in lanes))),
        ]
        wiring.connect(m, out_skid.o, wiring.flipped(self.out))
