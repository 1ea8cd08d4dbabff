"""The softmax's pass 3, normalize, issue: the sequencer that reads divided rows from the exp
buffer, and the hand-off counts after the load pass."""

from amaranth.hdl import Mux, Signal

from ..skid import SkidBuffer
from ..stream import Countdown

__all__ = ["build_normalize_issue"]


def build_normalize_issue(sm, m, s):
    """Pass 3, normalize, issue: build the output skid buffer, the sequencer that reads a
    divided row from the exp buffer on `advance`, and the hand-off counts and start conditions
    after the load pass.
    """
    depth, cfg, n, e_rd, length, next3 = s.depth, s.cfg, s.n, s.e_rd, s.length, s.next3
    base, e_rows, inflight, b_start = s.base, s.e_rows, s.inflight, s.b_start
    div_fin, b_room = s.div_fin, s.b_room
    # -- Pass 3, normalize: read e, multiply by f, round, saturate; stalls with `o`. ------
    # The pipeline advances on a register, the `i.ready` of the register slice on `o`: when
    # `o` holds a beat that is not taken, the beat behind it moves into the slice's skid
    # register, and the pipeline waits until `o` has taken the beat it holds.
    m.submodules.o_skid = o_skid = SkidBuffer(sm.o.payload.shape())
    advance = Signal()
    m.d.comb += advance.eq(o_skid.i.ready)
    c_active = Signal()
    c_bank = Signal(range(3))
    c_addr = Signal(range(3 * depth))
    # Elements of the row from this beat on, a beat at a time; `last`: this beat ends the row.
    m.submodules.c_left = c_left = Countdown(cfg.max_len, step=n)
    c_last = c_left.last
    c_issue = Signal()
    m.d.comb += c_issue.eq(c_active & advance)
    c_fin = Signal()
    m.d.comb += c_fin.eq(c_issue & c_last)
    # A row's normalize pass starts when the pass is idle or issues its last read and a
    # row's division has ended (`c_wait > 0`).
    c_wait = Signal(range(4))           # rows whose division ended and normalize did not start
    c_divided = Signal()                # c_wait > 0
    c_next_bank = Signal(range(3))      # the bank of the next row to start
    c_start = Signal()
    m.d.comb += c_start.eq((~c_active | c_fin) & c_divided)
    m.d.comb += [e_rd.addr.eq(c_addr), e_rd.en.eq(advance)]
    with m.If(c_fin):
        m.d.sync += c_active.eq(0)
    with m.Elif(c_issue):
        m.d.sync += c_addr.eq(c_addr + 1)
    m.d.comb += [c_left.load.eq(c_start), c_left.total.eq(length),
                 c_left.en.eq(c_issue & ~c_last)]
    with m.If(c_start):
        m.d.sync += [c_active.eq(1), c_bank.eq(c_next_bank),
                     c_next_bank.eq(next3(c_next_bank)), c_addr.eq(base(c_next_bank, 3))]

    # The counts of the hand-offs after the load pass, and the start conditions computed a
    # cycle ahead from them.
    e_rows_n = Signal.like(e_rows)
    inflight_n = Signal.like(inflight)
    m.d.comb += [
        e_rows_n.eq(e_rows + b_start - c_fin),
        inflight_n.eq(inflight + b_start - div_fin),
    ]
    m.d.sync += [
        e_rows.eq(e_rows_n),
        inflight.eq(inflight_n),
        b_room.eq((e_rows_n < 3) & (inflight_n < 2)),
        c_wait.eq(c_wait + div_fin - c_start),
        c_divided.eq(Mux(c_start, c_wait + div_fin >= 2, c_wait + div_fin >= 1)),
    ]
    s.o_skid, s.advance, s.c_bank, s.c_left = o_skid, advance, c_bank, c_left
    s.c_issue = c_issue
