"""The attention controller's softmax feeder: score rows read from the score buffer, masked, and
serialized into the softmax."""

from amaranth.hdl import Const, Mux, Signal, signed
from amaranth.lib import data

from ..stream import Queue, queue_room

__all__ = ["build_softmax_feeder", "build_serializer"]


def build_softmax_feeder(ctl, m, ns):
    """Builds the softmax feeder's reader: it waits for a full score half, walks its rows and
    tiles, computes each word's mask (causal, and keys past ``hd.keys``) and row-end flags, and
    queues the registered scores with that metadata in the score FIFO, clearing the half after
    its last row."""
    R, C, sl, Lmax, LT = ctl.R, ctl.C, ctl.sl, ctl.max_len, ctl.len_tiles
    (smem, run_start, causal, L, hd, running, s_full, s_clr, nb) = (
        ns.smem, ns.run_start, ns.causal, ns.L, ns.hd, ns.running, ns.s_full, ns.s_clr, ns.nb)
    # -- SOFTMAX FEEDER: reads a block's score rows, masks, serializes into the softmax. ---
    # Beside the row and tile counters it keeps ``L - col``, ``lim - col`` and ``keys - col``
    # (col the tile's first column, lim the row's last column the causal mask leaves, keys the
    # keys every row sees), so that the masks and the end of a row are comparisons with
    # constants.
    groups = C // sl
    f_block = Signal(range(ctl.blocks + 1))
    f_more = Signal()                       # f_block < nb
    f_base = Signal(range(ctl.blocks * R + 1))
    f_left = Signal(range(Lmax + 1))        # rows from this block to the end
    f_rows_m1 = Signal(range(R))            # min(f_left, R) - 1
    f_half = f_block[0]
    f_r = Signal(range(R))
    f_t = Signal(range(LT + 1))
    f_roff = Signal(range(R * LT + 1))      # f_r * LT
    f_lim = Signal(range(ctl.blocks * R + R + 1))                    # f_base + f_r
    f_rem = Signal(range(-C, Lmax + 1))                               # L - col
    f_rel = Signal(range(-(LT * C) - C, ctl.blocks * R + R + 1))     # lim - col
    f_krem = Signal(range(-(LT * C) - C, Lmax + 1))                  # keys - col
    f_tlast = Signal()                      # f_rem <= C
    f_busy = Signal()
    meta = data.StructLayout({"mask": C, "keep": groups})
    scores = data.StructLayout({"word": data.ArrayLayout(signed(ctl.acc_width), C),
                                "meta": meta})
    m.submodules.s_fifo = s_fifo = Queue(scores, ctl.SCORE_DEPTH)
    s_rd = smem.read_port()
    f_issue = Signal()
    f_issue_d = Signal()
    f_meta = Signal(meta)
    f_meta_d = Signal(meta)
    m.d.sync += f_issue_d.eq(f_issue)
    f_room = queue_room(m, s_fifo, f_issue, "s")
    m.d.comb += [
        f_issue.eq(f_busy & f_room),
        s_rd.addr.eq(Mux(f_half, R * LT, 0) + f_roff + f_t),
    ]
    for c in range(C):   # column col + c is masked when col + c > lim or col + c >= keys
        m.d.comb += f_meta.mask[c].eq((causal & (f_rel < c)) | (f_krem <= c))
    for g in range(groups):   # sub-beat g is in the row: the first, then while L - col > g*sl
        m.d.comb += f_meta.keep[g].eq(1 if g == 0 else f_rem > g * sl)
    m.d.sync += f_meta_d.eq(f_meta)
    with m.If(run_start):
        m.d.sync += [f_block.eq(0), f_more.eq(1), f_base.eq(0), f_left.eq(L),
                     f_rows_m1.eq(Mux(L >= R, R - 1, hd.L_m1)), f_busy.eq(0)]
    with m.Elif(running & ~f_busy & f_more & s_full.bit_select(f_half, 1)):
        m.d.sync += [f_busy.eq(1), f_r.eq(0), f_roff.eq(0), f_t.eq(0), f_lim.eq(f_base),
                     f_rem.eq(L), f_rel.eq(f_base), f_krem.eq(hd.keys), f_tlast.eq(hd.L_le_c)]
    with m.If(f_issue):
        with m.If(f_tlast):
            m.d.sync += [f_t.eq(0), f_r.eq(f_r + 1), f_roff.eq(f_roff + LT),
                         f_lim.eq(f_lim + 1), f_rem.eq(L), f_rel.eq(f_lim + 1),
                         f_krem.eq(hd.keys), f_tlast.eq(hd.L_le_c)]
            with m.If(f_r == f_rows_m1):
                m.d.sync += [f_busy.eq(0), f_block.eq(f_block + 1), f_more.eq(f_block + 1 < nb),
                             f_base.eq(f_base + R), f_left.eq(f_left - R),
                             f_rows_m1.eq(Mux(f_left >= 2 * R, R - 1, f_left - (R + 1)))]
                m.d.comb += s_clr.eq(Mux(f_half, 0b10, 0b01))
        with m.Else():
            m.d.sync += [f_t.eq(f_t + 1), f_rem.eq(f_rem - C), f_rel.eq(f_rel - C),
                         f_krem.eq(f_krem - C), f_tlast.eq(f_rem <= 2 * C)]
    # The scores are registered between the block RAM and the FIFO's distributed RAM (the
    # block RAM's clock-to-output is most of a cycle); the room counter covers the extra
    # word in flight.
    f_issue_dd = Signal()
    f_meta_dd = Signal(meta)
    s_word_d = Signal.like(s_rd.data)
    m.d.sync += [f_issue_dd.eq(f_issue_d), f_meta_dd.eq(f_meta_d), s_word_d.eq(s_rd.data)]
    m.d.comb += [
        s_fifo.i.valid.eq(f_issue_dd),
        s_fifo.i.payload.word.eq(s_word_d),
        s_fifo.i.payload.meta.eq(f_meta_dd),
    ]
    vars(ns).update(groups=groups, s_fifo=s_fifo)


def build_serializer(ctl, m, ns):
    """Builds the serializer: a shift register of the score FIFO's word, ``sl`` lanes a
    sub-beat, whose first sub-beat is the softmax input. A word is loaded with its masked
    lanes replaced by the most negative score, and only its sub-beats in the row (``keep``,
    a prefix); it is loaded when the register holds at most one sub-beat and that one
    leaves, so a word follows the last without a gap. Each register bit takes its load or
    its shift through one LUT, and no sub-beat counter selects among the lanes (timing)."""
    sl, sw, sm_i = ctl.sl, ctl.sm_cfg.in_width, ctl.softmax_i
    groups, s_fifo = ns.groups, ns.s_fifo
    word, w_meta = s_fifo.o.payload.word, s_fifo.o.payload.meta
    masked_min = Const(-(1 << (sw - 1)), signed(sw))
    sub = data.ArrayLayout(sm_i.payload.shape(), groups)
    held, held_ok = Signal(sub), Signal(groups)     # sub-beats, and which are in the row
    advance = Signal()                              # the first sub-beat is empty or leaves
    one_left = ~held_ok[1] if groups > 1 else 1     # held_ok is a prefix
    m.d.comb += [
        advance.eq(~held_ok[0] | sm_i.ready),
        s_fifo.o.ready.eq(advance & one_left),
        sm_i.valid.eq(held_ok[0]),
        sm_i.payload.eq(held[0]),
    ]
    # The register's enable is ``advance`` alone (one LUT from the softmax's ready), and the
    # choice between load and shift does not depend on that ready: the enable reaches every
    # bit of the word (timing).
    with m.If(advance):
        with m.If(s_fifo.o.valid & one_left):
            for c in range(len(word)):
                m.d.sync += held[c // sl][c % sl].eq(Mux(w_meta.mask[c], masked_min, word[c]))
            m.d.sync += held_ok.eq(w_meta.keep)
        with m.Else():
            for g in range(groups - 1):
                m.d.sync += held[g].eq(held[g + 1])
            m.d.sync += held_ok.eq(held_ok >> 1)
