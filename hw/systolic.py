"""Output-stationary R x C systolic array of :class:`hw.pe.PE` elements."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .dsp import registered_product_pair
from .pe import PE, Flags, drain_layout

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """A mesh of R x C processing elements, any R, C >= 1.

    Row r receives ``a[r]`` and ``flags[r]`` at its left edge; column c receives ``b[c]`` at its
    top edge. The array does no skewing: the GEMM engine delays row r and column c by r and c
    cycles so that ``a[i, k]`` and ``b[k, j]`` meet in element (i, j). Finished tiles leave through
    the drain chains at the top of each column (see :class:`hw.pe.PE`).

    Parameters
    ----------
    rows, cols : int
        R and C.
    in_width, acc_width : int
        Operand and accumulator widths.
    dsp_pairs : bool
        Build the products of rows 2k and 2k+1 of each column as one pair, by
        :func:`hw.dsp.registered_product_pair` (one SB_MAC16 on iCE40), outside the two
        elements (``external_product``); an odd last row builds its own. Same latency.

    Members
    -------
    a : In(ArrayLayout(signed(in_width), rows))
    flags : In(ArrayLayout(Flags, rows))
    b : In(ArrayLayout(signed(in_width), cols))
    drain : Out(ArrayLayout(drain_layout(acc_width), cols))
        The top drain slot of each column.

    Latency: if a tile's ``last`` operand enters row r at cycle t, the finished sum of element
    (r, c) appears on ``drain[c]`` at cycle ``t + c + r + 4`` (c + 1 cycles along the row, 2 of
    multiply and accumulate, 1 into the drain slot, r up the drain chain). See
    :class:`hw.gemm.GemmEngine` for the end-to-end figures. Throughput: R x C MACs per cycle.
    """

    def __init__(self, rows, cols, in_width, acc_width, *, dsp_pairs=False):
        self.rows, self.cols = rows, cols
        self.in_width, self.acc_width = in_width, acc_width
        self.dsp_pairs = dsp_pairs
        super().__init__({
            "a": In(data.ArrayLayout(signed(in_width), rows)),
            "flags": In(data.ArrayLayout(Flags, rows)),
            "b": In(data.ArrayLayout(signed(in_width), cols)),
            "drain": Out(data.ArrayLayout(drain_layout(acc_width), cols)),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        paired = 2 * (R // 2) if self.dsp_pairs else 0   # rows whose products are paired
        pe = [[PE(self.in_width, self.acc_width, external_product=r < paired) for _ in range(C)]
              for r in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"pe_{r}_{c}"] = p = pe[r][c]
                if c == 0:
                    m.d.comb += [p.a_in.eq(self.a[r]), p.f_in.eq(self.flags[r])]
                else:
                    m.d.comb += [p.a_in.eq(pe[r][c - 1].a_out), p.f_in.eq(pe[r][c - 1].f_out)]
                if r == 0:
                    m.d.comb += p.b_in.eq(self.b[c])
                else:
                    m.d.comb += p.b_in.eq(pe[r - 1][c].b_out)
                if r < R - 1:
                    m.d.comb += p.d_in.eq(pe[r + 1][c].d_out)
        for c in range(C):
            m.d.comb += self.drain[c].eq(pe[0][c].d_out)
        for r in range(0, paired, 2):
            for c in range(C):
                pair = []
                for p, q in ((pe[r][c], r), (pe[r + 1][c], r + 1)):
                    prod = Signal(signed(2 * self.in_width), name=f"prod_{q}_{c}",
                                  reset_less=True)
                    m.d.comb += p.prod.eq(prod)
                    pair.append((p.a_out, p.b_out, prod))
                registered_product_pair(m, platform, *pair, name=f"mult_{r}_{c}")
        return m
