"""Tiled attention controller: softmax(Q K^T / sqrt(d)) V on the systolic array, head by head."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .divider import CeilDivider
from .gemm import gemm_cmd_layout
from .memory import uncontended
from .stream import Countdown, Credits, Queue

__all__ = ["attention_cmd_layout", "AttentionController"]


def attention_cmd_layout(cfg):
    """Layout of a command: one head of sequence length L and head dimension d."""
    at = cfg.attention
    return data.StructLayout({
        "length": range(at.max_seq_len + 1),
        "head_dim": range(at.max_head_dim + 1),
        "causal": 1,
    })


def _sign_extend(lanes):
    """Signed lanes, each one bit wider: the engine's operands are ``in_width + 1`` bits."""
    return Cat(*(Cat(lane, lane[-1]) for lane in lanes))


def _room(m, queue, push, name):
    """A registered "may push" flag for ``queue``, written a few cycles after ``push`` (a memory
    read issued this cycle): a :class:`~hw.stream.Credits` that counts entries plus reads in
    flight and leaves this cycle's pop out of the flag, so that neither the queue's level nor
    its reader's ``ready`` reaches the pusher's logic; being stale only ever delays a push."""
    m.submodules[f"{name}_credits"] = credits = Credits(queue.depth, early_give=False)
    m.d.comb += [credits.take.eq(push), credits.give.eq(queue.o.valid & queue.o.ready)]
    return credits.room


class _Jobs:
    """The order in which one head's GEMM jobs run on the array.

    ``QK(b)`` computes the scores of row block b, ``PV(b)`` its output. The order is
    ``QK(0), QK(1), PV(0), QK(2), PV(1), ..., QK(n-1), PV(n-2), PV(n-1)``, so that the softmax of
    block b runs while the array computes ``QK(b+1)``.
    """

    QK, PV = 0, 1

    def __init__(self, name, blocks, rows):
        self.rows = rows
        self.kind = Signal(name=f"{name}_kind")   # 0 = QK, 1 = PV
        self.block = Signal(range(blocks + 1), name=f"{name}_block")
        # block * R, kept beside the block number so that no multiplier sits on the path.
        self.base = Signal(range((blocks + 2) * rows + 1), name=f"{name}_base")
        self.done = Signal(name=f"{name}_done")
        #: The registered job shape (``_job_shape``) and the decodes below are those of the
        #: current job: low for the cycle after a move, while the registers catch up.
        self.fresh = Signal(name=f"{name}_fresh")
        self.first = Signal(name=f"{name}_first")     # block == 0
        self.more2 = Signal(name=f"{name}_more2")     # block + 2 < nb
        self.final = Signal(name=f"{name}_final")     # block + 1 >= nb
        self.nb_gt1 = Signal(name=f"{name}_nb_gt1")   # nb > 1

    def reset(self):
        return [self.kind.eq(self.QK), self.block.eq(0), self.base.eq(0), self.done.eq(0),
                self.fresh.eq(0)]

    def decode(self, nb):
        """Statements registering the comparisons ``advance`` needs (``nb``: row blocks)."""
        b = self.block
        return [self.first.eq(b == 0), self.more2.eq(b + 2 < nb), self.final.eq(b + 1 >= nb),
                self.nb_gt1.eq(nb > 1)]

    def advance(self):
        """Statements moving to the job after the current one (valid while ``fresh``)."""
        qk, b = self.kind == self.QK, self.block
        return [
            self.kind.eq(Mux(qk, Mux(self.first & self.nb_gt1, self.QK, self.PV),
                             Mux(self.more2, self.QK, self.PV))),
            self.block.eq(Mux(qk, Mux(self.first, self.nb_gt1, b - 1),
                              Mux(self.more2, b + 2, b + 1))),
            self.base.eq(Mux(qk, Mux(self.first, Mux(self.nb_gt1, self.rows, 0),
                                     self.base - self.rows),
                             Mux(self.more2, self.base + 2 * self.rows,
                                 self.base + self.rows))),
            self.done.eq(~qk & self.final),
            self.fresh.eq(0),
        ]


class _Head:
    """Per-head constants, registered from the command: L and d, and the comparisons on them
    that the counters need (so that none sits on a counter's enable)."""

    def __init__(self, Lmax, dmax, R, C):
        self.R, self.C = R, C
        self.L = Signal(range(Lmax + 1), name="L")
        self.d = Signal(range(dmax + 1), name="d")
        self.causal = Signal(name="causal")
        self.L_m1 = Signal(range(Lmax + 1), name="L_m1")
        self.d_m1 = Signal(range(dmax + 1), name="d_m1")
        self.L_is1 = Signal(name="L_is1")
        self.d_is1 = Signal(name="d_is1")
        self.L_le_c = Signal(name="L_le_c")     # L <= C
        self.L_m_r = Signal(range(-R, Lmax + 1), name="L_m_r")   # L - R
        self.d_le_c = Signal(name="d_le_c")     # d <= C

    def load(self, length, head_dim, causal):
        R, C = self.R, self.C
        return [self.L.eq(length), self.d.eq(head_dim), self.causal.eq(causal),
                self.L_m_r.eq(length - R),
                self.L_m1.eq(length - 1), self.d_m1.eq(head_dim - 1),
                self.L_is1.eq(length == 1), self.d_is1.eq(head_dim == 1),
                self.L_le_c.eq(length <= C), self.d_le_c.eq(head_dim <= C)]


class AttentionController(wiring.Component):
    """Computes one head of integer attention per command on a GEMM engine it does not own,
    bit-exact with :func:`sim.golden.attention` once its ``rows`` are requantized.

    The controller is a client of a softmax unit (``softmax_*``) and of a
    :class:`hw.gemm.GemmEngine` configured by
    ``cfg.attention_gemm`` (or a wider one, such as the accelerator top's, behind
    :class:`hw.arbiter.EngineArbiter`): it sends the engine GEMM commands (``gemm_cmd``) and
    operand pairs (``gemm_a``, ``gemm_b``, valid together) and takes its rows back
    (``gemm_out``). The rows of ``P V`` leave on ``rows``, exact; a requantizer after it gives
    the int8 output. :class:`hw.attention_unit.AttentionUnit` pairs the controller with an
    engine, a softmax and a requantizer of its own.

    Dataflow (R x C array, L the sequence length, d the head dimension, ``nb = ceil(L/R)`` row
    blocks)::

        q, k, v streams ─► Q, K, V scratchpads (lib.memory, in the array's native layout)
        for each row block b, interleaved as QK(0) QK(1) PV(0) QK(2) PV(1) ... PV(nb-1):
          QK(b): S[bR:bR+R, :] = Q[bR:bR+R] · Kᵀ  on the GEMM engine ─► score buffer, half b%2
          softmax of the block's R rows (masked scores → min)       ─► P buffer, half b%2
          PV(b): O[bR:bR+R, :] = P · V            on the GEMM engine ─► rows

    The score and P buffers are double-buffered, so the softmax of block b runs while the array
    computes ``QK(b+1)``; ``QK(b+2)`` waits only for the softmax to have read block b's scores,
    and ``PV(b)`` for its probabilities. With the causal mask, ``QK(b)`` computes only the
    ``min(L, bR + R)`` columns that are not wholly masked and ``PV(b)`` sums over only those, so
    fully masked tiles are skipped rather than computed; inside the diagonal tile, masked scores
    are replaced by the most negative score before the softmax, which maps them to exactly 0.

    Scratchpad layouts (the driver writes each stream's beats in this order; see
    :func:`sim.bench.attention_load_beats`):

    * ``q``: R lanes, beat ``b*d + k`` = ``Q[bR:bR+R, k]`` for row block b, k < d;
    * ``k``: C lanes, beat ``t*d + k`` = ``K[tC:tC+C, k]`` for column tile t, k < d;
    * ``v``: C lanes, beat ``t*L + j`` = ``V[j, tC:tC+C]`` for column tile t, j < L.

    Lanes past L or d are ignored. The output ``rows`` carries, per row block b and column tile t
    over d, the block's rows ``O[bR + r, tC:tC+C]`` (lanes past d are 0), in the order
    ``b, t, r``.

    Parameters
    ----------
    cfg : AccelConfig
        ``array``, ``attention`` and ``softmax.variant``; the engine's commands and operands
        follow ``cfg.attention_gemm``, the softmax ``cfg.attention_softmax``.

    Members
    -------
    cmd : In(stream.Signature(attention_cmd_layout(cfg)))
        One head per command: L (1..max_seq_len), d (1..max_head_dim), causal. A command out of
        range is consumed and sets ``error``.
    q : In(stream.Signature(ArrayLayout(signed(in_width), R)))
    k, v : In(stream.Signature(ArrayLayout(signed(in_width), C)))
        Scratchpad loads, taken after the command: ``ceil(L/R)*d``, ``ceil(L/C)*d`` and
        ``ceil(d/C)*L`` beats.
    gemm_cmd : Out(stream.Signature(gemm_cmd_layout(cfg.attention_gemm.gemm)))
    gemm_a : Out(stream.Signature(ArrayLayout(signed(in_width + 1), R)))
    gemm_b : Out(stream.Signature(ArrayLayout(signed(in_width + 1), C)))
        The jobs ``QK(b)``, ``PV(b)`` and their operand pairs (Q, K, V sign-extended, P
        zero-extended); ``gemm_a`` and ``gemm_b`` are valid together and taken together.
    gemm_out : In(stream.Signature(ArrayLayout(signed(cfg.attention_gemm.acc_width), C)))
        The engine's rows (a wider engine's rows fit: they are cut to this width).
    rows : Out(stream.Signature(ArrayLayout(signed(cfg.attention_gemm.acc_width), C)))
        The exact rows of ``P V``, to be requantized (:attr:`sim.golden.AttentionConstants`
        ``multiplier`` and ``shift``).
    softmax_i : Out(stream.Signature(ArrayLayout(signed(attention_softmax.in_width), lanes)))
    softmax_o : In(stream.Signature(ArrayLayout(unsigned(attention_softmax.out_width), lanes)))
    softmax_length : Out(range(max_seq_len + 1))
        A :class:`hw.softmax.Softmax` (``cfg.attention_softmax``, or a superset of it such as
        :attr:`hw.config.AccelConfig.shared_softmax`) with the constants of the score scale
        (:attr:`sim.golden.AttentionConstants` ``softmax``): the score rows (masked scores are
        the most negative ``attention_softmax.in_width``-bit score), the probabilities back, and
        the row length L.
    busy, error : Out(1)

    Latency and throughput: loading takes ``max(ceil(L/R)*d, ceil(L/C)*d, ceil(d/C)*L)`` cycles;
    then each ``QK(b)`` takes ``ceil(N_b/C) * max(d, 2R-1)`` array cycles and each ``PV(b)``
    ``ceil(d/C) * max(N_b, 2R-1)`` (``N_b = L``, or ``min(L, bR+R)`` when causal), plus a few
    cycles per job and the wait for the softmax where it is slower than the array;
    :func:`sim.cyclemodel.attention_cycles` models it. One head per command.
    """

    #: GEMM commands queued ahead of the engine: a job's command waits while the previous jobs
    #: drain, so the issuer can move on to the next job's operands.
    CMD_DEPTH = 3
    #: Operand pairs queued for the engine: the room flag is one cycle stale and counts the two
    #: cycles of reads in flight (the memories' and a register after the operand multiplexers).
    OPERAND_DEPTH = 8
    #: Score words queued for the serializer: the reads in flight (the score memory, its
    #: landing register) and the queue's own latency, so that the softmax is fed every cycle.
    SCORE_DEPTH = 6
    #: Probability beats after the softmax: two would halve its rate, and the writer's ready
    #: is then registered, so its conditions do not reach back through the softmax.
    P_DEPTH = 3

    def __init__(self, cfg):
        at = cfg.attention
        self.cfg = cfg
        self.R, self.C = R, C = cfg.array.rows, cfg.array.cols
        self.in_width = w = cfg.array.in_width
        self.gemm_cfg = cfg.attention_gemm
        self.sm_cfg = cfg.attention_softmax
        self.acc_width = eacc = cfg.attention_gemm.acc_width     # scores and P V rows
        self.max_len, self.max_dim = at.max_seq_len, at.max_head_dim
        self.blocks = -(-at.max_seq_len // R)            # row blocks of Q
        self.len_tiles = -(-at.max_seq_len // C)         # column tiles of K^T (and words per
                                                         # score row)
        self.dim_tiles = -(-at.max_head_dim // C)        # column tiles of V
        self.sl = at.softmax_lanes
        self.p_words = -(-at.max_seq_len // self.sl)     # P words per row and half
        ports = {
            "cmd": In(stream.Signature(attention_cmd_layout(cfg))),
            "q": In(stream.Signature(data.ArrayLayout(signed(w), R))),
            "k": In(stream.Signature(data.ArrayLayout(signed(w), C))),
            "v": In(stream.Signature(data.ArrayLayout(signed(w), C))),
            "gemm_cmd": Out(stream.Signature(gemm_cmd_layout(self.gemm_cfg.gemm))),
            "gemm_a": Out(stream.Signature(data.ArrayLayout(signed(w + 1), R))),
            "gemm_b": Out(stream.Signature(data.ArrayLayout(signed(w + 1), C))),
            "gemm_out": In(stream.Signature(data.ArrayLayout(signed(eacc), C))),
            "rows": Out(stream.Signature(data.ArrayLayout(signed(eacc), C))),
            "softmax_i": Out(stream.Signature(
                data.ArrayLayout(signed(self.sm_cfg.in_width), self.sl))),
            "softmax_o": In(stream.Signature(
                data.ArrayLayout(unsigned(self.sm_cfg.out_width), self.sl))),
            "softmax_length": Out(range(at.max_seq_len + 1)),
            "busy": Out(1),
            "error": Out(1),
        }
        super().__init__(ports)
        #: High on cycles where the next GEMM job (a PV) waits for the softmax. Observability
        #: for benchmarks; not a port.
        self.waiting_for_softmax = Signal()

    def _job_shape(self, m, jobs, hd, nb, name):
        """Registers describing the GEMM job ``jobs`` points at, valid while ``jobs.fresh``
        (they follow ``jobs`` one cycle late, so that no adder chain sits before a handshake):
        ``rows`` (M), ``k``, ``n``, ``k - 1``, ``k == 1``, ``n <= C``, ``rows - 1`` and the
        operand walk's step (``d`` for QK, ``L`` for PV)."""
        R, C = self.R, self.C
        base, L, d = jobs.base, hd.L, hd.d
        kdim = range(max(self.max_len, self.max_dim) + 1)
        shape = {
            "rows": Signal(range(R + 1), name=f"{name}_rows"),
            "rows_m1": Signal(range(R), name=f"{name}_rows_m1"),
            "k": Signal(kdim, name=f"{name}_k"),
            "n": Signal(kdim, name=f"{name}_n"),
            "k_m1": Signal(kdim, name=f"{name}_k_m1"),
            "k_is1": Signal(name=f"{name}_k_is1"),
            "n_le_c": Signal(name=f"{name}_n_le_c"),
            "step": Signal(kdim, name=f"{name}_step"),
        }
        qk = jobs.kind == _Jobs.QK
        full = base <= hd.L_m_r                  # the block has R rows
        # N_b: the causal mask cuts the columns to base + R, when that is short of L.
        cut = hd.causal & (base < hd.L_m_r)
        n_b = Mux(cut, base + R, L)
        n_b_m1 = Mux(cut, base + (R - 1), hd.L_m1)
        n_b_is1 = Mux(cut, (base == 0) if R == 1 else 0, hd.L_is1)
        n_b_le_c = Mux(cut, (base <= C - R) if C >= R else 0, hd.L_le_c)
        m.d.sync += [
            shape["rows"].eq(Mux(full, R, L - base)),
            shape["rows_m1"].eq(Mux(full, R - 1, hd.L_m1 - base)),
            shape["k"].eq(Mux(qk, d, n_b)),
            shape["n"].eq(Mux(qk, n_b, d)),
            shape["k_m1"].eq(Mux(qk, hd.d_m1, n_b_m1)),
            shape["k_is1"].eq(Mux(qk, hd.d_is1, n_b_is1)),
            shape["n_le_c"].eq(Mux(qk, n_b_le_c, hd.d_le_c)),
            shape["step"].eq(Mux(qk, d, L)),
            *jobs.decode(nb),
            jobs.fresh.eq(1),    # overridden by reset() and advance(), which come later
        ]
        return shape

    def _scratchpads(self, m, ns):
        """Builds the scratchpads: the Q, K and V memories, the double-buffered score memory and
        the R memories of P rows, each a submodule marked uncontended (every one is written and
        read in separate phases)."""
        (R, C, w, sl, Lmax, dmax, LT) = (
            self.R, self.C, self.in_width, self.sl, self.max_len, self.max_dim, self.len_tiles)
        # -- Scratchpads and buffers. ----------------------------------------------------------
        # Each is written and read in separate phases (uncontended): Q, K and V are written
        # only while a head loads and read only while it runs; the score buffer and the P rows
        # are double buffered, each half written only while its full flag is clear and read
        # only while it is set, the flag changing a cycle after the half's last read or write.
        def memory(name, shape, depth, attrs=None):
            m.submodules[name] = mem = Memory(shape=shape, depth=depth, init=[],
                                              attrs=uncontended(attrs))
            return mem

        qmem = memory("att_q", data.ArrayLayout(signed(w), R), self.blocks * dmax)
        kmem = memory("att_k", data.ArrayLayout(signed(w), C), LT * dmax)
        vmem = memory("att_v", data.ArrayLayout(signed(w), C), self.dim_tiles * Lmax)
        smem = memory("att_s", data.ArrayLayout(signed(self.acc_width), C), 2 * R * LT)
        # The P rows are small enough for distributed RAM, whose read address then fans out to
        # every cell of all R memories (7 ns of routing on the ECP5): block RAM instead.
        pmem = [memory(f"att_p{r}", data.ArrayLayout(unsigned(w), sl), 2 * self.p_words,
                       attrs={"ram_style": "block"})
                for r in range(R)]
        vars(ns).update(qmem=qmem, kmem=kmem, vmem=vmem, smem=smem, pmem=pmem)

    def _command(self, m, ns):
        """Builds the command stage and the per-head registers: the registered command and its
        range check, the ``loading``/``running``/``head`` state flags, ``busy`` and the
        command's ready, and the dividers that count the row blocks and the softmax beats per
        row while the scratchpads load."""
        R, C, sl, Lmax, dmax = self.R, self.C, self.sl, self.max_len, self.max_dim
        # -- Command and per-head registers. ---------------------------------------------------
        # The command waits one cycle in a register, so that its range checks and everything
        # they enable start from flip-flops.
        hd = _Head(Lmax, dmax, R, C)
        L, d, causal = hd.L, hd.d, hd.causal
        # nb = ceil(L/R) row blocks and row_beats = ceil(L/sl) softmax beats per row, counted
        # while the scratchpads load (which takes at least that many cycles).
        m.submodules.nb_div = nb_div = CeilDivider(Lmax, R)
        m.submodules.rb_div = rb_div = CeilDivider(Lmax, sl)
        nb, row_beats = nb_div.quotient, rb_div.quotient
        m.d.comb += self.softmax_length.eq(L)

        loading = Signal()
        running = Signal()
        c_valid = Signal()
        c_cmd = Signal.like(self.cmd.payload, name="c_cmd")
        # head = c_valid | loading | running, as one flip-flop set and cleared beside them: it
        # selects the engine's inputs, so it must not be a gate in front of their handshakes.
        head = Signal()
        m.d.comb += self.busy.eq(head)
        m.d.comb += self.cmd.ready.eq(~head)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [c_valid.eq(1), head.eq(1), c_cmd.eq(self.cmd.payload)]
        bad = ((c_cmd.length == 0) | (c_cmd.length > Lmax) | (c_cmd.head_dim == 0) |
               (c_cmd.head_dim > dmax))
        # The load counters restart on every command (they are unused unless loading).
        load_start = c_valid
        with m.If(c_valid):
            m.d.sync += [c_valid.eq(0), self.error.eq(bad), loading.eq(~bad), head.eq(~bad),
                         *hd.load(c_cmd.length, c_cmd.head_dim, c_cmd.causal)]
        for div, step in ((nb_div, R), (rb_div, sl)):
            m.d.comb += [div.load.eq(load_start), div.total.eq(c_cmd.length), div.step.eq(step),
                         div.en.eq(1)]
        counted = ~nb_div.busy & ~rb_div.busy
        vars(ns).update(d=d, head=head, hd=hd, L=L, causal=causal, nb=nb,
                        row_beats=row_beats, loading=loading, running=running, c_cmd=c_cmd,
                        load_start=load_start, counted=counted)

    def _loaders(self, m, ns):
        """Builds the three load walkers that fill the Q, K and V scratchpads from their streams,
        the ``loaded`` flag and the ``run_start`` strobe that ends loading and starts the run,
        and the per-half hand-off flags of the score buffer and of the P rows."""
        R, C, Lmax, dmax = self.R, self.C, self.max_len, self.max_dim
        (qmem, kmem, vmem, loading, c_cmd, load_start, counted, running) = (
            ns.qmem, ns.kmem, ns.vmem, ns.loading, ns.c_cmd, ns.load_start, ns.counted,
            ns.running)
        # -- LOAD: each stream fills its scratchpad from address 0: ``inner`` beats for each
        # block of ``step`` rows or columns, until the blocks cover ``limit``. The last beat of a
        # block and the last block are registered flags, counted down. -----------------------
        load_done = []
        for tag, port, mem, inner, step, limit in (("q", self.q, qmem, "d", R, "L"),
                                                   ("k", self.k, kmem, "d", C, "L"),
                                                   ("v", self.v, vmem, "L", C, "d")):
            c_inner = c_cmd.head_dim if inner == "d" else c_cmd.length
            c_limit = c_cmd.length if limit == "L" else c_cmd.head_dim
            wr = mem.write_port()
            addr = Signal.like(wr.addr, name=f"load_{tag}_addr")
            # ``inner`` beats a block, blocks of ``step`` rows or columns until they cover
            # ``limit``.
            m.submodules[f"load_{tag}_inner"] = beats = Countdown(max(Lmax, dmax), wrap=True)
            m.submodules[f"load_{tag}_outer"] = outer = Countdown(max(Lmax, dmax), step)
            done = Signal(name=f"load_{tag}_done")
            take = port.valid & port.ready
            # The write is registered: the stream's valid comes from the top's reader and its
            # select, across the die from the scratchpad. It lands a cycle after ``take``, still
            # before ``run_start`` (``loaded`` is registered after the last ``done``).
            m.d.comb += port.ready.eq(loading & ~done)
            m.d.sync += [wr.addr.eq(addr), wr.data.eq(port.payload), wr.en.eq(take)]
            m.d.comb += [
                beats.load.eq(load_start), beats.total.eq(c_inner), beats.en.eq(take),
                outer.load.eq(load_start), outer.total.eq(c_limit),
                outer.en.eq(take & beats.last),
            ]
            with m.If(load_start):
                m.d.sync += [addr.eq(0), done.eq(0)]
            with m.Elif(take):
                m.d.sync += addr.eq(addr + 1)
                with m.If(beats.last & outer.last):
                    m.d.sync += done.eq(1)
            load_done.append(done)

        # Registered: all loaded and counted (low on the command's cycle, while the flags reset).
        loaded = Signal()
        m.d.sync += loaded.eq(Cat(*load_done).all() & counted & ~load_start)
        run_start = Signal()
        m.d.comb += run_start.eq(loading & loaded)
        with m.If(run_start):
            m.d.sync += [loading.eq(0), running.eq(1)]

        # Buffer hand-off flags, one per half: scores of a block are in, probabilities are in.
        s_full, s_set, s_clr = Signal(2), Signal(2), Signal(2)
        p_full, p_set, p_clr = Signal(2), Signal(2), Signal(2)
        with m.If(run_start):
            m.d.sync += [s_full.eq(0), p_full.eq(0)]
        with m.Else():
            m.d.sync += [s_full.eq((s_full | s_set) & ~s_clr),
                         p_full.eq((p_full | p_set) & ~p_clr)]
        vars(ns).update(run_start=run_start, s_full=s_full, s_set=s_set, s_clr=s_clr,
                        p_full=p_full, p_set=p_set, p_clr=p_clr)

    def _issuer(self, m, ns):
        """Builds the job issuer: the walk over the head's jobs, the registered shape of the job
        being issued, its GEMM command FIFO into the engine, the operand FIFO, the dependency
        check against the hand-off flags, and the start of each job's operand walk."""
        R, sl, Lmax, dmax, LT = self.R, self.sl, self.max_len, self.max_dim, self.len_tiles
        (hd, nb, run_start, p_full, s_full, running) = (
            ns.hd, ns.nb, ns.run_start, ns.p_full, ns.s_full, ns.running)
        # -- ISSUER: walks the jobs, queues each one's GEMM command and reads its operands. ----
        ji = _Jobs("issue", self.blocks, R)
        ish = self._job_shape(m, ji, hd, nb, "issue")
        i_half = ji.block[0]
        feeding = Signal()
        kdim = range(max(Lmax, dmax) + 1)
        k_cnt = Signal(kdim)                 # k of the next read in this tile
        # The k reads of a tile, repeated for each tile of C columns until the job's n.
        m.submodules.k_loop = k_loop = Countdown(max(Lmax, dmax), wrap=True)
        m.submodules.t_loop = t_loop = Countdown(max(Lmax, dmax), self.C)
        job_start = Signal()
        m.d.comb += [k_loop.load.eq(job_start), k_loop.total.eq(ish["k"]),
                     t_loop.load.eq(job_start), t_loop.total.eq(ish["n"])]
        q_base = Signal(range(self.blocks * dmax + 1))   # b*d for QK(b)
        kv_base = Signal(range(max(LT * dmax, self.dim_tiles * Lmax) + 1))  # t*d or t*L
        p_word = Signal(range(self.p_words + 1))
        p_lane = Signal(range(sl))

        m.submodules.cmd_fifo = cmd_fifo = Queue(gemm_cmd_layout(self.gemm_cfg.gemm),
                                                   self.CMD_DEPTH)
        job_cmd = cmd_fifo.i.payload
        m.d.comb += [job_cmd.m.eq(ish["rows"]), job_cmd.k.eq(ish["k"]), job_cmd.n.eq(ish["n"])]
        wiring.connect(m, cmd_fifo.o, wiring.flipped(self.gemm_cmd))
        operands = data.StructLayout({"a": self.gemm_a.payload.shape(),
                                      "b": self.gemm_b.payload.shape()})
        m.submodules.op_fifo = op_fifo = Queue(operands, self.OPERAND_DEPTH)

        dep_ok = Mux(ji.kind == _Jobs.QK, ~s_full.bit_select(i_half, 1),
                     p_full.bit_select(i_half, 1))
        # Registered: once a job's dependency is met it stays met until the job runs.
        dep_ok_r = Signal()
        m.d.sync += dep_ok_r.eq(dep_ok)
        m.d.comb += self.waiting_for_softmax.eq(running & ~ji.done & ~feeding & ~dep_ok)
        with m.If(run_start):
            m.d.sync += [*ji.reset(), feeding.eq(0), q_base.eq(0)]
        with m.Elif(running & ~ji.done & ~feeding & ji.fresh & dep_ok_r & cmd_fifo.i.ready):
            # Start the job: queue its command and restart the operand walk.
            m.d.comb += [cmd_fifo.i.valid.eq(1), job_start.eq(1)]
            m.d.sync += [feeding.eq(1), k_cnt.eq(0), kv_base.eq(0), p_word.eq(0), p_lane.eq(0)]
        vars(ns).update(ji=ji, ish=ish, i_half=i_half, feeding=feeding, kdim=kdim, k_cnt=k_cnt,
                        k_loop=k_loop, t_loop=t_loop, q_base=q_base, kv_base=kv_base,
                        p_word=p_word, p_lane=p_lane, op_fifo=op_fifo)

    def _operands(self, m, ns):
        """Builds the operand feeder: one (A, B) read a cycle from the Q/K/V scratchpads and the
        P rows while the operand FIFO has room, the walk's counters and the job's end, the
        two register stages after the memories, and the multiplexing of Q/P and K/V into the
        operand FIFO that drives the engine's A and B streams."""
        sl, e_a, e_b = self.sl, self.gemm_a, self.gemm_b
        (op_fifo, feeding, p_lane, pmem, ji, qmem, kmem, vmem, q_base, k_cnt, kv_base, p_word,
         k_loop, i_half, t_loop, ish, d, p_clr) = (
            ns.op_fifo, ns.feeding, ns.p_lane, ns.pmem, ns.ji, ns.qmem, ns.kmem, ns.vmem, ns.q_base,
            ns.k_cnt, ns.kv_base, ns.p_word, ns.k_loop, ns.i_half, ns.t_loop, ns.ish, ns.d,
            ns.p_clr)
        # Operand reads: one (A, B) pair a cycle while the operand FIFO has room for it.
        issued = Signal()
        issued_d = Signal()
        kind_d = Signal()
        lane_d = Signal(range(sl))
        op_room = _room(m, op_fifo, issued, "op")
        k_last, t_last = k_loop.last, t_loop.last
        m.d.comb += [issued.eq(feeding & op_room),
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
            m.d.comb += rd.addr.eq(Mux(i_half, self.p_words, 0) + p_word)
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
                    with m.If(ji.kind == _Jobs.QK):
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
        a_word = Mux(kind_dd == _Jobs.QK, _sign_extend(q_dd),
                     Cat(*(Cat(reg[lane_dd], Const(0, 1)) for reg in p_dd)))
        b_word = Mux(kind_dd == _Jobs.QK, _sign_extend(k_dd), _sign_extend(v_dd))
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

    def _output_walker(self, m, ns):
        """Builds the output walker: it follows the jobs a second time, in the engine's output
        order, routing QK rows into the score buffer (setting its half's full flag at a job's
        end) and PV rows to the ``rows`` stream, and ends the head after the last PV row."""
        R, C, LT, e_out = self.R, self.C, self.len_tiles, self.gemm_out
        (hd, nb, kdim, running, smem, run_start, s_set, head) = (
            ns.hd, ns.nb, ns.kdim, ns.running, ns.smem, ns.run_start, ns.s_set, ns.head)
        # -- OUTPUT WALKER: routes the engine's rows, QK to the score buffer, PV onwards. ------
        # The job shape is stale for a cycle after each move, so the walker's flags compare
        # against it rather than being loaded from it: the last row of a tile is
        # ``o_r == rows - 1``; the last tile is ``n <= C`` on a job's first tile and a flag
        # counted down from N after that.
        jo = _Jobs("out", self.blocks, R)
        osh = self._job_shape(m, jo, hd, nb, "out")
        o_half = jo.block[0]
        o_r = Signal(range(R))
        o_t = Signal(range(max(LT, self.dim_tiles) + 1))
        o_roff = Signal(range(R * LT + 1))                        # o_r * LT
        o_first = Signal()                                        # on the job's first tile
        o_left = Signal(kdim)                # columns after this tile (valid unless o_first)
        o_last_r = Signal()                  # o_left <= C
        o_rlast = o_r == osh["rows_m1"]
        o_tlast = Mux(o_first, osh["n_le_c"], o_last_r)
        s_wr = smem.write_port()
        is_qk = jo.kind == _Jobs.QK
        # o_go = running & jo.fresh, as one flip-flop: it gates the engine's output ready, which
        # reaches the engine's output register slice. Both fall on the walker's moves.
        o_go = Signal()
        m.d.comb += [
            s_wr.addr.eq(Mux(o_half, R * LT, 0) + o_roff + o_t),
            s_wr.en.eq(o_go & e_out.valid & is_qk),
            e_out.ready.eq(o_go & (is_qk | self.rows.ready)),
        ]
        for c in range(C):   # scores fit the score width (the engine's may be wider)
            m.d.comb += s_wr.data[c].eq(e_out.payload[c])
        m.d.comb += [self.rows.valid.eq(o_go & e_out.valid & ~is_qk),
                     self.rows.payload.eq(e_out.payload)]
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

    def _softmax_feeder(self, m, ns):
        """Builds the softmax feeder's reader: it waits for a full score half, walks its rows and
        tiles, computes each word's causal mask and row-end flags, and queues the registered
        scores with that metadata in the score FIFO, clearing the half after its last row."""
        R, C, sl, Lmax, LT = self.R, self.C, self.sl, self.max_len, self.len_tiles
        (smem, run_start, causal, L, hd, running, s_full, s_clr, nb) = (
            ns.smem, ns.run_start, ns.causal, ns.L, ns.hd, ns.running, ns.s_full, ns.s_clr, ns.nb)
        # -- SOFTMAX FEEDER: reads a block's score rows, masks, serializes into the softmax. ---
        # Beside the row and tile counters it keeps ``L - col`` and ``lim - col`` (col the
        # tile's first column, lim the row's last unmasked column), so that the mask and the
        # end of a row are comparisons with constants.
        groups = C // sl
        f_block = Signal(range(self.blocks + 1))
        f_more = Signal()                       # f_block < nb
        f_base = Signal(range(self.blocks * R + 1))
        f_left = Signal(range(Lmax + 1))        # rows from this block to the end
        f_rows_m1 = Signal(range(R))            # min(f_left, R) - 1
        f_half = f_block[0]
        f_r = Signal(range(R))
        f_t = Signal(range(LT + 1))
        f_roff = Signal(range(R * LT + 1))      # f_r * LT
        f_lim = Signal(range(self.blocks * R + R + 1))                    # f_base + f_r
        f_rem = Signal(range(-C, Lmax + 1))                               # L - col
        f_rel = Signal(range(-(LT * C) - C, self.blocks * R + R + 1))     # lim - col
        f_tlast = Signal()                      # f_rem <= C
        f_busy = Signal()
        meta = data.StructLayout({"mask": C, "keep": groups})
        scores = data.StructLayout({"word": data.ArrayLayout(signed(self.acc_width), C),
                                    "meta": meta})
        m.submodules.s_fifo = s_fifo = Queue(scores, self.SCORE_DEPTH)
        s_rd = smem.read_port()
        f_issue = Signal()
        f_issue_d = Signal()
        f_meta = Signal(meta)
        f_meta_d = Signal(meta)
        m.d.sync += f_issue_d.eq(f_issue)
        f_room = _room(m, s_fifo, f_issue, "s")
        m.d.comb += [
            f_issue.eq(f_busy & f_room),
            s_rd.addr.eq(Mux(f_half, R * LT, 0) + f_roff + f_t),
        ]
        for c in range(C):   # column col + c is masked when col + c > lim
            m.d.comb += f_meta.mask[c].eq(causal & (f_rel < c))
        for g in range(groups):   # sub-beat g is in the row: the first, then while L - col > g*sl
            m.d.comb += f_meta.keep[g].eq(1 if g == 0 else f_rem > g * sl)
        m.d.sync += f_meta_d.eq(f_meta)
        with m.If(run_start):
            m.d.sync += [f_block.eq(0), f_more.eq(1), f_base.eq(0), f_left.eq(L),
                         f_rows_m1.eq(Mux(L >= R, R - 1, hd.L_m1)), f_busy.eq(0)]
        with m.Elif(running & ~f_busy & f_more & s_full.bit_select(f_half, 1)):
            m.d.sync += [f_busy.eq(1), f_r.eq(0), f_roff.eq(0), f_t.eq(0), f_lim.eq(f_base),
                         f_rem.eq(L), f_rel.eq(f_base), f_tlast.eq(hd.L_le_c)]
        with m.If(f_issue):
            with m.If(f_tlast):
                m.d.sync += [f_t.eq(0), f_r.eq(f_r + 1), f_roff.eq(f_roff + LT),
                             f_lim.eq(f_lim + 1), f_rem.eq(L), f_rel.eq(f_lim + 1),
                             f_tlast.eq(hd.L_le_c)]
                with m.If(f_r == f_rows_m1):
                    m.d.sync += [f_busy.eq(0), f_block.eq(f_block + 1), f_more.eq(f_block + 1 < nb),
                                 f_base.eq(f_base + R), f_left.eq(f_left - R),
                                 f_rows_m1.eq(Mux(f_left >= 2 * R, R - 1, f_left - (R + 1)))]
                    m.d.comb += s_clr.eq(Mux(f_half, 0b10, 0b01))
            with m.Else():
                m.d.sync += [f_t.eq(f_t + 1), f_rem.eq(f_rem - C), f_rel.eq(f_rel - C),
                             f_tlast.eq(f_rem <= 2 * C)]
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

    def _serializer(self, m, ns):
        """Builds the serializer: a shift register of the score FIFO's word, ``sl`` lanes a
        sub-beat, whose first sub-beat is the softmax input. A word is loaded with its masked
        lanes replaced by the most negative score, and only its sub-beats in the row (``keep``,
        a prefix); it is loaded when the register holds at most one sub-beat and that one
        leaves, so a word follows the last without a gap. Each register bit takes its load or
        its shift through one LUT, and no sub-beat counter selects among the lanes (timing)."""
        sl, sw, sm_i = self.sl, self.sm_cfg.in_width, self.softmax_i
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
        with m.If(s_fifo.o.valid & s_fifo.o.ready):
            for c in range(len(word)):
                m.d.sync += held[c // sl][c % sl].eq(Mux(w_meta.mask[c], masked_min, word[c]))
            m.d.sync += held_ok.eq(w_meta.keep)
        with m.Elif(advance):
            for g in range(groups - 1):
                m.d.sync += held[g].eq(held[g + 1])
            m.d.sync += held_ok.eq(held_ok >> 1)

    def _p_writer(self, m, ns):
        """Builds the P writer: a three-entry FIFO after the softmax output, and the walk that
        writes its probabilities into P half b%2, row r into memory r, setting the half's full
        flag after a block's last row."""
        R, Lmax, sm_o = self.R, self.max_len, self.softmax_o
        (pmem, run_start, running, L, row_beats, hd, p_set, p_full) = (
            ns.pmem, ns.run_start, ns.running, ns.L, ns.row_beats, ns.hd, ns.p_set, ns.p_full)
        # -- P WRITER: probabilities into P half b%2, row r into memory r. ---------------------
        # The last beat of a row and the last row of a block are registered flags.
        w_block = Signal(range(self.blocks + 1))
        w_left = Signal(range(Lmax + 1))        # rows from this block to the end
        w_rows_m1 = Signal(range(R))            # min(w_left, R) - 1
        w_half = w_block[0]
        w_r = Signal(range(R))
        w_u = Signal(range(self.p_words + 1))
        # The beats of a row, repeated for every row.
        m.submodules.p_beats = beats = Countdown(self.p_words, wrap=True)
        w_ulast = beats.last
        m.submodules.p_fifo = p_fifo = Queue(sm_o.payload.shape(), self.P_DEPTH)
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
                wr.addr.eq(Mux(w_half, self.p_words, 0) + w_u),
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

    def elaborate(self, platform):
        m = Module()
        # Each builder leaves in ``ns`` the values that later ones use. Their order is the order
        # in which signals, statements and submodules are created, which fixes the netlist.
        ns = SimpleNamespace()
        self._scratchpads(m, ns)
        self._command(m, ns)
        self._loaders(m, ns)
        self._issuer(m, ns)
        self._operands(m, ns)
        self._output_walker(m, ns)
        self._softmax_feeder(m, ns)
        self._serializer(m, ns)
        self._p_writer(m, ns)
        return m

