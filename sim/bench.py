"""Stream drivers and runners that exercise the gateware in Amaranth's simulator.

The drivers obey the stream rules stated in :mod:`hw.stream`, and insert random stalls: a
source withholds ``valid`` and a sink withholds ``ready`` on a cycle with probability
``stall``. Results must not depend on them. Every wait is bounded and raises
:exc:`SimTimeout` naming what it waited for. Arrays become beats and back through
:mod:`sim.layout`.
"""

import os
from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from hw.attention_unit import AttentionUnit
from hw.config import AccelConfig, LayerNormConfig, build_dir
from hw.gelu import Gelu
from hw.gemm import GemmEngine
from hw.layernorm import LayerNorm
from hw.requant import Requantizer
from hw.residual import Residual
from hw.softmax import Softmax

from . import golden, layout, ops
from .layout import pack, pack_rows, unpack, unpack_rows

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
    "run_requant_lanes",
    "run_residual",
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


class _Clocked:
    def __init__(self, port, name, rng, stall, budget, start):
        if not 0.0 <= stall < 1.0:
            raise ValueError(f"Stall probability must be in [0, 1), not {stall}")
        self.port, self.name, self.rng, self.stall, self.budget = port, name, rng, stall, budget
        self.start = start        # cycles before the stream starts (its cycle 0)
        self.first_cycle = None   # cycle index of the first transfer
        self.last_cycle = None    # cycle index of the last transfer
        # Cycle index of every transfer; the Amaranth backend only (the Verilated one reports
        # first_cycle and last_cycle).
        self.transfer_cycles = []

    async def _begin(self, ctx):
        """Wait out the ``start`` cycles; return the payload as a plain value."""
        for _ in range(self.start):
            await ctx.tick()
        payload = self.port.payload
        return payload.as_value() if hasattr(payload, "as_value") else payload

    def _transferred(self, cycle):
        """Note a transfer in the cycle before stream cycle ``cycle``."""
        if self.first_cycle is None:
            self.first_cycle = cycle - 1
        self.last_cycle = cycle - 1
        self.transfer_cycles.append(cycle - 1)


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
        payload = await self._begin(ctx)
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
            self._transferred(cycle)
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
        payload = await self._begin(ctx)
        cycle = idle = 0
        while len(self.items) < self.count:
            ready = not (self.stall and self.rng.random() < self.stall)
            ctx.set(self.port.ready, ready)
            _, _, valid, value = await ctx.tick().sample(self.port.valid, payload)
            cycle += 1
            if valid and ready:
                self.items.append(value)
                self._transferred(cycle)
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
    (M, K), N = a.shape, b.shape[1]
    pad_a = rng.integers(-128, 128, (-(-M // rows) * rows, K))
    pad_b = rng.integers(-128, 128, (K, -(-N // cols) * cols))
    return layout.gemm_beats(a, b, rows, cols, pad_a, pad_b)


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

    out = layout.from_tile_rows(unpack_rows(sink.items, cfg.acc_width, C), M, tiles_n * C, R, C)
    cycles = sink.last_cycle - cmd.first_cycle + 1
    return SimResult(
        output=out[:, :N],
        cycles=cycles,
        utilization=M * K * N / (R * C * cycles),
        extra={"padding": out[:, N:]},
    )


def _cmd_word(dut, M, K, N):
    cmd_layout = dut.cmd.payload.shape()
    return cmd_layout.const({"m": M, "k": K, "n": N}).as_value().value


def run_requant(cfg, acc, multiplier, shift, *, lanes=None, stall=0.0, seed=0,
                backend="amaranth"):
    """Simulate :class:`hw.requant.Requantizer` on a 1-D array of accumulators."""
    lanes = cfg.array.cols if lanes is None else lanes
    rq = cfg.requant
    expected_args = dict(acc_width=cfg.acc_width, mult_width=rq.mult_width,
                         out_width=rq.out_width)
    golden.requantize(acc, multiplier, shift, **expected_args)  # validates every argument
    acc = np.asarray(acc, dtype=np.int64).reshape(-1)
    items = pack_rows(layout.beats(acc[None], lanes), cfg.acc_width)
    count = len(items)
    dut = Requantizer(lanes, cfg.acc_width, rq)
    budget = 1000
    src = StreamSource(dut.i, items, name="requant in", rng=np.random.default_rng(seed),
                       stall=stall, budget=budget)
    sink = StreamSink(dut.o, count, name="requant out", rng=np.random.default_rng(seed + 1),
                      stall=stall, budget=budget)
    run_streams(dut, [src], [sink], constants=[(dut.multiplier, int(multiplier)),
                                               (dut.shift, int(shift))],
                backend=backend, key=("requant", lanes, cfg.acc_width, rq), vcd_name="requant")
    out = layout.from_beats([unpack(w, rq.out_width, lanes) for w in sink.items], 1, acc.size,
                            lanes)
    return SimResult(output=out[0], cycles=sink.last_cycle - src.first_cycle + 1)



def run_requant_lanes(cfg, acc, multipliers, shifts, *, acc_width=None, stall=0.0, seed=0,
                      backend="amaranth"):
    """Simulate a per-lane :class:`hw.requant.Requantizer` (``per_lane=True``): beat ``i``
    carries ``acc[i]`` with ``multipliers[i]`` and ``shifts[i]``, each an array ``(beats,
    lanes)``. The output equals :func:`sim.ops.requantize_channels` of each beat with its own
    constants. ``acc_width`` defaults to ``cfg.acc_width``."""
    rq = cfg.requant
    acc_width = cfg.acc_width if acc_width is None else acc_width
    acc, m, s = (np.asarray(v, dtype=np.int64) for v in (acc, multipliers, shifts))
    for row in range(len(acc)):          # validates every argument
        ops.requantize_channels(acc[row], m[row], s[row], in_width=acc_width,
                                mult_width=rq.mult_width, out_width=rq.out_width)
    lanes = acc.shape[1]
    dut = Requantizer(lanes, acc_width, rq, per_lane=True)
    beat = dut.i.payload.shape()
    items = [beat.const({"acc": a.tolist(), "multiplier": mm.tolist(), "shift": ss.tolist()})
             .as_value().value for a, mm, ss in zip(acc, m, s, strict=True)]
    budget = 1000
    src = StreamSource(dut.i, items, name="requant in", rng=np.random.default_rng(seed),
                       stall=stall, budget=budget)
    sink = StreamSink(dut.o, len(items), name="requant out",
                      rng=np.random.default_rng(seed + 1), stall=stall, budget=budget)
    run_streams(dut, [src], [sink], backend=backend,
                key=("requant_lanes", lanes, acc_width, rq), vcd_name="requant_lanes")
    out = np.array([unpack(w, rq.out_width, lanes) for w in sink.items], dtype=np.int64)
    return SimResult(output=out, cycles=sink.last_cycle - src.first_cycle + 1)


def run_residual(cfg, a, b, mult_a, mult_b, shift, *, lanes=1, stall=0.0, seed=0,
                 backend="amaranth"):
    """Simulate :class:`hw.residual.Residual` on ``a`` and ``b`` (any one shape), as
    :func:`sim.ops.residual_add` at ``cfg``'s widths (``cfg`` an :class:`~hw.config.AccelConfig`
    or a :class:`~hw.config.ResidualConfig`). The elements stream ``lanes`` per beat in C
    order; the lanes of a ragged last beat carry random junk, which the output drops."""
    rcfg = getattr(cfg, "residual", cfg)
    ops.residual_add(a, b, mult_a, mult_b, shift, in_width=rcfg.in_width,
                     mult_width=rcfg.mult_width, out_width=rcfg.out_width)   # validates
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    w = rcfg.in_width
    count = -(-a.size // lanes)
    if count == 0:
        return SimResult(output=np.zeros(a.shape, dtype=np.int64), cycles=0)
    rng = np.random.default_rng(seed + 2)
    halves = [layout.beats(x.reshape(1, -1), lanes,
                           pad=rng.integers(-(1 << (w - 1)), 1 << (w - 1), (1, count * lanes)))
              for x in (a, b)]
    dut = Residual(rcfg, lanes)
    pair = dut.i.payload.shape()
    items = [pair.const({"a": x.tolist(), "b": y.tolist()}).as_value().value
             for x, y in zip(*halves, strict=True)]
    budget = 100 + 4 * dut.latency
    src = StreamSource(dut.i, items, name="residual in", rng=np.random.default_rng(seed),
                       stall=stall, budget=budget)
    sink = StreamSink(dut.o, count, name="residual out", rng=np.random.default_rng(seed + 1),
                      stall=stall, budget=budget)
    run_streams(dut, [src], [sink], backend=backend,
                constants=[(dut.mult_a, int(mult_a)), (dut.mult_b, int(mult_b)),
                           (dut.shift, int(shift))],
                key=("residual", rcfg, lanes), vcd_name="residual")
    out = layout.from_beats([unpack(v, rcfg.out_width, lanes) for v in sink.items], 1, a.size,
                            lanes)
    return SimResult(output=out.reshape(a.shape), cycles=sink.last_cycle - src.first_cycle + 1,
                     extra={"latency": dut.latency})


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
    junk = np.random.default_rng(seed).integers(-(1 << (w - 1)), 1 << (w - 1),
                                                (len(rows), beats * n))
    items = pack_rows(layout.beats(rows, n, pad=junk), w)

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
    out = layout.from_beats([unpack(word, cfg.out_width, n, signed=False)
                             for word in sink.items], len(rows), beats * n, n)
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
    junk = np.random.default_rng(seed + 2).integers(-(1 << (w - 1)), 1 << (w - 1),
                                                     (1, count * lanes))
    items = pack_rows(layout.beats(flat[None], lanes, pad=junk), w)
    dut = Gelu(gcfg)
    constants = [(getattr(dut, name), getattr(consts, name)) for name in dut.constant_names]
    budget = 100 + 4 * dut.latency
    src = StreamSource(dut.i, items, name="gelu in", rng=np.random.default_rng(seed), stall=stall,
                       budget=budget)
    sink = StreamSink(dut.o, count, name="gelu out", rng=np.random.default_rng(seed + 1),
                      stall=stall, budget=budget)
    run_streams(dut, [src], [sink], constants=constants, backend=backend, key=("gelu", gcfg),
                vcd_name="gelu")
    out = layout.from_beats([unpack(w, gcfg.out_width, lanes) for w in sink.items], 1,
                            flat.size, lanes)
    return SimResult(output=out.reshape(q.shape),
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
    gamma, beta = (layout.beats(np.asarray(v)[None], lanes) for v in (consts.gamma, consts.beta))
    return [(addr, g.tolist(), b.tolist())
            for addr, (g, b) in enumerate(zip(gamma, beta, strict=True))]


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
    lo, hi = -(1 << (lcfg.in_width - 1)), 1 << (lcfg.in_width - 1)
    junk = np.random.default_rng(seed + 7).integers(lo, hi, (len(rows), nbeats * lanes))
    beats = pack_rows(layout.beats(rows, lanes, pad=junk), lcfg.in_width)

    dut = LayerNorm(lcfg)
    coef_layout = dut.coef.payload.shape()
    coef_words = [coef_layout.const({"addr": a, "gamma": g, "beta": b}).as_value().value
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
    out = layout.from_beats([unpack(word, lcfg.out_width, lanes) for word in sink.items],
                            len(rows), nbeats * lanes, lanes)
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
    return (layout.column_words(q, rows, rng.integers(-128, 128, (-(-L // rows) * rows, d))),
            layout.row_words(k.T, cols, rng.integers(-128, 128, (d, -(-L // cols) * cols))),
            layout.row_words(v, cols, rng.integers(-128, 128, (L, -(-d // cols) * cols))))


def attention_macs(heads, L, d, causal):
    """Useful MACs of attention: Q K^T and P V, over the unmasked scores only when causal."""
    scores = L * (L + 1) // 2 if causal else L * L
    return 2 * heads * scores * d


def run_attention(cfg, q, k, v, q_scale, k_scale, v_scale, o_scale, *, causal=False,
                  keys=None, stall=0.0, seed=0, backend="amaranth", load_stalls=None):
    """Simulate :class:`hw.attention_unit.AttentionUnit`; see
    :func:`intformer.simulate.attention`. ``load_stalls`` (``{"q": 0.9}``) withholds the
    named load streams at their own rate instead of ``stall``."""
    load_stalls = {"q": stall, "k": stall, "v": stall, **(load_stalls or {})}
    q, k, v, heads = golden.check_attention_input(q, k, v, cfg)
    H, L, d = q.shape
    keys = 0 if keys is None else golden.check_keys(keys, L)
    consts = golden.attention_constants(q_scale, k_scale, v_scale, o_scale, d, cfg)
    R, C, w = cfg.array.rows, cfg.array.cols, cfg.array.in_width
    dut = AttentionUnit(cfg)
    rng = np.random.default_rng(seed)
    q_beats, k_beats, v_beats, cmds = [], [], [], []
    cmd_layout = dut.cmd.payload.shape()
    for h in range(H):
        qb, kb, vb = attention_load_beats(q[h], k[h], v[h], R, C, rng)
        q_beats += [pack(x, w) for x in qb]
        k_beats += [pack(x, w) for x in kb]
        v_beats += [pack(x, w) for x in vb]
        cmds.append(cmd_layout.const({"length": L, "head_dim": d, "causal": int(causal),
                                      "keys": keys}).as_value().value)
    rows_out = H * -(-d // C) * L
    budget = 2000 + 40 * L * (d + L)
    constants = [(dut.multiplier, consts.multiplier), (dut.shift, consts.shift)]
    constants += [(getattr(dut, name), getattr(consts.softmax, name))
                  for name in cfg.attention_softmax.constant_widths]
    sources = [
        StreamSource(dut.cmd, cmds, name="attention cmd", rng=np.random.default_rng(seed + 1),
                     stall=stall, budget=budget),
        StreamSource(dut.q, q_beats, name="attention q", rng=np.random.default_rng(seed + 2),
                     stall=load_stalls["q"], budget=budget),
        StreamSource(dut.k, k_beats, name="attention k", rng=np.random.default_rng(seed + 3),
                     stall=load_stalls["k"], budget=budget),
        StreamSource(dut.v, v_beats, name="attention v", rng=np.random.default_rng(seed + 4),
                     stall=load_stalls["v"], budget=budget),
    ]
    sink = StreamSink(dut.o, rows_out, name="attention o", rng=np.random.default_rng(seed + 5),
                      stall=stall, budget=budget)
    # Observers: cycles the array takes operands, and cycles the next job waits for the softmax.
    counters = run_streams(dut, sources, [sink], constants=constants,
                           probes={"array_busy": dut.gemm.a.ready,
                                   "softmax_wait": dut.waiting_for_softmax},
                           backend=backend, key=("attention", cfg), vcd_name="attention")

    words = np.array([unpack(w, cfg.requant.out_width, C) for w in sink.items],
                     dtype=np.int64).reshape(H, -1, C)
    out = np.stack([layout.from_tile_rows(words[h], L, -(-d // C) * C, R, C) for h in range(H)])
    cycles = sink.last_cycle - sources[0].first_cycle + 1
    return SimResult(
        output=out[..., :d] if heads else out[0, :, :d],
        cycles=cycles,
        utilization=attention_macs(H, L, d, causal) / (R * C * cycles),
        scale=float(o_scale),
        extra={"padding": out[..., d:], "array_busy": counters["array_busy"],
               "softmax_wait": counters["softmax_wait"]},
    )
