"""The peer: ONNX Runtime's dynamic INT8 quantization of all-MiniLM-L6-v2, on the same
evaluation sentences, against the same float64 reference as ``bench/model.py``.

Outside the project's dependencies (the export needs torch): run it in the environment of
``bench/model_reference.py`` with ``onnx onnxruntime onnxscript`` added::

    PYTHONPATH=. build/stvenv/bin/python bench/model_onnx.py

The graph is exported from transformers' BertModel (float32), quantized with
``onnxruntime.quantization.quantize_dynamic`` (INT8 per-channel weights; activations quantized
per tensor at run time; softmax, GELU, LayerNorm and the attention matmuls stay float), and run
on CPU. Files go to build/models/.
"""

import sys
from pathlib import Path

import numpy as np

from intformer.model import hf
from intformer.model.api import Model
from intformer.model.sentences import EVALUATION

BUILD = Path(__file__).resolve().parent.parent / "build" / "models"


def export(folder, path):
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(folder)).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones((1, 8), dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(Encoder(), (ids, ids, torch.zeros_like(ids)), str(path),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={n: {0: "b", 1: "l"} for n in
                                        ("input_ids", "attention_mask", "token_type_ids",
                                         "last_hidden_state")},
                          opset_version=17, dynamo=False)


def main():
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        print("needs onnxruntime, onnx, torch and transformers (see this script's docstring)")
        return 1
    folder = BUILD / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").exists():
        print("run bench/model_reference.py first (it extracts the model folder)")
        return 1
    fp32, int8 = BUILD / "minilm-fp32.onnx", BUILD / "minilm-int8-dynamic.onnx"
    if not fp32.exists():
        export(folder, fp32)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    m = Model(hf.read_checkpoint("all-MiniLM-L6-v2"))
    ref = m.reference(EVALUATION)
    iu = np.triu_indices(len(EVALUATION), 1)
    for name, path in (("ONNX Runtime float32", fp32), ("ONNX Runtime dynamic INT8", int8)):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        emb = []
        for ids in m.tokenize(EVALUATION):
            x = ids[None]
            h = sess.run(None, {"input_ids": x, "attention_mask": np.ones_like(x),
                                "token_type_ids": np.zeros_like(x)})[0][0].astype(np.float64)
            e = h.mean(axis=0)
            emb.append(e / np.linalg.norm(e))
        emb = np.array(emb)
        cos = (emb * ref).sum(axis=1)
        rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
        rho = np.corrcoef(rank((emb @ emb.T)[iu]), rank((ref @ ref.T)[iu]))[0, 1]
        print(f"{name}: cosine to float64 mean {cos.mean():.5f}, min {cos.min():.5f}, "
              f"Spearman {rho:.5f} ({len(EVALUATION)} sentences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
