"""The softmax unit: its ports, buffers and registered constants; the passes are built by the
sibling modules."""

from types import SimpleNamespace

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import SoftmaxConfig
from ..requant import rounding_half
from .divider import build_divider
from .exp_datapath import build_exp_datapath
from .exp_issue import build_exp_issue
from .load import build_load_pass
from .normalize_datapath import build_normalize_datapath
from .normalize_issue import build_normalize_issue

__all__ = ["Softmax"]


class Softmax(wiring.Component):
    """Softmax of rows of wide signed scores, ``lanes`` elements per beat, bit-exact with
    :func:`sim.golden.softmax`.

    A row of ``length`` elements arrives as ``ceil(length/lanes)`` beats on ``i`` (the lanes
    past the end of the last beat are ignored) and leaves as as many beats on ``o`` (lanes past
    the end are 0). Rows go through three passes, each over a double or triple buffer, so three
    consecutive rows are in flight at once:

    1. **load**: beats are written to a row buffer (two banks, :class:`~amaranth.lib.memory.Memory`
       of ``2*ceil(max_len/lanes)`` beats) while the row max is tracked (a tree of comparisons
       over the lanes, then a running max; the max is stored a cycle after the last beat).
    2. **exp**: the buffer is read back one beat per cycle through a 14-stage pipeline that
       computes ``e`` (below); ``e`` goes to a second buffer (three banks) and into the row sum.
       The pipeline carries rows back to back. A radix-4 shift-subtract divider then forms the
       row's normalizer ``f = 2**K // sum(e)`` in ``G = ceil((out_width + 7)/2)`` cycles (two
       quotient bits a cycle, from trial subtractions of ``d``, ``2d`` and ``3d``) while the next
       row streams.
    3. **normalize**: ``e`` is read back, registered twice, multiplied by ``f``, rounded,
       saturated and sent (a 6-stage pipeline, counting the read, whose last stage is a
       :class:`~hw.skid.SkidBuffer` on ``o``). It advances while the slice's skid register is
       empty: a beat that meets a stalled ``o`` waits there, and the pipeline stops until ``o``
       has taken its beat, so ``o.ready`` drives only the slice.

    Every pipeline stage holds at most one carry chain or one level of shifting: block RAM
    outputs are registered before use, the rescale is one right shift of ``x << 14`` by
    ``14 + sr - sl`` (for "ibert", split into shifts by 8s and by 1s over two stages; "shift"
    needs the second stage for its product), saturation is an OR of a flag found by a
    comparison beside the subtraction before it, the clamp at ``30*D`` is a flag found beside
    the first division step, the final shift is split into shifts by 8s and by 1s, and the
    constants derived from the ports (``2**(sr-1)``, ``30*D``, shift amounts, the saturation
    threshold) are registered.

    The hand-offs between the passes are decided by counts of rows between two events (each
    buffer is a ring of banks taken and released in row order), and every start condition,
    like ``i.ready``, is a register computed a cycle ahead: a pass starts a row on an AND of a
    few registers, so no chain of conditions runs from one pass through the next.

    The integer algorithm, per element (``x`` is the distance from the row max, all constants
    come from :func:`sim.golden.softmax_constants`, which documents their ranges)::

        x' = min(((x + 2**(sr-1)) >> sr) << sl, 2**19 - 1)
        y  = min(x' (ibert) | x' + (x'>>1) - (x'>>4) (shift), 30*D)   # 30*D = (D<<5) - (D<<1)
        z, r = divmod(y, D)                                           # 5 compare-subtract stages
        e  = ((B - r)**2 + C (ibert) | B - r (shift)) >> (z + se)     # 16 bits
        p  = min((e*f + 2**(K-out_width-1)) >> (K-out_width), 2**out_width - 1)

    with ``K = out_width + 20``. Multipliers: the square ``(B - r)**2`` (15 x 15 bits, "ibert"
    only) and the normalization ``e*f`` (16 x ``out_width + 7`` bits), one each per lane: that is
    ``2*lanes`` general multipliers for "ibert" and ``lanes`` for "shift". Every other constant
    product is a shift and an add; the per-row division is iterative.

    Parameters
    ----------
    cfg : SoftmaxConfig
        ``lanes``, ``max_len``, ``in_width``, ``out_width`` and ``variant``.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(in_width), lanes)))
        Scores, row after row.
    o : Out(stream.Signature(ArrayLayout(unsigned(out_width), lanes)))
        Probabilities with scale ``2**-out_width``; 1.0 saturates to ``2**out_width - 1``.
    length : In(range(max_len + 1))
        Row length, 1 to ``max_len``. Held constant while rows are in flight, and set at least
        a cycle before a row's first beat (it is compared into registers; ``i.ready`` is 0 in
        the first cycle after reset).
    shift_right, shift_left, divisor, offset, poly_c, exp_shift : In(unsigned(...))
        The fields of :class:`sim.golden.SoftmaxConstants` (``sr``, ``sl``, ``D``, ``B``, ``C``,
        ``se`` above), widths from ``cfg.constant_widths``. Held constant while rows are in
        flight (set no later than a row's first beat: they are registered once inside); they are
        the only place the input scale enters the hardware.

    Latency: with ``N = ceil(length/lanes)`` beats and nothing stalled, a lone row takes
    ``3N + G + 24 + M`` cycles from its first input transfer to its last output transfer: load
    ``N`` plus ``M`` to store the max (``M = cfg.max_cycles``: the lanes' maxima reduced a level
    a cycle, 1 up to 4 lanes, 2 up to 8, 3 beyond); exp ``N`` plus 1 to read, 14 pipeline
    stages, a hand-off, 1 to start the divider and ``G`` division steps; normalize ``N`` plus 5
    pipeline stages (measured: 129 cycles at ``N = 32``, ``out_width = 8``, where ``G = 8``).
    Throughput: in steady state a row takes ``N + (M - 1)/2`` cycles for ``N >= G + 19`` beats
    (27 for 8-bit outputs), so up to 4 lanes such rows stream at one beat per cycle (beyond,
    a row's load waits for the exp pass to finish the row two back, which waits ``M`` cycles
    for the max); shorter rows take ``max(N, (N + G + 18)/2)`` cycles (up to ``N + 1/3`` just
    below ``G + 19``), waiting for the divider, since at most two rows may be between the start
    of their exp pass and the end of their division.
    Timing (ECP5 LFE5U-85F, ``lanes=1``, ``in_width=24``, ``max_len=64``): 121-123 MHz out of
    context as measured before the hand-offs were registered; the critical path is the
    block-RAM output of a buffer (5.8 ns clock-to-out) into its first register. The other
    paths are estimated at under 8 ns from the Yosys netlist, inside the whole design too.
    """

    #: Cycles of the exp pipeline from the buffer read (stage 0) to ``e`` (stage 14).
    EXP_STAGES = 14

    def __init__(self, cfg):
        if not isinstance(cfg, SoftmaxConfig):
            raise TypeError(f"Softmax config must be a SoftmaxConfig, not {cfg!r}")
        self.cfg = cfg
        self.lanes = cfg.lanes
        #: Beats per buffer bank.
        self.depth = -(-cfg.max_len // cfg.lanes)
        self.recip_bits = cfg.recip_bits
        #: Width of the per-row normalizer ``f``.
        self.f_width = cfg.out_width + 7
        #: Width of the row sum of ``e``.
        self.sum_width = (cfg.max_len << cfg.EXP_WIDTH).bit_length()
        ports = {
            "i": In(stream.Signature(data.ArrayLayout(signed(cfg.in_width), cfg.lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(cfg.out_width), cfg.lanes))),
            "length": In(range(cfg.max_len + 1)),
        }
        for name, width in cfg.constant_widths.items():
            ports[name] = In(unsigned(width))
        super().__init__(ports)

    def elaborate(self, platform):
        """Build the score and exp buffers, the constants registered from the ports, the registered
        row-length flags and the per-bank row max and normalizer registers, then the three passes
        (load, exp and division, normalize) by the builders of :mod:`hw.softmax`, in that order.
        """
        m = Module()
        cfg, n, depth = self.cfg, self.lanes, self.depth
        w, ew, xw = cfg.in_width, cfg.EXP_WIDTH, cfg.X_WIDTH
        elem_shape = range(cfg.max_len + n + 1)
        length = self.length

        def base(bank, banks):
            """First beat address of a bank."""
            return Array([Const(k * depth, range(banks * depth)) for k in range(banks)])[bank]

        def next3(bank):
            return Mux(bank == 2, 0, bank + 1)

        m.submodules.qmem = qmem = Memory(
            shape=data.ArrayLayout(signed(w), n), depth=2 * depth, init=[])
        m.submodules.emem = emem = Memory(
            shape=data.ArrayLayout(unsigned(ew), n), depth=3 * depth, init=[])
        q_wr = qmem.write_port()
        q_rd = qmem.read_port()
        e_wr = emem.write_port()
        e_rd = emem.read_port()

        # Constants, registered once from the ports (they are held, so this only delays them by
        # a cycle; the first use is two cycles after a row's last beat is loaded, and that of
        # the saturation threshold, which takes two registers, three).
        D = Signal.like(self.divisor, name="D")
        B = Signal.like(self.offset, name="B")
        C = Signal.like(self.poly_c, name="C")
        se = Signal.like(self.exp_shift, name="se")
        half = Signal(w, name="half")                 # 2**(sr-1), or 0 when sr = 0
        amt = Signal(range(cfg.MAX_LEFT + w + 1))     # rescale: ((x << MAX_LEFT) >> amt)
        ovf_at = Signal(range(xw + (1 << len(self.shift_right))))   # 19 + sr - sl
        ovf_t = Signal(w + 2)                         # x' saturates from x >= ovf_t
        clamp = Signal(xw)                            # 30*D = (D << 5) - (D << 1)
        sr, sl = self.shift_right, self.shift_left
        m.d.sync += [
            D.eq(self.divisor), B.eq(self.offset), C.eq(self.poly_c), se.eq(self.exp_shift),
            half.eq(rounding_half(sr, w)),
            amt.eq(cfg.MAX_LEFT + sr - sl),
            # 2**(19 + sr - sl), at most 2**(w + 1), which the distance never reaches.
            ovf_at.eq(xw + sr - sl),
            ovf_t.eq(Mux(ovf_at > w, 1 << (w + 1), Const(1, w + 2) << ovf_at)),
            clamp.eq((self.divisor << 5) - (self.divisor << 1)),
        ]

        # Row hand-off. Rows go through the passes in order, and each buffer is a ring of banks
        # taken and released in that order, so a hand-off is decided by counts of rows between
        # two events rather than by per-bank flags. Every start condition is an AND of a few
        # registers, each computed a cycle ahead from the counts and the events of the cycle
        # (the `*_n` signals below are the registers' next values).
        # `length`, compared once and registered (it is set a cycle before a row's first beat).
        length_one = Signal()                  # length <= lanes: a row of one beat
        length_two = Signal()                  # length <= 2*lanes
        m.d.sync += [length_one.eq(length <= n), length_two.eq(length <= 2 * n)]
        # Each bank's row max as the lanes' maxima reduced to at most two (hw.softmax.load).
        q_max = [Array(Signal(signed(w), name=f"q_max{k}_{j}") for k in range(2))
                 for j in range(min(n, 2))]
        f_reg = Array(Signal(self.f_width, name=f"f{k}") for k in range(3))

        s = SimpleNamespace()
        s.cfg, s.n, s.depth, s.w, s.ew, s.xw, s.elem_shape = cfg, n, depth, w, ew, xw, elem_shape
        s.length, s.base, s.next3, s.q_wr, s.q_rd, s.e_wr = length, base, next3, q_wr, q_rd, e_wr
        s.e_rd, s.D, s.B, s.C, s.se, s.half, s.amt, s.ovf_t = e_rd, D, B, C, se, half, amt, ovf_t
        s.clamp, s.length_one, s.length_two, s.q_max = clamp, length_one, length_two, q_max
        s.f_reg = f_reg
        build_load_pass(self, m, s)
        build_exp_issue(self, m, s)
        build_exp_datapath(self, m, platform, s)
        build_divider(self, m, s)
        build_normalize_issue(self, m, s)
        build_normalize_datapath(self, m, platform, s)
        return m
