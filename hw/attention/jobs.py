"""The order of one head's GEMM jobs, and the registered shape of the job being run."""

from amaranth.hdl import Mux, Signal

__all__ = ["Jobs", "job_shape"]


class Jobs:
    """The order in which one head's GEMM jobs run on the array.

    ``QK(b)`` computes the scores of row block b, ``PV(b)`` its output. The order is
    ``QK(0), QK(1), PV(0), QK(2), PV(1), ..., QK(n-1), PV(n-2), PV(n-1)``, so that the softmax of
    block b runs while the array computes ``QK(b+1)``.
    """

    QK, PV = 0, 1

    def __init__(self, name, blocks, rows):
        self.rows = rows
        self.kind = Signal(name=f"{name}_kind")   # 0 = QK, 1 = PV
        self.block = Signal(range(blocks + 1), name=f"{name}_block")
        # block * R, kept beside the block number so that no multiplier sits on the path.
        self.base = Signal(range((blocks + 2) * rows + 1), name=f"{name}_base")
        self.done = Signal(name=f"{name}_done")
        #: The registered job shape (:func:`job_shape`) and the decodes below are those of the
        #: current job: low for the cycle after a move, while the registers catch up.
        self.fresh = Signal(name=f"{name}_fresh")
        self.first = Signal(name=f"{name}_first")     # block == 0
        self.more2 = Signal(name=f"{name}_more2")     # block + 2 < nb
        self.final = Signal(name=f"{name}_final")     # block + 1 >= nb
        self.nb_gt1 = Signal(name=f"{name}_nb_gt1")   # nb > 1

    def reset(self):
        return [self.kind.eq(self.QK), self.block.eq(0), self.base.eq(0), self.done.eq(0),
                self.fresh.eq(0)]

    def decode(self, nb):
        """Statements registering the comparisons ``advance`` needs (``nb``: row blocks)."""
        b = self.block
        return [self.first.eq(b == 0), self.more2.eq(b + 2 < nb), self.final.eq(b + 1 >= nb),
                self.nb_gt1.eq(nb > 1)]

    def advance(self):
        """Statements moving to the job after the current one (valid while ``fresh``)."""
        qk, b = self.kind == self.QK, self.block
        return [
            self.kind.eq(Mux(qk, Mux(self.first & self.nb_gt1, self.QK, self.PV),
                             Mux(self.more2, self.QK, self.PV))),
            self.block.eq(Mux(qk, Mux(self.first, self.nb_gt1, b - 1),
                              Mux(self.more2, b + 2, b + 1))),
            self.base.eq(Mux(qk, Mux(self.first, Mux(self.nb_gt1, self.rows, 0),
                                     self.base - self.rows),
                             Mux(self.more2, self.base + 2 * self.rows,
                                 self.base + self.rows))),
            self.done.eq(~qk & self.final),
            self.fresh.eq(0),
        ]


def job_shape(ctl, m, jobs, hd, nb, name):
    """Registers describing the GEMM job ``jobs`` points at, valid while ``jobs.fresh``
    (they follow ``jobs`` one cycle late, so that no adder chain sits before a handshake):
    ``rows`` (M), ``k``, ``n``, ``k - 1``, ``k == 1``, ``n <= C``, ``rows - 1`` and the
    operand walk's step (``d`` for QK, ``L`` for PV)."""
    R, C = ctl.R, ctl.C
    base, L, d = jobs.base, hd.L, hd.d
    kdim = range(max(ctl.max_len, ctl.max_dim) + 1)
    shape = {
        "rows": Signal(range(R + 1), name=f"{name}_rows"),
        "rows_m1": Signal(range(R), name=f"{name}_rows_m1"),
        "k": Signal(kdim, name=f"{name}_k"),
        "n": Signal(kdim, name=f"{name}_n"),
        "k_m1": Signal(kdim, name=f"{name}_k_m1"),
        "k_is1": Signal(name=f"{name}_k_is1"),
        "n_le_c": Signal(name=f"{name}_n_le_c"),
        "step": Signal(kdim, name=f"{name}_step"),
    }
    qk = jobs.kind == Jobs.QK
    full = base <= hd.L_m_r                  # the block has R rows
    # N_b: the causal mask cuts the columns to base + R, when that is short of L.
    cut = hd.causal & (base < hd.L_m_r)
    n_b = Mux(cut, base + R, L)
    n_b_m1 = Mux(cut, base + (R - 1), hd.L_m1)
    n_b_is1 = Mux(cut, (base == 0) if R == 1 else 0, hd.L_is1)
    n_b_le_c = Mux(cut, (base <= C - R) if C >= R else 0, hd.L_le_c)
    m.d.sync += [
        shape["rows"].eq(Mux(full, R, L - base)),
        shape["rows_m1"].eq(Mux(full, R - 1, hd.L_m1 - base)),
        shape["k"].eq(Mux(qk, d, n_b)),
        shape["n"].eq(Mux(qk, n_b, d)),
        shape["k_m1"].eq(Mux(qk, hd.d_m1, n_b_m1)),
        shape["k_is1"].eq(Mux(qk, hd.d_is1, n_b_is1)),
        shape["n_le_c"].eq(Mux(qk, n_b_le_c, hd.d_le_c)),
        shape["step"].eq(Mux(qk, d, L)),
        *jobs.decode(nb),
        jobs.fresh.eq(1),    # overridden by reset() and advance(), which come later
    ]
    return shape
