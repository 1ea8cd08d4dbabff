"""Post-training quantization of a BERT-family encoder into an integer program.

Scheme (each choice measured in ``bench/model.py``):

* a 16-bit residual stream: embeddings, dense outputs into residual adds, residual sums and
  LayerNorm outputs are signed 16-bit (LayerNorm's wide output, at the scale its unit fixes);
* INT8 GEMM operands: weights per output channel (scale ``max|w|/127``), activations per input
  channel through the requantizer's per-channel table, which carries SmoothQuant's migration
  factors (``s_c = max|x_c|**a / max|w_c|**(1-a)``, ``a`` and a clipping ratio searched per
  GEMM input for the least output error on the calibration set); the migration moves into the
  weights, so it costs no operation;
* int32 bias preloaded into the accumulator;
* Q, K, V and the attention output INT8 per tensor at a clipping ratio of least squared error;
* GELU on 16-bit inputs, its wide output requantized per channel to 15 bits (with migration
  and a headroom of 2 over the calibration range) for the second FFN GEMM, which the engine
  runs as two INT8 passes (signed digits, a shifted accumulator preload between them).
"""

import dataclasses

import numpy as np

from hw.config import GeluConfig, LayerNormConfig, RequantConfig
from sim import golden, ops

from . import program as P
from . import reference

__all__ = ["WIDE", "unit_configs", "calibrate", "quantize"]

#: Width of the residual stream and of every tensor kept wide.
WIDE = 16
#: Headroom of a 16-bit scale over the calibration maximum (sentences outside the calibration
#: set reach further; 16 bits keep the resolution).
MARGIN = 2.0
ALPHAS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8)
CLIPS = (1.0, 0.85, 0.7, 0.55, 0.4)
#: Texts per float forward of the calibration pass (one progress step each).
CALIBRATION_BATCH = 16
#: Width of the GELU outputs entering the second FFN GEMM, which runs them as two INT8
#: passes (:func:`sim.ops.linear`): at INT8 they cost the most accuracy (values up to ~24 on a
#: few tokens against ~0.1 typical, and sentences beyond the calibration range).
FFN2_BITS = 15
#: Rows and columns of the calibration data used by the per-GEMM searches.
SEARCH_ROWS, SEARCH_COLS = 768, 256


def unit_configs(hidden):
    """The unit configs the program's constants are derived for: ``{"layernorm": ...,
    "gelu": ..., "requant": ...}`` (a config must match these widths to run it)."""
    return {
        # An 18-bit gamma is one MULT18X18D operand on the ULX3S (G = 2 fraction bits).
        "layernorm": LayerNormConfig(max_len=hidden, in_width=WIDE, out_width=WIDE,
                                     gamma_width=18, beta_width=34),
        # 16-bit inputs at scales near 1e-4 put the erf clip point ~2**14 steps away.
        "gelu": GeluConfig(in_width=WIDE, poly_width=14, frac_width=14),
        "requant": RequantConfig(mult_width=16, out_width=WIDE),
    }


def calibrate(ck, texts, *, batch=16, progress=None):
    """Float activations of the calibration texts: ``{name: (tokens, channels)}`` over every
    valid (unpadded) token, recorded by :func:`reference.forward`; ``progress(i)`` after the
    ``i``-th batch of ``batch`` texts."""
    acts = {}
    ids = ck.tokenize(texts)
    for i, b0 in enumerate(range(0, len(ids), batch)):
        tok, lengths = reference.pad_batch(ids[b0:b0 + batch])
        valid = np.arange(tok.shape[1])[None, :] < lengths[:, None]

        def record(name, x, valid=valid):
            acts.setdefault(name, []).append(x[valid])
        reference.forward(ck, tok, lengths, record)
        if progress:
            progress(i + 1)
    return {k: np.concatenate(v) for k, v in acts.items()}


def _wide_scale(x):
    return max(float(np.abs(x).max()), 1e-6) * MARGIN / ((1 << (WIDE - 1)) - 1)


def _quantize_weight(w):
    """Per-output-channel INT8 of ``w`` (K, N): ``(w_int, scales (N,))``."""
    s = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127
    return np.clip(np.round(w / s), -127, 127).astype(np.int64), s


def _fake(x, s):
    return np.clip(np.round(x / s), -127, 127) * s


def _clip_scale(x):
    """Per-tensor INT8 scale of least squared error over clipping ratios of ``max|x|``."""
    top = max(float(np.abs(x).max()), 1e-6) / 127
    return min((c * top for c in CLIPS + (0.3, 0.25)),
               key=lambda s: float(((_fake(x, s) - x) ** 2).mean()))


def _smooth_scales(x, w, rng, bits=8, headroom=None):
    """Per-input-channel scales ``S_c`` of ``bits``-bit activations ``x`` (T, K) entering
    ``x @ w`` (K, N): SmoothQuant migration ``s_c`` times a per-tensor step, with the exponent
    and the clipping ratio of least output error (fake-quantized, on a sample of rows and
    columns); a ``headroom`` factor replaces the clipping search."""
    xs = x[rng.choice(len(x), min(len(x), SEARCH_ROWS), replace=False)]
    ws = w[:, rng.choice(w.shape[1], min(w.shape[1], SEARCH_COLS), replace=False)]
    ref = xs @ ws
    # each token's error relative to its own output: tokens with small outputs (such as [SEP]
    # in some layers) matter as much as the rare tokens with huge ones
    weight = 1.0 / np.maximum((ref * ref).mean(axis=1, keepdims=True), 1e-12)
    xm = np.maximum(np.abs(x).max(axis=0), 1e-6)
    wm = np.maximum(np.abs(w).max(axis=1), 1e-6)
    best, q = None, (1 << (bits - 1)) - 1
    for a in ALPHAS:
        s = xm ** a / wm ** (1 - a)
        top = float((xm / s).max()) / q
        for c in CLIPS if headroom is None else (headroom,):
            sc = s * top * c
            wq, wsc = _quantize_weight(ws * sc[:, None])
            err = float((weight * (np.clip(np.round(xs / sc), -q, q) @ wq * wsc - ref) ** 2)
                        .mean())
            if best is None or err < best[0]:
                best = (err, sc)
    return best[1]


def _linear(name, x_name, x_scale, w, b, out_scale, out_width, x_width=8):
    """A Linear op for real weights ``w`` (K, N) and bias ``b`` on an input at per-channel or
    per-tensor ``x_scale``: weights ``x_scale * w`` per output channel, bias in accumulator
    units, requantization from the accumulator scale to ``out_scale``."""
    x_scale = np.broadcast_to(np.asarray(x_scale, dtype=np.float64), (w.shape[0],))
    wq, acc_scale = _quantize_weight(w * x_scale[:, None])
    bias = np.round(b / acc_scale).astype(np.int64)
    golden.check_int_array(f"{name} bias", bias, 32)
    m, s = ops.channel_constants(acc_scale / out_scale, max_shift=47)
    return P.Linear(output=name, scale=float(out_scale), input=x_name, weight=wq, bias=bias,
                    multipliers=m, shifts=s, out_width=out_width, x_width=x_width)


def _requant(name, x_name, in_scale, in_width, out_scale, out_width=8):
    m, s = ops.channel_constants(in_scale / out_scale, max_shift=in_width + 15)
    return P.Requantize(output=name, scale=out_scale, input=x_name, multipliers=m, shifts=s,
                        in_width=in_width, out_width=out_width)


def _layernorm(name, x_name, in_scale, gamma, beta, units):
    c = golden.layernorm_constants(in_scale, units["layernorm"], gamma, beta,
                                   length=len(gamma))
    return P.LayerNorm(output=name, scale=c.y_scale, input=x_name, gamma=np.array(c.gamma),
                       beta=np.array(c.beta), shift=c.shift, in_scale=float(in_scale))


def _residual(name, a, sa, b, sb, out_scale):
    ma, mb, shift = ops.residual_constants(sa, sb, out_scale)
    return P.Residual(output=name, scale=float(out_scale), a=a, b=b, ma=ma, mb=mb, shift=shift,
                      out_width=WIDE)


def _layer(i, ck, acts, h, sh, units, rng):
    """The ops of encoder layer ``i`` on the residual stream ``h`` at scale ``sh``."""
    w, c = ck.weights, ck.config
    p, t = f"encoder.layer.{i}.", f"L{i}."
    W = {n: w[p + n + ".weight"].T for n in (
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "intermediate.dense", "output.dense")}
    B = {n: w[p + n + ".bias"] for n in W}
    out = []
    qkv = ["attention.self.query", "attention.self.key", "attention.self.value"]
    sa = _smooth_scales(acts[t + "h"], np.concatenate([W[n] for n in qkv], axis=1), rng)
    out.append(_requant(t + "a", h, sh, WIDE, sa))
    s = {}
    for n, short in zip(qkv, "qkv", strict=True):
        s[short] = _clip_scale(acts[t + short])
        out.append(_linear(t + short, t + "a", sa, W[n], B[n], s[short], 8))
    s_ctx = _clip_scale(acts[t + "ctx"])
    out.append(P.Attention(output=t + "ctx", scale=s_ctx, q=t + "q", k=t + "k", v=t + "v",
                           heads=c.heads, q_scale=s["q"], k_scale=s["k"], v_scale=s["v"]))
    s_o = _wide_scale(acts[t + "attn_out"])
    out.append(_linear(t + "attn_out", t + "ctx", s_ctx, W["attention.output.dense"],
                       B["attention.output.dense"], s_o, WIDE))
    s_r = _wide_scale(acts[t + "res1"])
    out.append(_residual(t + "res1", h, sh, t + "attn_out", s_o, s_r))
    out.append(_layernorm(t + "h1", t + "res1", s_r, w[p + "attention.output.LayerNorm.weight"],
                          w[p + "attention.output.LayerNorm.bias"], units))
    s_h1 = out[-1].scale
    sa1 = _smooth_scales(acts[t + "h1"], W["intermediate.dense"], rng)
    out.append(_requant(t + "a1", t + "h1", s_h1, WIDE, sa1))
    lo, _ = golden.gelu_scale_range(units["gelu"])
    s_f = max(_wide_scale(acts[t + "ffn1"]), lo * 1.01)
    out.append(_linear(t + "ffn1", t + "a1", sa1, W["intermediate.dense"],
                       B["intermediate.dense"], s_f, WIDE))
    s_g = golden.gelu_constants(s_f, units["gelu"]).y_scale
    out.append(P.Gelu(output=t + "gelu", scale=s_g, input=t + "ffn1", in_scale=s_f))
    sa2 = _smooth_scales(acts[t + "gelu"], W["output.dense"], rng, bits=FFN2_BITS,
                         headroom=MARGIN)
    out.append(_requant(t + "a2", t + "gelu", s_g, units["gelu"].out_width, sa2, FFN2_BITS))
    s_o2 = _wide_scale(acts[t + "ffn2"])
    out.append(_linear(t + "ffn2", t + "a2", sa2, W["output.dense"], B["output.dense"], s_o2,
                       WIDE, FFN2_BITS))
    s_r2 = _wide_scale(acts[t + "res2"])
    out.append(_residual(t + "res2", t + "h1", s_h1, t + "ffn2", s_o2, s_r2))
    out.append(_layernorm(t + "out", t + "res2", s_r2, w[p + "output.LayerNorm.weight"],
                          w[p + "output.LayerNorm.bias"], units))
    return out


def quantize(ck, texts, *, progress=None, seed=0):
    """Calibrate on ``texts`` and build the integer program of checkpoint ``ck``.

    Parameters
    ----------
    ck : intformer.model.hf.Checkpoint
    texts : list of str
        Calibration sentences (keep them apart from any evaluation set).
    progress : callable or None
        ``progress(done, total)`` after each calibration batch (:func:`calibrate`) and each
        layer.
    seed : int
        Seed of the row/column sampling of the per-GEMM searches.

    Returns
    -------
    Program
    """
    if isinstance(texts, str) or not texts:
        raise ValueError(f"Calibration texts must be a non-empty list of strings, not {texts!r}")
    c, w = ck.config, ck.weights
    units = unit_configs(c.hidden)
    batches = -(-len(texts) // CALIBRATION_BATCH)
    total = batches + c.layers
    acts = calibrate(ck, texts, batch=CALIBRATION_BATCH,
                     progress=(lambda i: progress(i, total)) if progress else None)
    rng = np.random.default_rng(seed)
    tables = [w["embeddings.word_embeddings.weight"], w["embeddings.position_embeddings.weight"],
              w["embeddings.token_type_embeddings.weight"][0]]
    s_e = sum(float(np.abs(t).max()) for t in tables) / ((1 << (WIDE - 1)) - 1)
    word, pos, typ = (np.round(t / s_e).astype(np.int64) for t in tables)
    prog = [P.Embed(output="emb", scale=s_e, word=word, position=pos, token_type=typ,
                    out_width=WIDE),
            _layernorm("emb.out", "emb", s_e, w["embeddings.LayerNorm.weight"],
                       w["embeddings.LayerNorm.bias"], units)]
    for i in range(c.layers):
        h = prog[-1]
        prog += _layer(i, ck, acts, h.output, h.scale, units, rng)
        if progress:
            progress(batches + i + 1, total)
    prog.append(P.Pool(output="embedding", scale=1.0, input=prog[-1].output))
    return P.Program(ops=prog, hidden=c.hidden, heads=c.heads, max_positions=c.max_positions,
                     units={k: dataclasses.asdict(v) for k, v in units.items()})
