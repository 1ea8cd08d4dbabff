"""Proofs of the accelerator top's command safety: a command answered with an error changes no
register and writes no buffer word, and every error code is reachable."""

import dataclasses

from amaranth.asserts import Initial
from amaranth.hdl import Assert, Assume, Cover, Signal

from hw.config import (
    AttentionConfig,
    GeluConfig,
    LayerNormConfig,
    LinearConfig,
    ResidualConfig,
    SoftmaxConfig,
)
from hw.isa import Error, register_specs
from hw.top import Accelerator

from .proof import Proof
from .rules import past, transfer
from .spec import Spec
from .units import SMALL

__all__ = ["PROOFS", "GEMM_ONLY"]

#: The smallest top: :data:`formal.units.SMALL` (a 2x2 array of 4-bit operands, problems up
#: to 2x2x2) with no nonlinear unit, no attention, no LINEAR and no residual add (their
#: registers and errors are the same checks on more registers and ops).
GEMM_ONLY = dataclasses.replace(
    SMALL,
    name="formal-top",
    softmax=SoftmaxConfig(enabled=False),
    gelu=GeluConfig(enabled=False),
    layernorm=LayerNormConfig(enabled=False),
    attention=AttentionConfig(enabled=False),
    linear=LinearConfig(enabled=False),
    residual=ResidualConfig(enabled=False),
)


class _Framer:
    """Follows the frames of a byte stream, ``opcode/status, length (2 bytes), payload``:
    ``first`` is high on a frame's first byte, ``last`` on its last."""

    def __init__(self, m, port, name):
        self.index = index = Signal(2, name=f"{name}_index")      # 0, 1, 2, then 3: payload
        self.left = left = Signal(16, name=f"{name}_left")
        self.first = index == 0
        length = port.payload << 8 | left[:8]
        self.last = ((index == 2) & (length == 0)) | ((index == 3) & (left == 1))
        with m.If(transfer(port)):
            with m.If(self.last):
                m.d.sync += [index.eq(0), left.eq(0)]
            with m.Elif(index == 1):
                m.d.sync += [index.eq(2), left.eq(port.payload)]
            with m.Elif(index == 2):
                m.d.sync += [index.eq(3), left.eq(length)]
            with m.Elif(index == 3):
                m.d.sync += left.eq(left - 1)
            with m.Else():
                m.d.sync += index.eq(1)


def errors(cfg, depth, codes, *, loaded=False):
    """A command answered with an error (its response's status byte) changes no register and
    writes no buffer word of ``cfg``'s top with buffers of ``depth`` words, and each of
    ``codes`` is answered to some command.

    Every property holds over the command's window: from its first byte to the next command's
    first byte (the host waits for each response before sending the next command).

    - **Registers**: equal, through the window, to their values at its first byte.
    - **Buffer words**: they change only through the write ports of
      :class:`hw.buffers.Buffers` (``Buffers.elaborate``: each memory has one write port, and
      ``coef`` forwards the LayerNorm coefficients' writes). A port's enable is the command's
      ``host.wen`` (for the buffer ``host.buf``) or, while ``by_run`` (``running`` a cycle
      late), the run's registered ``running & write_*.valid``. So a command writes a buffer
      word only if ``host.wen`` is high (the port of ``Buffers`` itself: a write that
      ``Buffers`` registers first is still asked for there) or a run starts (``busy``, the
      dispatcher's ``running``, rises): neither may happen in the window. A run already in
      progress goes on writing its output buffer during a command refused with ``BUSY``; that
      is the earlier RUN's write. The memories themselves are not read: Amaranth's properties
      cannot read ``MemoryData`` rows.

    With ``loaded``, the register file starts at any values a ``SET_REG`` accepts (each at
    most its maximum, :func:`hw.isa.register_specs`) rather than at 0, so that a RUN needs
    no SET_REG before it (the BUSY cover). This does not weaken the properties: the start
    with every register 0 (the reset state) is one of these starts, so every trace from reset
    is still checked; and every other start is the state an accepted SET_REG of each value
    leaves, but for the registers that the next command rewrites before reading them (its
    argument bytes and the facts and verdict derived from them, the run's counts, which an
    accepted RUN clears). A failure from such a start would be one after those SET_REGs.
    """
    def build(wrap):
        acc = Accelerator(cfg, depth=depth)
        # The write port of the memories' owner, taken before ``wrap`` (a mutant may put a
        # faulty component in front of it).
        host = acc.memories.host
        s = Spec(wrap(acc))
        m, top = s.m, s.dut
        s.stream_rules()
        regs = list(top.register_file.values())
        if loaded:
            s.start_anywhere(*regs)
            limits = register_specs(cfg, depth)
            with m.If(Initial()):
                m.d.comb += [Assume(top.register_file[reg] <= hi)
                             for reg, (_, hi) in limits.items()]
        cmd, rsp = _Framer(m, top.cmd, "cmd"), _Framer(m, top.rsp, "rsp")
        # A host that waits for each response before the next command.
        waiting = Signal()
        with m.If(transfer(top.cmd) & cmd.last):
            m.d.sync += waiting.eq(1)
        with m.If(transfer(top.rsp) & rsp.last):
            m.d.sync += waiting.eq(0)
        m.d.comb += Assume(~(waiting & top.cmd.valid))
        # The window of a command: the register file as it found it; whether it wrote a word
        # or started a run; whether it was answered with an error.
        begins = transfer(top.cmd) & cmd.first
        before = [Signal.like(r, name=f"before_{r.name}") for r in regs]
        wrote, started, failed = Signal(), Signal(), Signal()
        status = top.rsp.payload
        answered = top.rsp.valid & rsp.first & (status != Error.OK.value)
        was_busy = past(m, top.busy, name="busy")
        start = top.busy & ~was_busy & ~Initial()
        with m.If(host.wen):
            m.d.sync += wrote.eq(1)
        with m.If(start):
            m.d.sync += started.eq(1)
        with m.If(answered):
            m.d.sync += failed.eq(1)
        with m.If(begins):
            m.d.sync += [b.eq(r) for b, r in zip(before, regs, strict=True)]
            m.d.sync += [wrote.eq(0), started.eq(0), failed.eq(0)]
        with m.If(answered | failed):
            for b, r in zip(before, regs, strict=True):
                m.d.comb += Assert(r == b, f"top: an error changed {r.name}")
            m.d.comb += [
                Assert(~wrote & ~host.wen, "top: an error wrote a buffer word"),
                Assert(~started & ~start, "top: an error started a run"),
            ]
        for code in codes:
            m.d.comb += Cover(answered & (status == code.value), f"top: error {code.name}")
        return s
    return build


#: The codes a command can get without a run in progress. BUSY needs a RUN first: even with the
#: registers loaded, its response comes at step 36 (RUN GEMM launches at step 19, its response
#: ends at step 22, a second RUN is refused at step 36). The open cover search took 4 minutes to
#: step 33 (each step's search 1.4 times the last's, none reaching it), so ``top.busy`` searches
#: steps 36 and 37 only.
FIRST_CODES = [code for code in Error if code not in (Error.OK, Error.BUSY)]

PROOFS = [
    Proof("top.errors", "top", "bmc", 20, errors(GEMM_ONLY, 4, FIRST_CODES, loaded=True),
          cover_depth=18,
          what="a command answered with an error changes no register, writes no buffer word and "
          "starts no run (GEMM-only top, 4-word buffers, registers loaded); every error code "
          "but BUSY reached"),
    Proof("top.errors-deep", "top", "bmc", 30, errors(GEMM_ONLY, 4, []), slow=True,
          what="as top.errors from reset (registers 0), 10 cycles deeper: an erroring command "
          "after a SET_REG (loaded registers reached only step 27 in 5 minutes)"),
    Proof("top.busy", "top", "bmc", 20, errors(GEMM_ONLY, 4, [Error.BUSY], loaded=True),
          cover_depth=38, cover_skip=36, slow=True,
          what="as top.errors; BUSY reached: a RUN, then a command during the run"),
]
