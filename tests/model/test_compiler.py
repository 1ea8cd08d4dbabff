"""intformer.model.compiler and the run-time limits: config checks, fitting, splits, cycles."""

import numpy as np
import pytest

import intformer as itf
from boards import host
from hw.config import AttentionConfig, BufferConfig, GemmConfig
from hw.isa import LinMode
from intformer.model import compiler
from sim import cyclemodel


def test_config_too_small_names_each_limit(quantized, unfitted):
    with pytest.raises(ValueError, match=r"Config 'ulx3s' must fit the model \(raise these "
                                         r"limits.*layernorm.max_len must be at least 384, not "
                                         r"64;.*attention.max_seq_len must be at least 128, "
                                         r"not 64;.*gemm.acc_width must be at least 3\d, not 25"):
        compiler.check_config(quantized.program, unfitted, 128)


def test_fit_config_fits_and_keeps_the_array(quantized, unfitted):
    base = unfitted
    cfg = compiler.fit_config(base, quantized.program, 128)
    compiler.check_config(quantized.program, cfg, 128)
    assert cfg.array == base.array and cfg.gemm.max_k == base.gemm.max_k
    assert cfg.name == "ulx3s+model"
    # The buffers' depth is raised with the limits (a head of L=128, d=32 needs
    # ceil(128/6)*32 = 704 words of A), so the fitted config compiles as it is; a config that
    # fits is kept.
    assert (base.buffers.depth, cfg.buffers.depth) == (256, 1024)
    assert compiler.compile_program(quantized.program, cfg, 128).depth == 1024
    assert compiler.fit_config(cfg, quantized.program, 128) is cfg
    assert compiler.fit_depth(quantized.program, cfg, 128) is cfg
    # The ulx3s preset is that config with deeper buffers (2048 words: larger Linear blocks,
    # fewer link bytes); it fits as it is, for sequences of up to 128 tokens.
    preset = itf.AccelConfig.preset("ulx3s")
    assert cfg.replace(name="ulx3s", buffers=preset.buffers) == preset
    assert preset.buffers.depth == 2048
    assert compiler.fit_config(preset, quantized.program, 128) is preset


def test_fit_depth_raises_the_buffers_only(quantized, unfitted):
    cfg = compiler.fit_config(itf.AccelConfig.preset("ulx3s"), quantized.program, 64)
    shallow = cfg.replace(buffers=BufferConfig(128))
    deep = compiler.fit_depth(quantized.program, shallow, 64)
    assert deep == shallow.replace(buffers=BufferConfig(512))
    with pytest.raises(ValueError, match=r"Config 'ulx3s' must fit the model"):
        compiler.fit_depth(quantized.program, unfitted, 64)


def test_splits_and_cycles(quantized):
    # The ulx3s preset (fitted for 128 tokens, buffers of 2048 words), at the 512 words that
    # 64 need.
    cfg = quantized.compiled.cfg.replace(buffers=BufferConfig(512))
    c = compiler.compile_program(quantized.program, cfg, seq_len=64)
    ffn2 = next(s for s in c.steps if s.op.output == "L0.ffn2")
    # 64 x 1536 x 384, 15-bit inputs, on the preset's 22 x 6 array: two INT8 digits summed in
    # C with K in chunks of 64, the two digits of a chunk one after the other on the weights B
    # holds, blocks columns first (boards.splits.linear_split: the fewest link bytes),
    # 64 x 64 x 48: 8 column blocks (A holds 64 rows as 3 tiles of 22 rows, 192 of its 512
    # words), each 24 * 2 runs (47 RAW, then the requantizing one).
    assert cfg.array.rows == 22
    assert ffn2.calls == 8 * 24 * 2
    assert ("LINEAR, K in chunks of 64, 2 passes of 15-bit inputs, summed in C, blocks of "
            "64x64x48") in ffn2.note
    # Every run's modelled cycles and the command port's (cyclemodel.RUN_PORT_CYCLES).
    port = cyclemodel.RUN_PORT_CYCLES
    want = 8 * (47 * cyclemodel.linear_cycles(cfg, 64, 64, 48, raw=True)
                + cyclemodel.linear_cycles(cfg, 64, 64, 48))
    assert ffn2.cycles == want + ffn2.calls * port
    # A residual add: X holds 256 elements of each half, so 96 runs of one row of 256.
    res = next(s for s in c.steps if s.op.kind == "Residual")
    assert res.calls == 96 and res.cycles == 96 * (cyclemodel.residual_cycles(cfg, 1, 256) + port)
    att = next(s for s in c.steps if s.op.kind == "Attention")
    assert att.cycles == 12 * (cyclemodel.attention_run_cycles(cfg, 64, 32) + port)
    # LayerNorm: rows of 384 one-lane beats, one a run in X's 512 words.
    ln = next(s for s in c.steps if s.op.kind == "LayerNorm")
    assert ln.calls == 64 and ln.cycles == 64 * (cyclemodel.layernorm_cycles(cfg, 1, 384) + port)
    # GELU runs over C after each block of the FFN's first Linear (chained: the Linear's step
    # is empty, the GELU's counts both), one row a C word.
    i = next(i for i, s in enumerate(c.steps) if s.op.output == "L0.gelu")
    ffn1, gelu = c.steps[i - 1], c.steps[i]
    assert c.chained[i - 1] == i and ffn1.calls == ffn1.cycles == ffn1.link_bytes == 0
    (K, N), C = ffn1.op.weight.shape, cfg.array.cols
    split = host.linear_split(cfg, 512, 64, K, N, 1)
    runs = list(host.linear_runs(cfg, 512, 64, K, N, 1, split))
    blocks = [r for r in runs if r.read_c]
    want = sum(cyclemodel.linear_cycles(cfg, r.m, r.k, r.n, raw=LinMode.RAW in r.mode)
               for r in runs)
    want += sum(cyclemodel.gelu_cycles(cfg, r.m * -(-r.n // C), C, in_c=True) for r in blocks)
    assert gelu.calls == len(runs) + len(blocks) and gelu.cycles == want + gelu.calls * port
    assert gelu.note.endswith("then GELU over C") and gelu.macs == 64 * K * N
    assert c.cycles == sum(s.cycles for s in c.steps) > 0
    assert "total" in str(c) and "L5.ffn2" in str(c)


def test_k_split_changes_nothing(quantized):
    """Smaller GEMM maxima split every GEMM more; the integers stay the same."""
    texts = ["Splitting tensors must not change a single integer."]
    want = quantized.run(texts, keep=True)[0]
    cfg = quantized.compiled.cfg
    small = cfg.replace(gemm=GemmConfig(max_m=8, max_k=100, max_n=40, acc_width=cfg.acc_width),
                        buffers=BufferConfig(1024))
    kept = quantized.compiled
    try:
        quantized.compile(small)
        got = quantized.run(texts, keep=True)[0]
    finally:
        quantized.compiled = kept
    for name in ("L0.ffn2", "L5.out", "embedding"):
        np.testing.assert_array_equal(got[name], want[name])


def test_sequence_beyond_the_config(quantized):
    cfg = quantized.compiled.cfg.replace(attention=AttentionConfig(max_seq_len=16))
    kept = quantized.compiled
    try:
        with pytest.raises(ValueError, match="attention.max_seq_len must be at least 20, "
                                             "not 16"):
            quantized.compile(cfg, seq_len=20)
        quantized.compile(cfg, seq_len=16)
        with pytest.raises(ValueError, match=r"Sequence length must be at most 16 tokens "
                                             r"\(the compiled seq_len\), not 2\d"):
            quantized.run(["This sentence is certainly longer than sixteen tokens once it has "
                           "been split into word pieces."])
    finally:
        quantized.compiled = kept


def test_run_needs_quantize_and_compile(minilm_zip):
    m = itf.model.load(minilm_zip)
    with pytest.raises(ValueError, match="Model must be quantized before compile"):
        m.compile(itf.AccelConfig.preset("ulx3s"))
    with pytest.raises(ValueError, match="Model must be compiled before run"):
        m.run(["x"])
    with pytest.raises(ValueError, match="^Target must be one of 'golden', 'sim', 'board', not "
                                         "'fpga'$"):
        m.run(["x"], target="fpga")


def test_sequence_beyond_the_model(quantized):
    from intformer.model import executor
    with pytest.raises(ValueError, match=r"Sequence length must be at most 512 tokens \(the "
                                         r"model's max_position_embeddings\), not 600"):
        executor.check_sequence(quantized.program, quantized.compiled.cfg, 600)
    with pytest.raises(TypeError, match="Texts must be a non-empty list of strings, not 'x'"):
        quantized.run("x")
