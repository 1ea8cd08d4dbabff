"""The command-port ISA of the accelerator top: opcodes, ops, buffers, registers, status codes,
and the buffer and register specs a config gives. The one home of every protocol number: the
top, the host driver, the simulation harness, the tests and the datasheet read them here."""

from dataclasses import dataclass

from amaranth.lib import enum

__all__ = [
    "Command", "Op", "Buf", "Reg", "LinMode", "Error",
    "SOFTMAX_REGS", "GELU_REGS", "gelu_registers", "ATTENTION_REGS", "RESIDUAL_REGS",
    "NONLINEAR_OPS", "ROW_OPS",
    "NARROW_VIEWS", "BufferSpec", "buffer_specs", "narrow", "register_specs", "vector_lanes",
    "gelu_port_widths", "channel_tiles", "channel_shift_width", "lin_mode_bit", "buffer_depth",
    "check_depth", "residual_to_x", "gelu_in_c",
]


class Command(enum.Enum, shape=8):
    """Opcodes of the command port (the first byte of a command)."""
    STATUS = 0x01        #: no payload; answers flags and the last error code
    WRITE_BUFFER = 0x02  #: buf, addr (2), count (2), then count words
    READ_BUFFER = 0x03   #: buf, addr (2), count (2); answers count words
    SET_REG = 0x04       #: reg, value (1 to 8 bytes, little-endian)
    RUN = 0x05           #: op (one byte, an :class:`Op`)


class Op(enum.Enum, shape=8):
    """Operations of ``RUN``. A value the config leaves out answers :attr:`Error.UNIT`."""
    GEMM = 0x00          #: C = requantize(A @ B, RQ_MULT, RQ_SHIFT), int8 in C's lanes
    GEMM_RAW = 0x01      #: C = A @ B, exact accumulators
    SOFTMAX = 0x02       #: Y = softmax(X) row by row
    GELU = 0x03          #: Y = gelu(X)
    LAYERNORM = 0x04     #: Y = layernorm(X) row by row, gamma/beta from COEF
    ATTENTION = 0x05     #: one head: C = attention(Q in A, K in B, V in V), int8 in C's lanes
    #: C = requantize_channels(A @ B + bias, multipliers, shifts), bias and constants from CHAN;
    #: with :class:`LinMode` flags in ``LIN_MODE``, C's own words added first (ACCUMULATE) and
    #: the exact sum written instead (RAW)
    LINEAR = 0x06
    #: Y = saturate(round_shift(a*RES_MULT_A + b*RES_MULT_B, RES_SHIFT)), a and b the two
    #: halves of X
    RESIDUAL = 0x07


class Buf(enum.Enum, shape=8):
    """Buffer numbers of ``WRITE_BUFFER`` / ``READ_BUFFER``.

    Attention uses A for Q (word ``b*d + j`` is ``Q[b*R : b*R+R, j]``), B for K (word ``t*d + j``
    is ``K[t*C : t*C+C, j]``), V for V and C for its int8 output, in the controller's order:
    per row block b and column tile t of d, the rows ``O[b*R + r, t*C : t*C+C]``.
    """
    A = 0      #: GEMM left operand, a word is R int8 lanes: ``A[tm*R : tm*R+R, k]`` at ``tm*K + k``
    B = 1      #: GEMM right operand, a word is C lanes: ``B[k, tn*C : tn*C+C]`` at ``tn*K + k``
    C = 2      #: GEMM or attention result, a word is C lanes of acc_width bits, in the unit's order
    X = 3      #: row input (RESIDUAL: a, then b), a word is a beat of ``lanes``, rows padded;
    #: a unit reads the low ``in_width`` bits of each lane (two's complement)
    Y = 4      #: nonlinear or residual output, same layout as X
    COEF = 5   #: LayerNorm gamma/beta, write-only, a word is one coefficient beat
    V = 6      #: attention V, a word is C int8 lanes: ``V[i, t*C : t*C+C]`` at ``t*L + i``
    #: LINEAR's per-channel constants, write-only, a word is C lanes of channels ``t*C ..
    #: t*C+C-1``: their biases at ``t``, multipliers at ``T + t``, shifts at ``2*T + t``
    #: (``T = channel_tiles(cfg)``; the low acc_width, mult_width and channel_shift_width bits
    #: of a lane are read)
    CHAN = 7
    #: C's words, each lane saturated to ``requant.out_width`` bits; read-only, a narrow view
    #: (:data:`NARROW_VIEWS`). The results that GEMM, ATTENTION and a LINEAR without RAW leave
    #: in C fit those bits; an exact sum (GEMM_RAW's, a RAW LINEAR's) is read from C itself.
    C_OUT = 8
    #: X's words in lanes of ``requant.out_width`` bits, each sign-extended into X's;
    #: write-only, a narrow view: a row op's input that fits those bits
    X_IN = 9
    #: Y's words, each lane saturated to ``requant.out_width`` bits; read-only, a narrow view:
    #: LayerNorm's or the residual add's output where it fits those bits
    Y_OUT = 10


class Reg(enum.Enum, shape=8):
    """Register numbers of ``SET_REG``; a register of a unit left out answers REGISTER."""
    M = 0x00
    K = 0x01
    N = 0x02
    ROW_LEN = 0x03
    ROWS = 0x04
    RQ_MULT = 0x05
    RQ_SHIFT = 0x06
    #: RUN LINEAR's mode, the :class:`LinMode` flags (bit 0 ACCUMULATE, bit 1 RAW, bit 2
    #: SHIFT); 0, the reset value, is the plain LINEAR
    LIN_MODE = 0x07
    SM_SHIFT_RIGHT = 0x10
    SM_SHIFT_LEFT = 0x11
    SM_DIVISOR = 0x12
    SM_OFFSET = 0x13
    SM_POLY_C = 0x14
    SM_EXP_SHIFT = 0x15
    GELU_K = 0x20
    GELU_BETA = 0x21
    GELU_C = 0x22
    GELU_N = 0x23
    GELU_ONE = 0x24
    GELU_X0 = 0x28
    GELU_ZS = 0x29
    GELU_D = 0x2a
    GELU_UMAX = 0x2b
    #: 1: RUN GELU runs over C in place instead of from X to Y: it reads ``ROWS`` words of C
    #: from word 0, each word's lanes (each saturated to ``gelu.in_width`` bits) as
    #: ``cols/lanes`` beats through the unit, and writes the results over the same words,
    #: each lane sign-extended into C's. ``ROW_LEN`` must equal the array's ``cols`` (one row a
    #: C word; otherwise SHAPE); X and Y are unchanged. A requantized LINEAR's results go
    #: through GELU without crossing the link. Present only where :func:`gelu_in_c`.
    GELU_IN_C = 0x2f
    ATT_LEN = 0x30          #: attention sequence length L
    ATT_DIM = 0x31          #: attention head dimension d
    ATT_CAUSAL = 0x32       #: 1: query i sees keys 0..i only
    ATT_MULT = 0x33         #: requantization of P V: multiplier
    ATT_SHIFT = 0x34        #: requantization of P V: shift
    #: keys every query sees (a padded sequence's length): the scores of keys ``j >= ATT_KEYS``
    #: are masked as the causal mask masks them (with ``ATT_CAUSAL`` too, query i sees keys
    #: ``0 .. min(i, ATT_KEYS - 1)``); 0 means L. Nothing is skipped: a run takes the cycles
    #: of an unmasked one. A RUN ATTENTION with ``ATT_KEYS > ATT_LEN`` answers SHAPE.
    ATT_KEYS = 0x35
    ATT_SHIFT_RIGHT = 0x38  #: the attention softmax's constants, for the score scale
    ATT_SHIFT_LEFT = 0x39
    ATT_DIVISOR = 0x3a
    ATT_OFFSET = 0x3b
    ATT_POLY_C = 0x3c
    ATT_EXP_SHIFT = 0x3d
    RES_MULT_A = 0x40       #: residual add: multiplier of a (the first half of X)
    RES_MULT_B = 0x41       #: residual add: multiplier of b (the second half of X)
    RES_SHIFT = 0x42        #: residual add: the rounding shift
    #: 1: RUN RESIDUAL writes its result over X's first half (a) instead of Y, in the same
    #: rows, so that a row op run next (LayerNorm) reads it without a round trip to the host;
    #: Y is unchanged. Present only where the result fits X's lanes
    #: (:func:`residual_to_x`).
    RES_TO_X = 0x43


class LinMode(enum.Flag, shape=3):
    """The bits of ``LIN_MODE``: how a ``RUN LINEAR`` starts and ends its sum. A run over the
    same C region with the same M and N continues the sum the run before it left there, so a
    K beyond one run (chunks) and activations wider than ``array.in_width`` (two signed
    digits, :func:`sim.ops.split_digits`) are summed on chip::

        sum[w] = (A @ B << (SHIFT ? in_width : 0)) + (C[w] if ACCUMULATE else 0)
        C[w]   = sum[w] if RAW else requantize_channels(sum[w] + bias, multipliers, shifts)

    for each word ``w`` of C in the run's order (the order the run writes, ``M*ceil(N/C)``
    words from 0), each lane of ``C[w]`` read as a signed ``acc_width``-bit integer. The shift
    is 0 or ``array.in_width``, nothing else (the high digit's weight), so a K chunk's two
    digits run one after the other with its weights held in B. Only LINEAR runs read
    ``LIN_MODE``; GEMM, GEMM_RAW and ATTENTION ignore it. The sum wraps at the
    engine's accumulator width; it is exact when every sum fits ``acc_width`` bits, which the
    host checks (:func:`sim.ops.linear_acc_width` of the whole sum; ``boards.host.Client.linear``
    refuses otherwise). The last run of a sum clears RAW (bias and requantization); 0 is a
    whole LINEAR in one run.
    """
    ACCUMULATE = 1  #: add C's word at the address the run writes (read ahead of the drain)
    RAW = 2         #: write the exact sum: no bias, no requantization
    SHIFT = 4       #: shift the run's products left by ``array.in_width`` (the high digit)


def lin_mode_bit(flag):
    """The bit of ``LIN_MODE`` that holds :class:`LinMode` flag ``flag``."""
    return flag.value.bit_length() - 1


class Error(enum.Enum, shape=8):
    """Status codes: the first byte of every response; a failed command changes nothing."""
    OK = 0x00
    OPCODE = 0x01     #: unknown opcode
    LENGTH = 0x02     #: payload length does not match the opcode (or its count)
    BUFFER = 0x03     #: unknown or left-out buffer, or one the command may not use
    RANGE = 0x04      #: addr + count beyond the buffer, or a response longer than 65535 bytes
    REGISTER = 0x05   #: unknown register, or one of a unit the config left out
    VALUE = 0x06      #: register value above the register's maximum
    UNIT = 0x07       #: RUN of an unknown op or of a unit the config left out
    SHAPE = 0x08      #: RUN with a zero shape, a shape beyond the config or beyond a buffer
    BUSY = 0x09       #: a buffer, register or RUN command while a unit runs


#: Unit register prefixes of the constant ports: golden constant field -> register.
SOFTMAX_REGS = {"shift_right": Reg.SM_SHIFT_RIGHT, "shift_left": Reg.SM_SHIFT_LEFT,
                 "divisor": Reg.SM_DIVISOR, "offset": Reg.SM_OFFSET, "poly_c": Reg.SM_POLY_C,
                 "exp_shift": Reg.SM_EXP_SHIFT}
GELU_REGS = {"k": Reg.GELU_K, "beta": Reg.GELU_BETA, "c": Reg.GELU_C, "n": Reg.GELU_N,
              "one": Reg.GELU_ONE, "x0": Reg.GELU_X0, "zs": Reg.GELU_ZS, "d": Reg.GELU_D,
              "umax": Reg.GELU_UMAX}
ATTENTION_REGS = {"shift_right": Reg.ATT_SHIFT_RIGHT, "shift_left": Reg.ATT_SHIFT_LEFT,
                   "divisor": Reg.ATT_DIVISOR, "offset": Reg.ATT_OFFSET,
                   "poly_c": Reg.ATT_POLY_C, "exp_shift": Reg.ATT_EXP_SHIFT}


def gelu_registers(k):
    """``{register: value}`` of GELU's constants ``k`` (:func:`sim.golden.gelu_constants`): the
    fields of its variant that have a register in :data:`GELU_REGS`."""
    return {reg: getattr(k, name) for name, reg in GELU_REGS.items() if hasattr(k, name)}


RESIDUAL_REGS = {"mult_a": Reg.RES_MULT_A, "mult_b": Reg.RES_MULT_B, "shift": Reg.RES_SHIFT}
NONLINEAR_OPS = {Op.SOFTMAX: "softmax", Op.GELU: "gelu", Op.LAYERNORM: "layernorm"}
#: The ops that stream X into Y, and their config sections: the nonlinear units and the
#: residual add.
ROW_OPS = {**NONLINEAR_OPS, Op.RESIDUAL: "residual"}


#: The narrow views (:class:`Buf`): view -> (its buffer, "read" or "write", the one command
#: that may use it). A view shows its buffer's words in lanes of ``requant.out_width`` bits (the
#: width of the top's requantized and residual values), so that such values cross the link in
#: those bits instead of the buffer's: a read saturates each lane to them, a write
#: sign-extends each lane into the buffer's. It exists where its buffer does, with wider lanes
#: (:func:`buffer_specs`).
NARROW_VIEWS = {Buf.C_OUT: (Buf.C, "read"), Buf.X_IN: (Buf.X, "write"),
                Buf.Y_OUT: (Buf.Y, "read")}


@dataclass(frozen=True)
class BufferSpec:
    """One buffer: ``depth`` words of ``lanes`` signed ``elem_width``-bit elements.

    On the command port a word is ``nbytes = ceil(lanes*elem_width/8)`` bytes, little-endian,
    lane 0 in the low bits (``sim.layout.pack_words``).
    """

    buf: Buf
    lanes: int
    elem_width: int
    depth: int
    readable: bool = True       #: READ_BUFFER may read it (else BUFFER)
    writable: bool = True       #: WRITE_BUFFER may write it (else BUFFER)
    #: The buffer whose words this one shows, if it is a narrow view of them (``elem_width``
    #: bits a lane, fewer than the buffer's): no memory of its own; a read saturates each of
    #: the buffer's lanes to ``elem_width`` bits, a write sign-extends each lane into them.
    view_of: Buf | None = None

    @property
    def width(self):
        return self.lanes * self.elem_width

    @property
    def nbytes(self):
        return -(-self.width // 8)


def vector_lanes(cfg):
    """Lanes of the X/Y buffers: the common ``lanes`` of the enabled nonlinear units (1 if none);
    the residual add takes as many."""
    lanes = {getattr(cfg, name).lanes for name in NONLINEAR_OPS.values()
             if getattr(cfg, name).enabled}
    if len(lanes) > 1:
        raise ValueError(f"Nonlinear unit lanes must be equal in the accelerator top, not "
                         f"{sorted(lanes)}")
    return lanes.pop() if lanes else 1


def gelu_port_widths(gcfg):
    P, F = gcfg.poly_width, gcfg.frac_width
    if gcfg.variant == "ibert":
        return {"k": (P + 1).bit_length(), "beta": P, "c": 2 * P + 1,
                "n": (2 * P + 2 - 1).bit_length(), "one": F + 1}
    return {"x0": gcfg.exp_width, "zs": (F + 2).bit_length(), "d": gcfg.den_width - 1,
            "umax": gcfg.exp_width}


def channel_tiles(cfg):
    """``T``: the column tiles of the largest N, ``ceil(gemm.max_n / C)``; CHAN holds ``3*T``
    words (biases, multipliers, shifts)."""
    return -(-cfg.gemm.max_n // cfg.array.cols)


def channel_shift_width(cfg):
    """Bits of a CHAN shift lane that the hardware reads: enough for ``acc_width +
    requant.mult_width - 1``, the largest shift :func:`sim.ops.linear` accepts."""
    return (cfg.acc_width + cfg.requant.mult_width - 1).bit_length()


def buffer_specs(cfg, depth=None):
    """The buffers of ``Accelerator(cfg, depth=depth)``: ``{Buf: BufferSpec}``, each ``depth``
    words deep (by default the config's, :func:`buffer_depth`) but COEF and CHAN.

    A, B and C always exist; X and Y when a nonlinear unit or the residual add is enabled; COEF
    with LayerNorm; V with attention (which also uses A for Q, B for K and C for its output);
    CHAN with LINEAR (its lanes as wide as the bias, ``acc_width``, or as an unsigned
    multiplier with a sign bit, whichever is wider); and the :data:`NARROW_VIEWS` of C, X and Y
    whose ``requant.out_width`` bits are fewer than their buffer's lanes.
    """
    depth = buffer_depth(cfg, depth)
    R, C, w = cfg.array.rows, cfg.array.cols, cfg.array.in_width
    specs = {
        Buf.A: BufferSpec(Buf.A, R, w, depth),
        Buf.B: BufferSpec(Buf.B, C, w, depth),
        Buf.C: BufferSpec(Buf.C, C, cfg.acc_width, depth),
    }
    units = [getattr(cfg, name) for name in ROW_OPS.values() if getattr(cfg, name).enabled]
    if units:
        vl = vector_lanes(cfg)
        specs[Buf.X] = BufferSpec(Buf.X, vl, max(u.in_width for u in units), depth)
        specs[Buf.Y] = BufferSpec(Buf.Y, vl, max(u.out_width for u in units) + 1, depth)
    if cfg.layernorm.enabled:
        ln = cfg.layernorm
        specs[Buf.COEF] = BufferSpec(Buf.COEF, ln.lanes, ln.gamma_width + ln.beta_width,
                                     -(-ln.max_len // ln.lanes), readable=False)
    if cfg.attention.enabled:
        specs[Buf.V] = BufferSpec(Buf.V, C, w, depth)
    if cfg.linear.enabled:
        elem = max(cfg.acc_width, cfg.requant.mult_width + 1, channel_shift_width(cfg) + 1)
        specs[Buf.CHAN] = BufferSpec(Buf.CHAN, C, elem, 3 * channel_tiles(cfg), readable=False)
    bits = cfg.requant.out_width
    for view, (of, way) in NARROW_VIEWS.items():
        if of in specs and bits < specs[of].elem_width:
            specs[view] = BufferSpec(view, specs[of].lanes, bits, depth,
                                     readable=way == "read", writable=way == "write",
                                     view_of=of)
    return specs


def narrow(specs, buf):
    """The narrow view of buffer ``buf`` among buffer specs ``specs`` (C_OUT of C, X_IN of X,
    Y_OUT of Y), or ``buf`` itself where the config has none."""
    return next((view for view, (of, _) in NARROW_VIEWS.items()
                 if of == buf and view in specs), buf)


def register_specs(cfg, depth=None):
    """The registers of ``Accelerator(cfg, depth=depth)``: ``{Reg: (width, max_value)}``
    (``depth`` by default the config's, :func:`buffer_depth`).

    GEMM and nonlinear shape and requantization registers always exist; ``SM_*``, ``GELU_*``,
    ``ATT_*``, ``RES_*`` and ``LIN_MODE`` only with their unit. A value above ``max_value``
    answers ``VALUE``.
    """
    depth = buffer_depth(cfg, depth)
    vl = vector_lanes(cfg)
    max_len = [getattr(cfg, n).max_len for n in ("softmax", "layernorm") if getattr(cfg, n).enabled]
    if cfg.gelu.enabled or cfg.residual.enabled:
        max_len.append(depth * vl)
    row_max = max(max_len, default=1)
    shift_max = cfg.acc_width + cfg.requant.mult_width - 1
    regs = {
        Reg.M: cfg.gemm.max_m, Reg.K: cfg.gemm.max_k, Reg.N: cfg.gemm.max_n,
        Reg.ROW_LEN: row_max, Reg.ROWS: depth,
        Reg.RQ_MULT: (1 << cfg.requant.mult_width) - 1, Reg.RQ_SHIFT: shift_max,
    }
    if cfg.softmax.enabled:
        for name, width in cfg.softmax.constant_widths.items():
            regs[SOFTMAX_REGS[name]] = (1 << width) - 1
    if cfg.gelu.enabled:
        for name, width in gelu_port_widths(cfg.gelu).items():
            regs[GELU_REGS[name]] = (1 << width) - 1
    if cfg.attention.enabled:
        at, mult_width = cfg.attention, cfg.requant.mult_width
        regs.update({
            Reg.ATT_LEN: at.max_seq_len, Reg.ATT_DIM: at.max_head_dim, Reg.ATT_CAUSAL: 1,
            Reg.ATT_KEYS: at.max_seq_len,
            Reg.ATT_MULT: (1 << mult_width) - 1,
            Reg.ATT_SHIFT: cfg.attention_gemm.acc_width + mult_width - 1,
        })
        for name, width in cfg.attention_softmax.constant_widths.items():
            regs[ATTENTION_REGS[name]] = (1 << width) - 1
    if cfg.linear.enabled:
        regs[Reg.LIN_MODE] = sum(flag.value for flag in LinMode)
    if cfg.residual.enabled:
        res = cfg.residual
        regs.update({Reg.RES_MULT_A: (1 << res.mult_width) - 1,
                     Reg.RES_MULT_B: (1 << res.mult_width) - 1, Reg.RES_SHIFT: res.max_shift})
        if residual_to_x(cfg):
            regs[Reg.RES_TO_X] = 1
    if gelu_in_c(cfg):
        regs[Reg.GELU_IN_C] = 1
    return {reg: (max(1, hi.bit_length()), hi) for reg, hi in regs.items()}


def gelu_in_c(cfg):
    """Whether RUN GELU can run over C in place (``GELU_IN_C``): GELU and LINEAR (whose reader
    of C it takes) are in the config, the X/Y lanes divide the array's columns (a C word is
    whole beats) and GELU's ``out_width``-bit result fits C's lanes exactly."""
    return (cfg.gelu.enabled and cfg.linear.enabled
            and cfg.array.cols % vector_lanes(cfg) == 0
            and cfg.gelu.out_width <= buffer_specs(cfg)[Buf.C].elem_width)


def residual_to_x(cfg):
    """Whether RUN RESIDUAL can write its result into X (``RES_TO_X``): the residual add is in
    the config and its ``out_width``-bit result fits X's lanes exactly, so that no value is
    cut."""
    return (cfg.residual.enabled
            and cfg.residual.out_width <= buffer_specs(cfg)[Buf.X].elem_width)


def buffer_depth(cfg, depth=None):
    """The words per buffer of a top of ``cfg``: ``depth`` if given (checked by
    :func:`check_depth`: a test top may have smaller buffers than its config's), else the
    config's ``cfg.buffers.depth``."""
    if depth is None:
        return cfg.buffers.depth
    check_depth(depth)
    return depth


def check_depth(depth):
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"Buffer depth must be an integer, not {depth!r}")
    if not 1 <= depth <= 1 << 16:
        raise ValueError(f"Buffer depth must be an integer from 1 to 65536, not {depth}")
