"""intformer.model.plan: every RUN within the buffers, link bytes equal to the driver's, ops that
cannot fit refused."""

import numpy as np
import pytest

import intformer as itf
from boards import framing, splits, ulx3s
from boards.board import Board
from boards.link import RSP_SYNC, SYNC, crc8
from boards.simtop import SimTop
from hw.config import BufferConfig, GemmConfig
from hw.isa import Command, Error, LinMode, Reg
from intformer.model import compiler, plan
from intformer.model import program as P
from sim import ops
from sim.portmodel import run_checks, run_words


@pytest.mark.parametrize("preset", ["ulx3s", "tiny"])
def test_every_run_fits_the_buffers(quantized, preset, monkeypatch):
    prog, L = quantized.program, 64
    cfg = compiler.fit_config(itf.AccelConfig.preset(preset), prog, L)
    depth = cfg.buffers.depth                # raised by fit_config to what the ops need
    seen = []

    def checks(cfg_, depth_, op, regs):
        seen.append((op, dict(regs)))
        return run_checks(cfg_, depth_, op, regs)

    monkeypatch.setattr(plan, "run_checks", checks)
    c = compiler.compile_program(prog, cfg, L)
    # The fitted acc_width holds every Linear's whole sum: K chunks (tiny's max_k of 64 is
    # below every Linear's K) and digit passes are summed in C, no GEMM_RAW.
    assert {op.name for op, _ in seen} == {"LINEAR", "ATTENTION", "LAYERNORM", "GELU",
                                           "RESIDUAL"}
    for op, regs in seen:
        assert max(run_words(cfg, op, regs).values()) <= depth, (op, regs)
        assert run_checks(cfg, depth, op, regs) == []
    assert c.cycles > 0 and c.link_bytes > 0 and c.depth == depth
    assert "link kB" in str(c) and "total" in str(c)


def test_ulx3s_forward_figures(quantized):
    cfg = itf.AccelConfig.preset("ulx3s")
    c = compiler.compile_program(quantized.program, cfg, 64)
    assert c.depth == cfg.buffers.depth == 2048
    assert (c.clock, c.baud) == (ulx3s.CLK_FREQ, framing.BAUD)
    assert framing.BAUD == 3_000_000
    assert c.compute_seconds == c.cycles / ulx3s.CLK_FREQ
    assert c.link_seconds == c.link_bytes * 10 / 3_000_000
    ffn2 = next(s for s in c.steps if s.op.output == "L0.ffn2")
    assert ffn2.note.startswith("64x1536x384, LINEAR, K in chunks of ")
    assert "2 passes of 15-bit inputs, summed in C" in ffn2.note
    # The link by buffer: each op's buffer commands within its bytes, the rest SET_REG, RUN
    # and STATUS; B carries every weight at least once (6 int8 lanes a 6-byte word), and the
    # results and row-op words go through the narrow views where they fit. C itself is read
    # only for GELU's outputs over C (each FFN's first Linear and its GELU, chained), and Y
    # not at all.
    for s in c.steps:
        most = framing.LinkCount()     # a RUN and its poll, four SET_REGs a run, each register
        most.run(times=s.runs)
        most.set_reg(1 << 63, times=4 * s.runs + len(Reg))
        assert 0 <= s.link_bytes - sum(s.buffers.values()) <= most.total, s.op.output
    weights = sum(op.weight.size for op in quantized.program.ops if isinstance(op, P.Linear))
    by = c.buffer_bytes
    assert weights < by["B"] < 1.1 * weights
    assert {"C_OUT", "X_IN", "Y_OUT"} <= by.keys() and "Y" not in by
    gelus = [s for s in c.steps if isinstance(s.op, P.Gelu)]
    assert len(gelus) == 6 and by["C"] == sum(s.buffers["C"] for s in gelus) > 0
    for s in c.steps:
        if s.op.output.endswith(".ffn1"):
            assert s.note.startswith("results kept in C") and s.link_bytes == s.runs == 0
    assert list(by.values()) == sorted(by.values(), reverse=True)
    assert "link by buffer: B " in str(c)


def test_batch_plan(quantized):
    """A batch's plan: the row ops on all its rows at once, attention item by item; the ops
    that hold no weights cost the batch as many bytes as its items, the Linears fewer where a
    block holds rows of both (the weights sent once a block, not once an item)."""
    cfg = itf.AccelConfig.preset("ulx3s")
    one, two = (compiler.compile_program(quantized.program, cfg, 32, batch=b) for b in (1, 2))
    assert two.batch == 2 and "a batch of 2 sequences of 32 tokens" in str(two)
    for i, (s1, s2) in enumerate(zip(one.steps, two.steps, strict=True)):
        assert s2.macs == 2 * s1.macs, s1.op.output
        if i in one.chained:        # a Linear whose bytes are its GELU's
            assert s1.link_bytes == s2.link_bytes == 0
        elif isinstance(s1.op, P.Linear) or isinstance(one.after.get(i), P.Linear):
            assert s1.link_bytes < s2.link_bytes < 2 * s1.link_bytes, s1.op.output
        elif isinstance(s1.op, P.Attention):
            assert s2.runs == 2 * s1.runs and s2.cycles == 2 * s1.cycles
    assert one.link_bytes < two.link_bytes < 2 * one.link_bytes
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"^Batch must be a positive integer, not "):
            compiler.compile_program(quantized.program, cfg, 32, batch=bad)


def test_op_beyond_a_buffer_is_refused(quantized):
    cfg = itf.AccelConfig.preset("ulx3s").replace(buffers=BufferConfig(256))
    with pytest.raises(ValueError, match=r"^LayerNorm 'emb.out' cannot be split to fit the "
                                         r"buffers of 'ulx3s' \(depth 256\): RUN "
                                         r"LAYERNORM of ROW_LEN=384, ROWS=1 needs 384 words "
                                         r"of X, at most 256$"):
        compiler.compile_program(quantized.program, cfg, 64)
    with pytest.raises(ValueError, match=r"^Attention 'L0.ctx' cannot be split to fit the "
                                         r"buffers of 'ulx3s' \(depth 256\): RUN "
                                         r"ATTENTION of ATT_LEN=64, ATT_DIM=32 needs 352 "
                                         r"words of B, at most 256$"):
        plan.Session(cfg).plan(quantized.program.ops[6], 64, {"L0.q": 384})


class _Line:
    """A serial line to :class:`boards.simtop.SimTop`: parses the driver's request frames,
    answers each with the top's response, framed, and counts the bytes both ways (a RUN is
    waited for, so one STATUS poll finds it done)."""

    def __init__(self, top):
        self.top, self.sent, self.received, self.rx = top, 0, 0, b""

    def write(self, data):
        self.sent += len(data)
        assert data[0] == SYNC and crc8(data[1:-1]) == data[-1]
        opcode, payload = data[1], data[4:-1]
        assert len(payload) == int.from_bytes(data[2:4], "little")
        status, answer = self.top._exchange(opcode, payload)
        if opcode == Command.RUN.value and status == Error.OK.value:
            assert self.top._run_while_busy(20_000) is not None
        body = bytes([status]) + len(answer).to_bytes(2, "little") + answer
        self.rx += bytes([RSP_SYNC]) + body + bytes([crc8(body)])

    def read(self, n):
        data, self.rx = self.rx[:n], self.rx[n:]
        self.received += len(data)
        return data


def test_link_bytes_equal_the_drivers():
    """A Linear of several row and column blocks (RUN LINEAR, summed in C), one of 10-bit
    inputs (two digits summed in C), one of 15-bit inputs and K beyond a run (whose whole sum
    C cannot hold: GEMM_RAW digits and K chunks summed on the host) and a residual add of two
    runs, on the tiny preset at depth 32: the bytes the plan counts are the bytes Board sends
    and reads, and the driver's Linear is :func:`sim.ops.linear`."""
    cfg, payload = itf.AccelConfig.preset("tiny").replace(buffers=BufferConfig(32)), 64
    line = _Line(SimTop(cfg))
    board = Board(line, cfg, max_payload=payload)
    rng = np.random.default_rng(0)
    M, K, N = 10, 12, 9
    x, w = rng.integers(-128, 128, (M, K)), rng.integers(-128, 128, (K, N))
    bias = rng.integers(-1000, 1000, N)
    mult, shift = rng.integers(1, 1 << 15, N), rng.integers(10, 20, N)
    lin = P.Linear("y", 1.0, input="x", weight=w, bias=bias, multipliers=mult, shifts=shift,
                   out_width=cfg.requant.out_width)
    x15, w40 = rng.integers(-(1 << 14), 1 << 14, (M, 40)), rng.integers(-128, 128, (40, N))
    wide = P.Linear("z", 1.0, input="x15", weight=w40, bias=bias, multipliers=mult,
                    shifts=shift, out_width=8, x_width=15)
    x10 = rng.integers(-(1 << 9), 1 << 9, (M, K))    # two digits whose sum C holds
    digits = P.Linear("v", 1.0, input="x10", weight=w, bias=bias, multipliers=mult,
                      shifts=shift, out_width=8, x_width=10)
    res = P.Residual("r", 1.0, a="x", b="y", ma=3, mb=5, shift=2)
    session = plan.Session(cfg, max_payload=payload)
    def linear(xx, ww, **kw):
        got = board.linear(xx, ww, bias, mult, shift, **kw)
        wide_acc = cfg.replace(gemm=GemmConfig(max_m=32, max_k=64, max_n=32, acc_width=40))
        np.testing.assert_array_equal(got, ops.linear(xx, ww, bias, mult, shift,
                                                      cfg=wide_acc, **kw))

    for op, call in ((lin, lambda: linear(x, w, out_width=cfg.requant.out_width)),
                     (wide, lambda: linear(x15, w40, x_width=15, out_width=8)),
                     (digits, lambda: linear(x10, w, x_width=10, out_width=8)),
                     (res, lambda: board.residual(rng.integers(-99, 99, (M, 4)),
                                                  rng.integers(-99, 99, (M, 4)), 3, 5, 2))):
        want = session.plan(op, M, {"x": 4, "y": N, "x15": 40, "x10": K})
        line.sent = line.received = 0
        call()
        assert (line.sent, line.received) == (want.sent, want.received), op.kind
        assert want.runs > 1


def test_linear_split_sends_the_fewest_bytes(monkeypatch):
    """:func:`boards.splits.linear_split` picks, of every K chunk and block order it
    considers, the split whose runs the plan counts the fewest link bytes for; the driver
    sends exactly those bytes, for the pick and for the columns-first split of the same
    chunk, and both give :func:`sim.ops.linear`. Here, 10-bit inputs (two digits summed in
    C) on the tiny preset at depth 32, the pick is blocks rows first."""
    cfg = itf.AccelConfig.preset("tiny").replace(buffers=BufferConfig(32))
    rng = np.random.default_rng(1)
    M, K, N = 6, 16, 20
    x, w = rng.integers(-(1 << 9), 1 << 9, (M, K)), rng.integers(-128, 128, (K, N))
    bias = rng.integers(-1000, 1000, N)
    mult, shift = rng.integers(1, 1 << 15, N), rng.integers(10, 20, N)
    lin = P.Linear("y", 1.0, input="x", weight=w, bias=bias, multipliers=mult, shifts=shift,
                   out_width=8, x_width=10)
    want = ops.linear(x, w, bias, mult, shift, cfg=cfg, x_width=10, out_width=8)
    chosen = splits.linear_split(cfg, 32, M, K, N, passes=2)
    assert chosen.rows_first
    counted = {}
    for split in [splits.LinearSplit(kc, order) for kc in (16, 8, 4, 2) for order in (0, 1)]:
        monkeypatch.setattr(splits, "linear_split", lambda *_, s=split: s)
        op_plan = plan.Session(cfg).plan(lin, M, {"x": K})
        counted[split] = op_plan.sent + op_plan.received
    assert counted[chosen] == min(counted.values()) < counted[splits.LinearSplit(4, False)]
    for split in (chosen, splits.LinearSplit(4, False)):
        monkeypatch.setattr("boards.matrixops.linear_split", lambda *_, s=split: s)
        line = _Line(SimTop(cfg))
        got = Board(line, cfg).linear(x, w, bias, mult, shift, x_width=10, out_width=8)
        np.testing.assert_array_equal(got, want)
        assert line.sent + line.received == counted[split]


def test_linear_runs_hold_b_for_both_digits():
    """Two digits: each K chunk's low digit, then its high one (SHIFT) on the weights B still
    holds, all into one sum (ACCUMULATE but the first, RAW but the last); B is written once
    for both digits, and the runs cover every digit, chunk, row and column once. Three digits
    are not summed on chip (:func:`boards.splits.sums_on_chip`)."""
    cfg = itf.AccelConfig.preset("tiny").replace(buffers=BufferConfig(32))
    for M, K, N, order in ((6, 16, 20, True), (10, 12, 9, False), (5, 7, 3, False)):
        for kc in (K, 4, 3):
            runs = list(splits.linear_runs(cfg, 32, M, K, N, 2, splits.LinearSplit(kc, order)))
            cells = [(r.p, i, j, k) for r in runs for i in range(r.i0, r.i0 + r.m)
                     for j in range(r.j0, r.j0 + r.n) for k in range(r.k0, r.k0 + r.k)]
            assert sorted(cells) == [(p, i, j, k) for p in range(2) for i in range(M)
                                     for j in range(N) for k in range(K)]
            # B written once a column block for one chunk, else once a chunk's two runs.
            columns = len({r.j0 for r in runs})
            assert sum(r.write_b for r in runs) == (columns if kc >= K else len(runs) // 2)
            for prev, r in zip([None, *runs[:-1]], runs, strict=True):
                assert (LinMode.SHIFT in r.mode) == (r.p == 0)
                first = prev is None or (prev.i0, prev.j0) != (r.i0, r.j0)
                assert (LinMode.ACCUMULATE in r.mode) != first
                if r.p == 0:        # the high digit follows its chunk's low one, on its B
                    assert (prev.p, prev.k0, prev.k, r.write_b) == (1, r.k0, r.k, False)
            assert [LinMode.RAW not in r.mode for r in runs] == [r.read_c for r in runs]
    assert splits.sums_on_chip(cfg, cfg.acc_width, 2)
    assert not splits.sums_on_chip(cfg, cfg.acc_width, 3)
    assert not splits.sums_on_chip(cfg, cfg.acc_width + 1, 1)
    with pytest.raises(ValueError, match=r"^Linear passes must be 1 or 2 to sum on chip"):
        next(splits.linear_runs(cfg, 32, 4, 4, 4, 3, splits.LinearSplit(4, False)))
