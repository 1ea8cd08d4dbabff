"""The softmax's pass 3, normalize, datapath: ``e`` times the row's normalizer, rounded and
saturated, onto ``o``."""

from amaranth.hdl import Cat, Mux, Signal
from amaranth.lib import wiring

from ..dsp import registered_product

__all__ = ["build_normalize_datapath"]


def build_normalize_datapath(sm, m, platform, s):
    """Pass 3, normalize, datapath: build the stalling pipeline that multiplies `e` by `f`,
    rounds, saturates and masks each lane, and drives `o` through the skid buffer.
    """
    n, cfg, ew, advance, c_issue, f_reg = s.n, s.cfg, s.ew, s.advance, s.c_issue, s.f_reg
    c_bank, c_left, e_rd, o_skid = s.c_bank, s.c_left, s.e_rd, s.o_skid
    # Stage 1: the buffer read; 2 and 3: its data registered twice (block RAM is slow to
    # output, and the multiplier may sit far from it); 4: the product e*f; 5: rounded;
    # 6: saturated and masked, on `o` (or in the skid register). All stages move together,
    # on `advance`.
    cv = [Signal(name=f"cv{k}") for k in range(1, 6)]
    cmask = [Signal(n, name=f"cmask{k}") for k in range(1, 6)]
    cf1, cf2, cf3 = (Signal(sm.f_width, name=f"cf{k}", reset_less=True) for k in (1, 2, 3))
    drop = sm.recip_bits - cfg.out_width
    prod_width = ew + sm.f_width
    # The data registers are reset-less: a value is only used where its valid flag (`cv`,
    # reset) says so.
    ed = [Signal(ew, name=f"ed2_{j}", reset_less=True) for j in range(n)]
    ed3 = [Signal(ew, name=f"ed3_{j}", reset_less=True) for j in range(n)]
    prods = [Signal(prod_width, name=f"prod4_{j}", reset_less=True) for j in range(n)]
    rnds = [Signal(prod_width - drop + 1, name=f"rnd5_{j}", reset_less=True)
            for j in range(n)]
    out = Signal(sm.o.payload.shape(), name="out")
    with m.If(advance):
        m.d.sync += [
            cv[0].eq(c_issue), cf1.eq(f_reg[c_bank]),
            cmask[0].eq(Cat(c_left.left > j for j in range(n))),
            cf2.eq(cf1), cf3.eq(cf2),
        ]
        m.d.sync += [a.eq(b) for a, b in zip(cv[1:], cv[:-1], strict=True)]
        m.d.sync += [a.eq(b) for a, b in zip(cmask[1:], cmask[:-1], strict=True)]
        for j in range(n):
            rnd = rnds[j]
            m.d.sync += [
                ed[j].eq(e_rd.data[j]),
                ed3[j].eq(ed[j]),
                rnd.eq((prods[j] + (1 << (drop - 1))) >> drop),
            ]
    for j in range(n):
        # Stage 4, the product e*f, registered in its DSP block (see hw.dsp).
        registered_product(m, platform, ed3[j], cf3, prods[j], en=advance, name=f"prod4_{j}")
        rnd = rnds[j]
        m.d.comb += out[j].eq(Mux(cmask[-1][j], rnd[:cfg.out_width] | rnd[cfg.out_width:]
                                  .any().replicate(cfg.out_width), 0))

    # Stage 6 is the register slice: the stage-5 beat enters it as the pipeline advances.
    m.d.comb += [o_skid.i.valid.eq(cv[-1]), o_skid.i.payload.eq(out)]
    wiring.connect(m, o_skid.o, wiring.flipped(sm.o))
