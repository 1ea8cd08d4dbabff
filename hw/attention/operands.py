"""The attention controller's operand feeder: the (A, B) pairs of each job, read from the
scratchpads into the engine's operand streams."""

from amaranth.hdl import Cat, Const, Mux, Signal

from ..stream import queue_room
from .jobs import Jobs

__all__ = ["build_operands"]


def _sign_extend(lanes):
    """Signed lanes, each one bit wider: the engine's operands are ``in_width + 1`` bits."""
    return Cat(*(Cat(lane, lane[-1]) for lane in lanes))


def _k_tile_ok(ctl, m, ji, k_blocks, job_start, tile_end):
    """Whether a read this cycle may proceed: always in a PV job; in a QK job once K's tile
    ``t`` (the job's tile being read) is in, ``k_blocks > t``. From flip-flops only: the
    comparisons are registered for the tile being read and the next one, and the registered
    ``tile_end`` picks the one that holds this cycle. On a job's first read the comparison
    may still be the previous job's (of a tile at or past 0), which only waits a cycle more."""
    t = Signal(range(ctl.len_tiles + 1), name="k_tile")
    ok_cur, ok_next, moved = Signal(), Signal(), Signal()
    with m.If(job_start):
        m.d.sync += t.eq(0)
    with m.Elif(tile_end):
        m.d.sync += t.eq(t + 1)
    m.d.sync += [ok_cur.eq(k_blocks > t), ok_next.eq(k_blocks > t + 1), moved.eq(tile_end)]
    return (ji.kind != Jobs.QK) | Mux(moved, ok_next, ok_cur)


def build_operands(ctl, m, ns):
    """Builds the operand feeder: one (A, B) read a cycle from the Q/K/V scratchpads and the
    P rows while the operand FIFO has room, the walk's counters and the job's end, the
    two register stages after the memories, and the multiplexing of Q/P and K/V into the
    operand FIFO that drives the engine's A and B streams."""
    sl, e_a, e_b = ctl.sl, ctl.gemm_a, ctl.gemm_b
    (op_fifo, feeding, p_lane, pmem, ji, qmem, kmem, vmem, q_base, k_cnt, kv_base, p_word,
     k_loop, i_half, t_loop, ish, d, p_clr, k_blocks, job_start) = (
        ns.op_fifo, ns.feeding, ns.p_lane, ns.pmem, ns.ji, ns.qmem, ns.kmem, ns.vmem, ns.q_base,
        ns.k_cnt, ns.kv_base, ns.p_word, ns.k_loop, ns.i_half, ns.t_loop, ns.ish, ns.d,
        ns.p_clr, ns.k_blocks, ns.job_start)
    # Operand reads: one (A, B) pair a cycle while the operand FIFO has room for it and, in a
    # QK job, the K tile being read is in.
    issued = Signal()
    issued_d = Signal()
    kind_d = Signal()
    lane_d = Signal(range(sl))
    op_room = queue_room(m, op_fifo, issued, "op")
    k_last, t_last = k_loop.last, t_loop.last
    tile_ok = _k_tile_ok(ctl, m, ji, k_blocks, job_start, issued & k_last)
    m.d.comb += [issued.eq(feeding & op_room & tile_ok),
                 k_loop.en.eq(issued), t_loop.en.eq(issued & k_last)]
    m.d.sync += [issued_d.eq(issued), kind_d.eq(ji.kind), lane_d.eq(p_lane)]
    q_rd, k_rd, v_rd = qmem.read_port(), kmem.read_port(), vmem.read_port()
    p_rd = [mem.read_port() for mem in pmem]
    m.d.comb += [
        q_rd.addr.eq(q_base + k_cnt),
        k_rd.addr.eq(kv_base + k_cnt),
        v_rd.addr.eq(kv_base + k_cnt),
    ]
    for rd in p_rd:
        m.d.comb += rd.addr.eq(Mux(i_half, ctl.p_words, 0) + p_word)
    with m.If(issued):
        with m.If(k_last | (p_lane == sl - 1)):
            m.d.sync += [p_lane.eq(0), p_word.eq(Mux(k_last, 0, p_word + 1))]
        with m.Else():
            m.d.sync += p_lane.eq(p_lane + 1)
        with m.If(k_last):
            m.d.sync += [k_cnt.eq(0), kv_base.eq(kv_base + ish["step"])]
            with m.If(t_last):
                # The job's last read: move on; PV(b) no longer needs P half b%2.
                m.d.sync += [feeding.eq(0), *ji.advance()]
                with m.If(ji.kind == Jobs.QK):
                    m.d.sync += q_base.eq(q_base + d)
                with m.Else():
                    m.d.comb += p_clr.eq(Mux(i_half, 0b10, 0b01))
        with m.Else():
            m.d.sync += k_cnt.eq(k_cnt + 1)
    # The memories' outputs are registered as they are (no logic between a block RAM and a
    # flip-flop), then multiplexed into the FIFO. The engine's operands are w+1 bits: Q, K,
    # V sign-extended, P zero-extended.
    issued_dd = Signal()
    kind_dd = Signal()
    lane_dd = Signal(range(sl))
    q_dd, k_dd, v_dd = (Signal.like(rd.data, name=f"{t}_dd")
                        for t, rd in (("q", q_rd), ("k", k_rd), ("v", v_rd)))
    p_dd = [Signal.like(rd.data, name=f"p{r}_dd") for r, rd in enumerate(p_rd)]
    m.d.sync += [issued_dd.eq(issued_d), kind_dd.eq(kind_d), lane_dd.eq(lane_d),
                 q_dd.eq(q_rd.data), k_dd.eq(k_rd.data), v_dd.eq(v_rd.data),
                 *(reg.eq(rd.data) for reg, rd in zip(p_dd, p_rd, strict=True))]
    a_word = Mux(kind_dd == Jobs.QK, _sign_extend(q_dd),
                 Cat(*(Cat(reg[lane_dd], Const(0, 1)) for reg in p_dd)))
    b_word = Mux(kind_dd == Jobs.QK, _sign_extend(k_dd), _sign_extend(v_dd))
    m.d.comb += [
        op_fifo.i.valid.eq(issued_dd),
        op_fifo.i.payload.eq(Cat(a_word, b_word)),
        e_a.payload.eq(op_fifo.o.payload.a),
        e_b.payload.eq(op_fifo.o.payload.b),
        e_a.valid.eq(op_fifo.o.valid),
        e_b.valid.eq(op_fifo.o.valid),
        # a and b are valid together, so the engine takes both on e_a.ready.
        op_fifo.o.ready.eq(e_a.ready),
    ]
