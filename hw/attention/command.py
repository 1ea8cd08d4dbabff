"""The attention controller's command: its layout, the per-head registers loaded from it, and the
command stage that checks it and counts the head's row blocks."""

from amaranth.hdl import Mux, Signal
from amaranth.lib import data

from ..divider import CeilDivider

__all__ = ["attention_cmd_layout", "Head", "build_command"]


def attention_cmd_layout(cfg):
    """Layout of a command: one head of sequence length L and head dimension d, causal or not,
    whose queries see only the first ``keys`` keys (0: all L)."""
    at = cfg.attention
    return data.StructLayout({
        "length": range(at.max_seq_len + 1),
        "head_dim": range(at.max_head_dim + 1),
        "causal": 1,
        "keys": range(at.max_seq_len + 1),
    })


class Head:
    """Per-head constants, registered from the command: L and d, the keys each query sees
    (``keys``, the command's or L for 0), and the comparisons on them that the counters need
    (so that none sits on a counter's enable)."""

    def __init__(self, Lmax, dmax, R, C):
        self.R, self.C = R, C
        self.L = Signal(range(Lmax + 1), name="L")
        self.d = Signal(range(dmax + 1), name="d")
        self.causal = Signal(name="causal")
        self.keys = Signal(range(Lmax + 1), name="keys")
        self.L_m1 = Signal(range(Lmax + 1), name="L_m1")
        self.d_m1 = Signal(range(dmax + 1), name="d_m1")
        self.L_is1 = Signal(name="L_is1")
        self.d_is1 = Signal(name="d_is1")
        self.L_le_c = Signal(name="L_le_c")     # L <= C
        self.L_m_r = Signal(range(-R, Lmax + 1), name="L_m_r")   # L - R
        self.d_le_c = Signal(name="d_le_c")     # d <= C

    def load(self, length, head_dim, causal, keys):
        R, C = self.R, self.C
        return [self.L.eq(length), self.d.eq(head_dim), self.causal.eq(causal),
                self.keys.eq(Mux(keys == 0, length, keys)),
                self.L_m_r.eq(length - R),
                self.L_m1.eq(length - 1), self.d_m1.eq(head_dim - 1),
                self.L_is1.eq(length == 1), self.d_is1.eq(head_dim == 1),
                self.L_le_c.eq(length <= C), self.d_le_c.eq(head_dim <= C)]


def build_command(ctl, m, ns):
    """Builds the command stage and the per-head registers: the registered command and its
    range check, the ``loading``/``running``/``head`` state flags, ``busy`` and the
    command's ready, and the dividers that count the row blocks and the softmax beats per
    row while the scratchpads load."""
    R, C, sl, Lmax, dmax = ctl.R, ctl.C, ctl.sl, ctl.max_len, ctl.max_dim
    # -- Command and per-head registers. ---------------------------------------------------
    # The command waits one cycle in a register, so that its range checks and everything
    # they enable start from flip-flops.
    hd = Head(Lmax, dmax, R, C)
    L, d, causal = hd.L, hd.d, hd.causal
    # nb = ceil(L/R) row blocks and row_beats = ceil(L/sl) softmax beats per row, counted
    # while the scratchpads load (which takes at least that many cycles).
    m.submodules.nb_div = nb_div = CeilDivider(Lmax, R)
    m.submodules.rb_div = rb_div = CeilDivider(Lmax, sl)
    nb, row_beats = nb_div.quotient, rb_div.quotient
    m.d.comb += ctl.softmax_length.eq(L)

    loading = Signal()
    running = Signal()
    c_valid = Signal()
    c_cmd = Signal.like(ctl.cmd.payload, name="c_cmd")
    # head = c_valid | loading | running, as one flip-flop set and cleared beside them: it
    # selects the engine's inputs, so it must not be a gate in front of their handshakes.
    head = Signal()
    m.d.comb += ctl.busy.eq(head)
    m.d.comb += ctl.cmd.ready.eq(~head)
    with m.If(ctl.cmd.valid & ctl.cmd.ready):
        m.d.sync += [c_valid.eq(1), head.eq(1), c_cmd.eq(ctl.cmd.payload)]
    bad = ((c_cmd.length == 0) | (c_cmd.length > Lmax) | (c_cmd.head_dim == 0) |
           (c_cmd.head_dim > dmax) | (c_cmd.keys > c_cmd.length))
    # The load counters restart on every command (they are unused unless loading).
    load_start = c_valid
    with m.If(c_valid):
        m.d.sync += [c_valid.eq(0), ctl.error.eq(bad), loading.eq(~bad), head.eq(~bad),
                     *hd.load(c_cmd.length, c_cmd.head_dim, c_cmd.causal, c_cmd.keys)]
    for div, step in ((nb_div, R), (rb_div, sl)):
        m.d.comb += [div.load.eq(load_start), div.total.eq(c_cmd.length), div.step.eq(step),
                     div.en.eq(1)]
    counted = ~nb_div.busy & ~rb_div.busy
    vars(ns).update(d=d, head=head, hd=hd, L=L, causal=causal, nb=nb,
                    row_beats=row_beats, loading=loading, running=running, c_cmd=c_cmd,
                    load_start=load_start, counted=counted)
