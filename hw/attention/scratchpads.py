"""The attention controller's scratchpads: the Q, K, V, score and P memories."""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from ..memory import uncontended

__all__ = ["build_scratchpads"]


def build_scratchpads(ctl, m, ns):
    """Builds the scratchpads: the Q, K and V memories, the double-buffered score memory and
    the R memories of P rows, each a submodule marked uncontended (no read whose data is used
    hits the address being written)."""
    (R, C, w, sl, Lmax, dmax, LT) = (
        ctl.R, ctl.C, ctl.in_width, ctl.sl, ctl.max_len, ctl.max_dim, ctl.len_tiles)
    # -- Scratchpads and buffers. ----------------------------------------------------------
    # No read whose data is used hits the address being written (uncontended): Q, K and V
    # are written in order while a head loads, and a job reads only blocks that are in (the
    # issuer holds it until then, hw.attention.issuer); the score buffer and the P rows
    # are double buffered, each half written only while its full flag is clear and read
    # only while it is set, the flag changing a cycle after the half's last read or write.
    def memory(name, shape, depth, attrs=None):
        m.submodules[name] = mem = Memory(shape=shape, depth=depth, init=[],
                                          attrs=uncontended(attrs))
        return mem

    qmem = memory("att_q", data.ArrayLayout(signed(w), R), ctl.blocks * dmax)
    kmem = memory("att_k", data.ArrayLayout(signed(w), C), LT * dmax)
    vmem = memory("att_v", data.ArrayLayout(signed(w), C), ctl.dim_tiles * Lmax)
    smem = memory("att_s", data.ArrayLayout(signed(ctl.acc_width), C), 2 * R * LT)
    # The P rows are small enough for distributed RAM, whose read address then fans out to
    # every cell of all R memories (7 ns of routing on the ECP5): block RAM instead.
    pmem = [memory(f"att_p{r}", data.ArrayLayout(unsigned(w), sl), 2 * ctl.p_words,
                   attrs={"ram_style": "block"})
            for r in range(R)]
    vars(ns).update(qmem=qmem, kmem=kmem, vmem=vmem, smem=smem, pmem=pmem)
