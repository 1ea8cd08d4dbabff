"""How the host driver splits an op into RUNs that fit the buffers: GEMM blocks, the K chunk,
a Linear's runs summed on chip, and the rows of a row op or a residual add per run.
:class:`boards.host.Client` runs them, and the model planner (:mod:`intformer.model.plan`)
counts them."""

from collections import namedtuple

from hw.isa import ROW_OPS, Buf, LinMode, Op, buffer_specs, narrow

__all__ = ["k_chunk", "gemm_block", "sums_on_chip", "LinearSplit", "LinearRun", "linear_runs",
           "linear_split", "rows_per_run", "residual_per_run", "row_input", "row_output"]


def k_chunk(cfg, depth):
    """The largest K of one GEMM run: ``min(gemm.max_k, depth)`` (B holds ``K`` words a column
    tile)."""
    return min(cfg.gemm.max_k, depth)


def gemm_block(cfg, depth, M, K, N, rows_first=False):
    """``(mb, nb)``: the rows and columns of the blocks :meth:`Client.gemm` and
    :meth:`Client.linear` split ``(M x K) @ (K x N)`` into, for a ``K`` of at most
    :func:`k_chunk`. Columns first (the default): as many column tiles as B holds
    (``depth // K``), then as many rows as A and C hold, so B's words are sent again for each
    row block when a block takes more than one K chunk (:func:`linear_runs`). ``rows_first``:
    as many rows as A holds, then only as many column tiles as C holds for all of them, so
    B's words are sent once a chunk, but A's for more column blocks. (A plain GEMM writes B
    once a column block, so columns first never sends more there.)"""
    R, C = cfg.array.rows, cfg.array.cols
    tiles = depth // K
    rows = min(M, cfg.gemm.max_m, tiles * R)
    nb = min(N, cfg.gemm.max_n, tiles * C)
    if rows_first:
        nb = min(nb, max(1, depth // rows) * C)
    mb = min(rows, depth // -(-nb // C))
    return mb, nb


def sums_on_chip(cfg, whole_width, passes):
    """Whether :meth:`Client.linear` sums on chip (:func:`linear_runs`): C's lanes hold the
    whole sum (``whole_width``, :func:`sim.ops.linear_acc_width`, at most ``acc_width``) and
    the activations are at most two digits (LIN_MODE's SHIFT weighs one). Otherwise it sums
    exact GEMM_RAW runs on the host."""
    return whole_width <= cfg.acc_width and passes <= 2


#: How :meth:`Client.linear` splits an on-chip sum (:func:`linear_split`): K in chunks of
#: ``k_chunk``, and blocks of :func:`gemm_block` rows first or not (``rows_first``).
LinearSplit = namedtuple("LinearSplit", ["k_chunk", "rows_first"])

#: One RUN LINEAR of an on-chip sum (:func:`linear_runs`): rows ``i0 .. i0+m`` and columns
#: ``j0 .. j0+n`` of the output, digit ``p`` of the activations, rows ``k0 .. k0+k`` of K; the
#: run's ``mode`` (:class:`hw.isa.LinMode` flags); whether CHAN (``write_chan``, before it) and
#: B (``write_b``) must be written for it, and whether C is read after it (``read_c``).
LinearRun = namedtuple("LinearRun", ["i0", "m", "j0", "n", "p", "k0", "k", "mode", "write_chan",
                                     "write_b", "read_c"])


def linear_runs(cfg, depth, M, K, N, passes, split):
    """The RUN LINEARs of :meth:`Client.linear` summing ``(M x K) @ (K x N)`` on chip, in
    order, as ``split`` (a :class:`LinearSplit`, its K chunk at most :func:`k_chunk`) says,
    the activations in ``passes`` (1 or 2) signed digits (``p`` indexes
    :func:`sim.ops.split_digits`' list, most significant first): per block of
    :func:`gemm_block` (column blocks outside, CHAN written once each), each K chunk, the low
    digit then the high one (SHIFT), into the same C words (:class:`hw.isa.LinMode`): the
    first run plain, the others ACCUMULATE, all but the last RAW; C read once a block. B is
    written when the run's chunk or column block is not the one it holds, so once for both
    digits of a chunk."""
    if passes not in (1, 2):
        raise ValueError(f"Linear passes must be 1 or 2 to sum on chip (LinMode.SHIFT weighs "
                         f"one digit), not {passes}")
    kc = split.k_chunk
    mb, nb = gemm_block(cfg, depth, M, kc, N, split.rows_first)
    chunks = [(k0, min(kc, K - k0)) for k0 in range(0, K, kc)]
    steps = [(p, k0, k) for k0, k in chunks for p in reversed(range(passes))]
    held = None
    for j0 in range(0, N, nb):
        n = min(nb, N - j0)
        for i0 in range(0, M, mb):
            m = min(mb, M - i0)
            for s, (p, k0, k) in enumerate(steps):
                mode = LinMode.SHIFT if p < passes - 1 else LinMode(0)
                if s:
                    mode |= LinMode.ACCUMULATE
                if s < len(steps) - 1:
                    mode |= LinMode.RAW
                yield LinearRun(i0, m, j0, n, p, k0, k, mode, i0 == 0 and s == 0,
                                held != (j0, k0), s == len(steps) - 1)
                held = (j0, k0)


def linear_split(cfg, depth, M, K, N, passes):
    """The :class:`LinearSplit` :meth:`Client.linear` sums ``(M x K) @ (K x N)`` on chip by:
    of :func:`k_chunk` and its halvings (down to the array's rows), each with blocks columns
    first or rows first, the one whose :func:`linear_runs` send the fewest bytes over the
    link (smaller chunks give larger blocks of rows and columns, so fewer A and B words sent
    again; ties go to the larger chunk, then to columns first)."""
    specs = buffer_specs(cfg, depth)
    R, C = cfg.array.rows, cfg.array.cols
    nbytes = {buf: specs[buf].nbytes for buf in (Buf.A, Buf.B)}
    result_bytes = specs[narrow(specs, Buf.C)].nbytes
    best = None
    kc = min(K, k_chunk(cfg, depth))
    while True:
        for split in (LinearSplit(kc, False), LinearSplit(kc, True)):
            cost = 0
            for run in linear_runs(cfg, depth, M, K, N, passes, split):
                cost += -(-run.m // R) * run.k * nbytes[Buf.A] + 32       # A, registers, RUN
                if run.write_b:
                    cost += -(-run.n // C) * run.k * nbytes[Buf.B]
                if run.read_c:      # the requantized result
                    cost += run.m * -(-run.n // C) * result_bytes
            if best is None or cost < best[0]:
                best = cost, split
        if kc <= R:
            return best[1]
        kc = max(R, kc // 2)


def rows_per_run(depth, beats):
    """Rows of ``beats`` words each that one row-op run streams through X (at least one)."""
    return max(1, depth // beats)


def residual_per_run(depth, lanes):
    """Elements of each of ``a`` and ``b`` that one RUN RESIDUAL adds: half of X each."""
    return (depth // 2) * lanes


def row_input(cfg, op):
    """The buffer row op ``op`` (a key of :data:`hw.isa.ROW_OPS`) takes its input words
    through: X's narrow view X_IN where the unit's ``in_width``-bit inputs fit its lanes (fewer
    bytes on the link), X otherwise."""
    specs, unit = buffer_specs(cfg, 1), getattr(cfg, ROW_OPS[op])
    view = narrow(specs, Buf.X)
    return view if unit.in_width <= specs[view].elem_width else Buf.X


def row_output(cfg, op):
    """The buffer the host reads row op ``op``'s results from: Y's narrow view Y_OUT where
    they fit its lanes (softmax's unsigned probabilities take a bit more than ``out_width``),
    Y otherwise."""
    specs, unit = buffer_specs(cfg, 1), getattr(cfg, ROW_OPS[op])
    view = narrow(specs, Buf.Y)
    return view if unit.out_width + (op == Op.SOFTMAX) <= specs[view].elem_width else Buf.Y
