"""The tiled attention controller: softmax(Q K^T / sqrt(d)) V on the systolic array, head by
head."""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..gemm import gemm_cmd_layout
from .command import attention_cmd_layout, build_command
from .feeder import build_serializer, build_softmax_feeder
from .issuer import build_issuer
from .loaders import build_loaders
from .operands import build_operands
from .output_walker import build_output_walker
from .p_writer import build_p_writer
from .scratchpads import build_scratchpads

__all__ = ["AttentionController"]


class AttentionController(wiring.Component):
    """Computes one head of integer attention per command on a GEMM engine it does not own,
    bit-exact with :func:`sim.golden.attention` once its ``rows`` are requantized.

    The controller is a client of a softmax unit (``softmax_*``) and of a
    :class:`hw.gemm.GemmEngine` configured by
    ``cfg.attention_gemm`` (or a wider one, such as the accelerator top's, behind
    :class:`hw.arbiter.EngineArbiter`): it sends the engine GEMM commands (``gemm_cmd``) and
    operand pairs (``gemm_a``, ``gemm_b``, valid together) and takes its rows back
    (``gemm_out``). The rows of ``P V`` leave on ``rows``, exact; a requantizer after it gives
    the int8 output. :class:`hw.attention_unit.AttentionUnit` pairs the controller with an
    engine, a softmax and a requantizer of its own.

    Dataflow (R x C array, L the sequence length, d the head dimension, ``nb = ceil(L/R)`` row
    blocks)::

        q, k, v streams ─► Q, K, V scratchpads (lib.memory, in the array's native layout)
        for each row block b, interleaved as QK(0) QK(1) PV(0) QK(2) PV(1) ... PV(nb-1):
          QK(b): S[bR:bR+R, :] = Q[bR:bR+R] · Kᵀ  on the GEMM engine ─► score buffer, half b%2
          softmax of the block's R rows (masked scores → min)       ─► P buffer, half b%2
          PV(b): O[bR:bR+R, :] = P · V            on the GEMM engine ─► rows

    The score and P buffers are double-buffered, so the softmax of block b runs while the array
    computes ``QK(b+1)``; ``QK(b+2)`` waits only for the softmax to have read block b's scores,
    and ``PV(b)`` for its probabilities. With the causal mask, ``QK(b)`` computes only the
    ``min(L, bR + R)`` columns that are not wholly masked and ``PV(b)`` sums over only those, so
    fully masked tiles are skipped rather than computed; inside the diagonal tile, masked scores
    are replaced by the most negative score before the softmax, which maps them to exactly 0.
    The key mask (``keys``, a padded sequence's length) masks the scores of keys ``j >= keys``
    the same way, in the softmax feeder only: no job is cut, so it costs no cycle.

    Scratchpad layouts (the driver writes each stream's beats in this order; see
    :func:`sim.bench.attention_load_beats`):

    * ``q``: R lanes, beat ``b*d + k`` = ``Q[bR:bR+R, k]`` for row block b, k < d;
    * ``k``: C lanes, beat ``t*d + k`` = ``K[tC:tC+C, k]`` for column tile t, k < d;
    * ``v``: C lanes, beat ``t*L + j`` = ``V[j, tC:tC+C]`` for column tile t, j < L.

    Lanes past L or d are ignored. The output ``rows`` carries, per row block b and column tile t
    over d, the block's rows ``O[bR + r, tC:tC+C]`` (lanes past d are 0), in the order
    ``b, t, r``.

    Parameters
    ----------
    cfg : AccelConfig
        ``array``, ``attention`` and ``softmax.variant``; the engine's commands and operands
        follow ``cfg.attention_gemm``, the softmax ``cfg.attention_softmax``.

    Members
    -------
    cmd : In(stream.Signature(attention_cmd_layout(cfg)))
        One head per command: L (1..max_seq_len), d (1..max_head_dim), causal, and keys (the
        keys every query sees, 1..L; 0 for L: the scores of keys ``j >= keys`` are masked like
        the causal mask's, and still computed). A command out of range is consumed and sets
        ``error``.
    q : In(stream.Signature(ArrayLayout(signed(in_width), R)))
    k, v : In(stream.Signature(ArrayLayout(signed(in_width), C)))
        Scratchpad loads, taken after the command: ``ceil(L/R)*d``, ``ceil(L/C)*d`` and
        ``ceil(d/C)*L`` beats.
    gemm_cmd : Out(stream.Signature(gemm_cmd_layout(cfg.attention_gemm.gemm)))
    gemm_a : Out(stream.Signature(ArrayLayout(signed(in_width + 1), R)))
    gemm_b : Out(stream.Signature(ArrayLayout(signed(in_width + 1), C)))
        The jobs ``QK(b)``, ``PV(b)`` and their operand pairs (Q, K, V sign-extended, P
        zero-extended); ``gemm_a`` and ``gemm_b`` are valid together and taken together.
    gemm_out : In(stream.Signature(ArrayLayout(signed(cfg.attention_gemm.acc_width), C)))
        The engine's rows (a wider engine's rows fit: they are cut to this width).
    rows : Out(stream.Signature(ArrayLayout(signed(cfg.attention_gemm.acc_width), C)))
        The exact rows of ``P V``, to be requantized (:attr:`sim.golden.AttentionConstants`
        ``multiplier`` and ``shift``).
    softmax_i : Out(stream.Signature(ArrayLayout(signed(attention_softmax.in_width), lanes)))
    softmax_o : In(stream.Signature(ArrayLayout(unsigned(attention_softmax.out_width), lanes)))
    softmax_length : Out(range(max_seq_len + 1))
        A :class:`hw.softmax.Softmax` (``cfg.attention_softmax``, or a superset of it such as
        :attr:`hw.config.AccelConfig.shared_softmax`) with the constants of the score scale
        (:attr:`sim.golden.AttentionConstants` ``softmax``): the score rows (masked scores are
        the most negative ``attention_softmax.in_width``-bit score), the probabilities back, and
        the row length L.
    busy, error : Out(1)

    Latency and throughput: loading takes ``ceil(L/R)*d``, ``ceil(L/C)*d`` and ``ceil(d/C)*L``
    cycles, the three side by side, and the jobs overlap it: ``QK(b)`` starts once Q's row block b
    is in and reads each K tile once it is in, ``PV(b)`` starts once all of V is. Each ``QK(b)``
    takes ``ceil(N_b/C) * max(d, 2R-1)`` array cycles and each ``PV(b)``
    ``ceil(d/C) * max(N_b, 2R-1)`` (``N_b = L``, or ``min(L, bR+R)`` when causal), plus a few
    cycles per job and the wait for the softmax where it is slower than the array;
    :func:`sim.cyclemodel.attention_cycles` models it. One head per command.
    """

    #: GEMM commands queued ahead of the engine: a job's command waits while the previous jobs
    #: drain, so the issuer can move on to the next job's operands.
    CMD_DEPTH = 3
    #: Operand pairs queued for the engine: the room flag is one cycle stale and counts the two
    #: cycles of reads in flight (the memories' and a register after the operand multiplexers).
    OPERAND_DEPTH = 8
    #: Score words queued for the serializer: the reads in flight (the score memory, its
    #: landing register) and the queue's own latency, so that the softmax is fed every cycle.
    SCORE_DEPTH = 6
    #: Probability beats after the softmax: two would halve its rate, and the writer's ready
    #: is then registered, so its conditions do not reach back through the softmax.
    P_DEPTH = 3

    def __init__(self, cfg):
        at = cfg.attention
        self.cfg = cfg
        self.R, self.C = R, C = cfg.array.rows, cfg.array.cols
        self.in_width = w = cfg.array.in_width
        self.gemm_cfg = cfg.attention_gemm
        self.sm_cfg = cfg.attention_softmax
        self.acc_width = eacc = cfg.attention_gemm.acc_width     # scores and P V rows
        self.max_len, self.max_dim = at.max_seq_len, at.max_head_dim
        self.blocks = -(-at.max_seq_len // R)            # row blocks of Q
        self.len_tiles = -(-at.max_seq_len // C)         # column tiles of K^T (and words per
                                                         # score row)
        self.dim_tiles = -(-at.max_head_dim // C)        # column tiles of V
        self.sl = cfg.attention_lanes
        self.p_words = -(-at.max_seq_len // self.sl)     # P words per row and half
        ports = {
            "cmd": In(stream.Signature(attention_cmd_layout(cfg))),
            "q": In(stream.Signature(data.ArrayLayout(signed(w), R))),
            "k": In(stream.Signature(data.ArrayLayout(signed(w), C))),
            "v": In(stream.Signature(data.ArrayLayout(signed(w), C))),
            "gemm_cmd": Out(stream.Signature(gemm_cmd_layout(self.gemm_cfg.gemm))),
            "gemm_a": Out(stream.Signature(data.ArrayLayout(signed(w + 1), R))),
            "gemm_b": Out(stream.Signature(data.ArrayLayout(signed(w + 1), C))),
            "gemm_out": In(stream.Signature(data.ArrayLayout(signed(eacc), C))),
            "rows": Out(stream.Signature(data.ArrayLayout(signed(eacc), C))),
            "softmax_i": Out(stream.Signature(
                data.ArrayLayout(signed(self.sm_cfg.in_width), self.sl))),
            "softmax_o": In(stream.Signature(
                data.ArrayLayout(unsigned(self.sm_cfg.out_width), self.sl))),
            "softmax_length": Out(range(at.max_seq_len + 1)),
            "busy": Out(1),
            "error": Out(1),
        }
        super().__init__(ports)
        #: High on cycles where the next GEMM job (a PV) waits for the softmax. Observability
        #: for benchmarks; not a port.
        self.waiting_for_softmax = Signal()

    def elaborate(self, platform):
        m = Module()
        # Each builder (one module of this package each) takes the controller and leaves in
        # ``ns`` the values that later ones use. Their order is the order in which signals,
        # statements and submodules are created, which fixes the netlist.
        ns = SimpleNamespace()
        build_scratchpads(self, m, ns)
        build_command(self, m, ns)
        build_loaders(self, m, ns)
        build_issuer(self, m, ns)
        build_operands(self, m, ns)
        build_output_walker(self, m, ns)
        build_softmax_feeder(self, m, ns)
        build_serializer(self, m, ns)
        build_p_writer(self, m, ns)
        return m
