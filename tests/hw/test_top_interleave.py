"""No command, accepted or refused, changes a running operation: every operation of the top runs
while random commands (valid and invalid) arrive with random gaps; every response, the run's
result, every buffer word and every register must equal :class:`sim.portmodel.CommandPortModel`'s
prediction from the documented rules."""

import dataclasses

import numpy as np
import pytest

from boards.simtop import SimTop
from hw.config import AccelConfig, AttentionConfig
from hw.isa import Op, Reg
from sim.interleave import Interleaver

# The tiny preset with a small attention controller (L <= 10, d <= 5), buffers 32 words deep.
TINY = AccelConfig.preset("tiny").replace(attention=AttentionConfig(max_seq_len=10,
                                                                    max_head_dim=5))
DEPTH = 32


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("op", list(Op), ids=lambda op: op.name)
def test_commands_during_a_run_change_nothing(op, seed):
    top = SimTop(TINY, depth=DEPTH, stall=0.2, seed=seed, budget=40_000)
    rng = np.random.default_rng([seed, op.value])
    it = Interleaver(top, TINY, DEPTH, rng)
    # Runs until three runs that met refused commands were checked (the property exercised),
    # ten at most: a short run may end before the first random command arrives.
    for _ in range(10):
        it.target_run(op)
        if it.stats.exposed_checked >= 3:
            break
    print(f"{op.name} seed {seed}: {it.stats}")
    assert it.stats.exposed_checked >= 3, it.stats


@pytest.mark.parametrize("seed", [0, 1])
def test_commands_during_a_gelu_over_c_change_nothing(seed):
    # RUN GELU over C (GELU_IN_C, on the tiny top with C's lanes as wide as GELU's output):
    # the interleaver runs it half the time, from X the other half.
    cfg = TINY.replace(gemm=dataclasses.replace(TINY.gemm, acc_width=24))
    top = SimTop(cfg, depth=DEPTH, stall=0.2, seed=seed, budget=40_000)
    it = Interleaver(top, cfg, DEPTH, np.random.default_rng([seed, 99]))
    over_c = 0
    for _ in range(20):
        before = it.stats.exposed_checked
        it.target_run(Op.GELU)
        if it.model.regs[Reg.GELU_IN_C] and it.stats.exposed_checked > before:
            over_c += 1
        if over_c >= 3:
            break
    assert over_c >= 3, it.stats
