"""intformer.model.hf: loading a Hugging Face folder, and the errors for bad ones."""

import json

import numpy as np
import pytest

import intformer as itf


def test_minilm_config_and_weights(minilm):
    c = minilm.checkpoint.config
    assert (c.layers, c.hidden, c.heads, c.intermediate, c.vocab_size) == (6, 384, 12, 1536,
                                                                          30522)
    assert c.eps == 1e-12 and minilm.checkpoint.pooling == "mean"
    w = minilm.checkpoint.weights
    assert w["encoder.layer.5.output.dense.weight"].shape == (384, 1536)
    assert all(v.dtype == np.float64 for v in w.values())


def test_tokenizer_adds_cls_sep_and_never_truncates(minilm):
    ids = minilm.tokenize(["Hello world.", "word " * 600])
    assert ids[0][0] == 101 and ids[0][-1] == 102 and len(ids[0]) == 5
    assert len(ids[1]) == 602


def test_tiny_folder_loads(tmp_path, tiny_bert):
    m = itf.model.load(tiny_bert(tmp_path / "tiny"))
    assert m.checkpoint.config.hidden == 8
    e = m.reference(["a b c", "hello"])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0)


def test_missing_model():
    with pytest.raises(ValueError, match="Model must be a Hugging Face folder or one of "
                                         "all-MiniLM-L6-v2"):
        itf.model.load("/nonexistent/folder")


def test_folder_without_weights(tmp_path, tiny_bert):
    folder = tiny_bert(tmp_path / "noweights", weights=False)
    with pytest.raises(ValueError, match=r"Model folder must hold model.safetensors \(the "
                                         r"weights\), not only \['config.json', "
                                         r"'tokenizer.json'\]"):
        itf.model.load(folder)


def test_unsupported_architecture(tmp_path, tiny_bert):
    folder = tiny_bert(tmp_path / "gpt", arch="GPT2LMHeadModel", weights=False)
    with pytest.raises(ValueError, match="Model architecture must be a BERT-family post-LN "
                                         r"encoder \(BertModel.*\), not 'GPT2LMHeadModel'"):
        itf.model.load(folder)


def test_tokenizer_mismatch(tmp_path, tiny_bert):
    folder = tiny_bert(tmp_path / "mismatch", vocab_size=1000)
    with pytest.raises(ValueError, match="Tokenizer vocabulary must match the model's "
                                         "vocab_size 1000, not 30522 tokens"):
        itf.model.load(folder)


def test_missing_tensor(tmp_path, tiny_bert):
    folder = tiny_bert(tmp_path / "short")
    raw = json.loads((folder / "config.json").read_text())
    raw["num_hidden_layers"] = 2
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="Model weights must include every BERT encoder "
                                         "tensor, not miss 'encoder.layer.1"):
        itf.model.load(folder)
