"""AttentionUnit (the attention controller with an engine and a requantizer of its own) against
golden.attention, bit for bit."""

import numpy as np
import pytest
from amaranth.sim import Simulator

import intformer as itf
from hw.attention_unit import AttentionUnit
from hw.config import AccelConfig, ArrayConfig, AttentionConfig
from sim import bench as sim_bench
from sim import cyclemodel, golden

SCALES = (0.02, 0.02, 0.05, 0.05)   # q, k, v, o


def make_cfg(rows=2, cols=2, max_seq_len=12, max_head_dim=6, softmax_lanes=1, variant="ibert"):
    cfg = AccelConfig(array=ArrayConfig(rows, cols),
                      attention=AttentionConfig(max_seq_len=max_seq_len,
                                                max_head_dim=max_head_dim,
                                                softmax_lanes=softmax_lanes))
    return cfg.replace(softmax=cfg.softmax.__class__(variant=variant))


def operands(rng, *shape):
    return tuple(rng.integers(-128, 128, shape, dtype=np.int8) for _ in range(3))


def check(cfg, q, k, v, scales=SCALES, causal=False, keys=None, stall=0.0, seed=0,
          backend="amaranth"):
    r = itf.simulate.attention(cfg, q, k, v, *scales, causal=causal, keys=keys, stall=stall,
                               seed=seed, backend=backend)
    assert r.extra["backend"] == backend
    expected, o_scale = golden.attention(q, k, v, *scales, causal=causal, keys=keys, cfg=cfg)
    np.testing.assert_array_equal(r.output, expected)
    assert r.scale == o_scale
    assert not r.extra["padding"].any()
    return r


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L, d", [(1, 1), (2, 6), (5, 3), (7, 4), (12, 6), (12, 1)])
def test_shapes(L, d, causal, backend):
    # L = 1, L not a multiple of the array, L = max_seq_len, d = 1 and d = max_head_dim.
    check(make_cfg(), *operands(np.random.default_rng(L * 10 + d), L, d), causal=causal,
          backend=backend)


@pytest.mark.parametrize("arr", [(1, 1), (3, 2), (2, 4), (4, 4)])
def test_array_sizes(arr):
    cfg = make_cfg(*arr, max_seq_len=10, max_head_dim=5)
    rng = np.random.default_rng(sum(arr))
    check(cfg, *operands(rng, 9, 5))
    check(cfg, *operands(rng, 10, 3), causal=True)


@pytest.mark.parametrize("H", [2, 3])
def test_heads(H, backend):
    check(make_cfg(), *operands(np.random.default_rng(H), H, 6, 4), causal=H == 3,
          backend=backend)


@pytest.mark.parametrize("stall", [0.3, 0.7])
@pytest.mark.parametrize("causal", [False, True])
def test_stalls(stall, causal, backend):
    rng = np.random.default_rng(int(stall * 10))
    check(make_cfg(), *operands(rng, 2, 7, 3), causal=causal, stall=stall, seed=5,
          backend=backend)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("slow", ["q", "k", "v", "qv"])
def test_jobs_wait_for_slow_loads(slow, causal):
    # The run starts while the scratchpads load: QK(b) waits for Q's row block b and reads each
    # K tile once it is in, PV waits for V. One or two loads withheld at a high rate, the
    # others at full rate, must change no result.
    cfg = make_cfg(1, 4, max_seq_len=12, max_head_dim=6)
    q, k, v = operands(np.random.default_rng(len(slow)), 11, 6)
    r = sim_bench.run_attention(cfg, q, k, v, *SCALES, causal=causal, seed=7,
                                load_stalls={name: 0.9 for name in slow})
    np.testing.assert_array_equal(r.output, golden.attention(q, k, v, *SCALES, causal=causal,
                                                             cfg=cfg)[0])


@pytest.mark.parametrize("causal", [False, True])
def test_new_data_reads_change_nothing(causal, new_data_reads):
    # The scratchpads are marked uncontended (hw.memory): in hardware a read of the address
    # being written may return the new data, and the results must not depend on it.
    new_data_reads()
    rng = np.random.default_rng(31)
    check(make_cfg(), *operands(rng, 3, 12, 5), causal=causal, stall=0.5, seed=6)
    check(make_cfg(3, 2, max_seq_len=10, max_head_dim=5), *operands(rng, 2, 1, 1),
          causal=causal)


@pytest.mark.parametrize("value", [-128, 127])
def test_extreme_inputs(value, backend):
    cfg = make_cfg()
    full = np.full((12, 6), value, dtype=np.int8)
    check(cfg, full, full, full, backend=backend)
    # Large scores: one key matches every query exactly, a dominant score per row.
    rng = np.random.default_rng(1)
    q = rng.choice(np.array([-128, 127], dtype=np.int8), (12, 6))
    k = q[::-1].copy()
    check(cfg, q, k, full, scales=(0.1, 0.1, 0.05, 0.05), causal=True, backend=backend)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L, d, keys", [(1, 1, 1), (5, 3, 1), (5, 3, 4), (7, 4, 7), (12, 6, 5),
                                        (12, 2, 11)])
def test_key_mask(L, d, keys, causal, backend):
    # Keys past ``keys`` masked (ATT_KEYS): keys = 1, keys = L, L not a multiple of the array.
    check(make_cfg(), *operands(np.random.default_rng(L * 10 + keys), L, d), causal=causal,
          keys=keys, backend=backend)


@pytest.mark.parametrize("stall", [0.3, 0.7])
@pytest.mark.parametrize("arr", [(2, 2), (3, 2), (2, 4)])
def test_key_mask_stalls_and_arrays(arr, stall):
    cfg = make_cfg(*arr, softmax_lanes=2 if arr == (2, 4) else 1)
    rng = np.random.default_rng(arr[0] * 10 + arr[1])
    check(cfg, *operands(rng, 2, 11, 3), keys=6, stall=stall, seed=3)
    check(cfg, *operands(rng, 9, 5), causal=True, keys=4, stall=stall, seed=4)


def test_key_mask_costs_no_cycle():
    # Masked keys are computed all the same: the cycles and the array's operand pairs are those
    # of the unmasked head, and the cycle model (which has no keys) stays within 5%.
    cfg = make_cfg(2, 2, max_seq_len=16, max_head_dim=8)
    rng = np.random.default_rng(9)
    for L, d, causal in [(16, 8, False), (16, 8, True), (9, 5, False)]:
        q, k, v = operands(rng, L, d)
        full = check(cfg, q, k, v, causal=causal)
        for keys in (1, L // 2):
            r = check(cfg, q, k, v, causal=causal, keys=keys)
            assert (r.cycles, r.extra["array_busy"]) == (full.cycles, full.extra["array_busy"])
            model = cyclemodel.attention_cycles(cfg, L, d, causal)
            assert abs(model - r.cycles) / r.cycles <= 0.05, (L, d, causal, r.cycles, model)


def test_softmax_lanes_and_shift_variant():
    cfg = make_cfg(2, 4, softmax_lanes=2, variant="shift")
    check(cfg, *operands(np.random.default_rng(3), 11, 5), causal=True)
    check(make_cfg(2, 4, softmax_lanes=4), *operands(np.random.default_rng(4), 9, 6))


@pytest.mark.parametrize("arr", [(2, 2), (1, 4)])
def test_cycle_model_within_5_percent(arr):
    # 1 x 4: Q takes four times K's cycles to load, and the first jobs run while it loads.
    cfg = make_cfg(*arr, max_seq_len=16, max_head_dim=8)
    rng = np.random.default_rng(7)
    for L, d, causal in [(16, 8, False), (16, 8, True), (9, 5, False)]:
        r = check(cfg, *operands(rng, L, d), causal=causal)
        model = cyclemodel.attention_cycles(cfg, L, d, causal)
        assert abs(model - r.cycles) / r.cycles <= 0.05, (L, d, causal, r.cycles, model)


def test_causal_skips_masked_tiles():
    cfg = make_cfg(2, 2, max_seq_len=16, max_head_dim=4)
    q, k, v = operands(np.random.default_rng(8), 16, 4)
    dense = check(cfg, q, k, v).extra["array_busy"]
    causal = check(cfg, q, k, v, causal=True).extra["array_busy"]
    # Operand pairs the array took. Whole masked tiles are not computed: with R = C = 2,
    # L = 16, d = 4, QK(b) covers b+1 column tiles of d pairs and PV(b) sums over 2b+2 keys for
    # each of the 2 column tiles of d, instead of 8 tiles and 16 keys.
    assert dense == 8 * (8 * 4 + 2 * 16)
    assert causal == sum((b + 1) * 4 + 2 * (2 * b + 2) for b in range(8))


def test_array_cycles_bound_the_head():
    # attention_array_cycles is the array's own share: the operand pairs it takes when every
    # job's K is at least the tile gap (2R - 1 = 3 here), more when one is under it (d < 3, or
    # causal, where PV(0) sums over R = 2 keys), and never more than the head's cycles.
    cfg = make_cfg(2, 2, max_seq_len=16, max_head_dim=4)
    rng = np.random.default_rng(10)
    for L, d, causal, k_under_gap in [(16, 4, False, False), (11, 3, False, False),
                                      (16, 4, True, True), (9, 2, False, True)]:
        r = check(cfg, *operands(rng, L, d), causal=causal)
        bound = cyclemodel.attention_array_cycles(cfg, L, d, causal)
        busy = r.extra["array_busy"]
        assert bound > busy if k_under_gap else bound == busy, (L, d, causal, bound, busy)
        assert bound < r.cycles, (L, d, causal, bound, r.cycles)


@pytest.mark.parametrize("shape, message", [
    ((13, 2), r"Attention sequence length must be from 1 to 12 \(attention.max_seq_len\), "
              r"not 13"),
    ((4, 7), r"Attention head dimension must be from 1 to 6 \(attention.max_head_dim\), not 7"),
    ((4,), r"Attention q must have shape \(L, d\) or \(heads, L, d\), not \(4,\)"),
])
def test_requests_beyond_config(shape, message):
    x = np.zeros(shape, np.int8)
    with pytest.raises(ValueError, match=message):
        itf.simulate.attention(make_cfg(), x, x, x, *SCALES)


def test_mismatched_and_bad_operands():
    cfg = make_cfg()
    a, b = np.zeros((4, 3), np.int8), np.zeros((4, 2), np.int8)
    with pytest.raises(ValueError, match="Attention q, k and v must have the same shape"):
        itf.simulate.attention(cfg, a, b, a, *SCALES)
    with pytest.raises(TypeError, match="Attention k must be an array of integers"):
        itf.simulate.attention(cfg, a, a.astype(float), a, *SCALES)
    with pytest.raises(ValueError, match="Attention o_scale must be a positive finite number, "
                                         "not 0"):
        itf.simulate.attention(cfg, a, a, a, 0.1, 0.1, 0.1, 0)


def test_bad_command_sets_error():
    cfg = make_cfg()
    dut = AttentionUnit(cfg)
    layout = dut.cmd.payload.shape()
    seen = []

    async def testbench(ctx):
        for bad in ({"length": 0, "head_dim": 2, "causal": 0},
                    {"length": 13, "head_dim": 2, "causal": 0},
                    {"length": 4, "head_dim": 7, "causal": 1},
                    {"length": 4, "head_dim": 2, "causal": 0, "keys": 5}):
            ctx.set(dut.cmd.payload, layout.const(bad))
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)
            await ctx.tick()
            seen.append((ctx.get(dut.error), ctx.get(dut.busy), ctx.get(dut.q.ready)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [(1, 0, 0)] * 4
