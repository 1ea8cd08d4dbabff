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

import numpy as np
from amaranth.sim import Simulator

from hw.attention import AttentionController
from hw.config import AccelConfig, LayerNormConfig, build_dir
from hw.gelu import Gelu
from hw.gemm import GemmEngine
from hw.layernorm import LayerNorm
from hw.requant import Requantizer
from hw.softmax import Softmax

from . import golden

__all__ = [
    "SimTimeout",
    "SimResult",
    "pack",
    "pack_rows",
    "unpack_rows",
    "unpack",
    "StreamSource",
    "StreamSink",
    "run",
    "run_streams",
    "BACKENDS",
    "gemm_operand_beats",
    "run_gemm",
    "run_requant",
    "run_softmax",
    "run_gelu",
    "layernorm_coef_beats",
    "run_layernorm",
    "attention_load_beats",
    "attention_macs",
    "run_attention",
]



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


def pack_rows(rows, width):
    """:func:`pack` of each row of a 2-D integer array: a uint64 array when a packed row fits
    64 bits (vectorized, bytewise for 8-bit lanes), else a list of ints."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] * width > 64:
        return [pack(r, width) for r in rows]
    if width == 8:
        packed = np.zeros((len(rows), 8), dtype=np.uint8)
        packed[:, :rows.shape[1]] = rows.astype(np.uint8)       # two's complement, lane 0 low
        return packed.view("<u8")[:, 0]
    lanes = (rows.astype(np.int64) & ((1 << width) - 1)).astype(np.uint64)
    shifts = (np.arange(rows.shape[1], dtype=np.uint64) * np.uint64(width))
    return np.bitwise_or.reduce(lanes << shifts, axis=1)


def unpack_rows(words, width, lanes, *, signed=True):
    """:func:`unpack` of each of ``words`` (ints), vectorized: an int64 array ``(len(words),
    lanes)``. Lane values must fit 63 bits."""
    nbytes = max(1, -(-width * lanes // 8))
    raw = b"".join(int(w).to_bytes(nbytes, "little") for w in words)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8).reshape(len(words), nbytes),
                         axis=1, bitorder="little")[:, :width * lanes]
    bits = bits.reshape(len(words), lanes, width).astype(np.int64)
    values = bits @ (np.int64(1) << np.arange(width, dtype=np.int64))
    if signed:
        values -= bits[..., -1] << width
    return values


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
    def __init__(self, port, name, rng, stall, budget, start):
        if not 0.0 <= stall < 1.0:
            raise ValueError(f"Stall probability must be in [0, 1), not {stall}")
        self.port, self.name, self.rng, self.stall, self.budget = port, name, rng, stall, budget
        self.start = start        # cycles before the stream starts (its cycle 0)
        self.first_cycle = None   # cycle index of the first transfer
        self.last_cycle = None    # cycle index of the last transfer


class StreamSource(_Clocked):
    """Drives a stream with packed integer payloads, withholding ``valid`` at random."""

    def __init__(self, port, items, *, name, rng, stall=0.0, budget=10_000, start=0):
        super().__init__(port, name, rng, stall, budget, start)
        # An array of packed payloads (pack_rows) stays one, for Verilator to take in bulk.
        self.items = items if isinstance(items, np.ndarray) else list(items)

    def timeout_message(self, index):
        return (f"{self.name}: item {index} of {len(self.items)} was not accepted within "
                f"{self.budget} cycles")

    async def run(self, ctx):
        payload = self.port.payload.as_value() if hasattr(self.port.payload, "as_value") \
            else self.port.payload
        for _ in range(self.start):
            await ctx.tick()
        cycle = 0
        for index, item in enumerate(self.items):
            while self.stall and self.rng.random() < self.stall:
                ctx.set(self.port.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(self.port.valid, 1)
            ctx.set(payload, int(item))
            for _ in range(self.budget + 1):
                _, _, ready = await ctx.tick().sample(self.port.ready)
                cycle += 1
                if ready:
                    break
            else:
                raise SimTimeout(self.timeout_message(index))
            if self.first_cycle is None:
                self.first_cycle = cycle - 1
            self.last_cycle = cycle - 1
        ctx.set(self.port.valid, 0)


class StreamSink(_Clocked):
    """Collects ``count`` packed payloads from a stream, withholding ``ready`` at random."""

    def __init__(self, port, count, *, name, rng, stall=0.0, budget=10_000, start=0):
        super().__init__(port, name, rng, stall, budget, start)
        self.count = count
        self.items = []

    def timeout_message(self, got):
        return (f"{self.name}: got {got} of {self.count} items, then nothing for {self.budget} "
                f"cycles")

    async def run(self, ctx):
        payload = self.port.payload.as_value() if hasattr(self.port.payload, "as_value") \
            else self.port.payload
        for _ in range(self.start):
            await ctx.tick()
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
                    raise SimTimeout(self.timeout_message(len(self.items)))
        ctx.set(self.port.ready, 0)


def run(dut, *testbenches, vcd_name=None, background=()):
    """Run ``testbenches`` (async functions of ``ctx``) against ``dut`` until all return;
    ``background`` testbenches run beside them and do not hold the simulation up.

    A VCD trace is written to ``build/vcd/<vcd_name>.vcd`` only when the environment variable
    ``INTFORMER_VCD`` is set.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    if os.environ.get("INTFORMER_VCD") and vcd_name:
        path = build_dir() / "vcd" / f"{vcd_name}.vcd"
        path.parent.mkdir(parents=True, exist_ok=True)
        with sim.write_vcd(str(path)):
            sim.run()
    else:
        sim.run()


#: Simulation backends of the runners: Amaranth's simulator (the reference) and Verilator.
BACKENDS = ("amaranth", "verilator")


def run_streams(dut, sources, sinks, *, constants=(), probes=None, backend="amaranth", key=None,
                vcd_name=None):
    """Run ``sources`` and ``sinks`` against ``dut`` until every item is through.

    ``constants`` are ``(port, value)`` pairs set before the first cycle and held; ``probes``
    (``{name: 1-bit signal of dut or its submodules}``) are counted on every cycle until the
    run ends. Returns ``{name: cycles high}`` for the probes. On ``backend="verilator"`` the same
    run happens in :mod:`sim.verilator` (``key``, the unit's name and config, caches its
    Verilog); both backends give the same items on the same cycles.
    """
    if backend == "verilator":
        from .verilator.runner import run_streams as run_verilated

        return run_verilated(dut, sources, sinks, constants=constants, probes=probes, key=key)
    if backend != "amaranth":
        raise ValueError(f"Simulation backend must be one of {', '.join(BACKENDS)}, not "
                         f"{backend!r}")
    counts = dict.fromkeys(probes or (), 0)

    async def setup(ctx):
        for port, value in constants:
            ctx.set(port, value)

    async def monitor(ctx):
        # Background observer of the probes, sampled at each rising edge.
        async for _, _, *values in ctx.tick().sample(*probes.values()):
            for name, value in zip(probes, values, strict=True):
                counts[name] += bool(value)

    run(dut, setup, *(s.run for s in (*sources, *sinks)),
        background=[monitor] if probes else [], vcd_name=vcd_name)
    return counts


def gemm_operand_beats(a, b, rows, cols, rng):
    """The ``a`` and ``b`` beats the GEMM engine takes for ``a @ b``, in its tile order (row
    tile, column tile, k; A re-sent for each column tile), as arrays ``(beats, rows)`` and
    ``(beats, cols)``.

    Lanes beyond M or N are filled with random junk, which the engine must ignore.
    """
    M, K = a.shape
    N = b.shape[1]
    tm, tn = -(-M // rows), -(-N // cols)
    ap = rng.integers(-128, 128, (tm * rows, K))
    ap[:M] = a
    bp = rng.integers(-128, 128, (K, tn * cols))
    bp[:, :N] = b
    # The narrowest integer type that holds the operands: the broadcasts below copy them.
    lo, hi = min(ap.min(), bp.min()), max(ap.max(), bp.max())
    dtype = next(t for t in (np.int8, np.int16, np.int32, np.int64)
                 if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)
    ap, bp = ap.astype(dtype), bp.astype(dtype)
    a_tiles = ap.reshape(tm, rows, K).transpose(0, 2, 1)      # [tile i, k] -> A lanes
    b_tiles = bp.reshape(K, tn, cols).transpose(1, 0, 2)      # [tile j, k] -> B lanes
    a_beats = np.broadcast_to(a_tiles[:, None], (tm, tn, K, rows)).reshape(-1, rows)
    b_beats = np.broadcast_to(b_tiles[None], (tm, tn, K, cols)).reshape(-1, cols)
    return a_beats, b_beats


def run_gemm(cfg, a, b, *, stall=0.0, seed=0, backend="amaranth"):
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
    a_beats = pack_rows(a_beats, w)
    b_beats = pack_rows(b_beats, w)
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
    run_streams(dut, [cmd, src_a, src_b], [sink], backend=backend, key=("gemm", cfg),
                vcd_name="gemm")

    # Rows come out per output tile (row tile, column tile), each tile's rows in order.
    rows = unpack_rows(sink.items, cfg.acc_width, C)
    out = np.zeros((M, tiles_n * C), dtype=np.int64)
    at = 0
    for i0 in range(0, M, R):
        n = min(R, M - i0)
        tile = rows[at:at + n * tiles_n].reshape(tiles_n, n, C)
        out[i0:i0 + n] = tile.transpose(1, 0, 2).reshape(n, tiles_n * C)
        at += n * tiles_n
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


def run_requant(cfg, acc, multiplier, shift, *, lanes=None, stall=0.0, seed=0,
                backend="amaranth"):
    """Simulate :class:`hw.requant.Requantizer` on a 1-D array of accumulators."""
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
    budget = 1000
    src = StreamSource(dut.i, [pack(padded[i * lanes:(i + 1) * lanes], cfg.acc_width)
                               for i in range(count)],
                       name="requant in", rng=np.random.default_rng(seed), stall=stall,
                       budget=budget)
    sink = StreamSink(dut.o, count, name="requant out", rng=np.random.default_rng(seed + 1),
                      stall=stall, budget=budget)
    run_streams(dut, [src], [sink], constants=[(dut.multiplier, int(multiplier)),
                                               (dut.shift, int(shift))],
                backend=backend, key=("requant", lanes, cfg.acc_width, rq), vcd_name="requant")
    out = np.array([v for word in sink.items for v in unpack(word, rq.out_width, lanes)])
    return SimResult(output=out[: acc.size], cycles=sink.last_cycle - src.first_cycle + 1)



def run_softmax(cfg, q, scale, *, stall=0.0, seed=0, backend="amaranth"):
    """Simulate :class:`hw.softmax.Softmax` on rows ``q`` (last axis). See
    :func:`intformer.simulate.softmax`.

    ``cfg`` is a :class:`hw.config.SoftmaxConfig`. All rows go through one simulation, back to
    back; lanes past the end of a row's last beat carry random junk, which the unit ignores.
    ``cycles`` counts from the first input transfer to the last output transfer.
    """
    q, k, cfg = golden.check_softmax_input(q, scale, cfg)
    shape = q.shape
    rows = q.reshape(-1, shape[-1])
    length, n, w = shape[-1], cfg.lanes, cfg.in_width
    beats = -(-length // n)
    rng = np.random.default_rng(seed)
    items = []
    for row in rows:
        padded = rng.integers(-(1 << (w - 1)), 1 << (w - 1), beats * n)
        padded[:length] = row
        items.extend(pack(padded[b * n:(b + 1) * n], w) for b in range(beats))

    dut = Softmax(cfg)
    constants = [(dut.length, length)] + [(getattr(dut, name), getattr(k, name))
                                          for name in cfg.constant_widths]
    budget = 200 + 4 * beats + cfg.out_width
    src = StreamSource(dut.i, items, name="softmax in", rng=np.random.default_rng(seed + 1),
                       stall=stall, budget=budget)
    sink = StreamSink(dut.o, len(items), name="softmax out",
                      rng=np.random.default_rng(seed + 2), stall=stall, budget=budget)
    run_streams(dut, [src], [sink], constants=constants, backend=backend, key=("softmax", cfg),
                vcd_name="softmax")
    out = np.array([unpack(word, cfg.out_width, n, signed=False) for word in sink.items],
                   dtype=np.int64).reshape(len(rows), beats * n)
    return SimResult(
        output=out[:, :length].reshape(shape),
        scale=2.0 ** -cfg.out_width,
        cycles=sink.last_cycle - src.first_cycle + 1,
        extra={"padding": out[:, length:]},
    )


def run_gelu(cfg, q, scale, *, stall=0.0, seed=0, backend="amaranth"):
    """Simulate :class:`hw.gelu.Gelu` on ``q`` (any shape). See :func:`intformer.simulate.gelu`.

    ``cfg`` is an :class:`~hw.config.AccelConfig` (its ``gelu`` section is used) or a
    :class:`~hw.config.GeluConfig`. The elements are streamed ``lanes`` per beat in C order; the
    lanes of a ragged last beat carry random junk, which the output drops. The constants of
    :func:`golden.gelu_constants` are set on the unit's constant ports before the first beat.
    """
    gcfg = getattr(cfg, "gelu", cfg)
    golden.gelu(q, scale, gcfg)  # validates the config, the input and the scale
    if not 0.0 <= stall < 1.0:  # before the unit is built, as _Clocked would say
        raise ValueError(f"Stall probability must be in [0, 1), not {stall}")
    consts = golden.gelu_constants(scale, gcfg)
    q = np.asarray(q, dtype=np.int64)
    flat = q.reshape(-1)
    if flat.size == 0:
        return SimResult(output=np.zeros(q.shape, dtype=np.int64), cycles=0, scale=consts.y_scale)
    lanes, w = gcfg.lanes, gcfg.in_width
    count = -(-flat.size // lanes)
    padded = np.random.default_rng(seed + 2).integers(-(1 << (w - 1)), 1 << (w - 1),
                                                       count * lanes)
    padded[: flat.size] = flat
    dut = Gelu(gcfg)
    constants = [(getattr(dut, name), getattr(consts, name)) for name in dut.constant_names]
    budget = 100 + 4 * dut.latency
    src = StreamSource(dut.i, [pack(padded[i * lanes:(i + 1) * lanes], w) for i in range(count)],
                       name="gelu in", rng=np.random.default_rng(seed), stall=stall,
                       budget=budget)
    sink = StreamSink(dut.o, count, name="gelu out", rng=np.random.default_rng(seed + 1),
                      stall=stall, budget=budget)
    run_streams(dut, [src], [sink], constants=constants, backend=backend, key=("gelu", gcfg),
                vcd_name="gelu")
    out = np.array([v for word in sink.items for v in unpack(word, gcfg.out_width, lanes)],
                   dtype=np.int64)
    return SimResult(output=out[: flat.size].reshape(q.shape),
                     cycles=sink.last_cycle - src.first_cycle + 1, scale=consts.y_scale,
                     extra={"latency": dut.latency})




def _layernorm_cfg(cfg):
    if isinstance(cfg, AccelConfig):
        return cfg.layernorm
    if not isinstance(cfg, LayerNormConfig):
        raise TypeError(f"LayerNorm config must be an AccelConfig or LayerNormConfig, not {cfg!r}")
    return cfg


def layernorm_coef_beats(consts, lanes):
    """The coefficient writes for :class:`hw.layernorm.LayerNorm`: ``(addr, gamma lanes, beta
    lanes)`` per beat, channels past the row end set to 0."""
    beats = []
    for addr in range(-(-consts.length // lanes)):
        chans = range(addr * lanes, addr * lanes + lanes)
        beats.append((addr,
                      [consts.gamma[c] if c < consts.length else 0 for c in chans],
                      [consts.beta[c] if c < consts.length else 0 for c in chans]))
    return beats


def run_layernorm(cfg, q, scale, gamma=None, beta=None, *, stall=0.0, seed=0,
                  backend="amaranth"):
    """Simulate :class:`hw.layernorm.LayerNorm` on rows ``q`` (last axis), back to back.

    ``cfg`` is an :class:`~hw.config.AccelConfig` or a :class:`~hw.config.LayerNormConfig`.
    Returns ``SimResult(output=y, scale=y_scale, cycles=...)``; ``(y, y_scale)`` equal
    :func:`sim.golden.layernorm`. ``cycles`` runs from the first input beat to the last output
    beat (after the coefficients are loaded).
    """
    q, consts, lcfg = golden.check_layernorm_input(q, scale, gamma, beta, _layernorm_cfg(cfg))
    L, lanes = consts.length, lcfg.lanes
    rows = q.reshape(-1, L)
    nbeats = -(-L // lanes)
    beats = []
    junk = np.random.default_rng(seed + 7)
    lo, hi = -(1 << (lcfg.in_width - 1)), 1 << (lcfg.in_width - 1)
    for row in rows:
        padded = junk.integers(lo, hi, nbeats * lanes)   # lanes past the row end: junk
        padded[:L] = row
        beats.extend(pack(padded[k * lanes:(k + 1) * lanes], lcfg.in_width)
                     for k in range(nbeats))

    dut = LayerNorm(lcfg)
    layout = dut.coef.payload.shape()
    coef_words = [layout.const({"addr": a, "gamma": g, "beta": b}).as_value().value
                  for a, g, b in layernorm_coef_beats(consts, lanes)]
    budget = 500 + 4 * L
    # The coefficients go in first, one per cycle (the port is always ready); the rows and
    # the cycle count start after them.
    coef = StreamSource(dut.coef, coef_words, name="layernorm coef",
                        rng=np.random.default_rng(seed), budget=budget)
    src = StreamSource(dut.i, beats, name="layernorm in", rng=np.random.default_rng(seed),
                       stall=stall, budget=budget, start=len(coef_words))
    sink = StreamSink(dut.o, len(beats), name="layernorm out",
                      rng=np.random.default_rng(seed + 1), stall=stall, budget=budget,
                      start=len(coef_words))
    run_streams(dut, [coef, src], [sink], constants=[(dut.length, L)], backend=backend,
                key=("layernorm", lcfg), vcd_name="layernorm")
    out = np.array([unpack(word, lcfg.out_width, lanes) for word in sink.items],
                   dtype=np.int64).reshape(len(rows), nbeats * lanes)
    return SimResult(
        output=out[:, :L].reshape(q.shape),
        cycles=sink.last_cycle - src.first_cycle + 1,
        scale=consts.y_scale,
        extra={"padding": out[:, L:], "first_in": src.first_cycle,
               "last_out": sink.last_cycle},
    )




def attention_load_beats(q, k, v, rows, cols, rng):
    """The ``q``, ``k`` and ``v`` stream beats of one head for
    :class:`hw.attention.AttentionController`, in its scratchpad layout. Lanes past L or d get
    random junk, which the controller must ignore."""
    L, d = q.shape

    def lanes(values, n):
        out = rng.integers(-128, 128, n)
        out[: len(values)] = values
        return out

    q_beats = [lanes(q[b:b + rows, j], rows) for b in range(0, L, rows) for j in range(d)]
    k_beats = [lanes(k[t:t + cols, j], cols) for t in range(0, L, cols) for j in range(d)]
    v_beats = [lanes(v[j, t:t + cols], cols) for t in range(0, d, cols) for j in range(L)]
    return q_beats, k_beats, v_beats


def attention_macs(heads, L, d, causal):
    """Useful MACs of attention: Q K^T and P V, over the unmasked scores only when causal."""
    scores = L * (L + 1) // 2 if causal else L * L
    return 2 * heads * scores * d


def run_attention(cfg, q, k, v, q_scale, k_scale, v_scale, o_scale, *, causal=False,
                  stall=0.0, seed=0, backend="amaranth"):
    """Simulate :class:`hw.attention.AttentionController`; see
    :func:`intformer.simulate.attention`."""
    q, k, v, heads = golden.check_attention_input(q, k, v, cfg)
    H, L, d = q.shape
    consts = golden.attention_constants(q_scale, k_scale, v_scale, o_scale, d, cfg)
    R, C, w = cfg.array.rows, cfg.array.cols, cfg.array.in_width
    dut = AttentionController(cfg)
    rng = np.random.default_rng(seed)
    q_beats, k_beats, v_beats, cmds = [], [], [], []
    layout = dut.cmd.payload.shape()
    for h in range(H):
        qb, kb, vb = attention_load_beats(q[h], k[h], v[h], R, C, rng)
        q_beats += [pack(x, w) for x in qb]
        k_beats += [pack(x, w) for x in kb]
        v_beats += [pack(x, w) for x in vb]
        cmds.append(layout.const({"length": L, "head_dim": d, "causal": int(causal)})
                    .as_value().value)
    rows_out = H * -(-d // C) * L
    budget = 2000 + 40 * L * (d + L)
    constants = [(dut.multiplier, consts.multiplier), (dut.shift, consts.shift)]
    constants += [(getattr(dut, name), getattr(consts.softmax, name))
                  for name in cfg.attention_softmax.constant_widths]
    sources = [
        StreamSource(dut.cmd, cmds, name="attention cmd", rng=np.random.default_rng(seed + 1),
                     stall=stall, budget=budget),
        StreamSource(dut.q, q_beats, name="attention q", rng=np.random.default_rng(seed + 2),
                     stall=stall, budget=budget),
        StreamSource(dut.k, k_beats, name="attention k", rng=np.random.default_rng(seed + 3),
                     stall=stall, budget=budget),
        StreamSource(dut.v, v_beats, name="attention v", rng=np.random.default_rng(seed + 4),
                     stall=stall, budget=budget),
    ]
    sink = StreamSink(dut.o, rows_out, name="attention o", rng=np.random.default_rng(seed + 5),
                      stall=stall, budget=budget)
    # Observers: cycles the array takes operands, and cycles the next job waits for the softmax.
    counters = run_streams(dut, sources, [sink], constants=constants,
                           probes={"array_busy": dut.gemm.a.ready,
                                   "softmax_wait": dut.waiting_for_softmax},
                           backend=backend, key=("attention", cfg), vcd_name="attention")

    out = np.zeros((H, L, -(-d // C) * C), dtype=np.int64)
    rows = iter(sink.items)
    for h in range(H):
        for b in range(0, L, R):
            for t in range(0, d, C):
                for i in range(b, min(b + R, L)):
                    out[h, i, t:t + C] = unpack(next(rows), cfg.requant.out_width, C)
    cycles = sink.last_cycle - sources[0].first_cycle + 1
    return SimResult(
        output=out[..., :d] if heads else out[0, :, :d],
        cycles=cycles,
        utilization=attention_macs(H, L, d, causal) / (R * C * cycles),
        scale=float(o_scale),
        extra={"padding": out[..., d:], "array_busy": counters["array_busy"],
               "softmax_wait": counters["softmax_wait"]},
    )
