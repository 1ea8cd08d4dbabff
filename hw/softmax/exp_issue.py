"""The softmax's pass 2, exp, issue: the sequencer that reads loaded rows back into the exp
pipeline."""

from amaranth.hdl import Cat, Mux, Signal, signed

from .load import max_tree

__all__ = ["build_exp_issue"]


def build_exp_issue(sm, m, s):
    """Pass 2, exp, issue: build the sequencer that reads a loaded row from the score buffer a
    beat a cycle, the row counts that gate the load pass's `i.ready`, and the stage-0 registers
    of the exp pipeline.
    """
    depth, elem_shape, a_stored, length_one = s.depth, s.elem_shape, s.a_stored, s.length_one
    q_rd, n, length, next3, base = s.q_rd, s.n, s.length, s.next3, s.base
    length_two, q_rows, accept, a_first = s.length_two, s.q_rows, s.accept, s.a_first
    i_ready, a_last, w, q_max, half = s.i_ready, s.a_last, s.w, s.q_max, s.half
    # -- Pass 2, exp: issue reads, one beat per cycle, rows back to back. -----------------
    b_active = Signal()
    b_bank = Signal()
    b_ebank = Signal(range(3))
    b_addr = Signal(range(2 * depth))
    b_eaddr = Signal(range(3 * depth))
    b_elem = Signal(elem_shape)
    b_last = Signal()                   # b_elem + n >= length, registered
    b_pen = Signal()                    # b_elem + 2*n >= length, registered
    b_fin = Signal()
    m.d.comb += b_fin.eq(b_active & b_last)
    # A row's exp pass starts when the pass is idle or issues its last read (`b_free`), a
    # row is loaded (`q_wait > 0`, or its max is being stored: `a_stored`), an exp bank is free
    # (`e_rows < 3`) and at most one row is between the start of its exp pass and the end of
    # its division (`inflight < 2`: the divider's slot).
    b_free = Signal(init=1)             # ~b_active | b_last
    b_room = Signal(init=1)             # e_rows < 3 and inflight < 2
    q_wait = Signal(range(3))           # rows loaded (a_stored) whose exp pass did not start
    q_loaded = Signal()                 # q_wait > 0
    e_rows = Signal(range(4))           # rows from exp start to their last normalize read
    inflight = Signal(range(3))         # rows whose exp pass started and division did not end
    b_next_bank = Signal()              # the banks of the next row to start
    b_next_ebank = Signal(range(3))
    b_start = Signal()
    m.d.comb += b_start.eq(b_free & b_room & (q_loaded | a_stored))
    # The exp pass's last read of a row is the next cycle: it starts a row of one beat or
    # issues the read before the last.
    b_fin_n = (b_start & length_one) | (b_active & ~b_last & b_pen)
    m.d.comb += q_rd.addr.eq(b_addr)
    with m.If(b_fin):
        m.d.sync += b_active.eq(0)
    with m.Elif(b_active):
        m.d.sync += [b_addr.eq(b_addr + 1), b_eaddr.eq(b_eaddr + 1), b_elem.eq(b_elem + n),
                     b_last.eq(b_pen), b_pen.eq(b_elem + 3 * n >= length)]
    with m.If(b_start):
        m.d.sync += [
            b_active.eq(1), b_bank.eq(b_next_bank), b_ebank.eq(b_next_ebank),
            b_next_bank.eq(~b_next_bank), b_next_ebank.eq(next3(b_next_ebank)),
            b_addr.eq(Mux(b_next_bank, depth, 0)), b_eaddr.eq(base(b_next_ebank, 3)),
            b_elem.eq(0), b_last.eq(length_one), b_pen.eq(length_two),
        ]
    m.d.sync += b_free.eq(Mux(b_start, length_one, ~b_active | b_last | b_pen))

    q_rows_n = Signal.like(q_rows)
    m.d.comb += q_rows_n.eq(q_rows + (accept & a_first) - b_fin)
    m.d.sync += [
        q_rows.eq(q_rows_n),
        i_ready.eq(Mux(accept, ~a_last, ~a_first) | (q_rows_n < 2) | b_fin_n),
        q_wait.eq(q_wait + a_stored - b_start),
        q_loaded.eq(Mux(b_start, q_wait + a_stored >= 2, q_wait + a_stored >= 1)),
    ]

    # Stage 0: registered alongside the buffer read; the row max (the last level of its
    # tree) gets the rounding half of the rescale, so that stage 2 gives x + half in one
    # subtraction.
    v0 = Signal()
    last0 = Signal()
    elem0 = Signal(elem_shape)
    ebank0 = Signal(range(3))
    eaddr0 = Signal(range(3 * depth))
    max0 = Signal(signed(w + 1))
    m.d.sync += [
        v0.eq(b_active), last0.eq(b_last), elem0.eq(b_elem), ebank0.eq(b_ebank),
        eaddr0.eq(b_eaddr), max0.eq(max_tree(q[b_bank] for q in q_max)[0] + half),
    ]
    mask0 = Signal(n)
    m.d.comb += mask0.eq(Cat(elem0 + j < length for j in range(n)))
    s.b_room, s.e_rows, s.inflight, s.b_start, s.v0 = b_room, e_rows, inflight, b_start, v0
    s.last0, s.ebank0, s.eaddr0, s.max0, s.mask0 = last0, ebank0, eaddr0, max0, mask0
