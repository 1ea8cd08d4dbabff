"""Softmax RTL against golden.softmax, bit for bit, under random stalls."""

import numpy as np
import pytest
from amaranth.hdl import Fragment
from hypothesis import given
from hypothesis import strategies as st

import intformer as itf
from hw.config import AccelConfig, SoftmaxConfig
from hw.softmax import Softmax
from hw.units import build_unit
from sim import golden
from sim.cyclemodel import SoftmaxRows, softmax_row_timing


def config(lanes=1, variant="ibert", max_len=16, in_width=24, out_width=8):
    return AccelConfig(softmax=SoftmaxConfig(lanes=lanes, max_len=max_len, variant=variant,
                                             in_width=in_width, out_width=out_width))


def check(cfg, q, scale, stall=0.0, seed=0, backend="amaranth"):
    r = itf.simulate.softmax(cfg, q, scale, stall=stall, seed=seed, backend=backend)
    assert r.extra["backend"] == backend
    p, p_scale = golden.softmax(q, scale, cfg.softmax)
    np.testing.assert_array_equal(r.output, p)
    assert r.scale == p_scale
    return r


def scores(rng, rows, length, scale=1e-3, sigma=2.5):
    return np.round(rng.normal(0, sigma, (rows, length)) / scale).astype(np.int64)


@pytest.mark.parametrize("variant", ["ibert", "shift"])
@pytest.mark.parametrize("lanes, length", [(1, 16), (1, 5), (2, 7), (2, 16), (4, 13), (3, 16),
                                           (6, 16), (9, 16)])
@pytest.mark.parametrize("stall", [0.0, 0.3, 0.7])
def test_random_rows(variant, lanes, length, stall):
    rng = np.random.default_rng(lanes * 100 + length)
    r = check(config(lanes, variant), scores(rng, 4, length), 1e-3, stall=stall, seed=length)
    # Lanes past the end of a row's last beat are output as 0.
    np.testing.assert_array_equal(r.extra["padding"], 0)


@pytest.mark.parametrize("variant", ["ibert", "shift"])
@pytest.mark.parametrize("lanes", [1, 2])
def test_edge_rows(variant, lanes, backend):
    cfg = config(lanes, variant)
    top, bottom = (1 << 23) - 1, -(1 << 23)
    q = np.array([
        [7] * 16,                                            # all equal
        [top] + [bottom] * 15,                               # one dominant: 255, not 0
        [0, 3000, -(1 << 23), -(1 << 23)] * 4,               # masked entries: 0
        [bottom] * 16,                                       # extremes, all equal
        [top, bottom] * 8,                                   # extremes, two groups
        list(range(-8, 8)),                                  # nearly equal
    ])
    p, _ = golden.softmax(q, 1e-3, cfg.softmax)
    assert p[1, 0] == 255 and p[2, 2] == 0
    check(cfg, q, 1e-3, stall=0.3, backend=backend)


@pytest.mark.parametrize("lanes", [5, 6, 9])
def test_max_in_every_lane(lanes):
    # The row max in each lane of each beat in turn (and a ragged last beat), so that every
    # path of the lanes' registered tree of maxima carries it once; rows back to back, stalled.
    length = 2 * lanes - 1
    q = np.full((length, length), -5000, dtype=np.int64)
    np.fill_diagonal(q, 3000)
    q[:, -1] = np.arange(length) * 100 - 4000         # a runner-up, different in every row
    check(config(lanes, max_len=length), q, 1e-3, stall=0.3, seed=lanes)


@pytest.mark.parametrize("variant", ["ibert", "shift"])
@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("length", [1, 16])
def test_length_one_and_max(variant, lanes, length, backend):
    rng = np.random.default_rng(length)
    check(config(lanes, variant), scores(rng, 3, length), 1e-3, stall=0.3, backend=backend)


@pytest.mark.parametrize("variant", ["ibert", "shift"])
@pytest.mark.parametrize("in_width, scale", [(32, 2.0 ** -45), (32, 1e-9), (16, 1.5),
                                             (16, 0.06), (20, 2.0 ** -14)])
def test_widths_and_scales(variant, in_width, scale):
    cfg = config(2, variant, max_len=8, in_width=in_width, out_width=6)
    rng = np.random.default_rng(in_width)
    lo, hi = -(1 << (in_width - 1)), (1 << (in_width - 1)) - 1
    q = rng.integers(lo, hi + 1, (4, 7))
    q[0, :3] = [hi, lo, hi]
    q[1] = np.clip(np.round(rng.normal(0, 2.5, 7) / scale), lo, hi)
    q[2] = hi - rng.integers(0, 1 << 15, 7)
    check(cfg, q, scale, stall=0.3)


@given(st.sampled_from(["ibert", "shift"]), st.integers(1, 3), st.integers(1, 12),
       st.integers(1, 3), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.5]))
def test_hypothesis(variant, lanes, length, rows, seed, stall):
    rng = np.random.default_rng(seed)
    q = rng.integers(-(1 << 23), 1 << 23, (rows, length)) >> int(rng.integers(0, 24))
    check(config(lanes, variant, max_len=12), q, 1e-3, stall=stall, seed=seed)


def test_leading_dimensions():
    rng = np.random.default_rng(5)
    check(config(2), scores(rng, 6, 9).reshape(2, 3, 9), 1e-3)


def divider_steps(out_width):
    return -(-(out_width + 7) // 2)


@pytest.mark.parametrize("out_width", [8, 5])
def test_steady_state_throughput(out_width):
    # Rows of N >= G + 19 beats (27 for 8-bit outputs) stream at one beat per cycle after the
    # first row's fill; one beat fewer does not.
    n = divider_steps(out_width) + 19
    cfg = config(1, max_len=40, out_width=out_width)
    rng = np.random.default_rng(1)
    for length, extra in [(n, 0), (40, 0), (n - 1, 1)]:
        one = check(cfg, scores(rng, 1, length), 1e-3).cycles
        many = check(cfg, scores(rng, 7, length), 1e-3).cycles
        assert (many - one > 6 * length) == bool(extra)
        if not extra:
            assert many - one == 6 * length
        assert softmax_row_timing(cfg.softmax, length)[0] == length + extra


def test_steady_state_with_a_two_cycle_max():
    # With 5 to 8 lanes the row's max takes two cycles to store, and long rows (N >= G + 19
    # beats) take N + 1/2 cycles each: a row's load waits for the exp pass to finish the row
    # two back, and that pass waits the extra cycle for the max.
    cfg = config(6, max_len=168)
    rng = np.random.default_rng(5)
    one = check(cfg, scores(rng, 1, 168), 1e-3).cycles
    many = check(cfg, scores(rng, 7, 168), 1e-3).cycles
    assert many - one == 6 * 28 + 3
    assert softmax_row_timing(cfg.softmax, 168)[0] == 28.5


@pytest.mark.parametrize("lanes, length, out_width, max_cycles", [
    (1, 32, 8, 1), (1, 5, 8, 1), (3, 16, 8, 1), (2, 16, 6, 1), (1, 40, 12, 1), (4, 40, 8, 1),
    (5, 23, 8, 2), (8, 40, 8, 2), (9, 40, 8, 3)])
def test_lone_row_latency(lanes, length, out_width, max_cycles):
    # A lone row takes 3N + G + 24 + M cycles (the docstring's formula and the cycle model's),
    # M the cycles that store the row's max: 1 up to 4 lanes, one more a level of the lanes'
    # tree beyond.
    cfg = config(lanes, max_len=40, out_width=out_width)
    assert cfg.softmax.max_cycles == max_cycles
    r = check(cfg, scores(np.random.default_rng(length), 1, length), 1e-3)
    beats = -(-length // lanes)
    assert r.cycles == 3 * beats + divider_steps(out_width) + 24 + max_cycles
    assert softmax_row_timing(cfg.softmax, length)[1] == r.cycles


@pytest.mark.parametrize("length", [1, 4, 12, 20])
def test_short_rows_period(length):
    # Short rows wait for the divider: ceil((N + G + 18) / 2) cycles a row, as modelled.
    cfg = config(1, max_len=20)
    rng = np.random.default_rng(length)
    one = check(cfg, scores(rng, 4, length), 1e-3).cycles
    many = check(cfg, scores(rng, 10, length), 1e-3).cycles
    period = softmax_row_timing(cfg.softmax, length)[0]
    assert abs((many - one) / 6 - period) <= 0.5


@pytest.mark.parametrize("lanes, length, out_width, rows", [
    (1, 1, 8, 9), (1, 5, 8, 9), (1, 12, 5, 9), (1, 27, 8, 9), (1, 40, 12, 9), (2, 7, 8, 9),
    (2, 16, 6, 9), (3, 16, 8, 9), (4, 13, 8, 9), (6, 6, 8, 9), (6, 36, 8, 9), (5, 40, 10, 3),
    (9, 40, 8, 5), (16, 33, 8, 4)])
def test_rows_back_to_back_as_modelled(lanes, length, out_width, rows):
    # The cycle model's row-by-row recurrence (SoftmaxRows, which attention_cycles feeds each
    # block's rows through) against the RTL: rows offered back to back from cycle 0, the last
    # probability's cycle to the cycle.
    cfg = config(lanes, max_len=40, out_width=out_width)
    r = check(cfg, scores(np.random.default_rng(length + rows), rows, length), 1e-3)
    model = SoftmaxRows(cfg.softmax, length)
    last = [model.row(0) for _ in range(rows)][-1]
    assert r.cycles == last + 1


def test_bad_inputs_are_refused():
    cfg = config(1)
    with pytest.raises(ValueError, match=r"Softmax scale must be a finite number in "
                                         r"\[2\*\*-38, 2\*\*1\) for 24-bit scores, not 0"):
        itf.simulate.softmax(cfg, np.zeros((1, 4), dtype=np.int64), 0)
    with pytest.raises(ValueError, match="Softmax row length must be from 1 to 16 "
                                         r"\(softmax.max_len\), not 17"):
        itf.simulate.softmax(cfg, np.zeros((1, 17), dtype=np.int64), 1e-3)
    with pytest.raises(TypeError, match="Softmax input must be an array of integers"):
        itf.simulate.softmax(cfg, np.zeros((1, 4)), 1e-3)
    with pytest.raises(ValueError, match=r"Stall probability must be in \[0, 1\), not 1.0"):
        itf.simulate.softmax(cfg, np.zeros((1, 4), dtype=np.int64), 1e-3, stall=1.0)


# The refused Softmax(3) object is never elaborated, which Amaranth reports when it is collected.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_component():
    with pytest.raises(TypeError, match="Softmax config must be a SoftmaxConfig, not 3"):
        Softmax(3)
    cfg = AccelConfig()
    dut = build_unit("softmax", cfg)
    assert isinstance(dut, Softmax)
    assert dut.i.payload.shape().elem_shape.width == cfg.softmax.in_width
    assert len(dut.divisor) == cfg.softmax.constant_widths["divisor"]
    Fragment.get(dut, None)   # elaborates


@pytest.mark.parametrize("lanes, length", [(1, 1), (2, 1), (2, 2), (3, 3)])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_single_beat_rows_back_to_back(lanes, length, stall):
    # Rows of one beat: the next row is loaded into a score bank on the very cycle the exp pass
    # reads the previous row out of it (found by Hypothesis: the row's full flag was lost).
    rng = np.random.default_rng(length)
    check(config(lanes), scores(rng, 6, length), 1e-3, stall=stall)


def test_new_data_reads_check_is_sensitive(new_data_reads):
    # The softmax's row buffers are not marked uncontended: it reloads a bank on the cycle of
    # the bank's last read and relies on the old data. Forcing new-data reads onto every memory
    # must therefore break it, which shows the check can fail.
    new_data_reads(all=True)
    cfg = AccelConfig.preset("tiny")
    q = np.random.default_rng(3).integers(-2000, 2000, (6, 1))    # rows of one beat
    assert not np.array_equal(itf.simulate.softmax(cfg, q, 1e-3).output,
                              golden.softmax(q, 1e-3, cfg.softmax)[0])
