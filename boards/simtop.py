"""The accelerator top in Amaranth's simulator behind the host driver's interface: a board
without the UART link, for tests and the command-port model."""

from collections import deque

import numpy as np
from amaranth.sim import Simulator

from hw.top import Accelerator
from sim.bench import SimTimeout
from sim.layout import unpack_words

from .host import Client

__all__ = ["SimTop"]


class SimTop(Client):
    """:class:`boards.host.Client` driving :class:`hw.top.Accelerator` in the simulator: bytes go
    into ``cmd`` and come out of ``rsp``, each side withholding valid/ready with probability
    ``stall``. The simulation advances only while a command waits for its response."""

    def __init__(self, cfg, *, depth=64, stall=0.0, seed=0, budget=20_000):
        super().__init__(cfg, depth=depth)
        self.dut = Accelerator(cfg, depth=depth)
        self.stall, self.budget = stall, budget
        self.rng = np.random.default_rng(seed)
        self.out, self.inp = deque(), deque()
        self.cycles = 0
        self._state = None
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)
        self.sim.add_testbench(self._source, background=True)
        self.sim.add_testbench(self._sink, background=True)
        self.sim.add_testbench(self._inspect, background=True)

    async def _source(self, ctx):
        # A stall is drawn only before a byte is offered: once valid, the byte is held until it
        # is taken (stream rule 2).
        cmd = self.dut.cmd
        while True:
            if not self.out or (self.stall and self.rng.random() < self.stall):
                ctx.set(cmd.valid, 0)
                await ctx.tick()
                continue
            ctx.set(cmd.valid, 1)
            ctx.set(cmd.payload, self.out[0])
            while True:
                _, _, ready = await ctx.tick().sample(cmd.ready)
                if ready:
                    break
            self.out.popleft()

    async def _sink(self, ctx):
        rsp = self.dut.rsp
        while True:
            ready = not (self.stall and self.rng.random() < self.stall)
            ctx.set(rsp.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(rsp.valid, rsp.payload)
            if valid and ready:
                self.inp.append(payload)

    async def _inspect(self, ctx):
        while True:
            await ctx.tick()
            if self._state == "wanted":
                words = {}
                for buf, storage in self.dut.buffer_data.items():
                    spec = self.buffers[buf]
                    raw = b"".join(ctx.get(storage[i]).to_bytes(spec.nbytes, "little")
                                   for i in range(storage.depth))
                    words[buf] = unpack_words(raw, spec)
                regs = {reg: ctx.get(sig) for reg, sig in self.dut.register_file.items()}
                self._state = (words, regs)

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
            if self.cycles - start > self.budget:
                raise SimTimeout(f"{what}: got {len(self.inp)} of {n} response bytes in "
                                 f"{self.budget} cycles")
            self.idle(16)

    def idle(self, cycles):
        """Advance the clock ``cycles`` cycles with no command in flight."""
        if cycles > 0:      # the simulation may be a half period past self.cycles already
            self.cycles += cycles
            self.sim.run_until(self.cycles * 1e-8)

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
