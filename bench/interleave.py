"""Soak of the top's run isolation: many runs of every op with random commands sent while they
run, each response and result checked against sim.portmodel.CommandPortModel.

Run: ``python bench/interleave.py [--runs 40] [--seeds 5] [--ops GEMM,SOFTMAX] [--no-state]
[--backend verilator]``.
Prints, per op, the commands sent, the runs, the runs exposed to refused commands, and the runs
whose result (or any response) disagreed with the model. A disagreement ends that top (its model
no longer knows the state); a fresh top goes on with the seed's remaining runs.

``--no-state`` checks the buffers through READ_BUFFER only, not through the simulation's state:
it runs on a top without ``Accelerator.register_file``/``buffer_data`` (an older commit).
``--backend verilator`` runs the top on Verilator (:class:`boards.verilatortop.VerilatorTop`),
about a thousand times faster, with the buffers read back through READ_BUFFER.
"""

import argparse
import time

import numpy as np

from boards.simtop import SimTop
from hw.config import AccelConfig, AttentionConfig
from hw.isa import Op
from sim.interleave import Interleaver
from sim.portmodel import ModelMismatch

TINY = AccelConfig.preset("tiny").replace(attention=AttentionConfig(max_seq_len=10,
                                                                    max_head_dim=5))


class _NoState:
    """A client without ``state()``: the buffers are read back through the command port."""

    def __init__(self, top):
        self.raw, self.idle = top.raw, top.idle


def _top(backend, depth, stall, seed):
    if backend == "verilator":
        from boards.verilatortop import VerilatorTop
        return VerilatorTop(TINY, depth=depth, stall=stall, seed=seed, budget=200_000)
    return SimTop(TINY, depth=depth, stall=stall, seed=seed, budget=200_000)


def soak(op, seeds, runs, depth, stall, no_state, backend):
    totals = dict(commands=0, random=0, runs=0, exposed=0, wrong=0, busy=0)
    first = None
    for seed in range(seeds):
        done = restarts = 0
        while done < runs:
            top = _top(backend, depth, stall, 1000 * seed + restarts)
            client = _NoState(top) if no_state or not hasattr(top, "state") else top
            it = Interleaver(client, TINY, depth,
                             np.random.default_rng([seed, restarts, op.value, 18]))
            try:
                while done < runs:
                    done += 1
                    it.target_run(op)
            except ModelMismatch as e:
                totals["wrong"] += 1
                restarts += 1
                first = first or f"seed {seed}: {e}"
            s = it.stats
            for key in ("commands", "random", "runs", "exposed"):
                totals[key] += getattr(s, key)
            totals["busy"] += s.by_status.get("BUSY", 0)
    return totals, first


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=40, help="target runs per seed and op")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--ops", default=",".join(op.name for op in Op))
    p.add_argument("--depth", type=int, default=32)
    p.add_argument("--stall", type=float, default=0.2)
    p.add_argument("--no-state", action="store_true")
    p.add_argument("--backend", choices=["amaranth", "verilator"], default="amaranth")
    args = p.parse_args()
    print(f"{'op':>10} {'commands':>9} {'random':>7} {'BUSY':>6} {'runs':>6} {'exposed':>8} "
          f"{'wrong':>6} {'time':>7}")
    grand = dict(commands=0, runs=0, exposed=0, wrong=0)
    for name in args.ops.split(","):
        op = Op[name]
        t0 = time.monotonic()
        t, first = soak(op, args.seeds, args.runs, args.depth, args.stall, args.no_state,
                        args.backend)
        print(f"{name:>10} {t['commands']:>9} {t['random']:>7} {t['busy']:>6} {t['runs']:>6} "
              f"{t['exposed']:>8} {t['wrong']:>6} "
              f"{time.monotonic() - t0:>6.0f}s", flush=True)
        if first:
            print(f"{'':>10} first: {first[:300]}")
        for key in grand:
            grand[key] += t[key]
    print(f"total: {grand['commands']} commands, {grand['runs']} runs, {grand['exposed']} "
          f"exposed to refused commands, {grand['wrong']} runs with a wrong response or result")


if __name__ == "__main__":
    main()
