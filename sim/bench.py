"""Stream drivers and runners that exercise the gateware in Amaranth's simulator.

Stream rules (Amaranth's, obeyed by every port of every unit and by these drivers):

1. a transfer happens on a cycle where ``valid & ready``;
2. once ``valid`` is asserted, ``payload`` and ``valid`` hold until the transfer;
3. ``valid`` never waits for ``ready`` (no combinational path from ready to valid);
4. ``ready`` may depend on ``valid``.

The drivers here insert random stalls: a source withholds ``valid`` and a sink withholds
``ready`` on a cycle with probability ``stall``. Results must not depend on them. Every wait is
bounded and raises :exc:`SimTimeout` naming what it waited for.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from hw.gemm import GemmEngine

from . import golden

__all__ = [
    "SimTimeout",
    "SimResult",
    "pack",
    "unpack",
    "StreamSource",
    "StreamSink",
    "run",
    "run_gemm",
    "gemm_operand_beats",
]

BUILD_DIR = Path(__file__).resolve().parent.parent / "build"


class SimTimeout(AssertionError):
    """A simulated wait exceeded its cycle budget."""


@dataclass
class SimResult:
    """What a simulation run returns.

    Attributes
    ----------
    output : numpy.ndarray
        The unit's integer output, shaped as the golden model's.
    cycles : int
        Clock cycles from the first input transfer to the last output transfer, inclusive.
    utilization : float or None
        Useful MACs / (R * C * cycles), for units that use the array.
    scale : float or None
        The output scale, for units that return one.
    extra : dict
        Unit-specific observations (e.g. values seen in padding lanes).
    """

    output: np.ndarray
    cycles: int
    utilization: float | None = None
    scale: float | None = None
    extra: dict = field(default_factory=dict)


def pack(values, width):
    """Pack signed or unsigned lane values (lane 0 in the low bits) into one integer."""
    mask = (1 << width) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def unpack(word, width, lanes, *, signed=True):
    """Inverse of :func:`pack`."""
    mask = (1 << width) - 1
    half = 1 << (width - 1)
    out = []
    for i in range(lanes):
        v = (word >> (i * width)) & mask
        if signed and v & half:
            v -= 1 << width
        out.append(v)
    return out


class _Clocked:
    def __init__(self, port, name, rng, stall, budget):
        if not 0.0 <= stall < 1.0:
            raise ValueError(f"Stall probability must be in [0, 1), not {stall}")
        self.port, self.name, self.rng, self.stall, self.budget = port, name, rng, stall, budget
        self.first_cycle = None   # cycle index of the first transfer
        self.last_cycle = None    # cycle index of the last transfer


class StreamSource(_Clocked):
    """Drives a stream with packed integer payloads, withholding ``valid`` at random."""

    def __init__(self, port, items, *, name, rng, stall=0.0, budget=10_000):
        super().__init__(port, name, rng, stall, budget)
        self.items = list(items)

    async def run(self, ctx):
        payload = self.port.payload.as_value() if hasattr(self.port.payload, "as_value") \
            else self.port.payload
        cycle = 0
        for index, item in enumerate(self.items):
            while self.stall and self.rng.random() < self.stall:
                ctx.set(self.port.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(self.port.valid, 1)
            ctx.set(payload, item)
            for _ in range(self.budget + 1):
                _, _, ready = await ctx.tick().sample(self.port.ready)
                cycle += 1
                if ready:
                    break
            else:
                raise SimTimeout(f"{self.name}: item {index} of {len(self.items)} was not "
                                 f"accepted within {self.budget} cycles")
            if self.first_cycle is None:
                self.first_cycle = cycle - 1
            self.last_cycle = cycle - 1
        ctx.set(self.port.valid, 0)


class StreamSink(_Clocked):
    """Collects ``count`` packed payloads from a stream, withholding ``ready`` at random."""

    def __init__(self, port, count, *, name, rng, stall=0.0, budget=10_000):
        super().__init__(port, name, rng, stall, budget)
        self.count = count
        self.items = []

    async def run(self, ctx):
        payload = self.port.payload.as_value() if hasattr(self.port.payload, "as_value") \
            else self.port.payload
        cycle = idle = 0
        while len(self.items) < self.count:
            ready = not (self.stall and self.rng.random() < self.stall)
            ctx.set(self.port.ready, ready)
            _, _, valid, value = await ctx.tick().sample(self.port.valid, payload)
            cycle += 1
            if valid and ready:
                self.items.append(value)
                if self.first_cycle is None:
                    self.first_cycle = cycle - 1
                self.last_cycle = cycle - 1
                idle = 0
            else:
                idle += 1
                if idle > self.budget:
                    raise SimTimeout(f"{self.name}: got {len(self.items)} of {self.count} items, "
                                     f"then nothing for {self.budget} cycles")
        ctx.set(self.port.ready, 0)


def run(dut, *testbenches, vcd_name=None):
    """Run ``testbenches`` (async functions of ``ctx``) against ``dut`` until all return.

    A VCD trace is written to ``build/vcd/<vcd_name>.vcd`` only when the environment variable
    ``INTFORMER_VCD`` is set.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    if os.environ.get("INTFORMER_VCD") and vcd_name:
        path = BUILD_DIR / "vcd" / f"{vcd_name}.vcd"
        path.parent.mkdir(parents=True, exist_ok=True)
        with sim.write_vcd(str(path)):
            sim.run()
    else:
        sim.run()


def gemm_operand_beats(a, b, rows, cols, rng):
    """The ``a`` and ``b`` beats the GEMM engine takes for ``a @ b``, in its tile order.

    Lanes beyond M or N are filled with random junk, which the engine must ignore.
    """
    M, K = a.shape
    N = b.shape[1]
    a_beats, b_beats = [], []
    for i0 in range(0, M, rows):
        for j0 in range(0, N, cols):
            for k in range(K):
                av = rng.integers(-128, 128, rows)
                bv = rng.integers(-128, 128, cols)
                av[: min(rows, M - i0)] = a[i0:i0 + rows, k]
                bv[: min(cols, N - j0)] = b[k, j0:j0 + cols]
                a_beats.append(av)
                b_beats.append(bv)
    return a_beats, b_beats


def run_gemm(cfg, a, b, *, stall=0.0, seed=0):
    """Simulate :class:`hw.gemm.GemmEngine` computing ``a @ b``.

    See :func:`intformer.simulate.gemm`.
    """
    R, C, w = cfg.array.rows, cfg.array.cols, cfg.array.in_width
    a, b = golden.check_gemm_operands(a, b, in_width=w)
    (M, K), N = a.shape, b.shape[1]
    for what, value, limit in (("M", M, cfg.gemm.max_m), ("K", K, cfg.gemm.max_k),
                               ("N", N, cfg.gemm.max_n)):
        if not 1 <= value <= limit:
            raise ValueError(f"GEMM {what} must be from 1 to {limit} (gemm.max_{what.lower()}), "
                             f"not {value}")
    rng = np.random.default_rng(seed)
    a_beats, b_beats = gemm_operand_beats(a, b, R, C, rng)
    pad_rng = np.random.default_rng(seed + 1)
    a_beats = [pack(v, w) for v in a_beats]
    b_beats = [pack(v, w) for v in b_beats]
    tiles_n = -(-N // C)
    n_rows = M * tiles_n

    dut = GemmEngine(cfg)
    budget = 100 + 50 * (R + C + K)
    cmd = StreamSource(dut.cmd, [_cmd_word(dut, M, K, N)],
                       name="gemm cmd", rng=pad_rng, stall=stall, budget=budget)
    src_a = StreamSource(dut.a, a_beats, name="gemm a", rng=np.random.default_rng(seed + 2),
                         stall=stall, budget=budget)
    src_b = StreamSource(dut.b, b_beats, name="gemm b", rng=np.random.default_rng(seed + 3),
                         stall=stall, budget=budget)
    sink = StreamSink(dut.out, n_rows, name="gemm out", rng=np.random.default_rng(seed + 4),
                      stall=stall, budget=budget)
    run(dut, cmd.run, src_a.run, src_b.run, sink.run, vcd_name="gemm")

    out = np.zeros((M, tiles_n * C), dtype=np.int64)
    rows = iter(sink.items)
    for i0 in range(0, M, R):
        for j0 in range(0, N, C):
            for i in range(i0, min(i0 + R, M)):
                out[i, j0:j0 + C] = unpack(next(rows), cfg.acc_width, C)
    cycles = sink.last_cycle - cmd.first_cycle + 1
    return SimResult(
        output=out[:, :N],
        cycles=cycles,
        utilization=M * K * N / (R * C * cycles),
        extra={"padding": out[:, N:]},
    )


def _cmd_word(dut, M, K, N):
    layout = dut.cmd.payload.shape()
    return layout.const({"m": M, "k": K, "n": N}).as_value().value


def run_requant(cfg, acc, multiplier, shift, *, lanes=None, stall=0.0, seed=0):
    """Simulate :class:`hw.requant.Requantizer` on a 1-D array of accumulators."""
    from hw.requant import Requantizer

    lanes = cfg.array.cols if lanes is None else lanes
    rq = cfg.requant
    expected_args = dict(acc_width=cfg.acc_width, mult_width=rq.mult_width,
                         out_width=rq.out_width)
    golden.requantize(acc, multiplier, shift, **expected_args)  # validates every argument
    acc = np.asarray(acc, dtype=np.int64).reshape(-1)
    count = -(-acc.size // lanes)
    padded = np.zeros(count * lanes, dtype=np.int64)
    padded[: acc.size] = acc
    dut = Requantizer(lanes, cfg.acc_width, rq)

    async def registers(ctx):
        ctx.set(dut.multiplier, int(multiplier))
        ctx.set(dut.shift, int(shift))

    budget = 1000
    src = StreamSource(dut.i, [pack(padded[i * lanes:(i + 1) * lanes], cfg.acc_width)
                               for i in range(count)],
                       name="requant in", rng=np.random.default_rng(seed), stall=stall,
                       budget=budget)
    sink = StreamSink(dut.o, count, name="requant out", rng=np.random.default_rng(seed + 1),
                      stall=stall, budget=budget)
    run(dut, registers, src.run, sink.run, vcd_name="requant")
    out = np.array([v for word in sink.items for v in unpack(word, rq.out_width, lanes)])
    return SimResult(output=out[: acc.size], cycles=sink.last_cycle - src.first_cycle + 1)


# == Softmax runner ==============================================================================

# == GELU runner =================================================================================

# == LayerNorm runner ============================================================================
