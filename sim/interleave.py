"""Runs of every operation with random commands, valid and invalid, sent while they run: the
property that no command, accepted or refused, changes a running operation's result."""

import dataclasses

import numpy as np

from hw.isa import (
    ATTENTION_REGS,
    RESIDUAL_REGS,
    SOFTMAX_REGS,
    Buf,
    Command,
    Op,
    Reg,
    channel_tiles,
    gelu_registers,
)

from . import golden, layout, ops
from .portmodel import CommandPortModel

__all__ = ["InterleaveStats", "Interleaver"]


@dataclasses.dataclass
class InterleaveStats:
    """What an :class:`Interleaver` covered."""

    commands: int = 0         #: commands sent, set-up and polls included
    random: int = 0           #: random commands among them
    runs: int = 0             #: runs the top accepted (target runs and random ones)
    exposed: int = 0          #: runs during which at least one command was refused BUSY
    exposed_checked: int = 0  #: ... whose result was then compared with the model
    by_status: dict = dataclasses.field(default_factory=dict)   #: status name -> count

    def __str__(self):
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items()))
        return (f"{self.commands} commands ({self.random} random: {statuses}); {self.runs} runs, "
                f"{self.exposed} exposed to refused commands, {self.exposed_checked} of them "
                f"checked")


class Interleaver:
    """Drives a top through ``client`` (an object with ``raw(opcode, payload) -> (status,
    payload)`` and ``idle(cycles)``, as :class:`boards.simtop.SimTop`), checking every response
    against a :class:`CommandPortModel`. A client with ``state() -> (words, registers)`` has
    its whole state compared with the model after each run; without it, every buffer is read
    back through ``READ_BUFFER`` instead (the registers then show only through results).

    :meth:`target_run` sets up one run of an op with random operands and constants derived by
    :mod:`sim.golden`, starts it, sends random commands with random gaps while it runs, waits
    a random time, polls ``STATUS`` until the top is idle, reads the result back, and compares
    every buffer word and every register with the model.
    """

    def __init__(self, client, cfg, depth, rng, *, commands=10, max_gap=8, max_wait=400):
        self.client, self.cfg, self.depth, self.rng = client, cfg, depth, rng
        self.model = CommandPortModel(cfg, depth)
        self.commands, self.max_gap, self.max_wait = commands, max_gap, max_wait
        self.stats = InterleaveStats()

    # -- sending ---------------------------------------------------------------------------------

    def send(self, opcode, payload=b"", *, random=False):
        opcode = opcode.value if hasattr(opcode, "value") else opcode
        status, data = self.client.raw(opcode, bytes(payload))
        code = self.model.observe(opcode, payload, status, data)
        self.stats.commands += 1
        if random:
            self.stats.random += 1
            self.stats.by_status[code.name] = self.stats.by_status.get(code.name, 0) + 1
        return code

    def _write(self, buf, words):
        spec = self.model.specs[buf]
        raw = layout.pack_words(words, spec)
        self.send(Command.WRITE_BUFFER, bytes([buf.value, 0, 0]) +
                  len(words).to_bytes(2, "little") + raw)

    def _set(self, reg, value):
        nbytes = max(1, -(-int(value).bit_length() // 8))
        self.send(Command.SET_REG, bytes([reg.value]) + int(value).to_bytes(nbytes, "little"))

    def _junk(self, buf, n):
        """``n`` words of random lanes across the buffer's whole element range."""
        spec = self.model.specs[buf]
        half = 1 << (spec.elem_width - 1)
        return self.rng.integers(-half, half, (n, spec.lanes))

    # -- target runs -----------------------------------------------------------------------------

    def _ceil(self, a, b):
        return -(-a // b)

    def _setup_gemm(self, op):
        cfg, rng, depth = self.cfg, self.rng, self.depth
        R, C = cfg.array.rows, cfg.array.cols
        while True:
            M, N = (int(rng.integers(1, 3 * x + 1)) for x in (R, C))
            K = int(rng.integers(1, min(cfg.gemm.max_k, depth) + 1))
            M, N = min(M, cfg.gemm.max_m), min(N, cfg.gemm.max_n)
            if max(self._ceil(M, R) * K, self._ceil(N, C) * K, M * self._ceil(N, C)) <= depth:
                break
        # Operands in the documented order, padding lanes random (the engine ignores them).
        pad_a, pad_b = (int(v) for v in rng.integers(-128, 128, 2))
        self._write(Buf.A, layout.column_words(rng.integers(-128, 128, (M, K)), R, pad=pad_a))
        self._write(Buf.B, layout.row_words(rng.integers(-128, 128, (K, N)), C, pad=pad_b))
        m, s = golden.quantize_multiplier(rng.uniform(0.2, 4) / (K * 128 * 16),
                                          mult_width=cfg.requant.mult_width,
                                          max_shift=cfg.acc_width + cfg.requant.mult_width - 1)
        for reg, v in ((Reg.M, M), (Reg.K, K), (Reg.N, N), (Reg.RQ_MULT, m), (Reg.RQ_SHIFT, s)):
            self._set(reg, v)
        if op == Op.LINEAR:
            # Per-channel constants within sim.ops.linear's ranges: biases that keep the sums
            # within acc_width, multipliers and shifts for random output scales.
            room = (1 << (cfg.acc_width - 1)) - 1 - (K << 14)
            bias = rng.integers(-room, room + 1, N)
            mult, shift = ops.channel_constants(
                rng.uniform(0.2, 4, N) / (K * 128 * 16), mult_width=cfg.requant.mult_width,
                max_shift=cfg.acc_width + cfg.requant.mult_width - 1)
            self._write(Buf.CHAN, layout.channel_words(bias, mult, shift, C, channel_tiles(cfg)))

    def _setup_residual(self, op):
        cfg, rng, VL = self.cfg, self.rng, self.model.lanes
        unit = cfg.residual
        limit = (self.depth // 2) * VL
        length = int(rng.integers(max(1, limit // 2), limit + 1))
        rows = int(rng.integers(1, (self.depth // 2) // self._ceil(length, VL) + 1))
        half = 1 << (unit.in_width - 1)
        a, b = (rng.integers(-half, half, (rows, length)) for _ in range(2))
        self._write(Buf.X, layout.residual_words(a, b, VL))
        consts = ops.residual_constants(*rng.uniform(0.01, 1, 3), mult_width=unit.mult_width)
        for reg, value in zip(RESIDUAL_REGS.values(), consts, strict=True):
            self._set(reg, value)
        self._set(Reg.ROW_LEN, length)
        self._set(Reg.ROWS, rows)

    def _setup_rows(self, op):
        cfg, rng, VL = self.cfg, self.rng, self.model.lanes
        if op == Op.GELU and Reg.GELU_IN_C in self.model.register_specs:
            over_c = bool(rng.random() < 0.5)
            self._set(Reg.GELU_IN_C, int(over_c))
            if over_c:
                return self._setup_gelu_over_c()
        unit = getattr(cfg, {Op.SOFTMAX: "softmax", Op.GELU: "gelu",
                             Op.LAYERNORM: "layernorm"}[op])
        # Mostly long runs, so that commands arrive while they run; sometimes one beat.
        limit = min(unit.max_len if op != Op.GELU else self.depth * VL, self.depth * VL)
        length = int(rng.integers(1, limit + 1)) if rng.random() < 0.3 else \
            int(rng.integers(max(1, limit // 2), limit + 1))
        fit = self.depth // self._ceil(length, VL)
        rows = int(rng.integers(max(1, fit // 2), fit + 1))
        half = 1 << (unit.in_width - 1)
        if op == Op.SOFTMAX:
            x = rng.normal(0, half / 8, (rows, length)).round().clip(-half, half - 1)
        else:
            x = rng.integers(-half, half, (rows, length))
        self._write(Buf.X, layout.beats(x, VL, pad=int(rng.integers(-half, half))))
        if op == Op.SOFTMAX:
            k = golden.softmax_constants(rng.uniform(2e-4, 2e-2), unit)
            for name, reg in SOFTMAX_REGS.items():
                self._set(reg, getattr(k, name))
        elif op == Op.GELU:
            self._set_gelu_constants(unit)
        else:
            gw, bw = unit.gamma_width, unit.beta_width
            gamma = rng.integers(-(1 << (gw - 1)), 1 << (gw - 1), length)
            beta = rng.integers(-(1 << (bw - 1)), 1 << (bw - 1), length)
            spec = self.model.specs[Buf.COEF]
            raw = b"".join(w.to_bytes(spec.nbytes, "little")
                           for w in layout.coef_words(gamma, beta, unit))
            n = len(raw) // spec.nbytes
            self.send(Command.WRITE_BUFFER, bytes([Buf.COEF.value, 0, 0]) +
                      n.to_bytes(2, "little") + raw)
        self._set(Reg.ROW_LEN, length)
        self._set(Reg.ROWS, rows)

    def _setup_gelu_over_c(self):
        """RUN GELU over C (``GELU_IN_C``): random words of C, some lanes beyond GELU's input
        width (saturated), a row a C word."""
        cfg, rng, unit = self.cfg, self.rng, self.cfg.gelu
        rows = int(rng.integers(max(1, self.depth // 2), self.depth + 1))
        spec, half = self.model.specs[Buf.C], 1 << (unit.in_width - 1)
        words = rng.integers(-half, half, (self.depth, spec.lanes))
        wide = rng.random(words.shape) < 0.1
        words[wide] = rng.integers(-(1 << (spec.elem_width - 1)), 1 << (spec.elem_width - 1),
                                   wide.sum())
        self._write(Buf.C, words)
        self._set_gelu_constants(unit)
        self._set(Reg.ROW_LEN, cfg.array.cols)
        self._set(Reg.ROWS, rows)

    def _set_gelu_constants(self, unit):
        lo, hi = golden.gelu_scale_range(unit)
        k = golden.gelu_constants(float(np.exp(self.rng.uniform(np.log(lo * 1.01),
                                                                np.log(hi * 0.99)))), unit)
        for reg, value in gelu_registers(k).items():
            self._set(reg, value)

    def _setup_attention(self, op):
        cfg, rng, depth = self.cfg, self.rng, self.depth
        R, C, at = cfg.array.rows, cfg.array.cols, cfg.attention
        while True:
            L = int(rng.integers(1, at.max_seq_len + 1))
            d = int(rng.integers(1, at.max_head_dim + 1))
            if max(self._ceil(L, R) * d, self._ceil(L, C) * d, self._ceil(d, C) * L) <= depth:
                break
        q, k, v = (rng.integers(-128, 128, (L, d)) for _ in range(3))
        self._write(Buf.A, layout.column_words(q, R, pad=int(rng.integers(-128, 128))))
        self._write(Buf.B, layout.row_words(k.T, C, pad=int(rng.integers(-128, 128))))
        self._write(Buf.V, layout.row_words(v, C, pad=int(rng.integers(-128, 128))))
        consts = golden.attention_constants(*rng.uniform(0.01, 0.1, 4), d, cfg)
        regs = {Reg.ATT_LEN: L, Reg.ATT_DIM: d, Reg.ATT_CAUSAL: int(rng.integers(0, 2)),
                Reg.ATT_KEYS: int(rng.integers(0, L + 1)), Reg.ATT_MULT: consts.multiplier,
                Reg.ATT_SHIFT: consts.shift}
        regs.update({reg: getattr(consts.softmax, name) for name, reg in ATTENTION_REGS.items()})
        for reg, value in regs.items():
            self._set(reg, value)

    def target_run(self, op):
        """One run of ``op`` with random commands sent while it runs; checks everything."""
        setup = {Op.GEMM: self._setup_gemm, Op.GEMM_RAW: self._setup_gemm,
                 Op.LINEAR: self._setup_gemm, Op.ATTENTION: self._setup_attention,
                 Op.RESIDUAL: self._setup_residual}.get(op, self._setup_rows)
        setup(op)
        self.model.trust(op)
        assert self.send(Command.RUN, bytes([op.value])).name == "OK", f"RUN {op.name} refused"
        for i in range(self.commands):
            if i:     # the first at once, while even a short run is still in flight
                self.client.idle(int(self.rng.integers(0, self.max_gap + 1)))
            self.random_command()
        self.client.idle(int(self.rng.integers(0, self.max_wait + 1)))
        for _ in range(10_000):
            if self.model.run is None:
                break
            self.send(Command.STATUS)
        else:
            raise TimeoutError(f"RUN {op.name} still busy after 10,000 STATUS polls")
        self._read_back()
        if hasattr(self.client, "state"):
            self.model.check_state(*self.client.state())
        else:
            self._read_all()
            self.model.check_state({}, {})
        self.stats.runs = len(self.model.runs)
        self.stats.exposed = sum(r.refused > 0 for r in self.model.runs)
        self.stats.exposed_checked = sum(r.refused > 0 and r.checked for r in self.model.runs)

    def _read(self, buf, count):
        spec = self.model.specs[buf]
        per = max(1, 0xffff // spec.nbytes)
        for a0 in range(0, count, per):
            n = min(per, count - a0)
            self.send(Command.READ_BUFFER, bytes([buf.value]) + a0.to_bytes(2, "little") +
                      n.to_bytes(2, "little"))

    def _read_back(self):
        """Read each run's output region through READ_BUFFER (the documented way)."""
        for buf, run in self.model.latest.items():
            self._read(buf, len(run.words))

    def _read_all(self):
        """Read every readable buffer whole through READ_BUFFER."""
        for buf, spec in self.model.specs.items():
            if spec.readable:
                self._read(buf, spec.depth)

    # -- random commands -------------------------------------------------------------------------

    def random_command(self):
        """One random command, valid or not; its response is checked by the model."""
        kind = self.rng.choice(["status", "opcode", "write", "read", "set", "run"],
                               p=[0.1, 0.08, 0.17, 0.2, 0.25, 0.2])
        self.send(*getattr(self, f"_random_{kind}")(), random=True)

    def _random_status(self):
        return Command.STATUS, bytes(int(self.rng.integers(0, 2)) * [0])

    def _random_opcode(self):
        opcode = int(self.rng.choice([0x00, 0x06, 0x7e, 0xff]))     # 0x06: no such command
        return opcode, self.rng.integers(0, 256, int(self.rng.integers(0, 7))).astype(np.uint8)

    def _random_buf(self):
        bufs = [b.value for b in Buf] + [0x40, 0x80]
        return int(self.rng.choice(bufs))

    def _random_addr(self):
        return int(self.rng.integers(0, self.depth + 2))

    def _random_write(self):
        rng = self.rng
        buf = self._random_buf()
        spec = self.model.specs.get(Buf(buf)) if buf in {b.value for b in Buf} else None
        nbytes = spec.nbytes if spec is not None else 2
        count = int(rng.integers(0, 4))
        addr = self._random_addr() if rng.random() < 0.3 else int(rng.integers(0, self.depth))
        size = max(0, count * nbytes + int(rng.choice([0, 0, 0, -1, 1])))   # sometimes wrong
        body = bytes(rng.integers(0, 256, size).astype(np.uint8))
        return Command.WRITE_BUFFER, (bytes([buf]) + addr.to_bytes(2, "little") +
                                      count.to_bytes(2, "little") + body)

    def _random_read(self):
        rng = self.rng
        addr = self._random_addr() if rng.random() < 0.3 else int(rng.integers(0, self.depth))
        payload = (bytes([self._random_buf()]) + addr.to_bytes(2, "little") +
                   int(rng.integers(0, 4)).to_bytes(2, "little"))
        if rng.random() < 0.1:
            payload = payload[:int(rng.integers(0, 5))] + bytes(int(rng.integers(0, 2)))
        return Command.READ_BUFFER, payload

    def _random_set(self):
        rng = self.rng
        regs = [r.value for r in Reg] + [0x7f, 0x40]
        reg = int(rng.choice(regs))
        nbytes = int(rng.choice([1, 1, 2, 3, 8, 0, 9]))
        value = rng.integers(0, 256, nbytes).astype(np.uint8)
        if rng.random() < 0.6:      # mostly small values, which the register may accept
            value[1:] = 0
            value[:1] = rng.integers(0, 40)
        return Command.SET_REG, bytes([reg]) + bytes(value)

    def _random_run(self):
        rng = self.rng
        op = int(rng.choice([o.value for o in Op] + [0x08, 0x40]))
        if op in {o.value for o in Op} and not self.model.predictable(Op(op)) and \
                self.model.present(Op(op)):
            # The model cannot predict this op's result on the constants a random SET_REG left;
            # send it malformed instead (a refusal whatever the top's state).
            return Command.RUN, bytes([op, 0])
        return Command.RUN, bytes([op]) + bytes(int(rng.choice([0, 0, 0, 0, 1])))
