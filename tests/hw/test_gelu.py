"""GELU RTL against golden.gelu, bit for bit, under random stalls on both streams."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import UnusedElaboratable
from hypothesis import given
from hypothesis import strategies as st

import intformer as itf
from hw.config import AccelConfig, GeluConfig
from hw.gelu import Gelu
from hw.units import build_unit
from sim import golden

VARIANTS = ("ibert", "shift")
ALL_INT8 = np.arange(-128, 128)


def accel(**kwargs):
    return AccelConfig(gelu=GeluConfig(**kwargs))


def check(cfg, q, scale, stall=0.0, seed=0, backend="amaranth"):
    r = itf.simulate.gelu(cfg, q, scale, stall=stall, seed=seed, backend=backend)
    assert r.extra["backend"] == backend
    y, y_scale = golden.gelu(q, scale, cfg.gelu)
    np.testing.assert_array_equal(r.output, y)
    assert r.output.shape == np.shape(q) and r.scale == y_scale
    return r


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lanes", [1, 2, 3])
@pytest.mark.parametrize("stall", [0.0, 0.3, 0.7])
def test_every_int8_value(variant, lanes, stall):
    # Exhaustive: all 256 inputs, in a shuffled order so neighbouring lanes differ.
    q = np.random.default_rng(lanes).permutation(ALL_INT8)
    check(accel(variant=variant, lanes=lanes), q, 4 / 127, stall=stall, seed=lanes)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("where", ["lo", "mid", "hi"])
def test_scales(variant, where, backend):
    cfg = accel(variant=variant, lanes=2)
    lo, hi = golden.gelu_scale_range(cfg.gelu)
    scale = {"lo": lo * 1.001, "mid": 0.1 if variant == "ibert" else 0.7, "hi": hi * 0.999}[where]
    check(cfg, ALL_INT8, scale, stall=0.3, backend=backend)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("gelu_kwargs", [
    {"in_width": 12, "poly_width": 12, "lanes": 2},
    {"in_width": 4, "frac_width": 6, "poly_width": 6, "lanes": 3},
    {"in_width": 16, "frac_width": 24, "poly_width": 16},
])
def test_other_widths(variant, gelu_kwargs):
    cfg = accel(variant=variant, **gelu_kwargs)
    w = cfg.gelu.in_width
    q = np.random.default_rng(w).integers(-(1 << (w - 1)), 1 << (w - 1), 60)
    q[:3] = [-(1 << (w - 1)), (1 << (w - 1)) - 1, 0]
    lo, hi = golden.gelu_scale_range(cfg.gelu)
    for scale in (lo * 1.001, 4 / ((1 << (w - 1)) - 1), hi * 0.999):
        check(cfg, q, scale, stall=0.3)


@given(variant=st.sampled_from(VARIANTS), lanes=st.integers(1, 3),
       shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       scale=st.floats(0.003, 4.0), seed=st.integers(0, 1000),
       stall=st.sampled_from([0.0, 0.3, 0.7]))
def test_random_arrays(variant, lanes, shape, scale, seed, stall):
    q = np.random.default_rng(seed).integers(-128, 128, shape)
    check(accel(variant=variant, lanes=lanes), q, scale, stall=stall, seed=seed)


@pytest.mark.parametrize("variant", VARIANTS)
def test_edges(variant, backend):
    cfg = accel(variant=variant, lanes=2)
    check(cfg, np.full(7, -128), 0.05, backend=backend)
    check(cfg, np.full((2, 3), 127), 0.05, backend=backend)
    check(cfg, np.array([5]), 0.05, backend=backend)   # one element, ragged single beat
    r = check(cfg, np.zeros((0, 4), dtype=int), 0.05, backend=backend)  # nothing to do
    assert r.cycles == 0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lanes", [1, 3])
def test_one_beat_per_cycle(variant, lanes):
    # Without stalls, beats come out back to back after the stated latency.
    cfg = accel(variant=variant, lanes=lanes)
    beats = 40
    r = check(cfg, np.resize(ALL_INT8, beats * lanes), 0.05)
    g = cfg.gelu
    assert r.extra["latency"] == (8 if variant == "ibert" else 7 + g.quot_width + g.frac_width)
    assert r.cycles == beats + r.extra["latency"]


@pytest.mark.parametrize("scale, exc, match", [
    (0.0, ValueError, "GELU scale must be a positive finite number, not 0.0"),
    (float("nan"), ValueError, "GELU scale must be a positive finite number, not nan"),
    (1e-4, ValueError, "GELU scale must be from .* to .*, not 0.0001"),
    ("0.1", TypeError, "GELU scale must be a real number, not '0.1'"),
])
def test_bad_scale(scale, exc, match):
    with pytest.raises(exc, match=match):
        itf.simulate.gelu(AccelConfig(), [1, 2], scale)


def test_bad_config():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)  # the refused, half-built Gelu
        with pytest.raises(TypeError, match="GELU config must be a GeluConfig, not") as info:
            Gelu(AccelConfig())
        del info
        gc.collect()


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"GELU input values must be in \[-128, 127\] "
                                         r"\(signed 8-bit\), not 200"):
        itf.simulate.gelu(AccelConfig(), np.array([1, 200]), 0.05)
    with pytest.raises(TypeError, match="GELU input must be an array of integers, not of dtype"):
        itf.simulate.gelu(AccelConfig(), np.array([1.0]), 0.05)
    with pytest.raises(ValueError, match=r"Stall probability must be in \[0, 1\), not 1.0"):
        itf.simulate.gelu(AccelConfig(), [1], 0.05, stall=1.0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_registry_and_ports(variant):
    cfg = accel(variant=variant, lanes=2)
    dut = build_unit("gelu", cfg)
    assert isinstance(dut, Gelu)
    consts = golden.gelu_constants(0.05, cfg.gelu)
    for name in dut.constant_names:  # every constant port has a golden constant that fits it
        value = getattr(consts, name)
        assert 0 <= value < 1 << len(getattr(dut, name))
    assert len(dut.o.payload.as_value()) == 2 * cfg.gelu.out_width
    assert "module" in rtlil.convert(dut, name="gelu")
