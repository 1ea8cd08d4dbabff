"""The attention controller's loaders: the Q, K and V streams into their scratchpads, the start of
the run (which overlaps the loads), and the hand-off flags of the score and P buffers."""

from amaranth.hdl import Cat, Signal

from ..stream import Countdown

__all__ = ["build_loaders"]


def build_loaders(ctl, m, ns):
    """Builds the three load walkers that fill the Q, K and V scratchpads from their streams
    and count what is in (``q_blocks``, ``k_blocks``, ``v_done``), the ``run_start`` strobe
    that starts the run once the row blocks are counted, the end of loading, and the
    per-half hand-off flags of the score buffer and of the P rows."""
    R, C, Lmax, dmax = ctl.R, ctl.C, ctl.max_len, ctl.max_dim
    (qmem, kmem, vmem, loading, c_cmd, load_start, counted, running) = (
        ns.qmem, ns.kmem, ns.vmem, ns.loading, ns.c_cmd, ns.load_start, ns.counted,
        ns.running)
    # -- LOAD: each stream fills its scratchpad from address 0: ``inner`` beats for each
    # block of ``step`` rows or columns, until the blocks cover ``limit``. The last beat of a
    # block and the last block are registered flags, counted down. -----------------------
    load_done = []
    load_blocks = {}
    for tag, port, mem, inner, step, limit in (("q", ctl.q, qmem, "d", R, "L"),
                                               ("k", ctl.k, kmem, "d", C, "L"),
                                               ("v", ctl.v, vmem, "L", C, "d")):
        c_inner = c_cmd.head_dim if inner == "d" else c_cmd.length
        c_limit = c_cmd.length if limit == "L" else c_cmd.head_dim
        wr = mem.write_port()
        addr = Signal.like(wr.addr, name=f"load_{tag}_addr")
        # ``inner`` beats a block, blocks of ``step`` rows or columns until they cover
        # ``limit``.
        m.submodules[f"load_{tag}_inner"] = beats = Countdown(max(Lmax, dmax), wrap=True)
        m.submodules[f"load_{tag}_outer"] = outer = Countdown(max(Lmax, dmax), step)
        done = Signal(name=f"load_{tag}_done")
        # Whole blocks loaded: Q's row blocks and K's column tiles gate the QK jobs' reads.
        blocks = Signal(range(max(Lmax, dmax) + 1), name=f"load_{tag}_blocks")
        take = port.valid & port.ready
        # The write is registered: the stream's valid comes from the top's reader and its
        # select, across the die from the scratchpad. It lands a cycle after ``take``, the
        # cycle in which ``done`` and ``blocks`` first show it, before any read that they
        # allow (the issuer registers them before a job starts, and its reads follow).
        m.d.comb += port.ready.eq(loading & ~done)
        m.d.sync += [wr.addr.eq(addr), wr.data.eq(port.payload), wr.en.eq(take)]
        m.d.comb += [
            beats.load.eq(load_start), beats.total.eq(c_inner), beats.en.eq(take),
            outer.load.eq(load_start), outer.total.eq(c_limit),
            outer.en.eq(take & beats.last),
        ]
        with m.If(load_start):
            m.d.sync += [addr.eq(0), done.eq(0), blocks.eq(0)]
        with m.Elif(take):
            m.d.sync += addr.eq(addr + 1)
            with m.If(beats.last):
                m.d.sync += blocks.eq(blocks + 1)
                with m.If(outer.last):
                    m.d.sync += done.eq(1)
        load_done.append(done)
        load_blocks[tag] = blocks

    # The run starts once the row blocks are counted, while the scratchpads still load: the
    # issuer holds QK(b) until Q's row block b is in and each of its K tiles' reads until that
    # tile is in, and PV until V is, so that loading overlaps the first jobs. ``started``
    # makes the start one strobe a command; loading ends when all three are in (registered:
    # low on the command's cycle, while the flags reset).
    counted_r = Signal()
    started = Signal()
    loaded = Signal()
    m.d.sync += [counted_r.eq(counted & ~load_start),
                 loaded.eq(Cat(*load_done).all() & ~load_start)]
    run_start = Signal()
    m.d.comb += run_start.eq(loading & counted_r & ~started)
    with m.If(load_start):
        m.d.sync += started.eq(0)
    with m.Elif(run_start):
        m.d.sync += [started.eq(1), running.eq(1)]
    with m.If(loading & loaded):
        m.d.sync += loading.eq(0)

    # Buffer hand-off flags, one per half: scores of a block are in, probabilities are in.
    s_full, s_set, s_clr = Signal(2), Signal(2), Signal(2)
    p_full, p_set, p_clr = Signal(2), Signal(2), Signal(2)
    with m.If(run_start):
        m.d.sync += [s_full.eq(0), p_full.eq(0)]
    with m.Else():
        m.d.sync += [s_full.eq((s_full | s_set) & ~s_clr),
                     p_full.eq((p_full | p_set) & ~p_clr)]
    vars(ns).update(run_start=run_start, q_blocks=load_blocks["q"], k_blocks=load_blocks["k"],
                    v_done=load_done[2], s_full=s_full, s_set=s_set, s_clr=s_clr,
                    p_full=p_full, p_set=p_set, p_clr=p_clr)
