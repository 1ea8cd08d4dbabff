"""A model of the accelerator top's command port: every response, and the state it changes,
predicted from the documented rules (:mod:`hw.isa` and :class:`hw.top.Accelerator`)."""

import dataclasses

import numpy as np

from hw.channels import requant_width
from hw.dispatch import engine_config
from hw.isa import (
    ATTENTION_REGS,
    GELU_REGS,
    RESIDUAL_REGS,
    ROW_OPS,
    SOFTMAX_REGS,
    Buf,
    Command,
    Error,
    LinMode,
    Op,
    Reg,
    buffer_specs,
    channel_shift_width,
    channel_tiles,
    register_specs,
    vector_lanes,
)

from . import golden, layout, ops

__all__ = ["run_words", "run_checks", "ModelRun", "CommandPortModel", "ModelMismatch"]

#: The registers whose values an op's result depends on beyond its shape, when arbitrary
#: values make it undefined (a divisor of 0, say): after a SET_REG of one of them the model
#: no longer predicts the op until :meth:`CommandPortModel.trust` (see there).
_CONSTANTS = {
    Op.SOFTMAX: frozenset(SOFTMAX_REGS.values()),
    Op.GELU: frozenset(GELU_REGS.values()),
    Op.ATTENTION: frozenset(ATTENTION_REGS.values()),
}
#: Likewise the buffers: after a WRITE_BUFFER of CHAN (random biases and constants, whose sums
#: and shifts the documentation leaves undefined beyond :func:`sim.ops.linear`'s ranges).
_CONSTANT_BUFFERS = {Op.LINEAR: Buf.CHAN}
_UNIT = {**ROW_OPS, Op.ATTENTION: "attention", Op.LINEAR: "linear"}


def _ceil(a, b):
    return -(-a // b)


def run_words(cfg, op, regs):
    """The words ``RUN op`` spans in each buffer, as :class:`hw.dispatch.Dispatcher` counts
    them from the shape registers ``regs`` (``{Reg: value}``, a missing register is 0):
    ``{Buf: words}``.

    GEMM, GEMM_RAW and LINEAR: A ``ceil(M/R)*K``, B ``ceil(N/C)*K``, C ``M*ceil(N/C)``;
    ATTENTION: A ``ceil(L/R)*d`` (Q), B ``ceil(L/C)*d`` (K), V and C ``ceil(d/C)*L``; the row ops
    X and Y ``ROWS*ceil(ROW_LEN/lanes)``, and RESIDUAL twice that in X (its two halves); GELU
    with ``GELU_IN_C`` ``ROWS`` words of C.
    """
    R, C, VL = cfg.array.rows, cfg.array.cols, vector_lanes(cfg)
    r = {reg: int(regs.get(reg, 0)) for reg in Reg}
    if op == Op.GELU and r[Reg.GELU_IN_C]:
        return {Buf.C: r[Reg.ROWS]}
    if op in (Op.GEMM, Op.GEMM_RAW, Op.LINEAR):
        M, K, N = r[Reg.M], r[Reg.K], r[Reg.N]
        return {Buf.A: _ceil(M, R) * K, Buf.B: _ceil(N, C) * K, Buf.C: M * _ceil(N, C)}
    if op == Op.ATTENTION:
        L, d = r[Reg.ATT_LEN], r[Reg.ATT_DIM]
        return {Buf.A: _ceil(L, R) * d, Buf.B: _ceil(L, C) * d, Buf.V: _ceil(d, C) * L,
                Buf.C: _ceil(d, C) * L}
    n = r[Reg.ROWS] * _ceil(r[Reg.ROW_LEN], VL)
    return {Buf.X: (2 if op == Op.RESIDUAL else 1) * n, Buf.Y: n}


def run_checks(cfg, depth, op, regs):
    """The shape checks ``RUN op`` fails on ``Accelerator(cfg, depth=depth)`` with the shape
    registers ``regs`` (``{Reg: value}``, a missing register is 0), which the top answers with
    :attr:`Error.SHAPE`: a list of ``(what, value, limit)``, empty when the run is accepted.

    A shape register is zero (limit ``"nonzero"``), beyond the config (attention's ``ATT_LEN``
    and ``ATT_DIM``, a row op's ``ROW_LEN``), attention's ``ATT_KEYS`` beyond ``ATT_LEN``
    (limit ``"ATT_LEN"``), a GELU over C whose ``ROW_LEN`` is not the array's columns (limit
    ``"cols"``), or the run's words in a buffer (:func:`run_words`) beyond ``depth`` (``what``
    is ``"words of X"``, say).
    """
    VL, r = vector_lanes(cfg), {reg: int(regs.get(reg, 0)) for reg in Reg}
    if op in (Op.GEMM, Op.GEMM_RAW, Op.LINEAR):
        limits = {Reg.M: None, Reg.K: None, Reg.N: None}
    elif op == Op.ATTENTION:
        limits = {Reg.ATT_LEN: cfg.attention.max_seq_len, Reg.ATT_DIM: cfg.attention.max_head_dim}
    else:
        row_max = depth * VL if op in (Op.GELU, Op.RESIDUAL) else getattr(cfg, _UNIT[op]).max_len
        limits = {Reg.ROW_LEN: row_max, Reg.ROWS: None}
    bad = []
    for reg, hi in limits.items():
        if r[reg] == 0:
            bad.append((reg.name, 0, "nonzero"))
        elif hi is not None and r[reg] > hi:
            bad.append((reg.name, r[reg], hi))
    if op == Op.ATTENTION and r[Reg.ATT_KEYS] > r[Reg.ATT_LEN]:
        bad.append((Reg.ATT_KEYS.name, r[Reg.ATT_KEYS], Reg.ATT_LEN.name))
    if op == Op.GELU and r[Reg.GELU_IN_C] and r[Reg.ROW_LEN] != cfg.array.cols:
        bad.append((Reg.ROW_LEN.name, r[Reg.ROW_LEN], "cols"))
    if bad:
        return bad
    return [(f"words of {buf.name}", words, depth)
            for buf, words in run_words(cfg, op, r).items() if words > depth]


class ModelMismatch(AssertionError):
    """The top answered a command otherwise than the documented rules predict."""


@dataclasses.dataclass
class ModelRun:
    """A run the model accepted: its op, the words it writes (``out``: buffer, array of words,
    mask of the lanes the model predicts), and what the test learned about it."""

    op: Op
    out_buf: Buf
    words: np.ndarray
    mask: np.ndarray
    refused: int = 0          #: commands answered BUSY while it ran
    checked: bool = False     #: its predicted lanes were compared with the top's buffer


@dataclasses.dataclass(frozen=True)
class _Outcome:
    status: Error
    payload: bytes = b""
    read: tuple | None = None     # READ_BUFFER: (buf, addr, count): payload from the buffers
    apply: object = None          # what an accepted command changes (a function)


class CommandPortModel:
    """The command port of ``Accelerator(cfg, depth=depth)`` as a reference model.

    It holds what the documentation says the top holds: every buffer's words (COEF's as raw
    integers), every register, the run in flight, the ``done`` flag and the last error. Feed it
    every command sent and the response received with :meth:`observe`; it raises
    :exc:`ModelMismatch` when a response differs from the prediction.

    A run's duration is not modelled. While a run may still be in flight, a command that reaches
    the busy check has two possible answers, ``BUSY`` or the answer of an idle top; the one
    received tells the model whether the run had ended (and, if it had, the run's words are
    written into the model's buffers first).

    Lanes the documentation leaves undefined (the padding lanes of a run's output words) are
    not predicted: :attr:`known` marks the predicted lanes of each buffer.
    """

    def __init__(self, cfg, depth):
        self.cfg, self.depth = cfg, depth
        self.specs = buffer_specs(cfg, depth)
        self.register_specs = register_specs(cfg, depth)
        self.lanes = vector_lanes(cfg)
        self.words = {buf: np.zeros((spec.depth, spec.lanes), dtype=np.int64)
                      for buf, spec in self.specs.items()
                      if buf not in (Buf.COEF, Buf.CHAN) and spec.view_of is None}
        # CHAN's words (write-only, held by the channel stage), as lanes.
        self.chan = np.zeros((self.specs[Buf.CHAN].depth, cfg.array.cols), dtype=np.int64) \
            if Buf.CHAN in self.specs else None
        self.known = {buf: np.ones(w.shape, dtype=bool) for buf, w in self.words.items()}
        self.coef = [0] * self.specs[Buf.COEF].depth if Buf.COEF in self.specs else []
        self.regs = {reg: 0 for reg in self.register_specs}
        self.run = None
        self.runs = []
        self.latest = {}          # buffer -> the last run that wrote it
        self.done = False
        self.last_error = 0
        # Registers reset to 0: softmax, GELU and attention constants of 0 are undefined; CHAN
        # holds zeros, which LINEAR's rule defines.
        self.untrusted = {op for op in _CONSTANTS if self._present(op)}

    # -- what the model predicts -------------------------------------------------------------

    def present(self, op):
        """Whether ``RUN op`` is accepted by this config (else ``UNIT``)."""
        return self._present(op)

    def _present(self, op):
        if op in (Op.GEMM, Op.GEMM_RAW):
            return True
        return op in _UNIT and getattr(self.cfg, _UNIT[op]).enabled

    def predictable(self, op):
        """Whether the model predicts the result of ``RUN op`` from the registers it holds."""
        return self._present(op) and op not in self.untrusted

    def trust(self, op):
        """The registers of ``op`` hold constants derived by :mod:`sim.golden` (a test set
        them): the model predicts its runs again."""
        self.untrusted.discard(op)

    def shape_fits(self, op):
        """The verdict of ``RUN op``'s shape checks on the registers held: ``None`` or
        :attr:`Error.SHAPE`."""
        return self._shape(op)

    def _shape(self, op):
        return Error.SHAPE if run_checks(self.cfg, self.depth, op, self.regs) else None

    def _result(self, op):
        """The words ``RUN op`` writes and the mask of the lanes predicted."""
        cfg, r = self.cfg, self.regs
        R, C, VL = cfg.array.rows, cfg.array.cols, self.lanes
        if op in (Op.GEMM, Op.GEMM_RAW, Op.LINEAR):
            M, K, N = r[Reg.M], r[Reg.K], r[Reg.N]
            a = layout.from_column_words(self.words[Buf.A], M, K, R)
            b = layout.from_row_words(self.words[Buf.B], K, N, C)
            c = golden.gemm(a, b)
            if op == Op.LINEAR:
                return Buf.C, *self._linear_run(c, M, N)
            if op == Op.GEMM:
                c = golden.requantize(c, r[Reg.RQ_MULT], r[Reg.RQ_SHIFT], acc_width=cfg.acc_width,
                                      mult_width=cfg.requant.mult_width,
                                      out_width=cfg.requant.out_width)
            return Buf.C, layout.tile_rows(c, R, C), layout.tile_rows_mask(M, N, R, C)
        if op == Op.ATTENTION:
            L, d = r[Reg.ATT_LEN], r[Reg.ATT_DIM]
            q = layout.from_column_words(self.words[Buf.A], L, d, R)
            k = layout.from_row_words(self.words[Buf.B], d, L, C).T
            v = layout.from_row_words(self.words[Buf.V], L, d, C)
            sm = cfg.attention_softmax
            consts = golden.AttentionConstants(
                golden.SoftmaxConstants(sm.variant, **{n: r[ATTENTION_REGS[n]]
                                                       for n in sm.constant_widths}),
                r[Reg.ATT_MULT], r[Reg.ATT_SHIFT])
            o = golden.attention_from_constants(q[None], k[None], v[None], consts,
                                                causal=bool(r[Reg.ATT_CAUSAL]),
                                                keys=r[Reg.ATT_KEYS] or None, cfg=cfg)[0]
            return Buf.C, layout.tile_rows(o, R, C), layout.tile_rows_mask(L, d, R, C)
        unit = getattr(cfg, _UNIT[op])
        length, rows = r[Reg.ROW_LEN], r[Reg.ROWS]
        if op == Op.GELU and r.get(Reg.GELU_IN_C):
            # Over C: each lane of C's ROWS words saturated to in_width, the results over them.
            x = golden.saturate(self.words[Buf.C][:rows], unit.in_width)
            return Buf.C, self._gelu(x, unit), self.known[Buf.C][:rows].copy()
        x = layout.from_beats(self.words[Buf.X], rows, length, VL)
        if op == Op.RESIDUAL:       # b: the second half of X
            n = rows * -(-length // VL)
            x = np.stack([x, layout.from_beats(self.words[Buf.X][n:], rows, length, VL)])
        # A unit reads the low in_width bits of each X lane (two's complement).
        x = _wrap(x, unit.in_width)
        if op == Op.SOFTMAX:
            k = golden.SoftmaxConstants(unit.variant, **{n: r[SOFTMAX_REGS[n]]
                                                         for n in unit.constant_widths})
            y = golden.softmax_from_constants(x, k, unit)
        elif op == Op.GELU:
            y = self._gelu(x, unit)
        elif op == Op.RESIDUAL:
            y = ops.residual_add(x[0], x[1], *(r[reg] for reg in RESIDUAL_REGS.values()),
                                 in_width=unit.in_width, mult_width=unit.mult_width,
                                 out_width=unit.out_width)
        else:
            gamma, beta = layout.from_coef_words(self.coef, length, unit)
            y = golden.layernorm_from_integers(x, gamma, beta, unit)
        # RESIDUAL with RES_TO_X writes over a, X's first half, instead of Y.
        out = Buf.X if op == Op.RESIDUAL and r.get(Reg.RES_TO_X) else Buf.Y
        return out, layout.beats(y, VL), layout.beats_mask(rows, length, VL)

    def _gelu(self, x, unit):
        """GELU of integers ``x`` with the constants held in the ``GELU_*`` registers."""
        k = golden.IBertGeluConstants if unit.variant == "ibert" else golden.ShiftGeluConstants
        fields = {f.name for f in dataclasses.fields(k)}
        k = k(scale=None, y_scale=None, **{n: self.regs[reg] for n, reg in GELU_REGS.items()
                                            if n in fields})
        return golden.gelu_from_constants(x, k, unit)

    def _linear_run(self, acc, M, N):
        """The words and mask of RUN LINEAR on exact accumulators ``acc`` (M, N), in the
        ``LIN_MODE`` held (:class:`hw.isa.LinMode`): shifted by ``in_width`` with SHIFT, C's
        words at the addresses written added with ACCUMULATE (a lane is predicted where C's
        was), the sum
        wrapping at the engine's accumulator width; RAW writes it (C's lanes hold its low
        ``acc_width`` bits), else the bias and requantization follow."""
        cfg, R, C = self.cfg, self.cfg.array.rows, self.cfg.array.cols
        mode = LinMode(self.regs.get(Reg.LIN_MODE, 0))
        words, mask = layout.tile_rows(acc, R, C), layout.tile_rows_mask(M, N, R, C)
        eacc = engine_config(cfg).acc_width
        if LinMode.SHIFT in mode:
            words = _wrap(words << cfg.array.in_width, eacc)
        if LinMode.ACCUMULATE in mode:
            n = len(words)
            words = _wrap(words + self.words[Buf.C][:n], eacc)
            mask = mask & self.known[Buf.C][:n]
        if LinMode.RAW in mode:
            return _wrap(words, cfg.acc_width), mask
        acc = layout.from_tile_rows(np.where(mask, words, 0), M, N, R, C)
        return layout.tile_rows(self._linear(acc, N), R, C), mask

    def _linear(self, acc, N):
        """LINEAR's rule on exact accumulators ``acc`` (M, N): the CHAN buffer's biases added,
        its multipliers and shifts applied per channel (each lane's low bits, as
        :class:`hw.channels.ChannelStage` reads them)."""
        cfg, C = self.cfg, self.cfg.array.cols
        mw = cfg.requant.mult_width
        bias, m, s = layout.from_channel_words(self.chan, N, C, channel_tiles(cfg))
        bias = _wrap(bias, cfg.acc_width)     # the low acc_width bits of a bias lane
        m, s = m & ((1 << mw) - 1), s & ((1 << channel_shift_width(cfg)) - 1)
        return ops.requantize_channels(acc + bias, m, s, in_width=requant_width(cfg),
                                       mult_width=mw, out_width=cfg.requant.out_width)

    # -- the documented checks -----------------------------------------------------------------

    def _decide(self, opcode, payload, running):
        """The outcome of one command on a top that is (``running``) or is not running."""
        n = len(payload)
        try:
            command = Command(opcode)
        except ValueError:
            return _Outcome(Error.OPCODE)
        if command == Command.STATUS:
            if n:
                return _Outcome(Error.LENGTH)
            flags = int(running) | int(self.done and not running) << 1
            return _Outcome(Error.OK, bytes([flags, self.last_error]), apply=self._clear_error)
        if command == Command.RUN:
            return self._decide_run(payload, running)
        if command == Command.SET_REG:
            if not 2 <= n <= 9:
                return _Outcome(Error.LENGTH)
            try:
                reg = Reg(payload[0])
            except ValueError:
                return _Outcome(Error.REGISTER)
            if reg not in self.register_specs:
                return _Outcome(Error.REGISTER)
            if running:
                return _Outcome(Error.BUSY)
            value = int.from_bytes(payload[1:], "little")
            if value > self.register_specs[reg][1]:
                return _Outcome(Error.VALUE)
            return _Outcome(Error.OK, apply=lambda: self._set_reg(reg, value))
        return self._decide_buffer(command, payload, running)

    def _decide_buffer(self, command, payload, running):
        if len(payload) < 5 or (command == Command.READ_BUFFER and len(payload) != 5):
            return _Outcome(Error.LENGTH)
        addr = int.from_bytes(payload[1:3], "little")
        count = int.from_bytes(payload[3:5], "little")
        try:
            buf = Buf(payload[0])
        except ValueError:
            return _Outcome(Error.BUFFER)
        spec = self.specs.get(buf)
        if spec is None or not (spec.readable if command == Command.READ_BUFFER
                                else spec.writable):
            return _Outcome(Error.BUFFER)
        if running:
            return _Outcome(Error.BUSY)
        if command == Command.READ_BUFFER:
            if addr + count > spec.depth or count * spec.nbytes > 0xffff:
                return _Outcome(Error.RANGE)
            return _Outcome(Error.OK, read=(buf, addr, count))
        if len(payload) != 5 + count * spec.nbytes:
            return _Outcome(Error.LENGTH)
        if addr + count > spec.depth:
            return _Outcome(Error.RANGE)
        return _Outcome(Error.OK, apply=lambda: self._write(buf, addr, payload[5:]))

    def _decide_run(self, payload, running):
        if len(payload) != 1:
            return _Outcome(Error.LENGTH)
        try:
            op = Op(payload[0])
        except ValueError:
            return _Outcome(Error.UNIT)
        if not self._present(op):
            return _Outcome(Error.UNIT)
        if running:
            return _Outcome(Error.BUSY)
        bad = self._shape(op)
        if bad is not None:
            return _Outcome(bad)
        return _Outcome(Error.OK, apply=lambda: self._launch(op))

    # -- state changes -------------------------------------------------------------------------

    def _clear_error(self):
        self.last_error = 0

    def _set_reg(self, reg, value):
        self.regs[reg] = value
        self.untrusted |= {op for op, regs in _CONSTANTS.items()
                           if reg in regs and self._present(op)}

    def _write(self, buf, addr, raw):
        spec = self.specs[buf]
        if buf == Buf.CHAN:
            words = layout.unpack_words(raw, spec)
            self.chan[addr:addr + len(words)] = words
            self.untrusted |= {op for op, b in _CONSTANT_BUFFERS.items() if b == buf}
            return
        if buf == Buf.COEF:
            for i in range(len(raw) // spec.nbytes):
                self.coef[addr + i] = int.from_bytes(raw[i * spec.nbytes:(i + 1) * spec.nbytes],
                                                     "little")
            return
        words = layout.unpack_words(raw, spec)       # a narrow view's lanes: sign-extended
        stored = spec.view_of if spec.view_of is not None else buf
        self.words[stored][addr:addr + len(words)] = words
        self.known[stored][addr:addr + len(words)] = True

    def _launch(self, op):
        if op in self.untrusted:
            raise ModelMismatch(f"RUN {op.name} was accepted, but the model cannot predict it "
                                f"(its constants were set at random); the test must not send it")
        buf, words, mask = self._result(op)
        self.run = ModelRun(op, buf, words, mask)
        self.runs.append(self.run)
        self.done = False

    def finish(self):
        """The run in flight has ended: its words are in the buffers."""
        run = self.run
        n = len(run.words)
        self.words[run.out_buf][:n] = np.where(run.mask, run.words, self.words[run.out_buf][:n])
        self.known[run.out_buf][:n] = run.mask
        self.latest[run.out_buf] = run
        self.run = None
        self.done = True

    # -- checking responses --------------------------------------------------------------------

    def _matches(self, outcome, status, data):
        if status != outcome.status.value:
            return False
        if outcome.read is None:
            return data == outcome.payload
        buf, addr, count = outcome.read
        spec = self.specs[buf]
        if len(data) != count * spec.nbytes:
            return False
        got = layout.unpack_words(data, spec)
        want, known = self.readable_words(buf, addr, count)
        return np.array_equal(got[known], want[known])

    def observe(self, opcode, payload, status, data):
        """Check the response ``(status, data)`` to command ``opcode, payload`` and apply what
        the command changed; returns the status as an :class:`Error`."""
        payload, data = bytes(payload), bytes(data)
        if self.run is not None:
            busy = self._decide(opcode, payload, running=True)
            if self._matches(busy, status, data):
                if busy.status == Error.BUSY:
                    self.run.refused += 1
                return self._apply(busy)
            self.finish()
        outcome = self._decide(opcode, payload, running=False)
        if not self._matches(outcome, status, data):
            raise ModelMismatch(
                f"command {opcode:#04x} {payload[:12].hex()}{'...' if len(payload) > 12 else ''}"
                f" answered {_name(status)} {data[:16].hex()}, the model predicts "
                f"{outcome.status.name} {outcome.payload.hex()}" + self._read_diff(outcome, data))
        return self._apply(outcome)

    def _read_diff(self, outcome, data):
        """Where a READ_BUFFER's words differ from the model's, for the mismatch message."""
        if outcome.read is None:
            return ""
        buf, addr, count = outcome.read
        spec = self.specs[buf]
        if len(data) != count * spec.nbytes:
            return f" ({len(data)} bytes, {count} words of {buf.name} expected)"
        got = layout.unpack_words(data, spec)
        want, known = self.readable_words(buf, addr, count)
        bad = np.argwhere(known & (got != want))
        w, lane = bad[0]
        return (f" ({buf.name} word {addr + w} lane {lane}: {got[w, lane]}, the model "
                f"{want[w, lane]}; {len(bad)} lanes differ)")

    def readable_words(self, buf, addr, count):
        """What READ_BUFFER of ``count`` words of ``buf`` at ``addr`` answers, and which of its
        lanes the model predicts: ``(words, known)``; a narrow view's are its buffer's words,
        each lane saturated to the view's ``elem_width`` bits."""
        spec = self.specs[buf]
        stored = spec.view_of if spec.view_of is not None else buf
        words = self.words[stored][addr:addr + count]
        if spec.view_of is not None:
            words = golden.saturate(words, spec.elem_width)
        return words, self.known[stored][addr:addr + count]

    def _apply(self, outcome):
        if outcome.apply is not None:
            outcome.apply()
        if outcome.status != Error.OK:
            self.last_error = outcome.status.value
        return outcome.status

    def check_state(self, words, registers):
        """Compare the top's state, read from the simulation (``words``: buffer -> array of
        words, ``registers``: register -> value; each may be partial, or empty when the buffers
        were read back through the model), with the model's: every predicted lane and every
        register given. The top must be idle. Marks the last run of each buffer (whose words
        are still in place) as checked."""
        if self.run is not None:
            raise ModelMismatch("the state is compared while the model still sees a run in "
                                "flight")
        for buf, got in words.items():
            known = self.known[buf]
            bad = np.argwhere(known & (got != self.words[buf]))
            if len(bad):
                w, lane = bad[0]
                raise ModelMismatch(
                    f"buffer {buf.name} word {w} lane {lane} holds {got[w, lane]}, the model "
                    f"{self.words[buf][w, lane]} ({len(bad)} lanes differ)")
        for reg, value in registers.items():
            if value != self.regs[reg]:
                raise ModelMismatch(f"register {reg.name} holds {value}, the model "
                                    f"{self.regs[reg]}")
        for run in self.latest.values():
            run.checked = True


def _wrap(x, width):
    """``x`` in ``width``-bit two's complement (its low ``width`` bits, signed)."""
    half = 1 << (width - 1)
    return ((x + half) & ((1 << width) - 1)) - half


def _name(status):
    try:
        return Error(status).name
    except ValueError:
        return f"status {status:#04x}"
