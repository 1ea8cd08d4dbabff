"""intformer.model.program: structure of the quantized program and its serialization."""

import dataclasses

import numpy as np
import pytest

import intformer as itf
from intformer.model import program as P
from intformer.model import quantize
from intformer.model.sentences import CALIBRATION


def test_program_structure(quantized):
    prog = quantized.program
    kinds = [op.kind for op in prog.ops]
    assert kinds[:2] == ["Embed", "LayerNorm"] and kinds[-1] == "Pool"
    assert kinds.count("Linear") == 6 * 6 and kinds.count("Attention") == 6
    for op in prog.ops:
        if isinstance(op, P.Linear):
            # INT8 weights per output channel, int32 bias, 16-bit multipliers
            assert op.weight.dtype == np.int64 and np.abs(op.weight).max() <= 127
            assert np.abs(op.bias).max() < 2 ** 31
            assert op.multipliers.max() < 2 ** 16 and op.shifts.max() <= 47
        if isinstance(op, P.Requantize):
            # INT8 GEMM inputs, except the second FFN GEMM's (15 bits, two INT8 passes)
            assert op.out_width == (15 if op.output.endswith(".a2") else 8)
            assert len(op.multipliers) == len(op.shifts)
        if isinstance(op, P.Linear) and op.output.endswith(".ffn2"):
            assert op.x_width == 15
    names = {op.output for op in prog.ops}
    assert all(i in names for op in prog.ops for i in op.inputs)


def test_round_trip(quantized, tmp_path):
    prog = quantized.program
    path = tmp_path / "p.npz"
    prog.save(path)
    back = P.Program.load(path)
    assert str(back) == str(prog)
    assert (back.hidden, back.heads, back.max_positions, back.units) == \
        (prog.hidden, prog.heads, prog.max_positions, prog.units)
    for a, b in zip(prog.ops, back.ops, strict=True):
        assert type(a) is type(b)
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y)
            else:
                assert x == y, f.name
    texts = ["The loaded program gives the same integers."]
    want = quantized.run(texts)
    quantized.program = back
    try:
        np.testing.assert_array_equal(quantized.run(texts), want)
    finally:
        quantized.program = prog


def test_quantize_refuses_bad_texts(minilm):
    with pytest.raises(ValueError, match="Calibration texts must be a non-empty list of "
                                         "strings, not 'one string'"):
        quantize.quantize(minilm.checkpoint, "one string")


def test_quantize_reports_each_calibration_batch_and_layer(tmp_path, tiny_bert):
    """Progress moves on after every float batch of the calibration pass and every layer, up
    to its total, so a long calibration never sits silent."""
    m = itf.model.load(tiny_bert(tmp_path / "tiny"))
    calls = []
    short = [t for t in CALIBRATION if len(m.tokenize([t])[0]) <= 32]   # the tiny model's limit
    n = quantize.CALIBRATION_BATCH * 2 + 1
    texts = (short * (n // len(short) + 1))[:n]
    quantize.quantize(m.checkpoint, texts, progress=lambda done, total: calls.append((done, total)))
    layers = m.checkpoint.config.layers
    assert calls == [(i, 3 + layers) for i in range(1, 4 + layers)]


def test_calibration_refuses_a_sequence_beyond_the_model(tmp_path, tiny_bert):
    m = itf.model.load(tiny_bert(tmp_path / "tiny"))
    with pytest.raises(ValueError, match="Sequence length must be at most 32 tokens \\(the "
                                         "model's max_position_embeddings\\), not 41"):
        quantize.quantize(m.checkpoint, ["word " * 39])
