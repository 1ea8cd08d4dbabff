"""The golden executor: runs an integer program on the golden models, splitting each
operation the way the accelerator's limits require."""

import numpy as np

from hw.config import AccelConfig
from sim import golden, ops

from . import program as P

__all__ = ["check_sequence", "layernorm_constants", "run_program"]


def check_sequence(prog, cfg, length):
    """Raise :exc:`ValueError` if a sequence of ``length`` tokens does not fit the model or the
    config."""
    if length > prog.max_positions:
        raise ValueError(f"Sequence length must be at most {prog.max_positions} tokens (the "
                         f"model's max_position_embeddings), not {length}")
    if length > cfg.attention.max_seq_len:
        raise ValueError(f"Sequence length must be at most {cfg.attention.max_seq_len} tokens "
                         f"(attention.max_seq_len), not {length}")


def _embed(op, env, cfg, ids, lengths):
    L = ids.shape[1]
    y = op.word[ids].astype(np.int64) + op.position[:L][None] + op.token_type
    return golden.saturate(y, op.out_width)


def layernorm_constants(op):
    """The integer constants of LayerNorm op ``op`` as :func:`sim.golden.layernorm` takes
    them (``constants=``)."""
    return golden.LayerNormConstants(length=len(op.gamma), gamma=tuple(int(v) for v in op.gamma),
                                     beta=tuple(int(v) for v in op.beta), shift=op.shift,
                                     y_scale=float(op.scale))


def _layernorm(op, env, cfg, ids, lengths):
    return golden.layernorm(env[op.input], op.in_scale, cfg=cfg.layernorm,
                            constants=layernorm_constants(op))[0]


def _requantize(op, env, cfg, ids, lengths):
    return ops.requantize_channels(env[op.input], op.multipliers, op.shifts,
                                   in_width=op.in_width, mult_width=cfg.requant.mult_width,
                                   out_width=op.out_width)


def _linear(op, env, cfg, ids, lengths):
    """The engine takes at most max_m x max_k x max_n: tiles over M and N, and K in chunks that
    each preload the previous chunk's accumulators (same integers as one call)."""
    x = env[op.input]
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    M, N = x.shape[0], op.weight.shape[1]
    g = cfg.gemm
    out = np.empty((M, N), dtype=np.int64)
    for m0 in range(0, M, g.max_m):
        for n0 in range(0, N, g.max_n):
            cols = slice(n0, n0 + g.max_n)
            out[m0:m0 + g.max_m, cols] = ops.linear(
                x[m0:m0 + g.max_m], op.weight[:, cols], op.bias[cols], op.multipliers[cols],
                op.shifts[cols], cfg=cfg, out_width=op.out_width,
                k_chunk=min(x.shape[1], g.max_k), x_width=op.x_width)
    return out.reshape(lead + (N,))


def _attention(op, env, cfg, ids, lengths):
    q, k, v = (env[n] for n in (op.q, op.k, op.v))
    B, L, D = q.shape
    H = op.heads
    split = [t.reshape(B, L, H, D // H).transpose(0, 2, 1, 3) for t in (q, k, v)]
    o = ops.masked_attention(*split, lengths, op.q_scale, op.k_scale, op.v_scale,
                             float(op.scale), cfg=cfg, out_width=cfg.array.in_width)
    return o.transpose(0, 2, 1, 3).reshape(B, L, D)


def _gelu(op, env, cfg, ids, lengths):
    return golden.gelu(env[op.input], op.in_scale, cfg.gelu)[0]


def _residual(op, env, cfg, ids, lengths):
    return ops.residual_add(env[op.a], env[op.b], op.ma, op.mb, op.shift,
                            in_width=op.out_width, mult_width=cfg.requant.mult_width,
                            out_width=op.out_width)


def _pool(op, env, cfg, ids, lengths):
    s = ops.pool_sum(env[op.input], lengths, in_width=cfg.layernorm.out_width)
    # The float step: L2 normalization of the exact integer sums.
    s = s.astype(np.float64)
    return s / np.linalg.norm(s, axis=-1, keepdims=True)


_RUN = {P.Embed: _embed, P.LayerNorm: _layernorm, P.Requantize: _requantize, P.Linear: _linear,
        P.Attention: _attention, P.Gelu: _gelu, P.Residual: _residual, P.Pool: _pool}


def run_program(prog, cfg, ids, lengths, *, keep=False, progress=None, target="golden",
                client=None, port=None):
    """Run ``prog`` on a padded batch of token ids with the golden models of ``cfg``, or on the
    accelerator (:func:`intformer.model.accel.execute`).

    Parameters
    ----------
    prog : Program
    cfg : AccelConfig
        Must fit the program (:func:`intformer.model.compiler.check_config`).
    ids : array of int, shape (B, L)
    lengths : array of int, shape (B,)
    keep : bool
        Return every tensor (by name), not only the embeddings.
    progress : callable or None
        ``progress(i, n, name)`` after each operation (``name``: its kind and output).
    target : str
        ``"golden"``; ``"sim"`` (the RTL top on Verilator) or ``"board"`` (a board on serial
        ``port``), each op's result checked against golden's to the integer, padded batches
        included (attention with the top's key mask).
    client : boards.host.Client or None
        The accelerator to use (``"sim"``, ``"board"``), with buffers of ``cfg.buffers.depth``
        words (:func:`intformer.model.compiler.fit_config` raises it to the program's need);
        made by :func:`intformer.model.accel.connect` when None.

    Returns
    -------
    embeddings : array of float64, shape (B, hidden), L2-normalized; or a dict of every tensor.
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Config must be an AccelConfig, not {cfg!r}")
    if target != "golden":
        from . import accel

        r = accel.execute(prog, cfg, ids, lengths, target=target, client=client,
                          port=port, keep=keep, progress=progress)
        return r.tensors if keep else r.output
    check_sequence(prog, cfg, ids.shape[1])
    env = {}
    for i, op in enumerate(prog.ops):
        env[op.output] = _RUN[type(op)](op, env, cfg, ids, lengths)
        if progress is not None:
            progress(i + 1, len(prog.ops), f"{op.kind} {op.output}")
    return env if keep else env[prog.ops[-1].output]
