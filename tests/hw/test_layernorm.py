"""hw.layernorm.LayerNorm against sim.golden.layernorm: bit-exact under random stalls."""

import numpy as np
import pytest
from amaranth.hdl import Fragment
from hypothesis import given
from hypothesis import strategies as st

import intformer as itf
from hw.config import AccelConfig, LayerNormConfig
from hw.layernorm import LayerNorm
from sim import golden
from sim.bench import run_layernorm

CFG = {lanes: LayerNormConfig(lanes=lanes, max_len=40) for lanes in (1, 2, 3)}


def check(cfg, q, scale=0.02, gamma=None, beta=None, *, stall=0.0, seed=0, backend="amaranth"):
    accel = AccelConfig(layernorm=cfg)
    r = itf.simulate.layernorm(accel, q, scale, gamma, beta, stall=stall, seed=seed,
                               backend=backend)
    assert r.extra["backend"] == backend
    y, y_scale = golden.layernorm(q, scale, gamma, beta, cfg)
    np.testing.assert_array_equal(r.output, y)
    assert r.scale == y_scale
    return r


def random_rows(rng, rows, L, width=16):
    top = 1 << (width - 1)
    return rng.integers(-top, top, (rows, L))


@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("L", [1, 5, 32, 33, 40])
@pytest.mark.parametrize("stall", [0.0, 0.3, 0.7])
def test_random_rows(lanes, L, stall, backend):
    rng = np.random.default_rng(L * 7 + lanes)
    q = random_rows(rng, 3, L)
    q[1] = q[1] // 4096                              # a small spread: small variance
    check(CFG[lanes], q, stall=stall, seed=L, backend=backend)


@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_gamma_beta(lanes, stall, backend):
    rng = np.random.default_rng(11 + lanes)
    L = 23
    q = random_rows(rng, 3, L)
    gamma = rng.normal(1.0, 0.7, L)
    beta = rng.normal(0.0, 0.7, L)
    r = check(CFG[lanes], q, 0.5, gamma, beta, stall=stall, seed=lanes, backend=backend)
    assert (r.extra["padding"] == 0).all()          # lanes past the row end are 0


@pytest.mark.parametrize("lanes", [1, 2])
def test_edge_rows(lanes):
    cfg = CFG[lanes]
    L = 9
    top = 1 << (cfg.in_width - 1)
    q = np.array([
        [top - 1] * L,                               # zero variance, at the top
        [-top] * L,                                  # zero variance, at the bottom
        [-top, top - 1] * 4 + [-top],                # extremes alternating: largest variance
        [0] * (L - 1) + [1],                         # tiny variance: v = L - 1
        [-top] + [top - 1] * (L - 1),                # one outlier at the bottom
        [5] * L,
    ])
    beta = np.linspace(-1, 1, L)
    check(cfg, q, 1e-3, None, beta, stall=0.3, seed=5)
    check(cfg, q, 1e-3, stall=0.0)


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_max_len_and_length_one(lanes):
    rng = np.random.default_rng(lanes)
    cfg = CFG[lanes]
    check(cfg, random_rows(rng, 2, cfg.max_len), stall=0.3, seed=1)
    check(cfg, random_rows(rng, 4, 1), 1.0, [2.0], [0.5], stall=0.3, seed=2)


def test_many_rows_back_to_back_keep_one_beat_per_cycle():
    cfg = LayerNormConfig(lanes=1, max_len=32)
    rng = np.random.default_rng(9)
    q = random_rows(rng, 8, 32)
    few = check(cfg, q[:2])
    many = check(cfg, q)
    # six more rows of 32 beats take six times 32 cycles more: the stream never stalls
    assert many.cycles - few.cycles == 6 * 32


def test_narrow_input_and_3d_shape():
    cfg = LayerNormConfig(lanes=2, max_len=16, in_width=8, out_width=6)
    rng = np.random.default_rng(4)
    check(cfg, rng.integers(-128, 128, (2, 2, 11)), 0.1, stall=0.3, seed=3)


@given(st.sampled_from([1, 2]), st.integers(1, 40), st.integers(0, 15), st.integers(0, 2**31))
def test_hypothesis(lanes, L, spread_log, seed):
    rng = np.random.default_rng(seed)
    spread = 1 << spread_log
    q = np.clip(rng.integers(-spread, spread + 1, (2, L)) + int(rng.integers(-30000, 30000)),
                -32768, 32767)
    check(CFG[lanes], q, stall=0.3, seed=seed)


def test_bad_inputs():
    cfg = AccelConfig(layernorm=CFG[1])
    q = np.zeros((2, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="LayerNorm scale must be a positive finite number, "
                                         "not -1.0"):
        itf.simulate.layernorm(cfg, q, -1.0)
    with pytest.raises(ValueError, match=r"LayerNorm gamma must have shape \(4,\) \(the row "
                                         r"length\), not \(5,\)"):
        itf.simulate.layernorm(cfg, q, 1.0, gamma=np.ones(5))
    with pytest.raises(ValueError, match=r"LayerNorm row length must be from 1 to 40 "
                                         r"\(max_len\), not 41"):
        itf.simulate.layernorm(cfg, np.zeros((1, 41), dtype=np.int64), 1.0)
    with pytest.raises(ValueError, match=r"LayerNorm input values must be in \[-32768, 32767\] "
                                         r"\(signed 16-bit\), not -40000"):
        itf.simulate.layernorm(cfg, q - 40000, 1.0)
    with pytest.raises(ValueError, match=r"LayerNorm input must have at least one non-empty row,"
                                         r" not shape \(2, 0\)"):
        itf.simulate.layernorm(cfg, np.zeros((2, 0), dtype=np.int64), 1.0)
    with pytest.raises(TypeError, match="LayerNorm config must be an AccelConfig or "
                                        "LayerNormConfig, not 'x'"):
        run_layernorm("x", q, 1.0)


def test_ports():
    cfg = LayerNormConfig(lanes=2, max_len=40)
    dut = LayerNorm(cfg)
    Fragment.get(dut, None)                          # elaborates
    assert dut.i.payload.shape().size == 2 * 16
    assert dut.o.payload.shape().size == 2 * 8
    assert dut.coef.payload.shape()["gamma"].shape.size == 2 * cfg.gamma_width
