"""Issue 18's property at a length only the Verilator backend affords: every op runs again and
again while random commands, valid and invalid, arrive with random gaps; every response, every
result and every buffer word must be what :class:`sim.portmodel.CommandPortModel` predicts
from the documented rules (the buffers are read back through READ_BUFFER after each run).

Shares its model with tests/sim/test_verilator_top.py (tiny preset, depth 64).
"""

import numpy as np
from test_verilator_top import DEPTH, TINY

from boards.verilatortop import VerilatorTop
from hw.isa import Op, Reg
from sim.interleave import Interleaver


def test_soak_every_op_with_random_commands():
    top = VerilatorTop(TINY, depth=DEPTH, stall=0.2, seed=7, budget=200_000)
    it = Interleaver(top, TINY, DEPTH, np.random.default_rng(2026), commands=12)
    ops = list(Op)
    for i in range(180):
        it.target_run(ops[i % len(ops)])
    s = it.stats
    print(s)
    assert s.random == 180 * 12
    assert s.exposed_checked >= 60, s      # the property was exercised, not just sampled
    assert s.by_status.get("BUSY", 0) >= 100, s


def test_soak_linear_in_every_lin_mode():
    # RUN LINEAR in a random LIN_MODE (hw.isa.LinMode) before each run, between GEMMs: an
    # accumulating run adds whatever C holds (operands, junk, earlier results), and the
    # model predicts every word.
    top = VerilatorTop(TINY, depth=DEPTH, stall=0.2, seed=8, budget=200_000)
    rng = np.random.default_rng(2027)
    it = Interleaver(top, TINY, DEPTH, rng, commands=12)
    for i in range(200):
        it._set(Reg.LIN_MODE, int(rng.integers(0, 8)))
        it.target_run((Op.LINEAR, Op.GEMM_RAW, Op.LINEAR, Op.GEMM)[i % 4])
    s = it.stats
    print(s)
    assert s.exposed_checked >= 60, s
