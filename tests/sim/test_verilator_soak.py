"""A soak that only the Verilator backend makes affordable: hundreds of random operations of
random shapes on the Verilated top, with malformed commands between them. Every result is
bit-exact with the golden model, every malformed command answers its documented error code and
changes no buffer, and nothing hangs (every wait is bounded).

Shares its model with tests/sim/test_verilator_top.py (tiny preset, depth 64); about 10 s.
"""

import numpy as np
from test_verilator_top import DEPTH, SCALES, TINY

from hw.isa import Buf, Command, Error, Op, Reg
from sim import golden
from sim.verilator.top import VerilatorTop


def _malformed(rng, top):
    """A random malformed command and the status it must answer."""
    spec = top.buffers[Buf.A]
    cases = [
        (0x7e, rng.bytes(int(rng.integers(0, 8))), Error.OPCODE),
        (Command.STATUS.value, b"\x00", Error.LENGTH),
        (Command.WRITE_BUFFER.value, bytes([9, 0, 0, 1, 0]) + bytes(spec.nbytes), Error.BUFFER),
        (Command.WRITE_BUFFER.value, bytes([Buf.A.value]) + DEPTH.to_bytes(2, "little")
         + (1).to_bytes(2, "little") + bytes(spec.nbytes), Error.RANGE),
        (Command.WRITE_BUFFER.value, bytes([Buf.A.value, 0, 0, 2, 0]) + bytes(spec.nbytes),
         Error.LENGTH),
        (Command.READ_BUFFER.value, bytes([Buf.COEF.value, 0, 0, 1, 0]), Error.BUFFER),
        (Command.SET_REG.value, bytes([0x7f, 1]), Error.REGISTER),
        (Command.SET_REG.value, bytes([Reg.M.value, TINY.gemm.max_m + 1]), Error.VALUE),
        (Command.RUN.value, bytes([0x40]), Error.UNIT),
    ]
    return cases[int(rng.integers(len(cases)))]


def _operation(rng, top):
    """A random operation of a random shape; returns (result, expected)."""
    kind = rng.integers(0, 5)
    if kind == 0:
        M, K, N = (int(rng.integers(1, n + 1)) for n in (9, 20, 7))
        a, b = rng.integers(-128, 128, (M, K)), rng.integers(-128, 128, (K, N))
        if rng.random() < 0.5:
            return top.gemm(a, b), golden.gemm(a, b)
        m, s = golden.quantize_multiplier(float(rng.uniform(1e-4, 1e-2)))
        return (top.gemm(a, b, requant=(m, s)),
                golden.requantize(golden.gemm(a, b), m, s, acc_width=TINY.acc_width))
    if kind == 1:
        q = rng.integers(-4000, 4000, (int(rng.integers(1, 4)), int(rng.integers(1, 12))))
        return top.softmax(q, 1e-3)[0], golden.softmax(q, 1e-3, TINY.softmax)[0]
    if kind == 2:
        x = rng.integers(-128, 128, int(rng.integers(1, 60)))
        return top.gelu(x, 0.04)[0], golden.gelu(x, 0.04, TINY.gelu)[0]
    if kind == 3:
        L = int(rng.integers(1, 12))
        q = rng.integers(-3000, 3000, (int(rng.integers(1, 4)), L))
        gamma, beta = rng.normal(1, 0.3, L), rng.normal(0, 0.5, L)
        return (top.layernorm(q, 0.01, gamma, beta)[0],
                golden.layernorm(q, 0.01, gamma, beta, TINY.layernorm)[0])
    H = int(rng.integers(1, 3))
    L = int(rng.integers(1, TINY.attention.max_seq_len + 1))
    d = int(rng.integers(1, TINY.attention.max_head_dim + 1))
    causal = bool(rng.integers(0, 2))
    q, k, v = (rng.integers(-128, 128, (H, L, d)) for _ in range(3))
    return (top.attention(q, k, v, *SCALES, causal=causal)[0],
            golden.attention(q, k, v, *SCALES, causal=causal, cfg=TINY)[0])


def test_soak_random_operations_and_malformed_commands():
    rng = np.random.default_rng(2026)
    top = VerilatorTop(TINY, depth=DEPTH, stall=0.2, seed=7, budget=100_000)
    commands = 0
    for step in range(300):
        result, expected = _operation(rng, top)
        np.testing.assert_array_equal(result, expected, err_msg=f"operation {step}")
        # A's contents now (whatever the last operation left) must survive the bad commands.
        before = top.read_buffer(Buf.A, 0, DEPTH)
        for _ in range(int(rng.integers(1, 4))):
            opcode, payload, code = _malformed(rng, top)
            status, data = top.raw(opcode, payload)
            assert (Error(status), data) == (code, b""), f"after operation {step}"
            commands += 1
        np.testing.assert_array_equal(top.read_buffer(Buf.A, 0, DEPTH), before)
        assert top.status().busy is False
    assert commands >= 300
    assert top.raw(Command.RUN.value, bytes([Op.GEMM.value]))[0] in (Error.OK.value,
                                                                     Error.SHAPE.value)
