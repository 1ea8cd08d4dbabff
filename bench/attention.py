"""Attention controller benchmark: measured vs modelled cycles, array utilization, softmax waits.

Run: ``python bench/attention.py`` (``--quick`` for small shapes only). Cycles run from the first
command to the last output row, loading the scratchpads included. Utilization counts useful MACs
(2*L*L*d per head, or only the unmasked scores when causal) per array slot per cycle.
"""

import argparse
import time

import numpy as np

import intformer as itf
from hw.config import AccelConfig, ArrayConfig, AttentionConfig
from sim import cyclemodel, golden
from sim.bench import attention_macs

CASES = [
    # (rows, cols, heads, L, d, causal), or (preset, None, heads, L, d, causal); softmax lanes 1,
    # or "auto" where the shape is in AUTO_LANES
    (4, 4, 1, 64, 32, False),   # the target: >= 80% utilization, softmax included
    (4, 4, 1, 64, 32, True),    # causal: >= 40% fewer array cycles
    (4, 4, 2, 40, 16, False),
    (2, 2, 1, 32, 16, False),
    (2, 2, 1, 32, 16, True),
    (2, 4, 1, 48, 24, False),
    (8, 8, 1, 64, 32, False),
    (8, 8, 1, 64, 64, False),
    (3, 2, 1, 13, 7, False),    # ragged
    ("ulx3s", None, 1, 64, 32, False),  # the preset as it is (22x6, 3 lanes), a MiniLM head
]
#: Shapes also run with softmax_lanes = "auto" (AccelConfig.attention_lanes).
AUTO_LANES = [(8, 8, 1, 64, 32, False), (8, 8, 1, 64, 64, False)]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    cases = [(*c, 1) for c in CASES] + [(*c, "auto") for c in AUTO_LANES]
    if args.quick:
        cases = [c for c in cases if c[3] <= 32]
    print(f"{'array':>5} {'lanes':>5} {'H':>2} {'L':>3} {'d':>3} {'causal':>6} {'cycles':>7} "
          f"{'model':>7} {'err':>6} {'util':>6} {'array max':>9} {'bound 1.25x':>11} "
          f"{'array busy':>10} {'waits sm':>8} {'exact':>5} {'sim s':>6}")
    busy = {}
    for R, C, H, L, d, causal, lanes in cases:
        if isinstance(R, str):      # a preset, as it is
            cfg = AccelConfig.preset(R)
            R, C = cfg.array.rows, cfg.array.cols
        else:
            cfg = AccelConfig(name="bench", array=ArrayConfig(R, C),
                              attention=AttentionConfig(max_seq_len=max(L, 8),
                                                        max_head_dim=max(d, 4),
                                                        softmax_lanes=lanes))
        rng = np.random.default_rng(L * d)
        q, k, v = (rng.integers(-128, 128, (H, L, d), dtype=np.int8) for _ in range(3))
        scales = (0.02, 0.02, 0.05, 0.05)
        t0 = time.monotonic()
        r = itf.simulate.attention(cfg, q, k, v, *scales, causal=causal)
        dt = time.monotonic() - t0
        exact = np.array_equal(r.output, golden.attention(q, k, v, *scales, causal=causal,
                                                          cfg=cfg)[0])
        model = cyclemodel.attention_cycles(cfg, L, d, causal, heads=H)
        bound = 1.25 * 2 * H * L * L * d / (R * C)
        # The most the array's shape allows: its padded tiles at the engine's pace, nothing else.
        array_max = attention_macs(H, L, d, causal) / (
            R * C * H * cyclemodel.attention_array_cycles(cfg, L, d, causal))
        busy[(R, C, H, L, d, causal, lanes)] = r.extra["array_busy"]
        print(f"{R}x{C:<3} {cfg.attention_lanes:>5} {H:>2} {L:>3} {d:>3} "
              f"{'yes' if causal else 'no':>6} {r.cycles:>7} {model:>7} "
              f"{(model - r.cycles) / r.cycles:>+6.1%} {r.utilization:>6.1%} {array_max:>9.1%} "
              f"{bound:>11.0f} {r.extra['array_busy']:>10} "
              f"{r.extra['softmax_wait'] / r.cycles:>8.1%} {'yes' if exact else 'NO':>5} "
              f"{dt:>6.1f}")
    print("\n'array max': the utilization of the array's padded tiles at the engine's pace alone "
          "(cyclemodel.attention_array_cycles), the most any schedule reaches on that shape; "
          "'array busy': cycles the array took an operand pair; 'waits sm': share of all cycles "
          "in which the next GEMM job waited for the softmax.")
    for key, dense in busy.items():
        R, C, H, L, d, causal, lanes = key
        masked = (R, C, H, L, d, True, lanes)
        if not causal and masked in busy:
            saved = 1 - busy[masked] / dense
            print(f"causal mask at {R}x{C}, L={L}, d={d}: array cycles {dense} -> {busy[masked]}"
                  f" ({saved:.1%} saved)")


if __name__ == "__main__":
    main()
