"""Analytic cycle models of the units, checked against simulation by tests and ``bench/``."""

__all__ = ["gemm_cycles", "gemm_utilization", "softmax_row_timing", "attention_jobs",
           "attention_cycles"]


def gemm_cycles(cfg, M, K, N):
    """Cycles :class:`hw.gemm.GemmEngine` takes for ``(M x K) @ (K x N)`` with no stalls.

    Counted as :class:`sim.bench.SimResult` counts them: from the cycle the command is accepted
    to the cycle the last output row is accepted, inclusive.

    * The first operand pair enters the array two cycles after the command (the command
      register, then the sequencer; the operands wait in the input skid buffer meanwhile);
      tile i's last pair enters ``max(K, 2R - 1)`` cycles after tile i-1's (``2R - 1`` is the
      drain-chain spacing).
    * Row r of a tile leaves ``2r + C + 7`` cycles after the tile's last pair enters: r cycles of
      skew, c + 1 through the row of elements, 2 of multiply and accumulate, 1 into the drain
      slot, r up the drain chain, ``C - 1 - c`` of de-skew, 2 through the output FIFO and 1
      through the register slice after it.
    """
    R, C = cfg.array.rows, cfg.array.cols
    tiles = -(-M // R) * -(-N // C)
    rows_last = M - (-(-M // R) - 1) * R
    return K + (tiles - 1) * max(K, 2 * R - 1) + 2 * (rows_last - 1) + C + 8


def gemm_utilization(cfg, M, K, N):
    """Modelled useful MACs / (R * C * cycles)."""
    return M * K * N / (cfg.array.rows * cfg.array.cols * gemm_cycles(cfg, M, K, N))


def softmax_row_timing(sm_cfg, length):
    """``(period, latency)`` of :class:`hw.softmax.Softmax` for rows of ``length``: a row
    enters every ``period`` cycles in steady state and a lone row leaves ``latency`` cycles
    after its first beat enters (figures from the unit's docstring, checked by its tests).

    With ``N`` beats a row and ``G = ceil((out_width + 7)/2)`` radix-4 divider steps: latency
    ``3N + G + 25``; period ``N`` from ``N >= G + 19``, else ``max(N + 1, ceil((N + G + 18)/2))``
    (the ``N + 1`` bounds the measured ``N + 1/3`` just below that threshold)."""
    n = -(-length // sm_cfg.lanes)
    g = -(-(sm_cfg.out_width + 7) // 2)
    period = n if n >= g + 19 else max(n + 1, -(-(n + g + 18) // 2))
    return period, 3 * n + g + 25


#: Constants of :func:`attention_cycles`, in cycles, fitted to simulation (a grid search over the
#: 9 shapes of ``bench/attention.py`` minimizing the worst relative error, 0.05%): from loading
#: to the first job's first operand; between one job's last operand pair and the next job's
#: first (the job shape is registered, so a job starts a cycle after its predecessor moves on);
#: from a QK job's last output row to the softmax's first beat (through the score FIFO); from
#: the softmax's last probability to the first operand of the PV job waiting for it (through the
#: FIFO after the softmax, the registered dependency check, the operand reads' two register
#: stages and the engine's command register); and from the last operand pair to the last output
#: row (the 7-cycle requantizer).
ATTENTION_START, ATTENTION_JOB_GAP, ATTENTION_TO_SOFTMAX, ATTENTION_FROM_SOFTMAX, \
    ATTENTION_TAIL = 0, 2, 3, 11, 23


def attention_jobs(blocks):
    """The GEMM job order of :class:`hw.attention.AttentionController`: ``("QK", b)`` and
    ``("PV", b)`` interleaved so that the softmax of block b overlaps ``QK(b+1)``."""
    jobs = [("QK", 0)]
    for b in range(1, blocks):
        jobs += [("QK", b), ("PV", b - 1)]
    return jobs + [("PV", blocks - 1)]


def attention_cycles(cfg, L, d, causal=False, heads=1):
    """Modelled cycles of :class:`hw.attention.AttentionController` for ``heads`` heads, with
    no stalls, counted from the first command to the last output row (loading included).

    The array runs the jobs back to back (:func:`attention_jobs`); each job costs what the GEMM
    engine costs (:func:`gemm_cycles`' ``K + (tiles - 1) * max(K, 2R - 1)``) plus a small gap.
    ``PV(b)`` also waits for the softmax of block b, which starts when ``QK(b)``'s last row is
    out and takes one softmax period per row plus the unit's latency.
    """
    R, C = cfg.array.rows, cfg.array.cols
    sm_cfg = cfg.attention_softmax
    gap = 2 * R - 1
    blocks = -(-L // R)
    period, latency = softmax_row_timing(sm_cfg, L)
    load = max(blocks * d, -(-L // C) * d, -(-d // C) * L)
    total = 0
    for _ in range(heads):
        t = load + ATTENTION_START          # first operand of the first job
        softmax_free = 0                    # when the softmax can take the next block
        probs_ready = {}
        for kind, b in attention_jobs(blocks):
            rows = min(R, L - b * R)
            cols = min(L, b * R + R) if causal else L
            k, tiles = (d, -(-cols // C)) if kind == "QK" else (cols, -(-d // C))
            if kind == "PV":
                t = max(t, probs_ready[b] + ATTENTION_FROM_SOFTMAX)
            last = t + k - 1 + (tiles - 1) * max(k, gap)   # last operand pair
            if kind == "QK":
                scores_out = last + 2 * (rows - 1) + C + 7
                start = max(scores_out + ATTENTION_TO_SOFTMAX, softmax_free)
                softmax_free = start + rows * period
                probs_ready[b] = start + (rows - 1) * period + latency
            t = last + 1 + ATTENTION_JOB_GAP
        rows_last = L - (blocks - 1) * R
        total += last + 2 * (rows_last - 1) + C + ATTENTION_TAIL
    return total
