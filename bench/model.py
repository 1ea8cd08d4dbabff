"""all-MiniLM-L6-v2 through intformer: integer embeddings against the float64 reference, per-layer
errors, golden forward time and modelled cycles on the ulx3s preset.

    .venv/bin/python bench/model.py [--ablation]
    .venv/bin/python bench/model.py --rtl [--tokens 64]

``--ablation`` also quantizes with the second FFN GEMM's inputs at INT8 (one pass) to show what
the 15-bit two-pass inputs buy. ``--rtl`` instead runs one sentence of ``--tokens`` tokens (64 by
default) through the RTL top on Verilator (the ulx3s preset fitted to the model), every tensor
checked against golden, and prints per layer and per op kind the RTL cycles, the modelled ones
and their ratio, the latency at the board's clock, the GOPS achieved against the array's peak
and the link's bytes; then the forward's compute time and link time (about 10 min for 64
tokens on a loaded 2-core machine, after the model's build).

ONNX Runtime's dynamic INT8, the peer, is measured by ``bench/model_onnx.py`` (outside the
project's dependencies: the export needs torch).
"""

import argparse
import os
import time

# One BLAS thread: the golden GEMMs are small (64 x 512 x 256 at most per engine call), and
# multithreaded OpenBLAS on a loaded 2-core machine ran them 17x slower (0.5 against 8.7
# GFLOPS, measured). Set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import intformer as itf  # noqa: E402
from intformer.model import compiler, reference
from intformer.model import quantize as Q
from intformer.model.cli import Progress
from intformer.model.sentences import CALIBRATION, EVALUATION, of_length


def spearman(a, b):
    rank = lambda x: np.argsort(np.argsort(x)).astype(np.float64)  # noqa: E731
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def accuracy(m, ref):
    t0 = time.monotonic()
    emb = m.run(EVALUATION, progress=Progress("golden forward of the evaluation set"))
    dt = time.monotonic() - t0
    cos = (emb * ref).sum(axis=1)
    iu = np.triu_indices(len(EVALUATION), 1)
    rho = spearman((emb @ emb.T)[iu], (ref @ ref.T)[iu])
    return cos, rho, dt


def layer_errors(m):
    """Relative RMS and max abs error of each hidden state over the evaluation set's tokens."""
    ck = m.checkpoint
    scale = {op.output: op.scale for op in m.program.ops}
    names = ["emb.out"] + [f"L{i}.out" for i in range(ck.config.layers)]
    err = {n: [0.0, 0.0, 0.0] for n in names}
    envs = m.run(EVALUATION, keep=True)
    for text, env in zip(EVALUATION, envs, strict=True):
        ids = ck.tokenize([text])
        tok, lengths = reference.pad_batch(ids)
        _, hidden = reference.forward(ck, tok, lengths)
        n = len(ids[0])
        for name, h in zip(names, hidden, strict=True):
            q = env[name][env["_row"], :n] * scale[name]
            d = q - h[0, :n]
            err[name][0] += float((d * d).sum())
            err[name][1] += float((h[0, :n] ** 2).sum())
            err[name][2] = max(err[name][2], float(np.abs(d).max()))
    return [(n, np.sqrt(e[0] / e[1]), e[2]) for n, e in err.items()]


def rtl_forward(m, tokens):
    """One sentence of ``tokens`` tokens through the Verilated top (``execute(target="sim")``)
    on the ulx3s preset fitted to the model: the :class:`intformer.model.accel.Execution`."""
    from intformer.model import accel

    text = of_length(m.tokenize, tokens)
    cfg = compiler.fit_config(itf.AccelConfig.preset("ulx3s"), m.program, tokens)
    tok, lengths = reference.pad_batch(m.tokenize([text]))
    print(f"{tokens} tokens: {text[:70]!r}...\n{cfg.name}: {cfg.array.rows}x{cfg.array.cols} "
          f"array, buffers of {cfg.buffers.depth} words", flush=True)
    return accel.execute(m.program, cfg, tok, lengths, target="sim",
                         progress=Progress(f"RTL forward of {tokens} tokens"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--rtl", action="store_true",
                    help="one sentence through the RTL top (Verilator) instead")
    ap.add_argument("--tokens", type=int, default=64, help="its tokens (--rtl; default 64)")
    args = ap.parse_args()

    t0 = time.monotonic()
    m = itf.model.load("all-MiniLM-L6-v2")
    print(f"{m!r}: loaded in {time.monotonic() - t0:.1f} s (no torch, no network)")
    if args.rtl:
        m.quantize(CALIBRATION, progress=Progress("quantize"))
        print(rtl_forward(m, args.tokens))
        return
    ids = m.tokenize(EVALUATION)
    lens = sorted(len(x) for x in ids)
    print(f"evaluation: {len(EVALUATION)} sentences of {lens[0]} to {lens[-1]} tokens; "
          f"calibration: {len(CALIBRATION)} other sentences")
    t0 = time.monotonic()
    ref = m.reference(EVALUATION)
    print(f"float64 reference: {time.monotonic() - t0:.1f} s")
    t0 = time.monotonic()
    m.quantize(CALIBRATION, progress=Progress("quantize"))
    print(f"quantized in {time.monotonic() - t0:.1f} s")
    ulx3s = itf.AccelConfig.preset("ulx3s")
    m.compile(ulx3s, fit=True, seq_len=max(lens))

    cos, rho, dt = accuracy(m, ref)
    print(f"\naccuracy, integer vs float64 ({len(EVALUATION)} sentences):")
    print(f"  cosine mean {cos.mean():.5f} (target >= 0.995), min {cos.min():.5f} (>= 0.99)")
    print(f"  Spearman of the {len(EVALUATION) * (len(EVALUATION) - 1) // 2} pair similarities "
          f"{rho:.5f} (>= 0.99)")
    worst = np.argsort(cos)[:3]
    print("  worst: " + "; ".join(f"{cos[i]:.5f} {EVALUATION[i][:40]!r}" for i in worst))
    print(f"  golden forward of all {len(EVALUATION)} sentences: {dt:.1f} s")

    print("\nper-layer hidden-state error (relative RMS, max abs), evaluation tokens:")
    for name, rel, mx in layer_errors(m):
        print(f"  {name:<8} {rel:.4f}  {mx:.3f}")

    text = of_length(m.tokenize, 64)
    m.run([text])
    t0 = time.monotonic()
    reps = 3
    for _ in range(reps):
        m.run([text])
    print(f"\ngolden forward of one 64-token sentence: {(time.monotonic() - t0) / reps:.2f} s")
    c = m.compile(ulx3s, fit=True, seq_len=64)
    cfg = c.cfg
    clock, _ = compiler.board_clock(cfg)
    print(f"modelled cycles of one 64-token forward on {cfg.name} "
          f"({cfg.array.rows}x{cfg.array.cols} array): {c.cycles:,d} "
          f"({c.cycles / clock * 1e3:.1f} ms at {clock / 1e6:g} MHz)")
    by_kind = {}
    for s in c.steps:
        by_kind[s.op.kind] = by_kind.get(s.op.kind, 0) + s.cycles
    print("  by op: " + ", ".join(f"{k} {v / c.cycles:.1%}" for k, v in
                                  sorted(by_kind.items(), key=lambda kv: -kv[1]) if v))
    raised = [f"{sec}.{f}" for sec, f, _, _ in compiler.requirements(m.program, 64)
              if compiler.config_value(ulx3s, sec, f) != compiler.config_value(cfg, sec, f)]
    print(f"  limits raised from the ulx3s preset: {', '.join(raised) or 'none (it fits)'}")

    if args.ablation:
        Q.FFN2_BITS = 8
        try:
            m.quantize(CALIBRATION, progress=Progress("quantize, INT8 FFN2 inputs"))
            m.compile(ulx3s, fit=True, seq_len=max(lens))
            cos, rho, _ = accuracy(m, ref)
            print(f"\nablation, FFN2 inputs INT8 (one pass): cosine mean {cos.mean():.5f}, "
                  f"min {cos.min():.5f}, Spearman {rho:.5f}")
        finally:
            Q.FFN2_BITS = 15
    print("\nONNX Runtime dynamic INT8: bench/model_onnx.py (needs torch for the export, outside "
          "the project's dependencies)")


if __name__ == "__main__":
    main()
