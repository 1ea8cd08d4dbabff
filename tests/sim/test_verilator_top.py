"""The accelerator top on Verilator (boards.verilatortop.VerilatorTop): bit-exact with the golden
models through the byte command port, the documented error codes, and the same responses as
the Amaranth-simulated top (boards.simtop.SimTop) to the same commands.

One model (tiny preset, depth 64) serves every test: about 40 s to build once, cached under
build/verilator/.
"""


import numpy as np
import pytest

from boards.host import BoardError
from boards.simtop import SimTop
from boards.verilatortop import VerilatorTop
from hw.config import AccelConfig, AttentionConfig
from hw.isa import (
    Buf,
    Command,
    Error,
    Op,
    Reg,
    buffer_specs,
    register_specs,
)
from sim import cyclemodel, golden, layout, ops
from sim.bench import SimTimeout

TINY = AccelConfig.preset("tiny").replace(attention=AttentionConfig(max_seq_len=10,
                                                                    max_head_dim=5))
DEPTH = 64
SCALES = (0.05, 0.04, 0.03, 0.02)




def expect(code, fn, *args, **kwargs):
    with pytest.raises(BoardError) as info:
        fn(*args, **kwargs)
    assert info.value.name == code.name


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_every_op_bit_exact(stall):
    top = VerilatorTop(TINY, depth=DEPTH, stall=stall, seed=1)
    rng = np.random.default_rng(2)
    a, b = rng.integers(-128, 128, (5, 7)), rng.integers(-128, 128, (7, 3))
    np.testing.assert_array_equal(top.gemm(a, b), golden.gemm(a, b))
    m, s = golden.quantize_multiplier(1 / 900)
    np.testing.assert_array_equal(
        top.gemm(a, b, requant=(m, s)),
        golden.requantize(golden.gemm(a, b), m, s, acc_width=TINY.acc_width))
    q = rng.normal(0, 2500, (3, 10)).round().astype(np.int64)
    np.testing.assert_array_equal(top.softmax(q, 1e-3)[0], golden.softmax(q, 1e-3, TINY.softmax)[0])
    x = rng.permutation(np.arange(-128, 128))
    np.testing.assert_array_equal(top.gelu(x, 0.05)[0], golden.gelu(x, 0.05, TINY.gelu)[0])
    q = rng.integers(-3000, 3000, (3, 11))
    gamma, beta = rng.normal(1, 0.3, 11), rng.normal(0, 0.5, 11)
    np.testing.assert_array_equal(top.layernorm(q, 0.01, gamma, beta)[0],
                                  golden.layernorm(q, 0.01, gamma, beta, TINY.layernorm)[0])
    for causal, keys in ((False, None), (True, None), (False, 4), (True, 1)):
        q, k, v = (rng.integers(-128, 128, (2, 9, 5)) for _ in range(3))
        np.testing.assert_array_equal(
            top.attention(q, k, v, *SCALES, causal=causal, keys=keys)[0],
            golden.attention(q, k, v, *SCALES, causal=causal, keys=keys, cfg=TINY)[0])
    assert top.status() == (False, True, "OK")


def test_malformed_commands_change_nothing():
    top = VerilatorTop(TINY, depth=DEPTH, stall=0.3, seed=10)
    before = np.arange(DEPTH * 2).reshape(DEPTH, 2) - DEPTH
    top.write_buffer(Buf.A, 0, before)
    nbytes = buffer_specs(TINY, DEPTH)[Buf.A].nbytes
    head = bytes([Buf.A.value]) + (DEPTH - 1).to_bytes(2, "little")
    assert top.raw(Command.WRITE_BUFFER, head + (2).to_bytes(2, "little")
                   + bytes(2 * nbytes))[0] == Error.RANGE.value
    assert top.raw(0x7e, bytes(40))[0] == Error.OPCODE.value
    assert top.raw(Command.STATUS, b"\x00")[0] == Error.LENGTH.value
    assert top.raw(Command.SET_REG, bytes([0x7f, 1]))[0] == Error.REGISTER.value
    assert top.raw(Command.SET_REG, bytes([Reg.M.value, TINY.gemm.max_m + 1]))[0] == \
        Error.VALUE.value
    assert top.raw(Command.RUN, bytes([0x40]))[0] == Error.UNIT.value
    expect(Error.SHAPE, top.run, Op.GEMM)
    np.testing.assert_array_equal(top.read_buffer(Buf.A, 0, DEPTH), before)
    assert top.status() == (False, False, "SHAPE")
    for reg, v in ((Reg.M, 8), (Reg.K, 8), (Reg.N, 8)):
        top.set_reg(reg, v)
    top.run(Op.GEMM_RAW, wait=False)
    assert top.status().busy and top.output("busy") == 1
    expect(Error.BUSY, top.write_buffer, Buf.A, 0, np.zeros((1, 2)))
    top.idle(1000)
    assert top.output("busy") == 0
    assert top.status() == (False, True, "BUSY")     # the last error, then cleared
    assert top.status() == (False, True, "OK")


def test_timeout_is_bounded():
    # Three command bytes in take three cycles at least: no answer within a budget of two.
    top = VerilatorTop(TINY, depth=DEPTH, budget=2)
    with pytest.raises(SimTimeout, match=r"^command 0x1 header: got 0 of 3 response bytes in 2 "
                                         r"cycles$"):
        top.raw(Command.STATUS)
    assert top.cycles == 2


def _random_commands(rng, n):
    """Random commands, valid and not: (opcode, payload) pairs."""
    specs, regs = buffer_specs(TINY, DEPTH), register_specs(TINY, DEPTH)
    bufs = list(specs)
    out = []
    for _ in range(n):
        kind = rng.integers(0, 6)
        if kind == 0:
            out.append((Command.STATUS.value, b""))
        elif kind in (1, 2):
            buf = bufs[rng.integers(len(bufs))] if rng.random() < 0.9 else Buf(6) if \
                Buf.V not in specs else None
            bnum = buf.value if buf is not None else 0x40
            spec = specs.get(buf) if buf is not None else None
            addr = int(rng.integers(0, DEPTH + 2))
            count = int(rng.integers(0, 5))
            body = bytes([bnum]) + addr.to_bytes(2, "little") + count.to_bytes(2, "little")
            if kind == 1:
                nbytes = spec.nbytes if spec else 1
                extra = int(rng.integers(-1, 2)) if rng.random() < 0.2 else 0
                body += rng.bytes(max(0, count * nbytes + extra))
                out.append((Command.WRITE_BUFFER.value, body))
            else:
                out.append((Command.READ_BUFFER.value, body))
        elif kind == 3:
            reg = list(regs)[rng.integers(len(regs))] if rng.random() < 0.9 else None
            rnum = reg.value if reg is not None else 0x7f
            hi = regs[reg][1] if reg is not None else 1
            value = int(rng.integers(0, hi + 2)) if reg not in (Reg.M, Reg.K, Reg.N) else \
                int(rng.integers(0, 6))
            nb = max(1, -(-value.bit_length() // 8))
            out.append((Command.SET_REG.value, bytes([rnum]) + value.to_bytes(nb, "little")))
        elif kind == 4:
            out.append((Command.RUN.value, bytes([int(rng.integers(0, 7))])))
        else:
            out.append((int(rng.integers(0, 256)), rng.bytes(int(rng.integers(0, 4)))))
    return out


def _replay(top, commands):
    """Responses to ``commands``, each with the cycles it took; after an accepted RUN, poll
    STATUS until the run is done (both tops take the same cycles, hence the same polls)."""
    answers = []
    for opcode, payload in commands:
        start = top.cycles
        answers.append((*top.raw(opcode, payload), top.cycles - start))
        if opcode == Command.RUN.value and answers[-1][0] == Error.OK.value:
            for _ in range(2000):
                start = top.cycles
                status, flags = top.raw(Command.STATUS.value, b"")
                answers.append((status, flags, top.cycles - start))
                if not flags[0] & 1:
                    break
    return answers


def test_same_responses_as_amaranth():
    # Random commands, most of them malformed or out of range; both tops answer byte for byte
    # alike, on the same cycles (runs included: their results are read back by later
    # READ_BUFFERs).
    commands = _random_commands(np.random.default_rng(31), 150)
    sim_top = SimTop(TINY, depth=DEPTH, stall=0.3, seed=3)
    verilated = VerilatorTop(TINY, depth=DEPTH, stall=0.3, seed=3)
    expected = _replay(sim_top, commands)
    got = _replay(verilated, commands)
    assert got == expected
    assert verilated.cycles == sim_top.cycles
    assert sum(1 for a in expected if a[0] == Error.OK.value) > 20   # not only errors


def _operations(top, rng):
    """A GEMM, a softmax and a causal attention head on ``top``: [(output, cycles taken)]."""
    a, b = rng.integers(-128, 128, (5, 7)), rng.integers(-128, 128, (7, 3))
    x = rng.normal(0, 2500, (3, 10)).round().astype(np.int64)
    q, k, v = (rng.integers(-128, 128, (2, 9, 5)) for _ in range(3))
    results = []
    for op in (lambda: top.gemm(a, b), lambda: top.softmax(x, 1e-3)[0],
               lambda: top.attention(q, k, v, *SCALES, causal=True)[0]):
        start = top.cycles
        results.append((op(), top.cycles - start))
    assert top.status() == (False, True, "OK")
    return results


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_same_cycles_as_amaranth(stall):
    # The same operations on both tops: the same outputs (the golden models') in the same
    # cycles, a run's wait included (both wait on busy, then poll STATUS once).
    sim_top = SimTop(TINY, depth=DEPTH, stall=stall, seed=5)
    verilated = VerilatorTop(TINY, depth=DEPTH, stall=stall, seed=5)
    expected = _operations(sim_top, np.random.default_rng(6))
    got = _operations(verilated, np.random.default_rng(6))
    rng = np.random.default_rng(6)
    a, b = rng.integers(-128, 128, (5, 7)), rng.integers(-128, 128, (7, 3))
    x = rng.normal(0, 2500, (3, 10)).round().astype(np.int64)
    q, k, v = (rng.integers(-128, 128, (2, 9, 5)) for _ in range(3))
    golden_outputs = [golden.gemm(a, b), golden.softmax(x, 1e-3, TINY.softmax)[0],
                      golden.attention(q, k, v, *SCALES, causal=True, cfg=TINY)[0]]
    for (out_a, cycles_a), (out_v, cycles_v), want in zip(expected, got, golden_outputs,
                                                          strict=True):
        np.testing.assert_array_equal(out_a, want)
        np.testing.assert_array_equal(out_v, want)
        assert cycles_v == cycles_a > 0
    assert verilated.cycles == sim_top.cycles


def test_profile_guided_model_same_cycles():
    # The profile-guided build (trained on boards.verilatortop.profile_workload) is another
    # library, with the training's counts beside it, and answers the same operations with the
    # same outputs on the same cycles as the plain one.
    plain = VerilatorTop(TINY, depth=DEPTH, stall=0.3, seed=5)
    guided = VerilatorTop(TINY, depth=DEPTH, stall=0.3, seed=5, pgo=True)
    assert guided.build.library != plain.build.library
    assert sorted(p.name for p in (guided.build.library.parent / "profile").glob("*.gcda"))
    expected = _operations(plain, np.random.default_rng(6))
    got = _operations(guided, np.random.default_rng(6))
    for (out_p, cycles_p), (out_g, cycles_g) in zip(expected, got, strict=True):
        np.testing.assert_array_equal(out_g, out_p)
        assert cycles_g == cycles_p > 0
    assert guided.cycles == plain.cycles


def _timed_runs(top, rng):
    """RUN LINEAR, RESIDUAL, GELU and LAYERNORM on ``top``, each problem one run, no stalls:
    [(op, shape, cycles of the run as ``top.run_cycles`` counts it)]."""
    R, C = TINY.array.rows, TINY.array.cols
    results = []

    def timed(op, shape, run):
        before = top.run_cycles
        out = run()
        results.append((op, shape, top.run_cycles - before))
        return out

    for M, K, N in ((5, 7, 5), (8, 3, 8), (3, 1, 7)):
        x, w = rng.integers(-128, 128, (M, K)), rng.integers(-128, 128, (K, N))
        bias = rng.integers(-1000, 1000, N)
        mult, shift = rng.integers(1, 1 << 16, N), rng.integers(10, 20, N)
        top.write_channels(bias, mult, shift)
        top.write_buffer(Buf.A, 0, layout.column_words(x, R))
        top.write_buffer(Buf.B, 0, layout.row_words(w, C))
        for reg, value in ((Reg.M, M), (Reg.K, K), (Reg.N, N)):
            top.set_reg(reg, value)
        timed(Op.LINEAR, (M, K, N), lambda: top.run(Op.LINEAR))
        out = layout.from_tile_rows(top.read_buffer(Buf.C, 0, M * -(-N // C)), M, N, R, C)
        np.testing.assert_array_equal(out, ops.linear(x, w, bias, mult, shift, cfg=TINY))
    consts = ops.residual_constants(0.02, 0.05, 0.04)
    for rows, length in ((1, 11), (3, 7)):
        a, b = (rng.integers(-(1 << 15), 1 << 15, (rows, length)) for _ in range(2))
        # One row of all the elements (the driver's way), as one run.
        out = timed(Op.RESIDUAL, (1, rows * length),
                    lambda a=a, b=b: top.residual(a, b, *consts))
        np.testing.assert_array_equal(out, ops.residual_add(a, b, *consts))
    for rows, length in ((1, 9), (3, 7), (2, 30)):
        q = rng.integers(-3000, 3000, (rows, length))
        out = timed(Op.LAYERNORM, (rows, length), lambda q=q: top.layernorm(q, 0.01)[0])
        np.testing.assert_array_equal(out, golden.layernorm(q, 0.01, cfg=TINY.layernorm)[0])
        q = rng.integers(-100, 100, (rows, length))
        # One row of all the elements (the driver's way), as one run.
        out = timed(Op.GELU, (1, rows * length), lambda q=q: top.gelu(q, 0.05)[0])
        np.testing.assert_array_equal(out, golden.gelu(q, 0.05, TINY.gelu)[0])
    return results


def test_run_cycles_as_modelled():
    # A run seen from the command port (top.run_cycles: from the RUN's first byte to busy low)
    # takes the model's cycles (from the accepted RUN to the last word written; exact on the
    # Amaranth top, tests/hw/test_top.py) plus what the port adds, the same for every shape and
    # op (cyclemodel.RUN_PORT_CYCLES); and both tops take the same cycles.
    got = _timed_runs(VerilatorTop(TINY, depth=DEPTH), np.random.default_rng(7))
    expected = _timed_runs(SimTop(TINY, depth=DEPTH), np.random.default_rng(7))
    assert got == expected
    model = {Op.LINEAR: cyclemodel.linear_cycles, Op.RESIDUAL: cyclemodel.residual_cycles,
             Op.GELU: cyclemodel.gelu_cycles, Op.LAYERNORM: cyclemodel.layernorm_cycles}
    overhead = {cycles - model[op](TINY, *shape) for op, shape, cycles in got}
    assert overhead == {cyclemodel.RUN_PORT_CYCLES}, overhead
