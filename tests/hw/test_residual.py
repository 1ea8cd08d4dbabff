"""Residual add RTL against sim.ops.residual_add, bit for bit."""

import numpy as np
import pytest

import intformer as itf
from hw.config import AccelConfig, ResidualConfig
from sim import ops
from sim.bench import run_residual

CFG = ResidualConfig()
TINY = AccelConfig.preset("tiny")


def check(a, b, ma, mb, s, cfg=CFG, backend=None, **kwargs):
    if backend is not None:       # through the public API, on either backend
        r = itf.simulate.residual(TINY.replace(residual=cfg), a, b, ma, mb, s,
                                  backend=backend, **kwargs)
        assert r.extra["backend"] == backend
    else:
        r = run_residual(cfg, a, b, ma, mb, s, **kwargs)
    np.testing.assert_array_equal(
        r.output, ops.residual_add(a, b, ma, mb, s, in_width=cfg.in_width,
                                   mult_width=cfg.mult_width, out_width=cfg.out_width))
    return r


@pytest.mark.parametrize("stall", [0.0, 0.3, 0.7])
def test_random(stall, backend):
    rng = np.random.default_rng(1)
    a, b = (rng.integers(-(1 << 15), 1 << 15, (4, 9)) for _ in range(2))
    ma, mb, s = ops.residual_constants(0.01, 0.03, 0.02)
    r = check(a, b, ma, mb, s, stall=stall, seed=2, backend=backend)
    if stall == 0.0:
        assert r.cycles == a.size + r.extra["latency"]      # one beat per cycle


def test_edges(backend):
    top, bottom = (1 << 15) - 1, -(1 << 15)
    a = np.array([top, bottom, top, bottom, 0, 1, -1, top])
    b = np.array([top, bottom, bottom, top, 0, -1, 1, top])
    for ma, mb, s in [(65535, 65535, 0),      # saturates both ways
                      (65535, 65535, 32),     # the largest shift
                      (1, 1, 0), (0, 0, 5), (3, 5, 1), (65535, 1, 16), (7, 9, 31)]:
        check(a, b, ma, mb, s, backend=backend)


@pytest.mark.parametrize("s", [1, 2, 7, 8, 9, 17])
def test_rounding_ties(s):
    # a*ma + b*mb exactly halfway between two integers after the shift, both signs.
    half = 1 << (s - 1)
    a = np.array([half, -half, 3 * half, -3 * half, 0, 0]) >> 0
    a = np.clip(a, -(1 << 15), (1 << 15) - 1)
    b = np.array([0, 0, 0, 0, half, -half])
    b = np.clip(b, -(1 << 15), (1 << 15) - 1)
    check(a, b, 1, 1, s)


def test_lanes_and_widths():
    cfg = ResidualConfig(in_width=12, mult_width=10, out_width=9)
    rng = np.random.default_rng(3)
    a, b = (rng.integers(-(1 << 11), 1 << 11, 17) for _ in range(2))   # a ragged last beat
    check(a, b, 1000, 517, 9, cfg=cfg, lanes=3, stall=0.3)
    check(a, b, 1023, 1023, cfg.max_shift, cfg=cfg, lanes=3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Residual shift must be an integer from 0 to 32, "
                                         "not 33"):
        run_residual(CFG, [1], [2], 1, 1, 33)
    with pytest.raises(ValueError, match="Residual in_width must be an integer from 2 to 24, "
                                         "not 1"):
        ResidualConfig(in_width=1)
    with pytest.raises(TypeError, match="Residual enabled must be a boolean, not 1"):
        ResidualConfig(enabled=1)
