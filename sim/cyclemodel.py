"""Analytic cycle models of the units, checked against simulation by tests and ``bench/``."""

__all__ = ["gemm_cycles", "gemm_utilization"]


def gemm_cycles(cfg, M, K, N):
    """Cycles :class:`hw.gemm.GemmEngine` takes for ``(M x K) @ (K x N)`` with no stalls.

    Counted as :class:`sim.bench.SimResult` counts them: from the cycle the command is accepted
    to the cycle the last output row is accepted, inclusive.

    * The first operand pair enters one cycle after the command; tile i's last pair enters
      ``max(K, 2R - 1)`` cycles after tile i-1's (``2R - 1`` is the drain-chain spacing).
    * Row r of a tile leaves ``2r + C + 5`` cycles after the tile's last pair: r cycles of skew,
      c + 1 through the row of elements, 2 of multiply and accumulate, r up the drain chain,
      ``C - 1 - c`` of de-skew and 2 through the output FIFO.
    """
    R, C = cfg.array.rows, cfg.array.cols
    tiles = -(-M // R) * -(-N // C)
    rows_last = M - (-(-M // R) - 1) * R
    return K + (tiles - 1) * max(K, 2 * R - 1) + 2 * (rows_last - 1) + C + 5


def gemm_utilization(cfg, M, K, N):
    """Modelled useful MACs / (R * C * cycles)."""
    return M * K * N / (cfg.array.rows * cfg.array.cols * gemm_cycles(cfg, M, K, N))
