"""The softmax's row sum of ``e`` and its radix-4 divider, which forms the row's normalizer."""

from amaranth.hdl import Cat, Const, Signal

__all__ = ["build_divider"]


def build_divider(sm, m, s):
    """Build the row sum of `e`, its one-row slot, and the radix-4 divider that computes the
    row's normalizer `f = 2**K // sum` into `f_reg`.
    """
    e_lanes, f_reg, vE, lastE, ebankE = s.e_lanes, s.f_reg, s.vE, s.lastE, s.ebankE
    # Row sum, handed to the divider through a one-row slot at the end of the row.
    row_sum = Signal(sm.sum_width)
    total = row_sum
    for e in e_lanes:
        total = total + e
    pend_valid = Signal()
    pend_sum = Signal(sm.sum_width)
    pend_ebank = Signal(range(3))

    # Divider: f = 2**K // sum by restoring division in radix 4 (two quotient bits a cycle,
    # from three trial subtractions of d, 2d and 3d). sum >= 2**14, so f < 2**(K-13) and the
    # remainder may start at 2**(K - 2*digits) <= 2**13 < sum.
    digits = -(-sm.f_width // 2)
    div_busy = Signal()
    div_count = Signal(range(digits + 1))
    div_rem = Signal(sm.sum_width)
    div_d = Signal(sm.sum_width)
    div_d3 = Signal(sm.sum_width + 2)
    div_q = Signal(2 * digits)
    div_ebank = Signal(range(3))
    div_fin = Signal()                  # div_busy & (div_count == 0), registered
    m.d.sync += div_fin.eq(div_busy & ~div_fin & (div_count == 1))
    with m.If(~div_busy & pend_valid):
        m.d.sync += [
            div_busy.eq(1), div_count.eq(digits),
            div_rem.eq(1 << (sm.recip_bits - 2 * digits)), div_q.eq(0),
            div_d.eq(pend_sum), div_d3.eq(pend_sum + (pend_sum << 1)),
            div_ebank.eq(pend_ebank), pend_valid.eq(0),
        ]
    with m.If(div_busy & (div_count != 0)):
        r4 = Cat(Const(0, 2), div_rem)
        d1 = r4 - div_d
        d2 = r4 - (div_d << 1)
        d3 = r4 - div_d3
        with m.If(~d3[-1]):
            m.d.sync += [div_rem.eq(d3), div_q.eq(Cat(Const(3, 2), div_q))]
        with m.Elif(~d2[-1]):
            m.d.sync += [div_rem.eq(d2), div_q.eq(Cat(Const(2, 2), div_q))]
        with m.Elif(~d1[-1]):
            m.d.sync += [div_rem.eq(d1), div_q.eq(Cat(Const(1, 2), div_q))]
        with m.Else():
            m.d.sync += [div_rem.eq(r4), div_q.eq(Cat(Const(0, 2), div_q))]
        m.d.sync += div_count.eq(div_count - 1)
    with m.If(div_fin):
        m.d.sync += [div_busy.eq(0), f_reg[div_ebank].eq(div_q)]
    # A row ending while the divider takes the previous one from the slot refills the slot
    # (these statements come after the divider's, so they win). The slot never holds a row
    # when another ends: at most two rows are between exp start and division end.
    with m.If(vE):
        with m.If(lastE):
            m.d.sync += [row_sum.eq(0), pend_valid.eq(1), pend_sum.eq(total),
                         pend_ebank.eq(ebankE)]
        with m.Else():
            m.d.sync += row_sum.eq(total)
    s.div_fin = div_fin
