"""CeilDivider against Python's ceiling division, with and without stalls on ``en``."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hw.divider import CeilDivider


def _count(dut, jobs, *, stall, seed):
    """Runs each ``(total, step, inc)`` job; returns ``(quotient, product, steps, cycles)``
    each, ``steps`` the cycles with ``en`` while busy."""
    rng = np.random.default_rng(seed)
    results = []

    async def bench(ctx):
        for total, step, inc in jobs:
            ctx.set(dut.total, total)
            ctx.set(dut.step, step)
            if dut.max_inc:
                ctx.set(dut.inc, inc)
            ctx.set(dut.load, 1)
            ctx.set(dut.en, 1)           # load wins over en
            await ctx.tick()
            ctx.set(dut.load, 0)
            ctx.set(dut.total, 0)        # read on load only
            steps = cycles = 0
            while ctx.get(dut.busy):
                en = not (stall and rng.random() < stall)
                ctx.set(dut.en, en)
                steps += en
                cycles += 1
                await ctx.tick()
                assert cycles < 10_000
            product = ctx.get(dut.product) if dut.max_inc else None
            results.append((ctx.get(dut.quotient), product, steps, cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_quotient_and_product_are_exact(stall):
    rng = np.random.default_rng(7)
    limit, max_step, max_inc = 300, 12, 500
    edges = [(0, 1, 5), (1, 1, 0), (1, 12, 500), (12, 12, 3), (13, 12, 3), (300, 1, 500),
             (300, 12, 500), (299, 7, 1)]
    randoms = [(int(rng.integers(0, limit + 1)), int(rng.integers(1, max_step + 1)),
                int(rng.integers(0, max_inc + 1))) for _ in range(40)]
    jobs = edges + randoms
    dut = CeilDivider(limit, max_step, max_inc)
    for (total, step, inc), (q, p, steps, _) in zip(jobs, _count(dut, jobs, stall=stall,
                                                                seed=1), strict=True):
        want = -(-total // step)
        assert (q, p, steps) == (want, want * inc, want), (total, step, inc)


def test_one_step_a_cycle_and_no_product_port_without_inc():
    dut = CeilDivider(64, 4)
    assert not hasattr(dut, "product") and not hasattr(dut, "inc")
    jobs = [(64, 4, 0), (5, 4, 0), (1, 3, 0), (0, 2, 0)]
    for (total, step, _), (q, _, steps, cycles) in zip(jobs, _count(dut, jobs, stall=0.0,
                                                                   seed=0), strict=True):
        assert q == steps == cycles == -(-total // step)


def test_zero_step_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)   # the refused, half-built divider
        with pytest.raises(ValueError, match="at least 1"):
            CeilDivider(10, 0)
        gc.collect()     # the warning comes when the object is collected
