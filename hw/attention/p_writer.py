"""The attention controller's P writer: the softmax's probabilities into the P rows."""

from amaranth.hdl import Mux, Signal
from amaranth.lib import wiring

from ..stream import Countdown, Queue

__all__ = ["build_p_writer"]


def build_p_writer(ctl, m, ns):
    """Builds the P writer: a three-entry FIFO after the softmax output, and the walk that
    writes its probabilities into P half b%2, row r into memory r, setting the half's full
    flag after a block's last row."""
    R, Lmax, sm_o = ctl.R, ctl.max_len, ctl.softmax_o
    (pmem, run_start, running, L, row_beats, hd, p_set, p_full) = (
        ns.pmem, ns.run_start, ns.running, ns.L, ns.row_beats, ns.hd, ns.p_set, ns.p_full)
    # -- P WRITER: probabilities into P half b%2, row r into memory r. ---------------------
    # The last beat of a row and the last row of a block are registered flags.
    w_block = Signal(range(ctl.blocks + 1))
    w_left = Signal(range(Lmax + 1))        # rows from this block to the end
    w_rows_m1 = Signal(range(R))            # min(w_left, R) - 1
    w_half = w_block[0]
    w_r = Signal(range(R))
    w_u = Signal(range(ctl.p_words + 1))
    # The beats of a row, repeated for every row.
    m.submodules.p_beats = beats = Countdown(ctl.p_words, wrap=True)
    w_ulast = beats.last
    m.submodules.p_fifo = p_fifo = Queue(sm_o.payload.shape(), ctl.P_DEPTH)
    wiring.connect(m, wiring.flipped(sm_o), p_fifo.i)
    p_ready = Signal()
    p_take = Signal()
    m.d.comb += [
        p_ready.eq(running & ~p_full.bit_select(w_half, 1)),
        p_fifo.o.ready.eq(p_ready),
        p_take.eq(p_fifo.o.valid & p_ready),
        beats.load.eq(run_start), beats.total.eq(row_beats), beats.en.eq(p_take),
    ]
    for r, mem in enumerate(pmem):
        wr = mem.write_port()
        m.d.comb += [
            wr.addr.eq(Mux(w_half, ctl.p_words, 0) + w_u),
            wr.data.eq(p_fifo.o.payload),
            wr.en.eq(p_take & (w_r == r)),
        ]
    with m.If(run_start):
        m.d.sync += [w_block.eq(0), w_left.eq(L), w_rows_m1.eq(Mux(L >= R, R - 1, hd.L_m1)),
                     w_r.eq(0), w_u.eq(0)]
    with m.Elif(p_take):
        with m.If(w_ulast):
            m.d.sync += w_u.eq(0)
            with m.If(w_r == w_rows_m1):
                m.d.sync += [w_r.eq(0), w_block.eq(w_block + 1), w_left.eq(w_left - R),
                             w_rows_m1.eq(Mux(w_left >= 2 * R, R - 1, w_left - (R + 1)))]
                m.d.comb += p_set.eq(Mux(w_half, 0b10, 0b01))
            with m.Else():
                m.d.sync += w_r.eq(w_r + 1)
        with m.Else():
            m.d.sync += w_u.eq(w_u + 1)
