"""The attention controller's output walker: the engine's rows, QK into the score buffer and PV
out on ``rows``."""

from amaranth.hdl import Mux, Signal

from .jobs import Jobs, job_shape

__all__ = ["build_output_walker"]


def build_output_walker(ctl, m, ns):
    """Builds the output walker: it follows the jobs a second time, in the engine's output
    order, routing QK rows into the score buffer (setting its half's full flag at a job's
    end) and PV rows to the ``rows`` stream, and ends the head after the last PV row."""
    R, C, LT, e_out = ctl.R, ctl.C, ctl.len_tiles, ctl.gemm_out
    (hd, nb, kdim, running, smem, run_start, s_set, head) = (
        ns.hd, ns.nb, ns.kdim, ns.running, ns.smem, ns.run_start, ns.s_set, ns.head)
    # -- OUTPUT WALKER: routes the engine's rows, QK to the score buffer, PV onwards. ------
    # The job shape is stale for a cycle after each move, so the walker's flags compare
    # against it rather than being loaded from it: the last row of a tile is
    # ``o_r == rows - 1``; the last tile is ``n <= C`` on a job's first tile and a flag
    # counted down from N after that.
    jo = Jobs("out", ctl.blocks, R)
    osh = job_shape(ctl, m, jo, hd, nb, "out")
    o_half = jo.block[0]
    o_r = Signal(range(R))
    o_t = Signal(range(max(LT, ctl.dim_tiles) + 1))
    o_roff = Signal(range(R * LT + 1))                        # o_r * LT
    o_first = Signal()                                        # on the job's first tile
    o_left = Signal(kdim)                # columns after this tile (valid unless o_first)
    o_last_r = Signal()                  # o_left <= C
    o_rlast = o_r == osh["rows_m1"]
    o_tlast = Mux(o_first, osh["n_le_c"], o_last_r)
    s_wr = smem.write_port()
    is_qk = jo.kind == Jobs.QK
    # o_go = running & jo.fresh, as one flip-flop: it gates the engine's output ready, which
    # reaches the engine's output register slice. Both fall on the walker's moves.
    o_go = Signal()
    m.d.comb += [
        s_wr.addr.eq(Mux(o_half, R * LT, 0) + o_roff + o_t),
        s_wr.en.eq(o_go & e_out.valid & is_qk),
        e_out.ready.eq(o_go & (is_qk | ctl.rows.ready)),
    ]
    for c in range(C):   # scores fit the score width (the engine's may be wider)
        m.d.comb += s_wr.data[c].eq(e_out.payload[c])
    m.d.comb += [ctl.rows.valid.eq(o_go & e_out.valid & ~is_qk),
                 ctl.rows.payload.eq(e_out.payload)]
    m.d.sync += o_go.eq(running)
    with m.If(run_start):
        m.d.sync += [*jo.reset(), o_r.eq(0), o_roff.eq(0), o_t.eq(0), o_first.eq(1)]
    with m.Elif(e_out.valid & e_out.ready):
        with m.If(o_rlast):
            cols = Mux(o_first, osh["n"], o_left) - C
            m.d.sync += [o_r.eq(0), o_roff.eq(0), o_t.eq(o_t + 1), o_first.eq(0),
                         o_left.eq(cols), o_last_r.eq(cols <= C)]
            with m.If(o_tlast):
                m.d.sync += [o_t.eq(0), o_first.eq(1), o_go.eq(0), *jo.advance()]
                with m.If(is_qk):
                    m.d.comb += s_set.eq(Mux(o_half, 0b10, 0b01))
                with m.If(~is_qk & jo.final):
                    m.d.sync += [running.eq(0), head.eq(0)]   # the head's last row
        with m.Else():
            m.d.sync += [o_r.eq(o_r + 1), o_roff.eq(o_roff + LT)]
