"""Simulator speed: Amaranth's simulator against Verilator (sim/verilator/), in simulated cycles
per wall second, on the ULX3S preset.

Run: ``python bench/simspeed.py`` (``--quick`` skips the Amaranth runs, which take minutes).

* the preset's GEMM engine (its array) at 64x512x64, through :func:`intformer.simulate.gemm`;
* the ULX3S accelerator top running one attention head (L=64, d=32) through its byte command
  port: writing Q, K and V, RUN ATTENTION, waiting for ``busy`` to fall and polling STATUS
  once (:class:`boards.simtop.SimulatedTop`), reading the output back. The top is
  built with 512-word buffers: a head of d=32 needs ceil(32/6)*64 = 384 V words, more than
  the board's 256;
* a MiniLM-sized attention layer (12 heads, L=64, d=32) on the Verilated top, build included
  (run first, so that it builds the top's model, and Verilator's runtime library, when none is
  cached), and on the attention unit.

The head runs on the top's profile-guided model (``VerilatorTop(..., pgo=True)``, trained on
:func:`boards.verilatortop.profile_workload`, not on this head; ``--no-pgo`` for the plain
model); the layer on the plain model, whose build is the shorter.

"end to end" is the whole call (Python preparing beats and decoding rows included); "clock
loop" is the C++ loop alone. A Verilator run takes well under a second, so it is repeated
(``--repeat``) and the median reported (the best beside it); an Amaranth run takes tens of
seconds and runs once. The load average is printed before and after: on a shared machine both
sides slow down, so compare figures measured together; the top's figures are given in CPU
time too (process time), which other jobs disturb less than wall time. Build times are those
of a fresh build (0 when cached; delete ``build/verilator/``, or set ``INTFORMER_BUILD_DIR`` to
an empty folder, to measure them). Every figure is measured here.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

import intformer as itf
from boards.simtop import SimTop
from boards.verilatortop import VerilatorTop
from hw.config import AccelConfig
from sim import golden
from sim.verilator import runner

ROOT = Path(__file__).resolve().parent.parent
SCALES = (0.05, 0.04, 0.03, 0.02)


def _timed(fn, repeat):
    """``fn()`` run ``repeat`` times: (last result, median seconds, best seconds, median
    seconds of the C++ clock loop if ``fn`` ran one)."""
    times, loops = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        loops.append(runner.LAST_RUN.get("run_seconds"))
    return result, statistics.median(times), min(times), statistics.median(
        [x for x in loops if x is not None] or [0.0])


def gemm_speed(cfg, quick, repeat):
    rng = np.random.default_rng(0)
    a, b = rng.integers(-128, 128, (64, 512)), rng.integers(-128, 128, (512, 64))
    want = golden.gemm(a, b)
    results = {}
    t0 = time.perf_counter()
    itf.simulate.gemm(cfg, a[:1, :1], b[:1, :1], backend="verilator")     # build, or find it
    print(f"  verilator model: {time.perf_counter() - t0:.1f} s (build "
          f"{runner.LAST_RUN['build_seconds']:.1f} s; 0 means cached)")
    for backend in ("verilator",) if quick else ("verilator", "amaranth"):
        r, dt, best, loop = _timed(lambda b_=backend: itf.simulate.gemm(cfg, a, b, backend=b_),
                                   repeat if backend == "verilator" else 1)
        assert np.array_equal(r.output, want), f"{backend}: GEMM mismatch with golden"
        results[backend] = (r.cycles, dt)
        line = (f"  {backend:<9} {r.cycles:>8} cycles  {dt:8.3f} s  {r.cycles / dt:>12,.0f} "
                f"cycles/s end to end")
        if backend == "verilator":
            line += (f" (best {r.cycles / best:,.0f}); clock loop {loop:.3f} s = "
                     f"{r.cycles / loop:,.0f} cycles/s")
            loop_rate = r.cycles / loop
        print(line)
    if len(results) == 2:
        assert results["amaranth"][0] == results["verilator"][0], "cycle counts differ"
        va, vv = (results[k][0] / results[k][1] for k in ("amaranth", "verilator"))
        print(f"  speed-up: {vv / va:,.0f}x end to end, {loop_rate / va:,.0f}x in the clock loop "
              f"(same cycles: {results['amaranth'][0]})")




def head_speed(cfg, quick, repeat, pgo):
    rng = np.random.default_rng(1)
    q, k, v = (rng.integers(-128, 128, (64, 32)) for _ in range(3))
    want = golden.attention(q, k, v, *SCALES, cfg=cfg)[0]
    rates, cpu_rates, counts = {}, {}, {}
    for backend in ("verilator",) if quick else ("verilator", "amaranth"):
        t0 = time.perf_counter()
        if backend == "verilator":
            top = VerilatorTop(cfg, depth=512, budget=200_000, pgo=pgo)
        else:
            top = SimTop(cfg, depth=512, budget=200_000)
        setup = time.perf_counter() - t0
        times, cpu, cycles = [], [], []
        for _ in range(repeat if backend == "verilator" else 1):
            start, t0, c0 = top.cycles, time.perf_counter(), time.process_time()
            o, _ = top.attention(q, k, v, *SCALES)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            cycles.append(top.cycles - start)
            assert np.array_equal(o, want), f"{backend}: attention mismatch with golden"
        dt, n = statistics.median(times), statistics.median(cycles)
        rates[backend], counts[backend] = n / dt, cycles[0]
        cpu_rates[backend] = n / statistics.median(cpu)
        what = (f"{'profile-guided ' if pgo else ''}build {top.build.seconds:.1f} s"
                if backend == "verilator" else "elaboration")
        best = f" (best {n / min(times):,.0f})" if len(times) > 1 else ""
        print(f"  {backend:<9} {n:>8.0f} cycles  {dt:8.3f} s  {n / dt:>12,.0f} cycles/s "
              f"end to end{best}, {cpu_rates[backend]:,.0f} per CPU second; set-up "
              f"{setup:.1f} s ({what})")
    if len(rates) == 2:
        # The first head on each top (registers set included): the same commands, the same
        # cycles.
        assert counts["amaranth"] == counts["verilator"], f"cycle counts differ: {counts}"
        print(f"  speed-up: {rates['verilator'] / rates['amaranth']:,.0f}x end to end, "
              f"{cpu_rates['verilator'] / cpu_rates['amaranth']:,.0f}x in CPU time (same "
              f"cycles for the first head on both: {counts['amaranth']})")


def layer_time(cfg):
    rng = np.random.default_rng(2)
    q, k, v = (rng.integers(-128, 128, (12, 64, 32)) for _ in range(3))
    t0 = time.perf_counter()
    top = VerilatorTop(cfg, depth=512, budget=200_000)
    built = time.perf_counter() - t0
    o, _ = top.attention(q, k, v, *SCALES)
    total = time.perf_counter() - t0
    exact = np.array_equal(o, golden.attention(q, k, v, *SCALES, cfg=cfg)[0])
    print(f"  12 heads on the Verilated top: {top.cycles:,} cycles, {total:.1f} s in all "
          f"({built:.1f} s model set-up, of which {top.build.seconds:.1f} s building), "
          f"{'bit-exact with golden' if exact else 'MISMATCH'}")
    t0 = time.perf_counter()
    r = itf.simulate.attention(cfg, q, k, v, *SCALES, backend="verilator")
    dt = time.perf_counter() - t0
    print(f"  12 heads on the attention unit: {r.cycles:,} cycles, {dt:.1f} s in all "
          f"(build {runner.LAST_RUN['build_seconds']:.1f} s), "
          f"{'bit-exact' if np.array_equal(r.output, o) else 'MISMATCH'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Verilator only")
    parser.add_argument("--no-pgo", action="store_true",
                        help="the head on the top's plain model, not the profile-guided one")
    parser.add_argument("--repeat", type=int, default=7,
                        help="Verilator runs per figure (median reported; default 7)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be a positive integer, not {args.repeat}")
    cfg = AccelConfig.preset("ulx3s")
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f} on {} cores".format(
        *os.getloadavg(), os.cpu_count()))
    # The layer first: its time includes building the top's model when it is not cached, and
    # Verilator's runtime library with it when nothing is (the later builds reuse it).
    print("attention layer, 12 heads L=64 d=32, ulx3s:")
    layer_time(cfg)
    print(f"{cfg.array.rows}x{cfg.array.cols} GEMM engine (ulx3s), 64x512x64:")
    gemm_speed(cfg, args.quick, args.repeat)
    print("ulx3s top, one attention head L=64 d=32 through the command port:")
    head_speed(cfg, args.quick, args.repeat, not args.no_pgo)
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
