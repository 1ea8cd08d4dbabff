"""The model path: a BERT-family encoder imported from a Hugging Face folder, quantized to an
integer-only program, and run on the golden models, the RTL (Verilator) or a board.

::

    import intformer as itf
    m = itf.model.load("all-MiniLM-L6-v2")          # or a folder with config.json,
    m.quantize(calibration_texts)                   #   model.safetensors, tokenizer.json
    c = m.compile(itf.AccelConfig.preset("ulx3s"), fit=True)
    emb = m.run(["A sentence."], target="golden")   # (B, hidden), L2-normalized
    emb = m.run(["A sentence."], target="sim")      # the same integers, on the RTL
"""

from .api import Model, load
from .compiler import Compiled, check_config, compile_program, fit_config
from .hf import BertConfig, Checkpoint, read_checkpoint
from .program import Program

__all__ = ["load", "Model", "Program", "Compiled", "compile_program", "check_config",
           "fit_config", "read_checkpoint", "Checkpoint", "BertConfig"]
