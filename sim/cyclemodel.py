"""Analytic cycle models of the units and of the accelerator top's runs, checked against
simulation by tests and ``bench/``."""

from hw.gemm import tile_gap
from hw.isa import vector_lanes
from hw.layernorm import NORM_STEPS, OUTPUT_STAGES, RECIP_STEPS, SLOTS, SQRT_WIDTH

__all__ = ["gemm_cycles", "gemm_utilization", "linear_cycles", "gemm_raw_cycles",
           "residual_cycles", "gelu_cycles", "layernorm_cycles", "RUN_PORT_CYCLES",
           "GELU_IN_C_CYCLES",
           "softmax_row_timing", "SoftmaxRows", "attention_jobs", "attention_array_cycles",
           "attention_cycles",
           "attention_run_cycles"]


def gemm_cycles(cfg, M, K, N):
    """Cycles :class:`hw.gemm.GemmEngine` takes for ``(M x K) @ (K x N)`` with no stalls.

    Counted as :class:`sim.bench.SimResult` counts them: from the cycle the command is accepted
    to the cycle the last output row is accepted, inclusive.

    * The first operand pair enters the array two cycles after the command (the command
      register, then the sequencer; the operands wait in the input skid buffer meanwhile);
      tile i's last pair enters ``max(K, G)`` cycles after tile i-1's (``G``,
      :func:`hw.gemm.tile_gap`: ``2R - 1``, the drain chain's spacing, or ``2R`` with a
      half-rate requantizer).
    * Row r of a tile leaves ``2r + C + 7`` cycles after the tile's last pair enters: r cycles of
      skew, c + 1 through the row of elements, 2 of multiply and accumulate, 1 into the drain
      slot, r up the drain chain, ``C - 1 - c`` of de-skew, 2 through the output FIFO and 1
      through the register slice after it.
    """
    R, C = cfg.array.rows, cfg.array.cols
    tiles = -(-M // R) * -(-N // C)
    rows_last = M - (-(-M // R) - 1) * R
    return K + (tiles - 1) * max(K, tile_gap(cfg)) + 2 * (rows_last - 1) + C + 8


def gemm_utilization(cfg, M, K, N):
    """Modelled useful MACs / (R * C * cycles)."""
    return M * K * N / (cfg.array.rows * cfg.array.cols * gemm_cycles(cfg, M, K, N))


#: Cycles of a RUN on :class:`hw.top.Accelerator`, counted from the cycle the dispatcher accepts
#: it (its ``run`` pulse, cycle 0): the LAUNCH state comes ``RUN_LAUNCH`` cycles after the shape
#: preparation's last step (the PREP state seeing the dividers done, FIT, FIT2, LAUNCH); a
#: reader offers its first word ``RUN_FIRST_WORD`` cycles after LAUNCH (its ``start``
#: registered, the loops latched, the read issued, the memory, the landing register, the queue,
#: the register slice); with LINEAR in the config, the engine's rows pass
#: a register slice and :class:`hw.accumulate.Accumulate` (``RUN_ACCUMULATE`` cycles: the slice
#: and the stage's register) and an exact row is written into C on the cycle it leaves it; a
#: requantized row is written into C ``RUN_REQUANT`` cycles after the engine's output gives it
#: up (those two, the register slice before the requantizer, its 7 stages).
RUN_LAUNCH, RUN_FIRST_WORD, RUN_ACCUMULATE, RUN_REQUANT = 4, 8, 2, 10

#: Cycles the command port adds to each run as the simulated tops count a run
#: (:attr:`boards.simtop.SimulatedTop.run_cycles`, from the RUN command's first byte to the
#: first cycle ``busy`` is low) beyond the models below (from the accepted RUN to the last word
#: written): 11 from the RUN's first byte to its acceptance (its 4 bytes, the three stages of
#: checks, the verdict acted on) and 1 for ``busy``'s fall after the last write. On a board the
#: command's bytes come at the link's pace, which the link time counts; 4 of the 12 are theirs.
RUN_PORT_CYCLES = 11 + 1


def _drain_delay(cfg, M, K, N):
    """Cycles :class:`hw.channels.ChannelStage` and the requantizer's pace add to the last row
    of a LINEAR run, up to the requantizer taking it.

    Tile t's rows leave the engine two cycles apart, ``E_t + 2r`` (``E_t = E_0 + t*S``, ``S =
    max(K, G)``, ``G`` the engine's :func:`hw.gemm.tile_gap`), and the stage passes at most one
    a cycle; after a tile's last row it passes nothing for 2 cycles (the next tile's constants
    are read). So tile t's first row passes at ``c_t = max(E_t, last_(t-1) + 3)`` and its last
    at ``last_t = max(E_t + 2(n_t - 1), c_t + n_t - 1)``. The stage sets the pace tile after
    tile when ``S < n + 2`` (R <= 2 and K < R + 2; the engine's credit then holds its inputs
    back, its output queue full, so the stage never waits for a row), or once, at a last row
    tile of ``n < R`` rows after a full one, when ``2R - n + 2 > S`` (small K; it is gone again
    after further tiles of that row tile).

    The requantizer takes a row on the cycle the stage offers it, except with
    ``requant.half_rate``, where it takes one every 2 cycles, each a cycle after it is offered:
    tile t's first row at ``q_t = max(c_t + 1, q_(t-1)' + 2)`` and its last ``2(n_t - 1)``
    cycles later (``q_(t-1)'``, the previous tile's last). The engine then spaces its tiles at
    least ``2R`` apart, so a tile's rows are taken before the next tile's come: the pace costs a
    cycle in all, and the register slice before the requantizer holds the one row that waits,
    so that the stage is not held back (exact on the shapes of ``tests/hw/test_top.py``).
    """
    R, C = cfg.array.rows, cfg.array.cols
    S = max(K, tile_gap(cfg))
    half_rate = cfg.requant.half_rate
    t = 0
    last = taken = None
    for i in range(-(-M // R)):
        n = min(R, M - i * R)
        for _ in range(-(-N // C)):
            E = t * S
            c = E if last is None else max(E, last + 3)
            last = max(E + 2 * (n - 1), c + n - 1)
            if half_rate:
                first = c + 1 if taken is None else max(c + 1, taken + 2)
                taken = first + 2 * (n - 1)
            else:
                taken = last
            t += 1
    return taken - (E + 2 * (n - 1))


def linear_cycles(cfg, M, K, N, raw=False):
    """Cycles of ``RUN LINEAR`` on :class:`hw.top.Accelerator` for ``(M x K) @ (K x N)``, with
    no stalls (exact: ``tests/hw/test_top.py``), in any ``LIN_MODE`` (:class:`hw.isa.LinMode`):
    ``raw`` with its RAW flag. ACCUMULATE adds nothing: C's reader starts at launch, with A's
    and B's, and offers its words long before the first row.

    Counted from the cycle the dispatcher accepts the RUN (its ``run`` pulse) to the cycle the
    last word is written into C, inclusive (the top's ``busy`` falls a cycle after that).

    * Shape preparation: ``max(ceil(M/R), ceil(N/C))`` steps of the dispatcher's dividers, one a
      cycle; LAUNCH ``RUN_LAUNCH`` (4) cycles after them.
    * The A and B readers offer their first words ``RUN_FIRST_WORD`` (8) cycles after LAUNCH and
      then one a cycle; the engine, whose command came at launch, takes the first pair then, so
      its count (:func:`gemm_cycles`, from a command a cycle before the first pair is taken)
      starts 7 cycles after LAUNCH.
    * :class:`hw.channels.ChannelStage` passes the rows, 2 cycles idle after each tile, and the
      requantizer takes them (:func:`_drain_delay`: nothing when ``K >= 2R + 1``, nor for most
      shapes with ``R >= 3``; with ``requant.half_rate`` a cycle);
    * ``RUN_REQUANT`` (10) cycles to the requantizer's output, written into C on that cycle.
    * RAW: no channel stage and no requantizer, the row written as it leaves the accumulate
      stage, ``RUN_ACCUMULATE`` (2) cycles after the engine's output.

    ``cycles = max(ceil(M/R), ceil(N/C)) + 21 + gemm_cycles(cfg, M, K, N) + drain delay``,
    RAW ``max(ceil(M/R), ceil(N/C)) + 13 + gemm_cycles(cfg, M, K, N)``.
    """
    if raw:
        return gemm_raw_cycles(cfg, M, K, N)
    return _last_row(cfg, M, K, N) + _drain_delay(cfg, M, K, N) + RUN_REQUANT + 1


def gemm_raw_cycles(cfg, M, K, N):
    """Cycles of ``RUN GEMM_RAW`` (and of a RAW ``RUN LINEAR``) on
    :class:`hw.top.Accelerator`, counted as :func:`linear_cycles` counts, with no stalls
    (exact: ``tests/hw/test_top.py``): the same launch and engine, but the exact rows are
    written into C as they leave the accumulate stage (``RUN_ACCUMULATE``, with LINEAR in the
    config) or the engine (without it): no channel stage, no requantizer."""
    return _last_row(cfg, M, K, N) + (RUN_ACCUMULATE if cfg.linear.enabled else 0) + 1


def _last_row(cfg, M, K, N):
    """The cycle the engine gives up a run's last row, counted from the accepted RUN."""
    R, C = cfg.array.rows, cfg.array.cols
    launch = max(-(-M // R), -(-N // C)) + RUN_LAUNCH
    return launch + RUN_FIRST_WORD - 1 + gemm_cycles(cfg, M, K, N) - 1


def residual_cycles(cfg, rows, length):
    """Cycles of ``RUN RESIDUAL`` on :class:`hw.top.Accelerator` for ``ROWS = rows`` rows of
    ``ROW_LEN = length`` elements, with no stalls (exact: ``tests/hw/test_top.py``), counted as
    :func:`linear_cycles` counts (from the accepted RUN to the last word written into Y,
    inclusive).

    With ``lanes = hw.isa.vector_lanes(cfg)``, a row is ``q = ceil(length/lanes)`` words and the
    run ``n = rows*q`` words of each of ``a`` and ``b``:

    * shape preparation: ``q`` divider steps, LAUNCH 4 cycles after them;
    * X's reader walks its two halves alternately (``a`` word 0, ``b`` word 0, ...), one word a
      cycle from 8 cycles after LAUNCH; :class:`hw.adapter.RowAdapter` holds each ``a`` word
      and offers the pair with its ``b``, so pair i enters :class:`hw.residual.Residual` 9 +
      2i cycles after LAUNCH (one pair every 2 cycles: X's one read port binds, not the unit);
    * the unit's latency, 7 cycles, to the word written into Y.

    ``cycles = q + 2n + 19``.
    """
    q = -(-length // vector_lanes(cfg))
    launch = q + RUN_LAUNCH
    last_pair = launch + RUN_FIRST_WORD + 1 + 2 * (rows * q - 1)
    return last_pair + 7 + 1


def _row_launch(cfg, length):
    """The cycle a row RUN's X reader offers its first word, from the accepted RUN: ``q =
    ceil(length/lanes)`` divider steps, LAUNCH ``RUN_LAUNCH`` cycles after them, the first word
    ``RUN_FIRST_WORD`` after that."""
    return -(-length // vector_lanes(cfg)) + RUN_LAUNCH + RUN_FIRST_WORD


def gelu_cycles(cfg, rows, length, *, in_c=False):
    """Cycles of ``RUN GELU`` on :class:`hw.top.Accelerator` for ``ROWS = rows`` rows of
    ``ROW_LEN = length`` elements, with no stalls (exact: ``tests/hw/test_top.py``), counted as
    :func:`linear_cycles` counts.

    X's reader offers word i (of ``n = rows*q``, ``q = ceil(length/lanes)``) ``q + 12 + i``
    cycles after the accepted RUN (:func:`_row_launch`); :class:`hw.gelu.Gelu` takes one a
    cycle and its result is written into Y ``latency`` cycles later (the unit's
    ``latency``: 8 for ``"ibert"``, ``7 + quot_width + frac_width`` for ``"shift"``).

    ``cycles = q + n + 12 + latency``.

    Over C (``in_c``, ``GELU_IN_C``; ``length`` is then the array's columns, a C word a row):
    :data:`GELU_IN_C_CYCLES` more, the beats the same.
    """
    g = cfg.gelu
    latency = 8 if g.variant == "ibert" else 7 + g.quot_width + g.frac_width   # hw.gelu.Gelu's
    n = rows * -(-length // vector_lanes(cfg))
    return _row_launch(cfg, length) + n - 1 + latency + 1 + (GELU_IN_C_CYCLES if in_c else 0)


#: What a GELU over C (``GELU_IN_C``) adds to a run: C's reader's second cycle of latency (its
#: registered address), the word held in the row adapter before its first beat, and the
#: results' word assembled before it is written.
GELU_IN_C_CYCLES = 3


def layernorm_cycles(cfg, rows, length):
    """Cycles of ``RUN LAYERNORM`` on :class:`hw.top.Accelerator` for ``ROWS = rows`` rows of
    ``ROW_LEN = length`` elements, with no stalls (exact: ``tests/hw/test_top.py``), counted as
    :func:`linear_cycles` counts: an event recurrence over the rows through the stages of
    :class:`hw.layernorm.LayerNorm` (its docstring; ``q = ceil(length/lanes)`` beats a row,
    ``M`` the variance stage's steps, ``bit_length(max_len * 2**(in_width-1))``).

    * Input pass: X's words come one a cycle from ``q + 12`` (:func:`_row_launch`); a row's
      first beat waits for a free slot (the row :data:`hw.layernorm.SLOTS` back read out), its
      last for the previous row's sums to be taken by the variance stage.
    * Sums: 4 cycles after the last beat. Variance: taken when its stage is idle, ``M`` steps,
      the subtraction once the square-root stage has taken the previous ``v``; the stage idle
      again a cycle later.
    * Square root: taken ``1 + NORM_STEPS`` cycles after the subtraction (the normalization),
      when idle; 16 steps; idle again 2 cycles after the reciprocal stage takes the root.
    * Reciprocal: ``RECIP_STEPS + 1`` steps, its result 20 cycles after the take; idle again 2
      cycles after the output pass takes it.
    * Output pass: taken when idle or on the previous row's last read, one read a cycle,
      each beat written into Y ``OUTPUT_STAGES + 1`` (12) cycles after its read (the stages
      and the output register).

    A lone row: ``3q + M + 71`` cycles (the unit's latency ``M + 60`` from its last input beat
    to its first output beat). Rows of ``q >= M + 2`` beats follow each other at ``q`` cycles.
    """
    q = -(-length // vector_lanes(cfg))
    lc = cfg.layernorm
    M = (lc.max_len << (lc.in_width - 1)).bit_length()      # hw.layernorm.LayerNorm.mag_width
    first = _row_launch(cfg, length)
    never = -(1 << 62)
    fired = first - 1                   # the cycle the last input beat was taken
    var_take, sub, sqrt_take, recip_take, out_take, last_read = ([never] for _ in range(6))
    for r in range(rows):
        start = max(fired + 1, first + r * q)             # the row's first beat...
        if r >= SLOTS:
            start = max(start, last_read[r + 1 - SLOTS] + 1)
        fired = max(start + q - 1, var_take[-1] + 1)      # ...and its last
        var_take.append(max(fired + 4, sub[-1] + 1))
        sub.append(max(var_take[-1] + M + 1, sqrt_take[-1] + 1))
        sqrt_take.append(max(sub[-1] + 1 + NORM_STEPS, recip_take[-1] + 2))
        recip_take.append(max(sqrt_take[-1] + SQRT_WIDTH // 2 + 1, out_take[-1] + 2))
        out_take.append(max(recip_take[-1] + RECIP_STEPS + 2, last_read[-1]))
        last_read.append(out_take[-1] + q)
    return last_read[-1] + OUTPUT_STAGES + 1 + 1


def softmax_row_timing(sm_cfg, length):
    """``(period, latency)`` of :class:`hw.softmax.Softmax` for rows of ``length``: a row
    enters every ``period`` cycles in steady state and a lone row leaves ``latency`` cycles
    after its first beat enters (figures from the unit's docstring, checked by its tests).

    With ``N`` beats a row, ``G = ceil((out_width + 7)/2)`` radix-4 divider steps and the max
    stored ``M = sm_cfg.max_cycles`` cycles after a row's last beat (1 up to 4 lanes): latency
    ``3N + G + 24 + M``; period ``N + (M - 1)/2`` from ``N >= G + 19``, else
    ``max(N + 1, ceil((N + G + 18)/2))`` (the ``N + 1`` bounds the measured ``N + 1/3`` just
    below that threshold)."""
    rows = SoftmaxRows(sm_cfg, length)
    n, g = rows.n, rows.g
    period = (n + (rows.max_cycles - 1) / 2 if n >= g + 19
              else max(n + 1, -(-(n + g + 18) // 2)))
    return period, rows.row(0) + 1          # a lone row, from SoftmaxRows' recurrence


class SoftmaxRows:
    """The rows of :class:`hw.softmax.Softmax`, one after another: an event recurrence over the
    unit's three passes and its hand-offs (exact for rows whose beats are offered back to back:
    ``tests/hw/test_softmax.py``). :meth:`row` takes the cycle a row's first beat is offered and
    returns the cycle its last probability leaves; the passes' state carries over to the next
    row, as in the unit. With ``N`` beats a row and ``G`` divider steps:

    * load: the row's first beat is taken when offered, after the previous row's last beat, and
      once at most one row is in the score buffer (from the exp pass's last read of the row two
      back, on that cycle); then one beat a cycle;
    * exp: starts ``M = sm_cfg.max_cycles`` cycles after the last beat (its max stored: 1 up
      to 4 lanes), on or after the previous row's last read, a cycle after the division of the
      row two back ended (the divider's slot) and a cycle after the normalize pass's last read
      of the row three back (the exp buffer's banks); N reads, one a cycle, the last N cycles
      after the start;
    * division: 16 cycles after the last read (the pipeline and the row sum), once the divider
      is free (a cycle after its previous result); ``G + 1`` cycles to the result;
    * normalize: a cycle after the result and on or after the previous row's last read; N reads,
      and the last probability 6 cycles after the last read (the pipeline and the skid buffer).

    A lone row: ``3N + G + 24 + M`` cycles from its first beat taken to its last probability (the
    latency :func:`softmax_row_timing` reports from here); in steady state the rows leave at
    that function's period on average (pairs of rows for short rows: two rows share the
    divider's slot).
    """

    def __init__(self, sm_cfg, length):
        self.n = -(-length // sm_cfg.lanes)
        self.g = -(-(sm_cfg.out_width + 7) // 2)
        self.max_cycles = sm_cfg.max_cycles
        never = -(1 << 62)
        # Per row: the last beat taken, the exp pass's last read, the division's result, the
        # normalize pass's last read; the three rows back suffice.
        self.loaded, self.read, self.divided, self.normalized = ([never] * 3 for _ in range(4))

    def row(self, offered):
        """The cycle the row's last probability leaves, its first beat offered at ``offered``
        and the others one a cycle after it (the output never stalled)."""
        n = self.n
        first = max(offered, self.loaded[-1] + 1, self.read[-2])
        loaded = first + n - 1
        exp_start = max(loaded + self.max_cycles, self.read[-1], self.divided[-2] + 1,
                        self.normalized[-3] + 1)
        read = exp_start + n
        divided = max(read + 16, self.divided[-1] + 1) + self.g + 1
        normalized = max(divided + 1, self.normalized[-1]) + n
        for events, value in ((self.loaded, loaded), (self.read, read),
                              (self.divided, divided), (self.normalized, normalized)):
            events.append(value)
            del events[0]
        return normalized + 6


#: Constants of :func:`attention_cycles`, in cycles, fitted to simulation (a grid search
#: minimizing the worst relative error over 224 small heads, L of 1 to 20 and d of 1 to 16 on
#: 2x2 to 6x8 arrays with 1 or 2 softmax lanes, causal or not: 1.5%; with the tile gap held
#: from job to job, 196 random heads of that kind on Verilator are within 1.3%; the shapes of
#: ``bench/attention.py``, 1 to 4 lanes, are checked against it; the start and the tail trade
#: off, only their sum counts): from Q's row block's last beat to the first operand of the QK
#: job waiting for it, and from V's last beat to the PV job's; between one job's last operand
#: pair and the next job's first (the job shape is registered, so a job starts a cycle after
#: its predecessor moves on); from a QK job's last output row to the softmax's first beat
#: (through the score FIFO); from the softmax's last probability to the first operand of the
#: PV job waiting for it (through the FIFO after the softmax, the registered dependency check,
#: the operand reads' two register stages and the engine's command register); and from the
#: last operand pair to the last output row (the 7-cycle requantizer).
ATTENTION_START, ATTENTION_JOB_GAP, ATTENTION_TO_SOFTMAX, ATTENTION_FROM_SOFTMAX, \
    ATTENTION_TAIL = -3, 2, 3, 15, 23
#: From a K tile's last beat to the first operand of a QK tile waiting for it (fitted with the
#: others).
ATTENTION_TILE = -2


def attention_jobs(blocks):
    """The GEMM job order of :class:`hw.attention.AttentionController`: ``("QK", b)`` and
    ``("PV", b)`` interleaved so that the softmax of block b overlaps ``QK(b+1)``."""
    jobs = [("QK", 0)]
    for b in range(1, blocks):
        jobs += [("QK", b), ("PV", b - 1)]
    return jobs + [("PV", blocks - 1)]


def _job_shape(kind, b, R, C, L, d, causal):
    """``(K, tiles)`` of attention job ``(kind, b)`` (:func:`attention_jobs`) on an R x C
    array: ``QK(b)`` sums over d for each column tile of the keys it computes (only those up to
    its row block's last when causal), ``PV(b)`` over those keys for each column tile of d."""
    cols = min(L, b * R + R) if causal else L
    return (d, -(-cols // C)) if kind == "QK" else (cols, -(-d // C))


def attention_array_cycles(cfg, L, d, causal=False):
    """The fewest cycles the array of :class:`hw.attention.AttentionController` can take for one
    head: each tile of its jobs (:func:`attention_jobs`) at the engine's pace, ``max(K, G)``
    cycles (``G``, :func:`hw.gemm.tile_gap`), one after another, with no loads, softmax or
    latency between them. ``2·L²·d / (R·C·cycles)`` (the unmasked MACs when causal) is then the
    most any schedule reaches on the array's shape: it counts the padded rows and columns of the
    tiles (``ceil(L/R)·R`` rows, ``ceil(L/C)·C`` and ``ceil(d/C)·C`` columns) and the tile gap
    where a ``QK`` job's K, d, is under it. :func:`attention_cycles` adds what the rest costs.
    """
    R, C = cfg.array.rows, cfg.array.cols
    gap = tile_gap(cfg)
    total = 0
    for kind, b in attention_jobs(-(-L // R)):
        k, tiles = _job_shape(kind, b, R, C, L, d, causal)
        total += tiles * max(k, gap)
    return total


def attention_cycles(cfg, L, d, causal=False, heads=1):
    """Modelled cycles of :class:`hw.attention.AttentionController` for ``heads`` heads, with
    no stalls, counted from the first command to the last output row (loading included).

    The loads of Q, K and V run side by side from the command, and the jobs start as their
    operands come in: QK(b) once Q's row block b is in, each of its tiles once that K tile is
    in, PV once all of V is.
    The array runs the jobs back to back (:func:`attention_jobs`); each job costs what the GEMM
    engine costs (:func:`gemm_cycles`' ``K + (tiles - 1) * max(K, G)``) plus a small gap, and
    the engine's tile gap ``G`` holds from one job's last tile to the next job's first too (it
    binds where K < G: small heads, and on a 16-row array a head of fewer than 32 tokens).
    ``PV(b)`` also waits for the softmax of block b, whose rows are offered when ``QK(b)``'s
    last row is out and pass the unit row by row (:class:`SoftmaxRows`: its passes overlap
    rows, within a block and from one block to the next, so a block of short rows, as with
    many lanes, takes less than its rows' periods plus a lone row's latency).
    """
    R, C = cfg.array.rows, cfg.array.cols
    gap = tile_gap(cfg)
    blocks = -(-L // R)
    # The loads run side by side, a beat a cycle each: QK(b) waits for Q's row block b and
    # each of its tiles for its K tile (d beats each), PV for all of V.
    v_in = -(-d // C) * L + ATTENTION_START
    # The run starts once the row blocks and the softmax beats of a row are counted.
    counted = max(blocks, -(-L // cfg.attention_lanes))
    total = 0
    for _ in range(heads):
        t = 0
        softmax = SoftmaxRows(cfg.attention_softmax, L)
        probs_ready = {}
        last = None
        for kind, b in attention_jobs(blocks):
            rows = min(R, L - b * R)
            k, tiles = _job_shape(kind, b, R, C, L, d, causal)
            if last is not None:    # the engine's tile gap holds from one job to the next
                t = max(t, last + gap - k + 1)
            if kind == "QK":
                t = max(t, counted, (b + 1) * d + ATTENTION_START)
                for j in range(tiles):      # tile j's first operand pair, then its last
                    t = max(t, (j + 1) * d + ATTENTION_TILE)
                    last = t + k - 1
                    t += max(k, gap)
                scores_out = last + 2 * (rows - 1) + C + 7
                for _ in range(rows):
                    probs_ready[b] = softmax.row(scores_out + ATTENTION_TO_SOFTMAX)
            else:
                t = max(t, v_in, probs_ready[b] + ATTENTION_FROM_SOFTMAX)
                last = t + k - 1 + (tiles - 1) * max(k, gap)   # last operand pair
            t = last + 1 + ATTENTION_JOB_GAP
        rows_last = L - (blocks - 1) * R
        # A half-rate requantizer takes the last row a cycle after it is offered.
        total += last + 2 * (rows_last - 1) + C + ATTENTION_TAIL + cfg.requant.half_rate
    return total


#: Cycles from the last shape-preparation step of a RUN ATTENTION to the start of
#: :func:`attention_cycles`' count: LAUNCH (``RUN_LAUNCH``), the controller's first command
#: after it, and the top's buffer reads, a few cycles behind the command, that feed the loads
#: (measured: the sum then matches the top to within 5 cycles either way on ulx3s for L of 5
#: to 16 and d of 1 to 8, with 1 or 6 softmax lanes).
ATTENTION_RUN_START = 10


def attention_run_cycles(cfg, L, d, causal=False):
    """Cycles of one ``RUN ATTENTION`` (a head) on :class:`hw.top.Accelerator`, counted as
    :func:`linear_cycles` counts: ``max(ceil(L/R), ceil(L/C), ceil(d/C))`` steps of shape
    preparation, :data:`ATTENTION_RUN_START`, then :func:`attention_cycles` of one head
    (``tests/hw/test_top.py`` bounds the difference)."""
    R, C = cfg.array.rows, cfg.array.cols
    prep = max(-(-L // R), -(-L // C), -(-d // C))
    return prep + ATTENTION_RUN_START + attention_cycles(cfg, L, d, causal)
