"""The host driver's row operations: softmax, GELU, LayerNorm and the residual add (alone or with
the LayerNorm of its sum), the :class:`boards.host.Client` methods that send them."""

import numpy as np

from hw.isa import RESIDUAL_REGS, SOFTMAX_REGS, Buf, Command, Op, Reg, gelu_registers
from sim import golden, layout, ops

from .framing import write_chunks
from .splits import residual_per_run, row_input, row_output, rows_per_run

__all__ = ["RowOps"]


class RowOps:
    """Softmax, GELU, LayerNorm and the residual add, as methods of :class:`boards.host.Client`
    (this class is one of its bases): rows through X into Y (or X, for a residual add whose
    LayerNorm follows), as many a run as the buffers hold, through the client's commands."""

    def _rows(self, op, rows, length):
        """Stream ``rows`` (2-D, row length ``length``) through unit ``op`` from X to Y."""
        VL = self.lanes
        beats = -(-length // VL)
        per = rows_per_run(self.depth, beats)
        out = np.zeros((len(rows), length), dtype=np.int64)
        self.set_reg(Reg.ROW_LEN, length)
        for r0 in range(0, len(rows), per):
            chunk = rows[r0:r0 + per]
            self.write_buffer(row_input(self.cfg, op), 0, layout.beats(chunk, VL))
            self.set_reg(Reg.ROWS, len(chunk))
            self.run(op)
            y = self.read_buffer(row_output(self.cfg, op), 0, len(chunk) * beats)
            out[r0:r0 + len(chunk)] = layout.from_beats(y, len(chunk), length, VL)
        return out

    def softmax(self, q, scale):
        """Row softmax (last axis) on the board: ``(p, p_scale)`` as :func:`sim.golden.softmax`."""
        self._need("softmax")
        q, k, scfg = golden.check_softmax_input(q, scale, self.cfg.softmax)
        for name, reg in SOFTMAX_REGS.items():
            self.set_reg(reg, getattr(k, name))
        rows = q.reshape(-1, q.shape[-1])
        p = self._rows(Op.SOFTMAX, rows, q.shape[-1])
        return p.reshape(q.shape), 2.0 ** -scfg.out_width

    def _gelu_constants(self, scale):
        """GELU's constants for input scale ``scale`` into its registers; returns them."""
        k = golden.gelu_constants(scale, self.cfg.gelu)
        for reg, value in gelu_registers(k).items():
            self.set_reg(reg, value)
        return k

    def gelu(self, q, scale):
        """Elementwise GELU on the board: ``(y, y_scale)`` as :func:`sim.golden.gelu`."""
        self._need("gelu")
        q = golden.check_int_array("GELU input", q, self.cfg.gelu.in_width)
        k = self._gelu_constants(scale)
        if Reg.GELU_IN_C in self.registers:     # from X, not over C (linear_gelu's)
            self.set_reg(Reg.GELU_IN_C, 0)
        flat = q.reshape(-1)
        if flat.size == 0:
            return np.zeros(q.shape, dtype=np.int64), k.y_scale
        length = min(flat.size, self.depth * self.lanes)     # GELU's ROW_LEN limit
        n = -(-flat.size // length)
        padded = np.zeros(n * length, dtype=np.int64)
        padded[:flat.size] = flat
        y = self._rows(Op.GELU, padded.reshape(n, length), length)
        return y.reshape(-1)[:flat.size].reshape(q.shape), k.y_scale

    def layernorm(self, q, scale, gamma=None, beta=None, *, constants=None):
        """Row LayerNorm (last axis) on the board: ``(y, y_scale)`` as
        :func:`sim.golden.layernorm`, its parameters real (``gamma``, ``beta``) or integer
        (``constants``, a :class:`sim.golden.LayerNormConstants`, as a program holds them)."""
        self._need("layernorm")
        q, k, lcfg = golden.check_layernorm_input(q, scale, gamma, beta, self.cfg.layernorm,
                                                  constants=constants)
        self._write_coef(k, lcfg)
        y = self._rows(Op.LAYERNORM, q.reshape(-1, k.length), k.length)
        return y.reshape(q.shape), k.y_scale

    def _write_coef(self, k, lcfg):
        """LayerNorm constants ``k`` (:class:`sim.golden.LayerNormConstants`) into COEF."""
        spec = self.buffers[Buf.COEF]
        raw = b"".join(w.to_bytes(spec.nbytes, "little")
                       for w in layout.coef_words(k.gamma, k.beta, lcfg))
        for s, cnt in write_chunks(-(-k.length // lcfg.lanes), spec.nbytes, self.max_payload):
            self.command(Command.WRITE_BUFFER, bytes([Buf.COEF.value]) + s.to_bytes(2, "little")
                         + cnt.to_bytes(2, "little")
                         + raw[s * spec.nbytes:(s + cnt) * spec.nbytes])

    def residual_layernorm(self, a, b, mult_a, mult_b, shift, *, constants):
        """LayerNorm (integer ``constants``, a :class:`sim.golden.LayerNormConstants`) of the
        residual add of ``a`` and ``b`` (any one shape, rows on the last axis), the sum kept
        on chip: ``(y, y_scale)`` as :func:`sim.golden.layernorm` of
        :func:`sim.ops.residual_add` ``(a, b, mult_a, mult_b, shift)``.

        Whole rows go through X, as many a run as its two halves hold: ``RUN RESIDUAL`` with
        ``RES_TO_X`` writes the sums over ``a``, ``RUN LAYERNORM`` reads them there, and only
        the LayerNorm rows come back. The sums never cross the link. Needs ``RES_TO_X``
        (:func:`hw.isa.residual_to_x`) and a LayerNorm as wide as the residual add's result.
        """
        self._need("residual")
        self._need("layernorm")
        rcfg, lcfg, VL = self.cfg.residual, self.cfg.layernorm, self.lanes
        if Reg.RES_TO_X not in self.registers:
            raise ValueError(f"Board config must let the residual add write X (residual "
                             f"out_width <= X's lanes), not {self.cfg.name}")
        if rcfg.out_width > lcfg.in_width:
            raise ValueError(f"LayerNorm in_width must hold the residual add's "
                             f"{rcfg.out_width}-bit result, not {lcfg.in_width}")
        s = ops.residual_add(a, b, mult_a, mult_b, shift, in_width=rcfg.in_width,
                             mult_width=rcfg.mult_width, out_width=rcfg.out_width)  # validates
        _, k, _ = golden.check_layernorm_input(s, 1.0, None, None, lcfg, constants=constants)
        L, beats = k.length, -(-k.length // VL)
        fa = np.asarray(a, dtype=np.int64).reshape(-1, L)
        fb = np.asarray(b, dtype=np.int64).reshape(-1, L)
        if 2 * beats > self.depth:
            raise ValueError(f"Row length must fit X's halves ({self.depth // 2} words of "
                             f"{VL} lanes), not {L}")
        for reg, value in zip(RESIDUAL_REGS.values(), (mult_a, mult_b, shift), strict=True):
            self.set_reg(reg, value)
        self._write_coef(k, lcfg)
        self.set_reg(Reg.ROW_LEN, L)
        per = rows_per_run(self.depth // 2, beats)
        out = np.zeros(fa.shape, dtype=np.int64)
        for r0 in range(0, len(fa), per):
            n = min(per, len(fa) - r0)
            self.write_buffer(row_input(self.cfg, Op.RESIDUAL), 0,
                              layout.residual_words(fa[r0:r0 + n], fb[r0:r0 + n], VL))
            self.set_reg(Reg.ROWS, n)
            self.set_reg(Reg.RES_TO_X, 1)
            self.run(Op.RESIDUAL)
            self.run(Op.LAYERNORM)
            y = self.read_buffer(row_output(self.cfg, Op.LAYERNORM), 0, n * beats)
            out[r0:r0 + n] = layout.from_beats(y, n, L, VL)
        return out.reshape(np.shape(a)), k.y_scale

    def residual(self, a, b, mult_a, mult_b, shift):
        """The residual add on the board: ``(a, b)`` of any one shape to
        :func:`sim.ops.residual_add` ``(a, b, mult_a, mult_b, shift)`` at the config's widths.

        The elements go through X in runs of at most ``depth // 2`` beats each for ``a`` (X's
        first half) and ``b`` (the second), each run one row of ``ROW_LEN`` elements.
        """
        self._need("residual")
        rcfg, VL = self.cfg.residual, self.lanes
        ops.residual_add(a, b, mult_a, mult_b, shift, in_width=rcfg.in_width,
                         mult_width=rcfg.mult_width, out_width=rcfg.out_width)   # validates
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        for reg, value in zip(RESIDUAL_REGS.values(), (mult_a, mult_b, shift), strict=True):
            self.set_reg(reg, value)
        fa, fb = a.reshape(-1), b.reshape(-1)
        out = np.zeros(fa.size, dtype=np.int64)
        per = residual_per_run(self.depth, VL)
        self.set_reg(Reg.ROWS, 1)
        if Reg.RES_TO_X in self.registers:
            self.set_reg(Reg.RES_TO_X, 0)
        for s0 in range(0, fa.size, per):
            n = min(per, fa.size - s0)
            self.write_buffer(row_input(self.cfg, Op.RESIDUAL), 0,
                              layout.residual_words(fa[None, s0:s0 + n], fb[None, s0:s0 + n], VL))
            self.set_reg(Reg.ROW_LEN, n)
            self.run(Op.RESIDUAL)
            y = self.read_buffer(row_output(self.cfg, Op.RESIDUAL), 0, -(-n // VL))
            out[s0:s0 + n] = layout.from_beats(y, 1, n, VL)[0]
        return out.reshape(a.shape)
