"""The accelerator top in Amaranth's simulator behind the host driver's interface: a board
without the UART link, for tests and the command-port model."""

from collections import deque

import numpy as np
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.isa import Command, Op
from hw.top import Accelerator
from sim.bench import SimTimeout
from sim.layout import unpack_words

from .host import Client

__all__ = ["SimulatedTop", "SimTop"]

PERIOD = 1e-8


class SimulatedTop(Client):
    """What :class:`SimTop` and :class:`boards.verilatortop.VerilatorTop` share, so that the
    same commands take the same cycles on both: a run is waited for on the top's ``busy``
    output, cycle by cycle, then one ``STATUS`` poll ends the wait.

    A board answers as many polls as the host sends while it runs, and their number depends
    on the host's pace: a simulator polling from Python would count cycles that depend on the
    simulator. Here the wait ends on the first cycle that ``busy`` is low after the edge, and
    the ``STATUS`` poll that follows is the one a board answers first with ``busy`` low.

    A subclass implements :meth:`_exchange`, :meth:`idle` and :meth:`_run_while_busy`.

    ``run_cycles`` sums, over the runs waited for, the cycles from the RUN command's first
    byte to the first cycle ``busy`` is low: a run's modelled cycles (:mod:`sim.cyclemodel`)
    plus the command port's :data:`sim.cyclemodel.RUN_PORT_CYCLES` (12: 11 from the RUN's first
    byte to its acceptance, 1 for busy's fall; see ``tests/sim/test_verilator_top.py``).
    """

    run_cycles = 0

    def run(self, op, *, wait=True):
        """Start ``op`` as :meth:`boards.host.Client.run` does; with ``wait``, run the clock
        until the top's ``busy`` output falls (:exc:`sim.bench.SimTimeout` after ``budget``
        cycles), then poll ``STATUS`` once."""
        start = self.cycles
        self.command(Command.RUN, bytes([Op(op).value]))
        self.runs += 1
        if not wait:
            return
        waited = self._run_while_busy(self.budget)
        if waited is None:
            raise SimTimeout(f"RUN {Op(op).name}: still busy after {self.budget} cycles")
        self.run_cycles += self.cycles - start
        if self.status().busy:
            raise AssertionError(f"RUN {Op(op).name}: STATUS says busy while the top's busy "
                                 f"output is low")

    def _run_while_busy(self, budget):
        """Run the clock while ``busy`` is high, at most ``budget`` cycles; return the cycles
        run, or None if ``busy`` was still high after them."""
        raise NotImplementedError


class SimTop(SimulatedTop):
    """:class:`boards.host.Client` driving :class:`hw.top.Accelerator` in the simulator: bytes go
    into ``cmd`` and come out of ``rsp``, each side withholding valid/ready with probability
    ``stall``. The simulation advances only while a command waits for its response, in
    :meth:`idle`, or while a run keeps ``busy`` high.

    Cycle for cycle the Verilator harness (:mod:`sim.verilator.harness`) as
    :class:`boards.verilatortop.VerilatorTop` drives it: the same stall draws from the same
    generators (``seed`` for ``cmd``, ``seed + 1`` for ``rsp``, NumPy's PCG64), made at the
    start of each cycle, after the host's last command; the clock stops on the edge that
    brings the last byte a command waits for. Both tops count the same cycles for the same
    commands.

    ``platform`` (default ``None``, what simulation elaborates for) is what the top is
    elaborated for: a :class:`boards.synth.SynthTarget` simulates the structure a family builds
    where it differs (on iCE40 the one-register stream slices and the buffers without their
    port registers), as long as it holds no vendor primitive the simulator cannot run (on
    iCE40, no ``dsp_pairs``).
    """

    def __init__(self, cfg, *, depth=None, stall=0.0, seed=0, budget=20_000, platform=None):
        super().__init__(cfg, depth=depth)
        self.dut = Accelerator(cfg, depth=self.depth)
        self.stall, self.budget = stall, budget
        self.cmd_rng = np.random.default_rng(seed)
        self.rsp_rng = np.random.default_rng(seed + 1)
        self.out, self.inp = deque(), deque()
        self.cycles = 0
        self.busy = 0           # the top's busy output after the last edge
        self._state = None
        self.sim = Simulator(Fragment.get(self.dut, platform))
        self.sim.add_clock(PERIOD)
        self.sim.add_testbench(self._drive, background=True)

    async def _drive(self, ctx):
        # One pass per cycle, the harness's loop (sim/verilator/harness.py): the clock rises
        # at PERIOD/2 and falls at PERIOD, so cycle n (n edges done) starts at n * PERIOD, and
        # the simulation stops there (idle()), with the edge done and the fall not yet. The
        # pass starts at the fall, when the simulation resumes: valid and ready are decided
        # on the bytes the host queued meanwhile. A stall is drawn only before a byte is
        # offered: once valid, the byte is held until it is taken (stream rule 2).
        cmd, rsp = self.dut.cmd, self.dut.rsp
        presenting = False
        while True:
            if not presenting and self.out:
                presenting = not (self.stall and self.cmd_rng.random() < self.stall)
                if presenting:
                    ctx.set(cmd.valid, 1)
                    ctx.set(cmd.payload, self.out[0])
            ready = not (self.stall and self.rsp_rng.random() < self.stall)
            ctx.set(rsp.ready, ready)
            _, _, taken, valid, payload = await ctx.tick().sample(cmd.ready, rsp.valid,
                                                                  rsp.payload)
            if presenting and taken:
                self.out.popleft()
                presenting = False
                ctx.set(cmd.valid, 0)
            if valid and ready:
                self.inp.append(payload)
            self.busy = ctx.get(self.dut.busy)
            if self._state == "wanted":
                self._state = self._read_state(ctx)
            await ctx.delay(PERIOD / 2)

    def _read_state(self, ctx):
        words = {}
        for buf, storage in self.dut.buffer_data.items():
            spec = self.buffers[buf]
            raw = b"".join(storage.word(ctx, i).to_bytes(spec.nbytes, "little")
                           for i in range(storage.depth))
            words[buf] = unpack_words(raw, spec)
        regs = {reg: ctx.get(sig) for reg, sig in self.dut.register_file.items()}
        return words, regs

    def state(self):
        """The top's architectural state, read from the simulation: ``(words, registers)``,
        every buffer's words (but COEF's) as arrays of lanes and every register's value."""
        self._state = "wanted"
        while self._state == "wanted":
            self.idle(1)
        state, self._state = self._state, None
        return state

    def _wait(self, n, what):
        start = self.cycles
        while len(self.inp) < n:
            if self.cycles - start >= self.budget:
                raise SimTimeout(f"{what}: got {len(self.inp)} of {n} response bytes in "
                                 f"{self.budget} cycles")
            self.idle(1)

    def _run_while_busy(self, budget):
        start = self.cycles
        while self.busy:
            if self.cycles - start >= budget:
                return None
            self.idle(1)
        return self.cycles - start

    def idle(self, cycles):
        """Advance the clock ``cycles`` cycles with no command in flight."""
        if cycles > 0:
            self.cycles += cycles
            self.sim.run_until(self.cycles * PERIOD)

    def _exchange(self, opcode, payload):
        assert not self.inp, "response bytes left over from the previous command"
        self.out.extend(bytes([opcode]) + len(payload).to_bytes(2, "little") + payload)
        self._wait(3, f"command {opcode:#x} header")
        length = self.inp[1] | self.inp[2] << 8
        self._wait(3 + length, f"command {opcode:#x} payload")
        assert len(self.inp) == 3 + length, "more response bytes than the length says"
        status = self.inp[0]
        data = bytes(list(self.inp)[3:])
        self.inp.clear()
        return status, data

    def raw(self, opcode, payload=b""):
        """Send a command as raw bytes; return ``(status, payload)``, no exception."""
        return self._exchange(opcode.value if hasattr(opcode, "value") else opcode,
                              bytes(payload))
