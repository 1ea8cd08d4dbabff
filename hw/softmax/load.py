"""The softmax's pass 1, load: rows into the score buffer, and each row's max."""

from amaranth.hdl import Mux, Signal, signed

from ..stream import delay

__all__ = ["max_tree", "build_load_pass"]


def max_tree(values, *, down_to=1):
    """``values`` reduced by levels of pairwise maxima until at most ``down_to`` are left."""
    values = list(values)
    while len(values) > down_to:
        values = [Mux(values[k] > values[k + 1], values[k], values[k + 1])
                  if k + 1 < len(values) else values[k] for k in range(0, len(values), 2)]
    return values


def build_load_pass(sm, m, s):
    """Pass 1, load: build the input handshake, the write port of the score buffer and the
    running max of each row, which goes to `q_max` ``cfg.max_cycles`` cycles after the row's
    last beat: as the lanes' maxima reduced to at most two (a list of banked registers), which
    the exp pass's first stage reduces to one (:func:`max_tree`): one level of the tree a
    cycle, so up to 4 lanes one level at the row's end and the last in that first stage.
    """
    depth, elem_shape, w, length, n, q_wr = s.depth, s.elem_shape, s.w, s.length, s.n, s.q_wr
    q_max = s.q_max
    # -- Pass 1, load: write beats to the score buffer and track the row max. -------------
    a_bank = Signal()
    a_addr = Signal(range(2 * depth))
    a_elem = Signal(elem_shape)            # elements of the row before this beat
    most_negative = -(1 << (w - 1))
    a_first = Signal(init=1)               # the next beat starts a row (lane maxima stale)
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
    # The beat at a_elem is the row's last: a_elem + n >= length, registered (from the
    # next a_elem).
    a_last = Signal()
    m.d.sync += a_last.eq(Mux(accept, Mux(a_last, length <= n, a_elem + 2 * n >= length),
                              a_elem + n >= length))
    # Lane j of the next beat is in the row (a_elem + j < length), registered like a_last
    # (from the next a_elem), so that no comparison of a_elem lies before the max.
    in_row = {j: Signal(name=f"a_in_row{j}") for j in range(1, n)}
    for j in in_row:
        m.d.sync += in_row[j].eq(Mux(accept, Mux(a_last, j < length, a_elem + n + j < length),
                                     a_elem + j < length))
    # A running max per lane: one comparison (the borrow of a subtraction, a carry chain)
    # and a multiplexer between the input and each lane's register. A row's first beat
    # restarts every lane, a lane past the row's end at the most negative value (lane 0 is
    # always in the row). The lanes' maxima are reduced when the row is done.
    lane_max = [Signal(signed(w), name=f"a_max{j}") for j in range(n)]
    with m.If(accept):
        for j, x in enumerate(sm.i.payload):
            keep = ~a_first & ~(lane_max[j] - x)[-1]    # lane_max[j] >= x
            if j == 0:
                m.d.sync += lane_max[j].eq(Mux(keep, lane_max[j], x))
            else:
                m.d.sync += lane_max[j].eq(
                    Mux(in_row[j], Mux(keep, lane_max[j], x),
                        Mux(a_first, most_negative, lane_max[j])))
    # The lanes' maxima reduced a level a cycle (SoftmaxConfig.max_cycles), registered between
    # levels, so that no cycle holds more than one comparison of the tree; `a_stored` pulses in
    # the cycle its two (or one) values are written to q_max.
    a_max, a_stored, a_stored_bank = lane_max, a_done, a_done_bank
    for level in range(1, sm.cfg.max_cycles + 1):
        a_max = max_tree(a_max, down_to=max(len(q_max), -(-len(a_max) // 2)))
        if level < sm.cfg.max_cycles:
            a_max = [delay(m, v, 1, name=f"a_lvl{level}_{j}", shape=signed(w))
                     for j, v in enumerate(a_max)]
            a_stored = delay(m, a_stored, 1, name=f"a_stored{level}")
            a_stored_bank = delay(m, a_stored_bank, 1, name=f"a_stored_bank{level}")
    assert len(a_max) == len(q_max)
    m.d.comb += [
        q_wr.addr.eq(a_addr),
        q_wr.data.eq(sm.i.payload),
        q_wr.en.eq(accept),
    ]
    m.d.sync += a_done.eq(0)
    with m.If(a_stored):
        m.d.sync += [q[a_stored_bank].eq(v) for q, v in zip(q_max, a_max, strict=True)]
    with m.If(accept):
        m.d.sync += a_first.eq(a_last)
        with m.If(a_last):
            m.d.sync += [
                a_done.eq(1), a_done_bank.eq(a_bank),
                a_bank.eq(~a_bank), a_addr.eq(Mux(a_bank, 0, depth)), a_elem.eq(0),
            ]
        with m.Else():
            m.d.sync += [a_addr.eq(a_addr + 1), a_elem.eq(a_elem + n)]
    s.a_first, s.a_stored, s.q_rows, s.i_ready = a_first, a_stored, q_rows, i_ready
    s.accept, s.a_last = accept, a_last
