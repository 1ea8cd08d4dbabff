"""The float64 NumPy forward of a BERT-family encoder: what the integer program is measured
against, and where calibration records its activations."""

import math

import numpy as np

__all__ = ["pad_batch", "gelu", "layernorm", "forward", "normalize", "pool"]

_erf = np.frompyfunc(math.erf, 1, 1)


def pad_batch(ids):
    """``(ids (B, L) int64 padded with 0, lengths (B,))`` from a list of token-id arrays."""
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    out = np.zeros((len(ids), int(lengths.max())), dtype=np.int64)
    for i, x in enumerate(ids):
        out[i, :len(x)] = x
    return out, lengths


def gelu(x):
    """Exact GELU, ``x/2 * (1 + erf(x/sqrt 2))``, in float64."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layernorm(x, gamma, beta, eps):
    """LayerNorm over the last axis with population variance, as in BERT."""
    d = x - x.mean(axis=-1, keepdims=True)
    return d / np.sqrt((d * d).mean(axis=-1, keepdims=True) + eps) * gamma + beta


def _linear(w, name, x):
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def pool(h, lengths):
    """Mean over each sequence's tokens (the attention mask): ``(B, H)``."""
    mask = np.arange(h.shape[1])[None, :] < lengths[:, None]
    return (h * mask[..., None]).sum(axis=1) / lengths[:, None]


def normalize(x):
    """L2 normalization of the rows (sentence-transformers' Normalize)."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def forward(ck, ids, lengths, record=None):
    """The float64 forward of checkpoint ``ck`` on a padded batch.

    Parameters
    ----------
    ck : intformer.model.hf.Checkpoint
    ids : array of int, shape (B, L)
        Token ids, padded after each sequence's ``lengths[b]`` tokens.
    lengths : array of int, shape (B,)
    record : callable or None
        ``record(name, array)`` for every intermediate that the integer program quantizes
        (``"emb"``, ``"L{i}.ln1_in"``, ``"L{i}.q"`` ...), used by calibration.

    Returns
    -------
    embeddings : array, shape (B, H)
        Pooled and L2-normalized.
    hidden : list of arrays (B, L, H)
        The embedding LayerNorm's output, then each layer's output.
    """
    rec = record or (lambda name, x: None)
    c, w = ck.config, ck.weights
    B, L = ids.shape
    if lengths.max(initial=0) > c.max_positions:
        raise ValueError(f"Sequence length must be at most {c.max_positions} tokens (the "
                         f"model's max_position_embeddings), not {int(lengths.max())}")
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:L][None]
         + w["embeddings.token_type_embeddings.weight"][0])
    rec("emb", x)
    h = layernorm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], c.eps)
    hidden = [h]
    keys = np.arange(L)[None, :] < lengths[:, None]              # (B, L) key mask
    H, d = c.heads, c.head_dim
    for i in range(c.layers):
        p = f"encoder.layer.{i}."
        rec(f"L{i}.h", h)
        qkv = [_linear(w, p + f"attention.self.{n}", h) for n in ("query", "key", "value")]
        for n, t in zip("qkv", qkv, strict=True):
            rec(f"L{i}.{n}", t)
        q, k, v = (t.reshape(B, L, H, d).transpose(0, 2, 1, 3) for t in qkv)
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
        s = np.where(keys[:, None, None, :], s, -np.inf)
        pr = np.exp(s - s.max(axis=-1, keepdims=True))
        pr /= pr.sum(axis=-1, keepdims=True)
        ctx = (pr @ v).transpose(0, 2, 1, 3).reshape(B, L, H * d)
        rec(f"L{i}.ctx", ctx)
        o = _linear(w, p + "attention.output.dense", ctx)
        rec(f"L{i}.attn_out", o)
        r = h + o
        rec(f"L{i}.res1", r)
        h = layernorm(r, w[p + "attention.output.LayerNorm.weight"],
                      w[p + "attention.output.LayerNorm.bias"], c.eps)
        rec(f"L{i}.h1", h)
        f = _linear(w, p + "intermediate.dense", h)
        rec(f"L{i}.ffn1", f)
        g = gelu(f)
        rec(f"L{i}.gelu", g)
        o = _linear(w, p + "output.dense", g)
        rec(f"L{i}.ffn2", o)
        r = h + o
        rec(f"L{i}.res2", r)
        h = layernorm(r, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], c.eps)
        hidden.append(h)
    pooled = h[:, 0] if ck.pooling == "cls" else pool(h, lengths)
    return normalize(pooled), hidden
