"""The softmax's pass 1, load: rows into the score buffer, and each row's max."""

from amaranth.hdl import Mux, Signal, signed

__all__ = ["build_load_pass"]


def build_load_pass(sm, m, s):
    """Pass 1, load: build the input handshake, the write port of the score buffer and the
    running max of each row, which goes to `q_max` a cycle after the row's last beat.
    """
    depth, elem_shape, w, length, n, q_wr = s.depth, s.elem_shape, s.w, s.length, s.n, s.q_wr
    q_max = s.q_max
    # -- Pass 1, load: write beats to the score buffer and track the row max. -------------
    a_bank = Signal()
    a_addr = Signal(range(2 * depth))
    a_elem = Signal(elem_shape)            # elements of the row before this beat
    most_negative = -(1 << (w - 1))
    a_max = Signal(signed(w))
    a_first = Signal(init=1)               # the next beat starts a row (a_max is stale)
    # The row's max goes to q_max a cycle after its last beat, so that the running-max loop
    # is only a comparison and a multiplexer.
    a_done = Signal()
    a_done_bank = Signal()
    # Rows from their first beat loaded to the exp pass's last read of them (`b_fin`): a
    # row may start loading while fewer than two are in the score buffer, or on the cycle
    # of that last read (the read port is not transparent, so the read still returns the
    # old beat). `i.ready` is a register: this condition computed a cycle ahead.
    q_rows = Signal(range(3))
    i_ready = Signal()                     # 0 in the cycle after reset, for `a_last`
    accept = Signal()
    m.d.comb += [sm.i.ready.eq(i_ready), accept.eq(sm.i.valid & i_ready)]
    # The beat's max by a tree of comparisons (lanes past the end of the row left out), then
    # the running max (its comparison is the borrow of a subtraction, a carry chain). (Lane 0
    # is always in the row.)
    cands = [sm.i.payload[0]] + [Mux(a_elem + j < length, sm.i.payload[j], most_negative)
                                   for j in range(1, n)]
    while len(cands) > 1:
        cands = [Mux(cands[k] > cands[k + 1], cands[k], cands[k + 1])
                 if k + 1 < len(cands) else cands[k] for k in range(0, len(cands), 2)]
    beat_max = Mux(a_first | (a_max - cands[0])[-1], cands[0], a_max)
    # The beat at a_elem is the row's last: a_elem + n >= length, registered (from the
    # next a_elem).
    a_last = Signal()
    m.d.sync += a_last.eq(Mux(accept, Mux(a_last, length <= n, a_elem + 2 * n >= length),
                              a_elem + n >= length))
    m.d.comb += [
        q_wr.addr.eq(a_addr),
        q_wr.data.eq(sm.i.payload),
        q_wr.en.eq(accept),
    ]
    m.d.sync += a_done.eq(0)
    with m.If(a_done):
        m.d.sync += q_max[a_done_bank].eq(a_max)
    with m.If(accept):
        m.d.sync += [a_max.eq(beat_max), a_first.eq(a_last)]
        with m.If(a_last):
            m.d.sync += [
                a_done.eq(1), a_done_bank.eq(a_bank),
                a_bank.eq(~a_bank), a_addr.eq(Mux(a_bank, 0, depth)), a_elem.eq(0),
            ]
        with m.Else():
            m.d.sync += [a_addr.eq(a_addr + 1), a_elem.eq(a_elem + n)]
    s.a_first, s.a_done, s.q_rows, s.i_ready = a_first, a_done, q_rows, i_ready
    s.accept, s.a_last = accept, a_last
