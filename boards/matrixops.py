"""The host driver's operations on the GEMM engine: GEMM, LINEAR (and a LINEAR whose results go
through GELU over C) and attention, the :class:`boards.host.Client` methods that send them."""

from collections import namedtuple

import numpy as np

from hw.isa import ATTENTION_REGS, Buf, LinMode, Op, Reg, narrow
from sim import golden, layout, ops

from .splits import gemm_block, k_chunk, linear_runs, linear_split, sums_on_chip

__all__ = ["MatrixOps"]

_LinearArgs = namedtuple("_LinearArgs", ["x", "w", "consts", "passes", "out_width", "on_chip"])
_LinearArgs.__doc__ = ("A Linear's checked arguments (``consts``: bias, multipliers, shifts) and "
                       "whether its sums are made on chip (:func:`sums_on_chip`).")


class MatrixOps:
    """GEMM, LINEAR and attention, as methods of :class:`boards.host.Client` (this class is
    one of its bases): each splits its operands into the runs the buffers hold and sends them
    through the client's commands (``write_buffer``, ``write_channels``, ``set_reg``, ``run``,
    ``read_buffer``) for its config and depth."""

    def gemm(self, a, b, requant=None):
        """``a @ b`` on the board: exact accumulators (``requant=None``), or int8 with
        ``requant=(multiplier, shift)`` (``golden.requantize``'s rule), as an int64 array.

        Products larger than the buffers are split into blocks of rows and columns; a K
        larger than a buffer (or than ``gemm.max_k``) is split too, the blocks' exact
        accumulators summed and requantized here with :func:`sim.golden.requantize`.
        """
        cfg = self.cfg
        a, b = golden.check_gemm_operands(a, b, in_width=cfg.array.in_width)
        (M, K), N = a.shape, b.shape[1]
        if requant is not None:
            mult, shift = requant
            golden.requantize(np.zeros(1, dtype=np.int64), mult, shift,
                              acc_width=cfg.acc_width, mult_width=cfg.requant.mult_width,
                              out_width=cfg.requant.out_width)   # validates m and s
        kmax = k_chunk(cfg, self.depth)
        if K > kmax:
            acc = sum(self.gemm(a[:, k0:k0 + kmax], b[k0:k0 + kmax]) for k0 in range(0, K, kmax))
            if requant is None:
                return acc
            return golden.requantize(acc, mult, shift, acc_width=62 - cfg.requant.mult_width,
                                     mult_width=cfg.requant.mult_width,
                                     out_width=cfg.requant.out_width)
        mb, nb = gemm_block(cfg, self.depth, M, K, N)
        out = np.zeros((M, N), dtype=np.int64)
        if requant is not None:
            self.set_reg(Reg.RQ_MULT, mult)
            self.set_reg(Reg.RQ_SHIFT, shift)
        for j0 in range(0, N, nb):          # B's block written once, then A's blocks
            for i0 in range(0, M, mb):
                out[i0:i0 + mb, j0:j0 + nb] = self._gemm_block(
                    a[i0:i0 + mb], b[:, j0:j0 + nb], requant is not None, write_b=i0 == 0)
        return out

    def _gemm_block(self, a, b, requantized, op=None, *, write_b=True):
        """One run of a block, and its C read back (through C_OUT when ``requantized``)."""
        self._run_block(a, b, op if op is not None else Op.GEMM if requantized else Op.GEMM_RAW,
                        write_b=write_b)
        return self._read_block(a.shape[0], b.shape[1], requantized=requantized)

    def _run_block(self, a, b, op, *, write_b=True):
        """One run of a block: A written, B too unless it still holds ``b`` (``write_b``)."""
        R, C = self.cfg.array.rows, self.cfg.array.cols
        (M, K), N = a.shape, b.shape[1]
        self.write_buffer(Buf.A, 0, layout.column_words(a, R))
        if write_b:
            self.write_buffer(Buf.B, 0, layout.row_words(b, C))
        for reg, v in ((Reg.M, M), (Reg.K, K), (Reg.N, N)):
            self.set_reg(reg, v)
        self.run(op)

    @property
    def _results(self):
        """The buffer requantized results are read from: C's narrow view C_OUT where the config
        has it (:func:`hw.isa.narrow`), else C."""
        return narrow(self.buffers, Buf.C)

    def _read_block(self, M, N, *, requantized):
        """C's ``M x N`` block, as a run of :meth:`_run_block` left it: with ``requantized`` its
        requantized results, through C_OUT (``requant.out_width`` bits a lane on the link);
        otherwise its exact sums."""
        R, C = self.cfg.array.rows, self.cfg.array.cols
        words = self.read_buffer(self._results if requantized else Buf.C, 0, M * -(-N // C))
        return layout.from_tile_rows(words, M, N, R, C)

    def linear(self, x, w, bias, multipliers, shifts, *, x_width=None, out_width=None):
        """``requantize_channels(x @ w + bias, multipliers, shifts)`` on the board: as
        :func:`sim.ops.linear` with ``cfg=self.cfg``, an int64 array.

        ``x`` (M, K) holds signed ``x_width``-bit activations (default ``array.in_width``),
        ``w`` (K, N) ``in_width``-bit weights, ``bias`` int32 and ``multipliers``, ``shifts``
        per output channel; ``out_width`` defaults to ``requant.out_width`` (a narrower one is
        saturated here).

        When C's lanes hold the whole sum (``acc_width`` at least
        :func:`sim.ops.linear_acc_width` of the bias, K and ``x_width``) and ``x`` is at most
        two digits (:func:`sums_on_chip`), it is summed on chip:
        the LINEAR runs of :func:`linear_runs` (split by :func:`linear_split`, each
        signed digit of ``x`` from :func:`sim.ops.split_digits`), each block's runs summing into
        C through ``LIN_MODE`` (:class:`hw.isa.LinMode`), CHAN written once per column block and
        C read once per block; one run a block when one digit and one chunk do. Otherwise (a
        K beyond a run, or wide activations, whose whole sum C cannot hold, or three digits or
        more; one run's sum C must hold) each digit goes through :meth:`gemm`'s exact
        ``RUN GEMM_RAW`` blocks and K chunks, and the digits' sums are shifted and added, the
        bias added and the channels requantized here; a single run whose sum C cannot hold is
        refused.
        """
        args = self._linear_args(x, w, bias, multipliers, shifts, x_width, out_width)
        if args.on_chip:
            return golden.saturate(self._linear_on_chip(args), args.out_width)
        return self._linear_host_sum(args)

    def _linear_args(self, x, w, bias, multipliers, shifts, x_width, out_width):
        """:meth:`linear`'s arguments, checked, as a :class:`_LinearArgs`; a run whose sum C
        cannot hold is refused here."""
        self._need("linear")
        cfg = self.cfg
        iw = cfg.array.in_width
        x_width = iw if x_width is None else x_width
        out_width = cfg.requant.out_width if out_width is None else out_width
        x = golden.check_int_array("Linear input", x, x_width, ndim=2)
        w = golden.check_int_array("Linear weight", w, iw, ndim=2)
        K, N = x.shape[1], w.shape[1]
        if w.shape[0] != K:
            raise ValueError(f"Linear weight must have {K} rows (the input's K), not "
                             f"{w.shape[0]}")
        bias = golden.check_int_array("Linear bias", bias, 32, ndim=1)
        if bias.shape != (N,):
            raise ValueError(f"Linear bias must have shape ({N},), not {bias.shape}")
        multipliers, shifts = ops.check_channel_constants(
            "Linear", multipliers, shifts, N, mult_width=cfg.requant.mult_width,
            max_shift=cfg.acc_width + cfg.requant.mult_width - 1)
        if out_width > cfg.requant.out_width:
            raise ValueError(f"Linear output width must be at most {cfg.requant.out_width} "
                             f"(requant.out_width), not {out_width}")
        passes, kmax = ops.linear_passes(x_width, iw), k_chunk(cfg, self.depth)
        whole = ops.linear_acc_width(bias, K, x_width, iw)
        on_chip = sums_on_chip(cfg, whole, passes)
        if not on_chip and passes == 1 and K <= kmax:
            raise ValueError(f"GEMM acc_width must be at least {whole} for K={K} with this "
                             f"bias (gemm.acc_width), not {cfg.acc_width}")
        return _LinearArgs(x, w, (bias, multipliers, shifts), passes, out_width, on_chip)

    def _linear_host_sum(self, args):
        """The whole sum is wider than C's lanes (or has more digits than SHIFT weighs), each
        run's exact sum is not: the runs' sums are read back and summed, biased and
        requantized here."""
        cfg, (x, w) = self.cfg, (args.x, args.w)
        iw, (M, K), N = cfg.array.in_width, x.shape, w.shape[1]
        bias, multipliers, shifts = args.consts
        need = ops.linear_acc_width(np.zeros(1), min(K, k_chunk(cfg, self.depth)), iw, iw)
        if need > cfg.acc_width:
            raise ValueError(f"GEMM acc_width must be at least {need} for K={K} with this bias "
                             f"(gemm.acc_width), not {cfg.acc_width}")
        acc = np.zeros((M, N), dtype=np.int64)
        for p, digit in enumerate(ops.split_digits(x, args.passes, iw)):
            acc = (acc << (iw if p else 0)) + self.gemm(digit, w)
        return ops.requantize_channels(acc + bias, multipliers, shifts,
                                       in_width=62 - cfg.requant.mult_width,
                                       mult_width=cfg.requant.mult_width,
                                       out_width=args.out_width)

    def _linear_on_chip(self, args, *, gelu=False):
        """The runs of :func:`linear_runs` (split by :func:`linear_split`): each block's
        whole sum in C, read once; with ``gelu``, each block's results first go through a
        GELU over C (:meth:`linear_gelu`) and its outputs are read."""
        cfg, (x, w), consts, passes = self.cfg, (args.x, args.w), args.consts, args.passes
        iw, C = cfg.array.in_width, cfg.array.cols
        (M, K), N = x.shape, w.shape[1]
        digits = ops.split_digits(x, passes, iw)
        split = linear_split(cfg, self.depth, M, K, N, passes)
        out = np.zeros((M, N), dtype=np.int64)
        for r in linear_runs(cfg, self.depth, M, K, N, passes, split):
            cols = slice(r.j0, r.j0 + r.n)
            if r.write_chan:
                self.write_channels(*(v[cols] for v in consts))
            self.set_reg(Reg.LIN_MODE, r.mode.value)
            self._run_block(digits[r.p][r.i0:r.i0 + r.m, r.k0:r.k0 + r.k],
                            w[r.k0:r.k0 + r.k, cols], Op.LINEAR, write_b=r.write_b)
            if not r.read_c:
                continue
            requantized = LinMode.RAW not in r.mode    # the sum's last run: requantized
            if gelu:            # one row a C word, its outputs over it
                self.set_reg(Reg.ROW_LEN, C)
                self.set_reg(Reg.ROWS, r.m * -(-r.n // C))
                self.run(Op.GELU)
                requantized = False
            out[r.i0:r.i0 + r.m, cols] = self._read_block(r.m, r.n, requantized=requantized)
        return out

    def linear_gelu(self, x, w, bias, multipliers, shifts, scale, *, x_width=None,
                    out_width=None):
        """GELU (input scale ``scale``) of :meth:`linear`'s result: ``(y, y_scale)`` as
        :func:`sim.golden.gelu` of :func:`sim.ops.linear`. The arguments are
        :meth:`linear`'s; ``out_width`` (the Linear's output width) must be GELU's
        ``in_width``.

        Where the top runs GELU over C (``GELU_IN_C``, :func:`hw.isa.gelu_in_c`) and the sums
        are made on chip, each block's requantized results stay in C: a ``RUN GELU`` over C
        writes GELU's outputs over them and only those are read, so the Linear's results never
        cross the link. Otherwise it is :meth:`linear` then :meth:`gelu`.
        """
        self._need("gelu")
        args = self._linear_args(x, w, bias, multipliers, shifts, x_width, out_width)
        if args.out_width != self.cfg.gelu.in_width:
            raise ValueError(f"Linear output width must be GELU's in_width "
                             f"({self.cfg.gelu.in_width}) before a GELU, not {args.out_width}")
        if Reg.GELU_IN_C not in self.registers or not args.on_chip:
            return self.gelu(self.linear(x, w, bias, multipliers, shifts, x_width=x_width,
                                         out_width=out_width), scale)
        k = self._gelu_constants(scale)
        self.set_reg(Reg.GELU_IN_C, 1)
        return self._linear_on_chip(args, gelu=True), k.y_scale

    def attention(self, q, k, v, q_scale, k_scale, v_scale, o_scale, *, causal=False,
                  keys=None):
        """``softmax(Q Kᵀ / sqrt(d)) V`` on the board, one ``RUN ATTENTION`` per head:
        ``(o, o_scale)`` as :func:`sim.golden.attention`, ``keys`` (the keys every query of
        every head sees, 1 to L; None: L) included: it is ``ATT_KEYS``, sent as 0 for L.

        ``q``, ``k``, ``v`` are int8 arrays of shape ``(L, d)`` or ``(heads, L, d)``. Each head
        is laid out in the controller's scratchpad order (Q in A, K in B, V in V; see
        :class:`hw.isa.Buf`) and its output read back from C. Raises :exc:`ValueError` when a
        head does not fit the buffers (``ceil(L/R)*d``, ``ceil(L/C)*d`` and ``ceil(d/C)*L``
        words must each be at most ``depth``).
        """
        self._need("attention")
        cfg = self.cfg
        R, C = cfg.array.rows, cfg.array.cols
        q, k, v, heads = golden.check_attention_input(q, k, v, cfg)
        H, L, d = q.shape
        keys = 0 if keys is None else golden.check_keys(keys, L) % L     # 0 means L
        consts = golden.attention_constants(q_scale, k_scale, v_scale, o_scale, d, cfg)
        nb, nt_len, nt_dim = -(-L // R), -(-L // C), -(-d // C)
        words = max(nb * d, nt_len * d, nt_dim * L)
        if words > self.depth:
            raise ValueError(f"Attention head must need at most {self.depth} words per buffer "
                             f"(the board's depth), not {words} (L={L}, d={d})")
        for reg, value in ((Reg.ATT_LEN, L), (Reg.ATT_DIM, d), (Reg.ATT_CAUSAL, int(causal)),
                           (Reg.ATT_KEYS, keys), (Reg.ATT_MULT, consts.multiplier),
                           (Reg.ATT_SHIFT, consts.shift)):
            self.set_reg(reg, value)
        for name in cfg.attention_softmax.constant_widths:
            self.set_reg(ATTENTION_REGS[name], getattr(consts.softmax, name))
        out = np.zeros((H, L, d), dtype=np.int64)
        for h in range(H):
            # The controller's scratchpad order (see sim.layout): Q as column words of R rows,
            # K as row words of Kᵀ, V as row words; the output as tile rows.
            self.write_buffer(Buf.A, 0, layout.column_words(q[h], R))
            self.write_buffer(Buf.B, 0, layout.row_words(k[h].T, C))
            self.write_buffer(Buf.V, 0, layout.row_words(v[h], C))
            self.run(Op.ATTENTION)
            out[h] = layout.from_tile_rows(self.read_buffer(self._results, 0, nt_dim * L),
                                           L, d, R, C)
        return (out if heads else out[0]), float(o_scale)
