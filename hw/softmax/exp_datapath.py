"""The softmax's pass 2, exp, datapath: the per-lane pipeline from a score to ``e``."""

from amaranth.hdl import Cat, Const, Mux, Signal, signed

from ..dsp import registered_product
from ..stream import delay

__all__ = ["build_exp_datapath"]


def build_exp_datapath(sm, m, platform, s):
    """Pass 2, exp, datapath: build the per-lane pipeline from the score buffer's output to `e`
    (rescale, division by D, polynomial, shift) and the write of `e` to the exp buffer at stage
    14.
    """
    cfg, max0, w, ovf_t, n, q_rd, xw = s.cfg, s.max0, s.w, s.ovf_t, s.n, s.q_rd, s.xw
    amt, clamp, D, B, se, C, ew, mask0 = s.amt, s.clamp, s.D, s.B, s.se, s.C, s.ew, s.mask0
    v0, last0, ebank0, eaddr0, e_wr = s.v0, s.last0, s.ebank0, s.eaddr0, s.e_wr
    shift = cfg.variant == "shift"
    e_lanes = []
    max1 = delay(m, max0, 1, name="max")
    # Stage 1: the row max less the saturation threshold, for the comparison in stage 2.
    max_ovf1 = Signal(signed(w + 3))
    m.d.sync += max_ovf1.eq(max0 - ovf_t)
    for j in range(n):
        # Stage 1: the buffer's output registered (block RAM is slow to output).
        # The pipeline's data registers are reset-less: a value is only used where its
        # valid flag (`v0` delayed, reset) says so.
        q1 = Signal(signed(w), name=f"q1_{j}", reset_less=True)
        m.d.sync += q1.eq(q_rd.data[j])
        # Stage 2: distance from the row max plus the rounding half, 0 <= xa < 2**(w+1), and
        # whether x' saturates at 2**19 - 1: xa >= 2**(19 + sr - sl), compared as
        # q <= max + half - 2**(19 + sr - sl) (by the sign of the difference).
        xa = Signal(w + 1, name=f"xa2_{j}", reset_less=True)
        ovf = Signal(name=f"ovf2_{j}", reset_less=True)
        m.d.sync += [xa.eq(max1 - q1), ovf.eq(~(max_ovf1 - q1)[-1])]
        # Stage 3: rescale to units of S' by one right shift of (xa << MAX_LEFT) by amt (a
        # right shift by sr or a left shift by sl), saturated by OR-ing in the overflow.
        # Stage 4: times log2(e) by shifts (Shiftmax). "ibert" has no product, so there the
        # shift is split: by the multiple of 8 in stage 3 and by the rest in stage 4.
        xs = Cat(Const(0, cfg.MAX_LEFT), xa)
        y = Signal(xw + 1, name=f"y4_{j}", reset_less=True)
        if shift:
            x2 = Signal(xw, name=f"x3_{j}", reset_less=True)
            m.d.sync += [
                x2.eq((xs >> amt)[:xw] | ovf.replicate(xw)),
                y.eq(x2 + (x2 >> 1) - (x2 >> 4)),
            ]
        else:
            x2 = Signal(xw + 7, name=f"x3_{j}", reset_less=True)
            ovf3 = Signal(name=f"ovf3_{j}", reset_less=True)
            m.d.sync += [
                x2.eq((xs >> Cat(Const(0, 3), amt[3:]))[:xw + 7]), ovf3.eq(ovf),
                y.eq((x2 >> amt[:3])[:xw] | ovf3.replicate(xw)),
            ]
        # Stages 5-9: z, r = divmod(min(y, 30*D), D) by restoring division, 5 quotient
        # bits; the clamp is a flag (y > 30*D means z = 30, r = 0) found with the first.
        rem, z = y, Const(0, 5)
        clamped = Signal(name=f"cl5_{j}", reset_less=True)
        m.d.sync += clamped.eq((clamp - y)[-1])       # y > 30*D, as a borrow
        for k in reversed(range(5)):
            diff = rem - (D << k)
            nrem = Signal(xw, name=f"r{9 - k}_{j}", reset_less=True)
            nz = Signal(5, name=f"z{9 - k}_{j}", reset_less=True)
            take = ~diff[-1]
            m.d.sync += [
                nrem.eq(Mux(take, diff, rem)),
                nz.eq(z | Mux(take, 1 << k, 0)),
            ]
            rem, z = nrem, nz
        clamped = delay(m, clamped, 4, name=f"cl_{j}")
        # Stage 10: t = B - r, in (B - D, B]; the total right shift z + se.
        t = Signal(16, name=f"t10_{j}", reset_less=True)
        sh = Signal(range(31 + 16), name=f"sh10_{j}", reset_less=True)
        m.d.sync += [
            t.eq(Mux(clamped, B, B - rem)),
            sh.eq(Mux(clamped, cfg.CLAMP, z) + se),
        ]
        # Stage 11: the square ("ibert" only), registered in its DSP block (see hw.dsp).
        sq = Signal(16 if shift else 2 * 16, name=f"sq11_{j}", reset_less=True)
        if shift:
            m.d.sync += sq.eq(t)
        else:
            registered_product(m, platform, t, t, sq, name=f"sq11_{j}")
        # Stage 12: + C.
        v = Signal(len(sq) + (0 if shift else 1), name=f"v12_{j}", reset_less=True)
        m.d.sync += v.eq(sq if shift else sq + C)
        # Stages 13-14: e = v >> (z + se), by 8s then by 1s; 0 for lanes past the end of the
        # row.
        sh = delay(m, sh, 2, name=f"sh_{j}")
        vc = Signal(len(v), name=f"v13_{j}", reset_less=True)
        m.d.sync += vc.eq(v >> Cat(Const(0, 3), sh[3:]))
        sh = delay(m, sh, 1, name=f"sh13_{j}")
        e = Signal(ew, name=f"e14_{j}", reset_less=True)
        mask = delay(m, mask0[j], sm.EXP_STAGES - 1, name=f"mask_{j}")  # at stage 13
        m.d.sync += e.eq(Mux(mask, vc >> sh[:3], 0))
        e_lanes.append(e)

    vE = delay(m, v0, sm.EXP_STAGES, name="v")
    lastE = delay(m, last0, sm.EXP_STAGES, name="last")
    ebankE = delay(m, ebank0, sm.EXP_STAGES, name="ebank")
    eaddrE = delay(m, eaddr0, sm.EXP_STAGES, name="eaddr")
    m.d.comb += [
        e_wr.addr.eq(eaddrE),
        e_wr.data.eq(Cat(*e_lanes)),
        e_wr.en.eq(vE),
    ]
    s.e_lanes, s.vE, s.lastE, s.ebankE = e_lanes, vE, lastE, ebankE
