"""Host driver of the accelerator's command protocol: NumPy arrays in, commands out, arrays back,
over any transport (:class:`boards.board.Board`: the framed serial link of a board)."""

from collections import namedtuple

import numpy as np

from hw.config import AccelConfig
from hw.isa import (
    ATTENTION_REGS,
    GELU_REGS,
    RESIDUAL_REGS,
    SOFTMAX_REGS,
    Buf,
    Command,
    Error,
    LinMode,
    Op,
    Reg,
    buffer_depth,
    buffer_specs,
    channel_tiles,
    narrow,
    register_specs,
    vector_lanes,
)
from sim import golden, layout, ops
from sim.layout import pack_words, unpack_words

from .framing import (
    BAUD,
    BITS_PER_BYTE,
    BUFFER_HEADER,
    LENGTH_BYTES,
    STATUS_BYTES,
    LinkCount,
    frame_bytes,
    read_chunks,
    reg_value_bytes,
    write_chunks,
)
from .link import LinkError
from .splits import (
    LinearRun,
    LinearSplit,
    gemm_block,
    k_chunk,
    linear_runs,
    linear_split,
    residual_per_run,
    row_input,
    row_output,
    rows_per_run,
    sums_on_chip,
)

__all__ = ["BoardError", "Status", "Client", "BAUD", "BITS_PER_BYTE", "LENGTH_BYTES",
           "BUFFER_HEADER", "STATUS_BYTES", "frame_bytes", "reg_value_bytes", "write_chunks",
           "read_chunks", "k_chunk", "gemm_block", "LinearSplit", "LinearRun", "linear_runs",
           "linear_split", "rows_per_run", "residual_per_run", "sums_on_chip", "LinkCount"]


Status = namedtuple("Status", ["busy", "done", "error"])
Status.__doc__ = "What ``STATUS`` answers: ``busy``, ``done`` (bools) and the last error name."
_LinearArgs = namedtuple("_LinearArgs", ["x", "w", "consts", "passes", "out_width", "on_chip"])
_LinearArgs.__doc__ = ("A Linear's checked arguments (``consts``: bias, multipliers, shifts) and "
                       "whether its sums are made on chip (:func:`sums_on_chip`).")


def _num(x):
    """The number of an enum member (Amaranth enums are not ``int``) or of an int."""
    return x.value if hasattr(x, "value") else int(x)


def _code_name(code):
    for enum in (Error, LinkError):
        try:
            return enum(code).name
        except ValueError:
            pass
    return f"UNKNOWN_{code:#04x}"


def _code_name_cmd(opcode):
    try:
        return Command(opcode).name
    except ValueError:
        return f"opcode {opcode:#04x}"


class BoardError(Exception):
    """The board answered a command with a non-OK status; ``name`` is the error code's name
    (:class:`hw.isa.Error` or :class:`boards.link.LinkError`) and ``code`` its number."""

    def __init__(self, code, what=""):
        self.code = code
        self.name = _code_name(code)
        super().__init__(f"{self.name}" + (f" ({what})" if what else ""))


class Client:
    """The accelerator's commands as Python methods; subclasses move the bytes.

    A subclass implements :meth:`_exchange`. :class:`Board` frames commands for the UART link;
    the tests drive :class:`hw.top.Accelerator` directly with the same methods.

    Parameters
    ----------
    cfg : AccelConfig
        The configuration the board was built with (buffer layouts, constants and the buffers'
        depth, ``cfg.buffers.depth``, derive from it).
    depth : int or None
        The accelerator's buffer depth, which sets how operations split into runs: by default
        the config's, as a board top built from ``cfg`` has. Give it only for a simulated top
        built with the same explicit depth (``hw.top.Accelerator(cfg, depth=...)``).
    max_payload : int
        Largest command payload the link accepts; writes are chunked to fit.
    max_polls : int
        ``STATUS`` polls a run may take before :exc:`TimeoutError`.
    """

    def __init__(self, cfg, *, depth=None, max_payload=255, max_polls=10_000):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Board config must be an AccelConfig, not {cfg!r}")
        self.cfg, self.depth = cfg, buffer_depth(cfg, depth)
        self.buffers = buffer_specs(cfg, depth)
        self.registers = register_specs(cfg, depth)
        self.lanes = vector_lanes(cfg)
        self.max_payload, self.max_polls = max_payload, max_polls
        self._regs = {}       # register values last set, to skip redundant SET_REGs
        #: What went over the link so far: frames and bytes each way, counted as
        #: :class:`LinkCount` frames them (a program executor reads it op by op).
        self.link = LinkCount(max_payload)
        #: RUN commands sent so far.
        self.runs = 0

    def _exchange(self, opcode, payload):
        """Send one command; return ``(status, response payload)``."""
        raise NotImplementedError

    def command(self, opcode, payload=b""):
        """Send a command and return its response payload; raise :exc:`BoardError` on a
        non-OK status."""
        status, data = self._exchange(_num(opcode), bytes(payload))
        self.link.command(len(payload), len(data))
        if status != Error.OK.value:
            raise BoardError(status, f"answer to {_code_name_cmd(opcode)}")
        return data

    # -- low-level commands --------------------------------------------------------------------

    def status(self):
        """``Status(busy, done, error)``; ``error`` is the last failed command's code name
        (``"OK"`` if none) and is cleared by this read."""
        flags, err = self.command(Command.STATUS)
        return Status(bool(flags & 1), bool(flags & 2), _code_name(err))

    def write_buffer(self, buf, addr, words):
        """Write ``words`` (array ``(n, lanes)``) to buffer ``buf`` from word ``addr``, chunked
        to the link's payload limit."""
        spec = self.buffers[Buf(buf)]
        raw = pack_words(words, spec)
        for start, cnt in write_chunks(len(raw) // spec.nbytes, spec.nbytes, self.max_payload):
            body = raw[start * spec.nbytes:(start + cnt) * spec.nbytes]
            self.command(Command.WRITE_BUFFER,
                         bytes([_num(buf)]) + (addr + start).to_bytes(2, "little")
                         + cnt.to_bytes(2, "little") + body)

    def write_channels(self, bias, multipliers, shifts):
        """Write RUN LINEAR's constants for ``N`` output channels to CHAN: only the words a run
        of ``N`` columns reads (:func:`sim.layout.channel_pieces`), three writes of
        ``ceil(N/C)`` words, or one of the whole table when they fill it."""
        for addr, words in layout.channel_blocks(bias, multipliers, shifts, self.cfg.array.cols,
                                                 channel_tiles(self.cfg)):
            self.write_buffer(Buf.CHAN, addr, words)

    def read_buffer(self, buf, addr, count):
        """Read ``count`` words from buffer ``buf`` at ``addr``: int64 array ``(count, lanes)``."""
        spec = self.buffers[Buf(buf)]
        raw = b""
        for start, cnt in read_chunks(count, spec.nbytes, self.max_payload):
            raw += self.command(Command.READ_BUFFER,
                                bytes([_num(buf)]) + (addr + start).to_bytes(2, "little")
                                + cnt.to_bytes(2, "little"))
        return unpack_words(raw, spec)

    def set_reg(self, reg, value, *, force=False):
        """Set register ``reg`` to ``value`` (skipped when it already holds it)."""
        reg, value = Reg(reg), int(value)
        if not force and self._regs.get(reg) == value:
            return
        self.command(Command.SET_REG,
                     bytes([reg.value]) + value.to_bytes(reg_value_bytes(value), "little"))
        self._regs[reg] = value

    def run(self, op, *, wait=True):
        """Start ``op`` (an :class:`hw.isa.Op`); with ``wait``, poll ``STATUS`` until done."""
        self.command(Command.RUN, bytes([Op(op).value]))
        self.runs += 1
        if not wait:
            return
        for _ in range(self.max_polls):
            st = self.status()
            if not st.busy:
                return
        raise TimeoutError(f"RUN {Op(op).name} still busy after {self.max_polls} STATUS polls")

    # -- GEMM ------------------------------------------------------------------------------------

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

    # -- nonlinear units -------------------------------------------------------------------------

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

    def _need(self, name):
        if not getattr(self.cfg, name).enabled:
            raise ValueError(f"Board config must include {name}, not leave it out "
                             f"({self.cfg.name})")

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
        for name, reg in GELU_REGS.items():
            if hasattr(k, name):
                self.set_reg(reg, getattr(k, name))
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

    # -- attention -------------------------------------------------------------------------------

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
