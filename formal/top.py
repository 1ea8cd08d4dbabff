"""Proofs of the accelerator top's command safety: a command answered with an error changes no
register, and every error code is reachable."""

from amaranth.hdl import Assert, Assume, Cover, Signal

from hw.config import (
    AccelConfig,
    ArrayConfig,
    AttentionConfig,
    GeluConfig,
    GemmConfig,
    LayerNormConfig,
    SoftmaxConfig,
)
from hw.isa import Error
from hw.top import Accelerator

from .proof import Proof
from .rules import transfer
from .spec import Spec

__all__ = ["PROOFS", "GEMM_ONLY"]

#: The smallest top: a 2x2 array of 4-bit operands, problems up to 2x2x2, no nonlinear unit and
#: no attention (their registers and errors are the same checks on more registers).
GEMM_ONLY = AccelConfig(
    name="formal-top",
    array=ArrayConfig(rows=2, cols=2, in_width=4),
    gemm=GemmConfig(max_m=2, max_k=2, max_n=2),
    softmax=SoftmaxConfig(enabled=False),
    gelu=GeluConfig(enabled=False),
    layernorm=LayerNormConfig(enabled=False),
    attention=AttentionConfig(enabled=False),
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


def errors(cfg, depth, codes):
    """A command answered with an error (its response's status byte) changes no register of
    ``cfg``'s top with buffers of ``depth`` words, and each of ``codes`` is answered to some
    command."""
    def build(wrap):
        s = Spec(wrap(Accelerator(cfg, depth=depth)))
        m, top = s.m, s.dut
        s.stream_rules()
        cmd, rsp = _Framer(m, top.cmd, "cmd"), _Framer(m, top.rsp, "rsp")
        # A host that waits for each response before the next command.
        waiting = Signal()
        with m.If(transfer(top.cmd) & cmd.last):
            m.d.sync += waiting.eq(1)
        with m.If(transfer(top.rsp) & rsp.last):
            m.d.sync += waiting.eq(0)
        m.d.comb += Assume(~(waiting & top.cmd.valid))
        # The register file as the command found it.
        regs = list(top.register_file.values())
        before = [Signal.like(r, name=f"before_{r.name}") for r in regs]
        with m.If(transfer(top.cmd) & cmd.first):
            m.d.sync += [b.eq(r) for b, r in zip(before, regs, strict=True)]
        status = top.rsp.payload
        with m.If(top.rsp.valid & rsp.first & (status != Error.OK.value)):
            for b, r in zip(before, regs, strict=True):
                m.d.comb += Assert(r == b, f"top: an error changed {r.name}")
        for code in codes:
            m.d.comb += Cover(top.rsp.valid & rsp.first & (status == code.value),
                              f"top: error {code.name}")
        return s
    return build


#: The codes a first command can get. BUSY needs a run in progress, so three SET_REGs (M, K,
#: N) and a RUN before the command refused: deeper than the solver reaches in minutes (the
#: other codes are reached by step 17; the search to step 30 took 4 minutes, and with the
#: host's bytes fixed the cover of BUSY reached step 39 in 10 minutes without it).
FIRST_CODES = [code for code in Error if code not in (Error.OK, Error.BUSY)]

PROOFS = [
    Proof("top.errors", "top", "bmc", 20, errors(GEMM_ONLY, 4, FIRST_CODES), cover_depth=18,
          what="a first command answered with an error changes no register (GEMM-only top, "
          "4-word buffers); every error code but BUSY reached"),
    Proof("top.errors-deep", "top", "bmc", 30, errors(GEMM_ONLY, 4, []), slow=True,
          what="as top.errors, 10 cycles deeper: an erroring command after a SET_REG"),
]
