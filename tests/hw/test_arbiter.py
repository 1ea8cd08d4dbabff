"""EngineArbiter: the top's one GEMM engine given to the client of the run in progress."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.arbiter import EngineArbiter
from hw.config import AccelConfig, ArrayConfig, AttentionConfig
from hw.dispatch import engine_config
from hw.gemm import GemmEngine
from hw.isa import Op
from sim import bench, golden


class _ArbitratedEngine(wiring.Component):
    """Test harness: an arbiter in front of an engine, the GEMM client's ports outside; the
    attention client offers nothing."""

    def __init__(self, cfg):
        self.arbiter = EngineArbiter(cfg)
        self.engine = GemmEngine(engine_config(cfg))
        members = self.arbiter.signature.members
        super().__init__({name: members[name] for name in
                          ("run_op", "gemm_cmd", "gemm_a", "gemm_b", "gemm_out")})

    def elaborate(self, platform):
        m = Module()
        m.submodules.arbiter = arb = self.arbiter
        m.submodules.engine = eng = self.engine
        for name in ("gemm_cmd", "gemm_a", "gemm_b", "gemm_out"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(arb, name))
        for ours, theirs in ((arb.cmd, eng.cmd), (arb.a, eng.a), (arb.b, eng.b),
                             (eng.out, arb.out)):
            wiring.connect(m, ours, theirs)
        m.d.comb += arb.run_op.eq(self.run_op)
        return m


CFG = AccelConfig(array=ArrayConfig(2, 3),
                  attention=AttentionConfig(max_seq_len=12, max_head_dim=6))


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_gemm_client_owns_the_engine(stall):
    # A plain GEMM through the arbiter, int8 operands widened to the shared engine's (9-bit)
    # operands: exact, under stalls.
    dut = _ArbitratedEngine(CFG)
    assert engine_config(CFG).array.in_width == 9
    rng = np.random.default_rng(int(stall * 10))
    a, b = rng.integers(-128, 128, (5, 9)), rng.integers(-128, 128, (9, 4))
    a_beats, b_beats = bench.gemm_operand_beats(a, b, 2, 3, rng)
    tiles_n = -(-4 // 3)
    cmd = dut.gemm_cmd.payload.shape().const({"m": 5, "k": 9, "n": 4}).as_value().value
    sources = [
        bench.StreamSource(dut.gemm_cmd, [cmd], name="cmd", rng=rng, stall=stall),
        bench.StreamSource(dut.gemm_a, [bench.pack(x, 8) for x in a_beats], name="a",
                           rng=np.random.default_rng(1), stall=stall),
        bench.StreamSource(dut.gemm_b, [bench.pack(x, 8) for x in b_beats], name="b",
                           rng=np.random.default_rng(2), stall=stall),
    ]
    sink = bench.StreamSink(dut.gemm_out, 5 * tiles_n, name="out",
                            rng=np.random.default_rng(3), stall=stall)

    async def setup(ctx):
        ctx.set(dut.run_op, Op.GEMM_RAW)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in (setup, *(s.run for s in sources), sink.run):
        sim.add_testbench(tb)
    sim.run()
    acc_width = engine_config(CFG).acc_width
    out = np.zeros((5, tiles_n * 3), dtype=np.int64)
    rows = iter(sink.items)
    for i0 in range(0, 5, 2):
        for j0 in range(0, 4, 3):
            for i in range(i0, min(i0 + 2, 5)):
                out[i, j0:j0 + 3] = bench.unpack(next(rows), acc_width, 3)
    np.testing.assert_array_equal(out[:, :4], golden.gemm(a, b))


def test_other_client_sees_no_ready():
    # While an attention run owns the engine, the GEMM client's command and operands wait.
    dut = _ArbitratedEngine(CFG)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.run_op, Op.ATTENTION)
        ctx.set(dut.gemm_cmd.valid, 1)
        ctx.set(dut.gemm_a.valid, 1)
        ctx.set(dut.gemm_b.valid, 1)
        for _ in range(8):
            await ctx.tick()
            seen.append((ctx.get(dut.gemm_cmd.ready), ctx.get(dut.gemm_a.ready),
                         ctx.get(dut.gemm_b.ready)))
        ctx.set(dut.run_op, Op.GEMM)
        await ctx.tick()
        seen.append(ctx.get(dut.gemm_cmd.ready))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen[:8] == [(0, 0, 0)] * 8 and seen[8] == 1
