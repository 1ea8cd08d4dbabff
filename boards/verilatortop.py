"""The accelerator top on Verilator, as a byte-stream client of its command port."""

import numpy as np

from hw.top import Accelerator
from sim import golden
from sim.bench import SimTimeout
from sim.verilator.build import Training, build_component
from sim.verilator.model import Model

from .simtop import SimulatedTop

__all__ = ["VerilatorTop", "profile_workload"]


class VerilatorTop(SimulatedTop):
    """:class:`boards.host.Client` driving a Verilated :class:`hw.top.Accelerator`: command bytes
    go into ``cmd`` and response bytes come out of ``rsp``, each side withholding valid/ready
    with probability ``stall``. The clock runs, in C++, only while a command waits for its
    response, or in :meth:`idle`.

    The same interface as the Amaranth-simulated :class:`boards.simtop.SimTop`
    (:meth:`raw`, :meth:`idle`, ``cycles``), and the same cycles for the same commands (RUN
    waits on ``busy`` as :class:`boards.simtop.SimulatedTop` says), at about a thousand times
    its speed, so that long soaks (10⁵ commands) run in seconds. The model is built once per
    config, depth and ``pgo`` (:func:`sim.verilator.build.build_component`); each instance
    starts from reset.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator's configuration.
    depth : int or None
        Buffer depth in words: by default the config's (``cfg.buffers.depth``).
    stall : float
        Probability that the command source withholds ``valid``, or the response sink
        ``ready``, on a cycle.
    seed : int
        Seed of the stall generators.
    budget : int
        Cycles a command may wait for each part of its response (header, payload) before
        :exc:`sim.bench.SimTimeout`.
    pgo : bool
        Build the model profile-guided, trained on :func:`profile_workload`: 8 to 11% more
        cycles a second on the ulx3s top, for a build about twice as long (the instrumented
        build, the workload, and the code that runs every cycle compiled a second time). The
        same outputs and cycles either way.
    """

    def __init__(self, cfg, *, depth=None, stall=0.0, seed=0, budget=20_000, pgo=False):
        super().__init__(cfg, depth=depth)
        depth = self.depth
        train = None
        if pgo:
            train = Training("boards.verilatortop.profile_workload",
                             lambda build: profile_workload(
                                 VerilatorTop._on(build, cfg, depth=depth)))
        self.build = build_component(Accelerator(cfg, depth=depth), "intformer_top",
                                     key=("top", cfg, depth), train=train)
        self._start(stall, seed, budget)

    @classmethod
    def _on(cls, build, cfg, *, depth):
        """An instance on model ``build`` (the profile-guided build's instrumented model)."""
        top = cls.__new__(cls)
        SimulatedTop.__init__(top, cfg, depth=depth)
        top.build = build
        top._start(0.0, 0, 20_000)
        return top

    def _start(self, stall, seed, budget):
        self.model = Model(self.build)
        self.budget = budget
        self.model.configure("cmd", stall=stall, rng=np.random.default_rng(seed),
                             budget=budget)
        # The response sink takes bytes even when none is expected, so that a stray byte is
        # seen (as left over) by the next command rather than held in the top.
        self.model.configure("rsp", stall=stall, rng=np.random.default_rng(seed + 1),
                             budget=budget, greedy=True)

    @property
    def cycles(self):
        """Clock cycles simulated so far."""
        return self.model.cycle

    def _receive(self, data, n, what):
        """Send the command bytes ``data`` (none: empty) and take the next ``n`` response
        bytes, in one call into the model; :exc:`sim.bench.SimTimeout` when they do not come
        within ``budget`` cycles."""
        status, got = self.model.transfer_bytes("cmd", data, "rsp", n, self.budget)
        if status != Model.FINISHED:
            raise SimTimeout(f"{what}: got {self.model.collected('rsp')} of {n} response "
                             f"bytes in {self.budget} cycles")
        return got

    def _exchange(self, opcode, payload):
        if self.model.collected("rsp"):
            raise AssertionError("response bytes left over from the previous command")
        data = bytes([opcode]) + len(payload).to_bytes(2, "little") + bytes(payload)
        head = self._receive(data, 3, f"command {opcode:#x} header")
        body = self._receive(b"", head[1] | head[2] << 8, f"command {opcode:#x} payload")
        return head[0], body

    def raw(self, opcode, payload=b""):
        """Send a command as raw bytes; return ``(status, payload)``, no exception."""
        return self._exchange(opcode.value if hasattr(opcode, "value") else opcode,
                              bytes(payload))

    def _run_while_busy(self, budget):
        start = self.cycles
        self.model.run(Model.RUN_WHILE_HIGH, budget, output="busy")
        return None if self.output("busy") else self.cycles - start

    def idle(self, cycles):
        """Advance the clock ``cycles`` cycles with no command."""
        self.model.run(Model.RUN_CYCLES, cycles)

    def output(self, name):
        """The value of a plain output of the top (``busy``, ``error``) now."""
        return self.model.get_output(name)


def profile_workload(top):
    """What the profile-guided model of the top (``VerilatorTop(..., pgo=True)``) is trained
    on: every op of ``top``'s config once, on small random operands, through the command port
    (a GEMM, raw and requantized, a softmax, GELU and LayerNorm over a few rows, and a causal
    attention head of half the longest length and head dimension, at most 32 by 16)."""
    cfg, rng = top.cfg, np.random.default_rng(0)
    R, C = cfg.array.rows, cfg.array.cols
    a, b = rng.integers(-128, 128, (2 * R + 1, 16)), rng.integers(-128, 128, (16, 2 * C + 1))
    top.gemm(a, b)
    top.gemm(a, b, requant=golden.quantize_multiplier(1 / 900,
                                                      mult_width=cfg.requant.mult_width))
    if cfg.softmax.enabled:
        top.softmax(rng.integers(-3000, 3000, (3, min(24, cfg.softmax.max_len))), 1e-3)
    if cfg.gelu.enabled:
        top.gelu(rng.integers(-128, 128, 64), 0.05)
    if cfg.layernorm.enabled:
        top.layernorm(rng.integers(-3000, 3000, (3, min(24, cfg.layernorm.max_len))), 0.01)
    if cfg.attention.enabled:
        L = max(1, min(32, cfg.attention.max_seq_len // 2))
        d = max(1, min(16, cfg.attention.max_head_dim // 2))
        q, k, v = (rng.integers(-128, 128, (L, d)) for _ in range(3))
        top.attention(q, k, v, 0.05, 0.04, 0.03, 0.02, causal=True)
