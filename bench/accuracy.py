"""Accuracy of the integer units against float64, beside I-BERT's published algorithms.

Run: ``python bench/accuracy.py``. Prints, per unit, max and RMS error on dense grids and on
random rows, for intformer's golden model (variants "ibert" and "shift") and for a reference
implementation of I-BERT's algorithm run on the same inputs.
"""

import numpy as np

#: Each section appends ``(unit name, function returning a list of table rows)``.
#: A row is a dict: {"unit", "model", "inputs", "max_err", "rms_err", "budget"}.
SECTIONS = []

# == Softmax =====================================================================================

import math as _sm_math  # noqa: E402

from hw.config import SoftmaxConfig as _SoftmaxConfig  # noqa: E402
from sim import golden as _sm_golden  # noqa: E402

#: Max-error budgets on wide scores: "ibert" has DESIGN.md's, "shift" its own looser one
#: (I-ViT's Shiftmax measures about 0.016).
SOFTMAX_BUDGETS = {"ibert": 0.005, "shift": 0.02}


def softmax_float(q, scale):
    """float64 softmax over the last axis of the dequantized scores ``q * scale``."""
    x = np.asarray(q, dtype=np.float64) * scale
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ibert_softmax_reference(q, scale, out_bits=8):
    """I-BERT's published integer softmax (Kim et al. 2021, Algorithm 2/3 and its code), with
    its own constants, on integer scores ``q`` of scale ``scale``; returns ``(p, 2**-out_bits)``.

    i-exp: ``x0 = floor(-0.6931/S)``, clamp at ``30*x0``, ``z = floor(q/x0)``, ``r = q - z*x0``,
    ``e = r*(r + floor(b/S)) + floor(c/S**2)`` (b = 0.96963238/0.35815147,
    c = 1/0.35815147), ``e = floor(e * 2**(30 - z))``; requantize ``e`` to INT16 (QuantAct: round
    to ``max(e)/(2**15 - 1)``; the max is the row max's exponential, the same for every row);
    ``f = floor(2**32/sum)``; ``p = floor(e*f / 2**(32 - out_bits))``, not saturated.
    """
    q = np.asarray(q, dtype=np.int64)
    x = q - q.max(axis=-1, keepdims=True)
    x0 = _sm_math.floor(-0.6931 / scale)
    x = np.maximum(x, 30 * x0)
    z = x // x0
    r = x - x0 * z
    a, b = 0.35815147, 0.96963238
    b_int = _sm_math.floor(b / a / scale)
    c_int = _sm_math.floor(1.0 / a / scale ** 2)
    # Exact in float64: an integer below 2**23 times 2**(30 - z), z in 0..30.
    e = (r * (r + b_int) + c_int) * np.exp2(30 - z)
    s16 = float(c_int) * 2.0 ** 30 / (2 ** 15 - 1)
    e16 = np.round(e / s16)
    f = np.floor(2.0 ** 32 / e16.sum(axis=-1, keepdims=True))
    return np.floor(e16 * f / 2.0 ** (32 - out_bits)).astype(np.int64), 2.0 ** -out_bits


def softmax_scores(rows=512, length=128, sigma=2.5, scale=1e-3, in_width=24, seed=0):
    """Logits ~ N(0, sigma) quantized to ``in_width``-bit scores of scale ``scale``."""
    rng = np.random.default_rng(seed)
    top = (1 << (in_width - 1)) - 1
    return np.clip(np.round(rng.normal(0, sigma, (rows, length)) / scale), -top - 1, top) \
        .astype(np.int64)


def softmax_error(q, scale, p, p_scale):
    """``(max, RMS)`` of ``p * p_scale - softmax(q * scale)``."""
    err = np.asarray(p, dtype=np.float64) * p_scale - softmax_float(q, scale)
    return float(np.abs(err).max()), float(np.sqrt(np.mean(err * err)))


def softmax_accuracy():
    """Rows of 128 logits ~ N(0, 2.5): wide scores (S = 1e-3, 24-bit) and INT8-range scores
    (S = 8/127, the step of INT8 scores covering +-8), intformer's two variants beside I-BERT's
    published algorithm on the same integers."""
    out = []
    for label, scale in (("wide: S=1e-3, 24-bit", 1e-3), ("coarse: S=0.063, 24-bit", 8 / 127)):
        q = softmax_scores(scale=scale)
        for variant in ("ibert", "shift"):
            cfg = _SoftmaxConfig(max_len=128, variant=variant)
            mx, rms = softmax_error(q, scale, *_sm_golden.softmax(q, scale, cfg))
            budget = SOFTMAX_BUDGETS[variant]
            out.append({"unit": "softmax", "model": f"intformer {variant}", "inputs": label,
                        "max_err": mx, "rms_err": rms,
                        "budget": f"<= {budget} {'ok' if mx <= budget else 'OVER'}"})
        mx, rms = softmax_error(q, scale, *ibert_softmax_reference(q, scale))
        out.append({"unit": "softmax", "model": "I-BERT reference", "inputs": label,
                    "max_err": mx, "rms_err": rms, "budget": ""})
    return out


SECTIONS.append(("softmax", softmax_accuracy))


# == GELU ========================================================================================

import math as _gelu_math  # noqa: E402

from hw.config import GeluConfig as _GeluConfig  # noqa: E402
from sim import golden as _golden  # noqa: E402

#: Budgets on [-4, 4] (max, RMS): "ibert" has DESIGN.md's, "shift" its own looser one.
GELU_BUDGETS = {"ibert": (0.018, 0.0082), "shift": (0.030, 0.016)}
#: INT8 scales measured: each grid is every q with |q * S| <= 4.
GELU_SCALES = (4 / 127, 0.04, 0.05, 8 / 127, 0.1)


def gelu_float(x):
    """float64 GELU with the exact erf: ``x/2 * (1 + erf(x/sqrt 2))``."""
    x = np.asarray(x, dtype=np.float64)
    return x / 2 * (1 + np.vectorize(_gelu_math.erf)(x / np.sqrt(2.0)))


def gelu_error(q, scale, y, y_scale):
    """``(max, RMS)`` of ``y * y_scale - GELU(q * scale)``."""
    e = np.asarray(y, dtype=np.float64) * y_scale - gelu_float(np.asarray(q) * scale)
    return float(np.abs(e).max()), float(np.sqrt(np.mean(e * e)))


def ibert_gelu_reference(q, scale, n=14):
    """I-BERT's published integer GELU (``IntGELU.int_erf`` / ``forward``), straight.

    Constants as in the paper's code: ``b_int = floor(b / S_e)``, ``c_int = floor((1/a) / S_e**2)``
    with ``S_e = S / 1.4142``, a = -0.2888, b = -1.769; the erf result is floored by ``2**n``
    (n = 14 as published), then ``shift = floor(1 / scale_erf)`` and ``out = q * (erf + shift)``.
    Returns ``(out, out_scale)``.
    """
    a, b = _golden.IBERT_GELU_A, _golden.IBERT_GELU_B
    q = np.asarray(q, dtype=np.float64)
    s_e = scale / 1.4142
    b_int = np.floor(b / s_e)
    c_int = np.floor((1 / a) / s_e**2)
    y = np.sign(q) * ((np.minimum(np.abs(q), -b_int) + b_int) ** 2 + c_int)
    s_erf = s_e**2 * a
    y = np.floor(y / 2**n)
    s_erf = s_erf * 2**n
    shift = np.floor(1.0 / s_erf)
    return q * (y + shift), scale * s_erf / 2


def _erf_curve_rows():
    x = np.linspace(-4, 4, 100_001)
    rows = []
    for label, (a, b) in (("float I-BERT a,b", (_golden.IBERT_GELU_A, _golden.IBERT_GELU_B)),
                          ("float refit a,b", (_golden.GELU_A, _golden.GELU_B))):
        erf = np.sign(x) * (a * (np.minimum(np.abs(x / np.sqrt(2)), -b) + b) ** 2 + 1)
        e = x / 2 * (1 + erf) - gelu_float(x)
        rows.append({"unit": "gelu", "model": label, "inputs": "float x, 100001 pts [-4,4]",
                     "max_err": float(np.abs(e).max()),
                     "rms_err": float(np.sqrt(np.mean(e * e))), "budget": ""})
    return rows


def gelu_rows():
    """Rows of the GELU table: the float curves, then per INT8 scale the integer models."""
    rows = _erf_curve_rows()

    def row(model, inputs, q, scale, out, budget=""):
        mx, rms = gelu_error(q, scale, *out)
        ok = "" if not budget else ("ok" if mx <= budget[0] and rms <= budget[1] else "MISSED")
        note = f"<= {budget[0]} / {budget[1]} {ok}" if budget else ""
        return {"unit": "gelu", "model": model, "inputs": inputs, "max_err": mx,
                "rms_err": rms, "budget": note}

    # The budgets are for the uniform grid on [-4, 4]; the random inputs are another weighting.
    grids = [(f"INT8 grid S={s:.5f}", s, np.arange(-128, 128), True) for s in GELU_SCALES]
    rng = np.random.default_rng(0)
    normal = np.clip(np.round(rng.normal(0, 1.5, 10_000) / (4 / 127)), -128, 127).astype(int)
    grids.append(("N(0,1.5) S=4/127, 10k", 4 / 127, normal, False))
    for inputs, s, q, budgeted in grids:
        q = q[np.abs(q * s) <= 4]
        for variant in ("ibert", "shift"):
            out = _golden.gelu(q, s, _GeluConfig(variant=variant))
            rows.append(row(f"intformer {variant}", inputs, q, s, out,
                            GELU_BUDGETS[variant] if budgeted else ""))
        out8 = _golden.gelu(q, s, _GeluConfig(variant="shift", frac_width=8))
        rows.append(row("intformer shift F=8", inputs, q, s, out8))
        rows.append(row("I-BERT published n=14", inputs, q, s, ibert_gelu_reference(q, s, 14)))
        rows.append(row("I-BERT published n=0", inputs, q, s, ibert_gelu_reference(q, s, 0)))
    return rows


SECTIONS.append(("gelu", gelu_rows))


# == LayerNorm ===================================================================================
# Errors are in LSBs of intformer's output scale y_scale (1 LSB = the budget), measured against
# float64 LayerNorm (eps = 0) of the same dequantized integer input. Both models end on the same
# INT8 grid (I-BERT's real-valued output is rounded to y_scale), so 0.5 LSB is the floor.

import math as _ln_math  # noqa: E402

from hw.config import LayerNormConfig as _LayerNormConfig  # noqa: E402
from sim import golden as _ln_golden  # noqa: E402
from sim import reference  # noqa: E402

layernorm_float = reference.layernorm


def _newton_fixed(n, start=1 << 16, steps=10):
    """Integer Newton square root from a fixed start with a fixed step count (the pitfall)."""
    x = np.full(n.shape, start, dtype=np.int64)
    for _ in range(steps):
        x = np.maximum((x + n // np.maximum(x, 1)) // 2, 0)
    return x


def ibert_layernorm_reference(q, scale, gamma=None, beta=None, *, sqrt="newton"):
    """I-BERT's IntLayerNorm (Kim et al. 2021, Algorithm 4 and the reference code), as real
    numbers: mean_int = round(mean(q)); y = q - mean_int; var = sum((y >> s)**2) with the
    smallest per-row s keeping var < 2**32; std = isqrt(var) << s; factor = floor((2**31-1)/std);
    y = floor(y*factor/2) at scale sqrt(L)/2**30; gamma/beta as bias_int = floor(beta/gamma/sf).
    ``sqrt="newton"``: Newton from 2**16, 10 steps; ``"exact"``: floor(sqrt) (isolates the
    error of the rounded mean)."""
    q = np.asarray(q, dtype=np.int64)
    L = q.shape[-1]
    mean = np.floor(q.mean(axis=-1, keepdims=True) + 0.5).astype(np.int64)
    y = q - mean
    s = np.zeros((*q.shape[:-1], 1), dtype=np.int64)
    while True:
        var = ((y >> s) ** 2).sum(axis=-1, keepdims=True)
        big = var >= (1 << 32)
        if not big.any():
            break
        s = s + big
    root = _newton_fixed(var) if sqrt == "newton" else _ln_golden.isqrt(var, 32)
    std = root << s
    factor = np.where(std > 0, (2 ** 31 - 1) // np.maximum(std, 1), 0)
    y = (y * factor) // 2
    sf = _ln_math.sqrt(L) / 2 ** 30
    g = np.ones(L) if gamma is None else np.asarray(gamma, dtype=np.float64)
    b = np.zeros(L) if beta is None else np.asarray(beta, dtype=np.float64)
    bias_int = np.floor(b / g / sf)
    return (y + bias_int) * sf * g


def layernorm_inputs(L, in_width=16, rows=200, seed=0):
    """Named input sets of shape (rows, L)."""
    rng = np.random.default_rng(seed)
    top = 1 << (in_width - 1)

    def spread(k):
        base = rng.integers(-top + k, top - k, (rows, 1))
        return base + rng.integers(-k, k + 1, (rows, L))

    ext = rng.choice([-top, top - 1], (rows, L))
    flat = np.repeat(rng.integers(-top, top, (rows, 1)), L, axis=1)
    return {
        "full-range": rng.integers(-top, top, (rows, L)),
        "var<2^20 (spread 2^4..2^7)": np.concatenate([spread(1 << k) for k in range(4, 8)]),
        "tiny var (spread 1..3)": np.concatenate([spread(k) for k in (1, 2, 3)]),
        "extremes only": ext,
        "zero variance": flat,
    }


def layernorm_rows(lengths=(24, 33, 64), scale=0.01):
    cfg = _LayerNormConfig()
    rows = []
    for affine in (False, True):
        errs = {}
        for L in lengths:
            rng = np.random.default_rng(L)
            gamma = rng.normal(1.0, 0.5, L) if affine else None
            beta = rng.normal(0.0, 0.5, L) if affine else None
            for name, q in layernorm_inputs(L, seed=L).items():
                ref = layernorm_float(q, scale, gamma, beta)
                y, y_scale = _ln_golden.layernorm(q, scale, gamma, beta, cfg)
                for model, out in (
                    ("intformer (exact)", y * y_scale),
                    ("I-BERT Newton 2^16x10", ibert_layernorm_reference(q, scale, gamma, beta)),
                    ("I-BERT, exact isqrt", ibert_layernorm_reference(q, scale, gamma, beta,
                                                                      sqrt="exact")),
                ):
                    if not model.startswith("intformer"):   # the same INT8 output grid
                        top = (1 << (cfg.out_width - 1)) - 1
                        out = np.clip(np.round(out / y_scale), -top - 1, top) * y_scale
                    errs.setdefault((name, model), []).append(((out - ref) / y_scale).ravel())
        for (name, model), e in errs.items():
            e = np.concatenate(e)
            rows.append({
                "unit": "layernorm", "model": model,
                "inputs": f"{name}{', g/b' if affine else ''}",
                "max_err": float(np.abs(e).max()), "rms_err": float(np.sqrt((e * e).mean())),
                "budget": "<= 1 LSB (of y_scale)" if model.startswith("intformer") else "",
            })
    return rows


SECTIONS.append(("layernorm", layernorm_rows))

# == Attention ===================================================================================


def attention_rows():
    """Attention (one head, L = 64, d = 32, o_scale = v_scale = 0.05) against float64, in
    output LSB, beside the floor of any design with 8-bit probabilities."""
    from hw.config import AccelConfig, ArrayConfig, AttentionConfig
    from sim import golden, reference

    cfg = AccelConfig(array=ArrayConfig(4, 4),
                      attention=AttentionConfig(max_seq_len=64, max_head_dim=32))
    rows = []
    for label, sq, dominant in (("random, S_qk=0.02", 0.02, False),
                                ("random, S_qk=0.05", 0.05, False),
                                ("dominant score", 0.02, True)):
        for causal in (False, True):
            rng = np.random.default_rng(11)
            ours, floor = [], []
            for _ in range(8):
                q, k, v = (rng.integers(-128, 128, (64, 32)) for _ in range(3))
                if dominant:
                    k[rng.integers(0, 64, 64)] = q
                o, so = golden.attention(q, k, v, sq, sq, 0.05, 0.05, causal=causal, cfg=cfg)
                ref = reference.attention(q, k, v, sq, sq, 0.05, causal)
                ours.append((o * so - ref).ravel() / 0.05)
                floor.append((reference.attention_8bit_probabilities(
                    q, k, v, sq, sq, 0.05, 0.05, causal) - ref).ravel() / 0.05)
            inputs = f"{label}{', causal' if causal else ''} (LSB)"
            for model, e in (("intformer", np.concatenate(ours)),
                             ("float, 8-bit P (floor)", np.concatenate(floor))):
                rows.append({"unit": "attention", "model": model, "inputs": inputs,
                             "max_err": float(np.abs(e).max()),
                             "rms_err": float(np.sqrt(np.mean(e ** 2))),
                             "budget": "max <= 3.0, RMS <= 0.7" if model == "intformer" else ""})
    return rows


SECTIONS.append(("attention", attention_rows))


def main():
    rows = []
    for _, fn in SECTIONS:
        rows.extend(fn())
    header = f"{'unit':<10} {'model':<22} {'inputs':<34} {'max err':>10} {'RMS err':>10}  budget"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['unit']:<10} {r['model']:<22} {r['inputs']:<34} {r['max_err']:>10.5f} "
              f"{r['rms_err']:>10.5f}  {r.get('budget', '')}")
    return rows


if __name__ == "__main__":
    np.set_printoptions(precision=5)
    main()
