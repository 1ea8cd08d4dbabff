"""The attention controller's job issuer: the GEMM commands of the head's jobs, in order, each
once its buffer half and its operands are ready."""

from amaranth.hdl import Mux, Signal
from amaranth.lib import data, wiring

from ..gemm import gemm_cmd_layout
from ..stream import Countdown, Queue
from .jobs import Jobs, job_shape

__all__ = ["build_issuer"]


def build_issuer(ctl, m, ns):
    """Builds the job issuer: the walk over the head's jobs, the registered shape of the job
    being issued, its GEMM command FIFO into the engine, the operand FIFO, the dependency
    check against the hand-off flags, and the start of each job's operand walk."""
    R, sl, Lmax, dmax, LT = ctl.R, ctl.sl, ctl.max_len, ctl.max_dim, ctl.len_tiles
    (hd, nb, run_start, p_full, s_full, running, q_blocks, v_done) = (
        ns.hd, ns.nb, ns.run_start, ns.p_full, ns.s_full, ns.running, ns.q_blocks, ns.v_done)
    # -- ISSUER: walks the jobs, queues each one's GEMM command and reads its operands. ----
    ji = Jobs("issue", ctl.blocks, R)
    ish = job_shape(ctl, m, ji, hd, nb, "issue")
    i_half = ji.block[0]
    feeding = Signal()
    kdim = range(max(Lmax, dmax) + 1)
    k_cnt = Signal(kdim)                 # k of the next read in this tile
    # The k reads of a tile, repeated for each tile of C columns until the job's n.
    m.submodules.k_loop = k_loop = Countdown(max(Lmax, dmax), wrap=True)
    m.submodules.t_loop = t_loop = Countdown(max(Lmax, dmax), ctl.C)
    job_start = Signal()
    m.d.comb += [k_loop.load.eq(job_start), k_loop.total.eq(ish["k"]),
                 t_loop.load.eq(job_start), t_loop.total.eq(ish["n"])]
    q_base = Signal(range(ctl.blocks * dmax + 1))   # b*d for QK(b)
    kv_base = Signal(range(max(LT * dmax, ctl.dim_tiles * Lmax) + 1))  # t*d or t*L
    p_word = Signal(range(ctl.p_words + 1))
    p_lane = Signal(range(sl))

    m.submodules.cmd_fifo = cmd_fifo = Queue(gemm_cmd_layout(ctl.gemm_cfg.gemm),
                                               ctl.CMD_DEPTH)
    job_cmd = cmd_fifo.i.payload
    m.d.comb += [job_cmd.m.eq(ish["rows"]), job_cmd.k.eq(ish["k"]), job_cmd.n.eq(ish["n"])]
    wiring.connect(m, cmd_fifo.o, wiring.flipped(ctl.gemm_cmd))
    operands = data.StructLayout({"a": ctl.gemm_a.payload.shape(),
                                  "b": ctl.gemm_b.payload.shape()})
    m.submodules.op_fifo = op_fifo = Queue(operands, ctl.OPERAND_DEPTH)

    # A job waits for its buffer half and for the operands it reads: QK(b) for Q's row block b,
    # PV for all of V (the loads overlap the first jobs; a QK job's reads of each K tile wait
    # for that tile, hw.attention.operands).
    qk = ji.kind == Jobs.QK
    hand_ok = Mux(qk, ~s_full.bit_select(i_half, 1), p_full.bit_select(i_half, 1))
    dep_ok = hand_ok & Mux(qk, q_blocks > ji.block, v_done)
    # Registered: once a job's dependency is met it stays met until the job runs (the load
    # counts only grow while the head runs).
    dep_ok_r = Signal()
    m.d.sync += dep_ok_r.eq(dep_ok)
    m.d.comb += ctl.waiting_for_softmax.eq(running & ~ji.done & ~feeding & ~hand_ok)
    with m.If(run_start):
        m.d.sync += [*ji.reset(), feeding.eq(0), q_base.eq(0)]
    with m.Elif(running & ~ji.done & ~feeding & ji.fresh & dep_ok_r & cmd_fifo.i.ready):
        # Start the job: queue its command and restart the operand walk.
        m.d.comb += [cmd_fifo.i.valid.eq(1), job_start.eq(1)]
        m.d.sync += [feeding.eq(1), k_cnt.eq(0), kv_base.eq(0), p_word.eq(0), p_lane.eq(0)]
    vars(ns).update(ji=ji, ish=ish, i_half=i_half, feeding=feeding, kdim=kdim, k_cnt=k_cnt,
                    k_loop=k_loop, t_loop=t_loop, q_base=q_base, kv_base=kv_base,
                    p_word=p_word, p_lane=p_lane, op_fifo=op_fifo, job_start=job_start)
