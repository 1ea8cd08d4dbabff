"""The accelerator top on Verilator, as a byte-stream client of its command port."""

import numpy as np

from hw.top import Accelerator
from sim.bench import SimTimeout
from sim.verilator.build import build_component
from sim.verilator.model import Model

from .simtop import SimulatedTop

__all__ = ["VerilatorTop"]


class VerilatorTop(SimulatedTop):
    """:class:`boards.host.Client` driving a Verilated :class:`hw.top.Accelerator`: command bytes
    go into ``cmd`` and response bytes come out of ``rsp``, each side withholding valid/ready
    with probability ``stall``. The clock runs, in C++, only while a command waits for its
    response, or in :meth:`idle`.

    The same interface as the Amaranth-simulated :class:`boards.simtop.SimTop`
    (:meth:`raw`, :meth:`idle`, ``cycles``), and the same cycles for the same commands (RUN
    waits on ``busy`` as :class:`boards.simtop.SimulatedTop` says), at about a thousand times
    its speed, so that long soaks (10⁵ commands) run in seconds. The model is built once per
    config and depth (:func:`sim.verilator.build.build_component`); each instance starts
    from reset.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator's configuration.
    depth : int
        Buffer depth in words.
    stall : float
        Probability that the command source withholds ``valid``, or the response sink
        ``ready``, on a cycle.
    seed : int
        Seed of the stall generators.
    budget : int
        Cycles a command may wait for each part of its response (header, payload) before
        :exc:`sim.bench.SimTimeout`.
    """

    def __init__(self, cfg, *, depth=64, stall=0.0, seed=0, budget=20_000):
        super().__init__(cfg, depth=depth)
        self.build = build_component(Accelerator(cfg, depth=depth), "intformer_top",
                                     key=("top", cfg, depth))
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
