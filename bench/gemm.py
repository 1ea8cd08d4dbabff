"""GEMM engine benchmark: measured vs modelled cycles, utilization, simulator speed, ECP5 Fmax.

Run: ``python bench/gemm.py`` (add ``--no-fmax`` to skip place-and-route, ``--quick`` for the
small shapes only). Every figure is measured here; nothing is copied from elsewhere.
"""

import argparse
import time

import numpy as np

import intformer as itf
from hw.config import AccelConfig, ArrayConfig, GemmConfig
from sim import cyclemodel, golden

CASES = [
    # (rows, cols, M, K, N)
    (4, 4, 32, 512, 32),   # the target: >= 95% utilization, model within 2%
    (4, 4, 16, 64, 16),
    (4, 4, 13, 37, 11),    # ragged
    (2, 2, 8, 128, 8),
    (3, 5, 10, 100, 12),   # non-square, non-power-of-two
    (8, 8, 16, 128, 16),
    (8, 8, 8, 8, 8),       # K < 2R: the drain spacing binds
]
QUICK = [c for c in CASES if c[2] * c[3] * c[4] <= 20000]


def run_cases(cases, stall):
    print(f"{'array':>6} {'M x K x N':>14} {'stall':>5} {'cycles':>8} {'model':>8} {'err':>7} "
          f"{'util':>7} {'model util':>10} {'exact':>6} {'sim cyc/s':>10}")
    for R, C, M, K, N in cases:
        cfg = AccelConfig(name="bench", array=ArrayConfig(R, C),
                          gemm=GemmConfig(max_m=max(M, 16), max_k=max(K, 16), max_n=max(N, 16)))
        rng = np.random.default_rng(M * K * N)
        a = rng.integers(-128, 128, (M, K), dtype=np.int8)
        b = rng.integers(-128, 128, (K, N), dtype=np.int8)
        t0 = time.monotonic()
        r = itf.simulate.gemm(cfg, a, b, stall=stall)
        dt = time.monotonic() - t0
        exact = np.array_equal(r.output, golden.gemm(a, b))
        model = cyclemodel.gemm_cycles(cfg, M, K, N)
        err = (model - r.cycles) / r.cycles
        util_model = cyclemodel.gemm_utilization(cfg, M, K, N)
        print(f"{R}x{C:<4} {f'{M}x{K}x{N}':>14} {stall:>5} {r.cycles:>8} {model:>8} "
              f"{err:>+7.2%} {r.utilization:>7.2%} {util_model:>10.2%}"
              f" {'yes' if exact else 'NO':>6} {r.cycles / dt:>10,.0f}")


def fmax(seeds):
    from boards.synth import synth_unit

    cfg = AccelConfig(name="gemm8x8", array=ArrayConfig(8, 8),
                      gemm=GemmConfig(max_m=256, max_k=512, max_n=256))
    print(f"\nECP5 LFE5U-85F CABGA381, out of context, GEMM engine: {cfg}")
    for seed in seeds:
        t0 = time.monotonic()
        rep = synth_unit(cfg, "gemm", "ecp5", fmax=True, seed=seed, log=lambda s: None)
        print(f"  seed {seed}: Fmax {rep.fmax_mhz:.1f} MHz, LUT4 {rep.lut}, FF {rep.ff}, "
              f"carry {rep.carry}, MULT18X18D {rep.dsp} (MACs: {cfg.array.rows * cfg.array.cols}), "
              f"BRAM {rep.bram}, LUTRAM {rep.lutram}  [{time.monotonic() - t0:.0f} s]")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--no-fmax", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = p.parse_args()
    cases = QUICK if args.quick else CASES
    print("Cycles: from the command's transfer to the last output row's transfer, inclusive.")
    run_cases(cases, 0.0)
    print("\nWith random stalls on every stream (stall 0.3); the model assumes none:")
    run_cases(QUICK[:3], 0.3)
    if not args.no_fmax:
        fmax(args.seeds)


if __name__ == "__main__":
    main()
