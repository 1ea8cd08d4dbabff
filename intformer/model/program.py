"""The integer program: an inspectable, serializable list of accelerator operations with their
shapes, scales and integer constants."""

import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Op", "Embed", "LayerNorm", "Requantize", "Linear", "Attention", "Gelu", "Residual",
           "Pool", "Program", "OPS"]


@dataclass
class Op:
    """One operation. ``output`` names the tensor it writes; ``scale`` is the output's scale
    (real = q * scale; an array for per-channel scales). Integer constants are int64 arrays."""

    output: str
    scale: object

    @property
    def kind(self):
        return type(self).__name__

    @property
    def inputs(self):
        """Names of the tensors the op reads."""
        return [getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata.get("input")]

    def describe(self):
        """One line: kind, inputs -> output, and the constants' shapes."""
        consts = ", ".join(f"{f.name} {tuple(v.shape)}" for f in dataclasses.fields(self)
                           if isinstance(v := getattr(self, f.name), np.ndarray))
        return (f"{self.kind:<10} {', '.join(self.inputs) or '-'} -> {self.output}"
                + (f"  [{consts}]" if consts else ""))


def _in():
    return field(metadata={"input": True})


@dataclass
class Embed(Op):
    """Token, position and type embedding rows, each held as signed ``out_width``-bit integers
    at ``scale``; ``y = saturate(word[id] + position[p] + token_type, out_width)``. The lookup is
    host work (the tables are quantized once, so it adds integers)."""

    word: np.ndarray = None
    position: np.ndarray = None
    token_type: np.ndarray = None
    out_width: int = 16


@dataclass
class LayerNorm(Op):
    """:func:`sim.golden.layernorm` with integer constants (``constants=``): ``gamma``, ``beta``
    and ``shift`` as :class:`sim.golden.LayerNormConstants` holds them."""

    input: str = _in()
    gamma: np.ndarray = None
    beta: np.ndarray = None
    shift: int = 0
    in_scale: float = 1.0


@dataclass
class Requantize(Op):
    """:func:`sim.ops.requantize_channels`: per-channel ``(multipliers, shifts)``."""

    input: str = _in()
    multipliers: np.ndarray = None
    shifts: np.ndarray = None
    in_width: int = 16
    out_width: int = 8


@dataclass
class Linear(Op):
    """:func:`sim.ops.linear`: ``x @ weight`` with ``bias`` preloaded, per-channel
    requantization to ``out_width`` bits; ``x_width``-bit activations (wider than the array's
    operands: one engine pass per signed digit)."""

    input: str = _in()
    weight: np.ndarray = None
    bias: np.ndarray = None
    multipliers: np.ndarray = None
    shifts: np.ndarray = None
    out_width: int = 8
    x_width: int = 8


@dataclass
class Attention(Op):
    """:func:`sim.ops.masked_attention` over ``heads`` heads of the hidden axis."""

    q: str = _in()
    k: str = _in()
    v: str = _in()
    heads: int = 1
    q_scale: float = 1.0
    k_scale: float = 1.0
    v_scale: float = 1.0


@dataclass
class Gelu(Op):
    """:func:`sim.golden.gelu` at ``in_scale`` (the unit's config sets the widths)."""

    input: str = _in()
    in_scale: float = 1.0


@dataclass
class Residual(Op):
    """:func:`sim.ops.residual_add`: ``saturate(round_shift(a*ma + b*mb, shift), out_width)``."""

    a: str = _in()
    b: str = _in()
    ma: int = 0
    mb: int = 0
    shift: int = 0
    out_width: int = 16


@dataclass
class Pool(Op):
    """:func:`sim.ops.pool_sum` over each sequence's tokens, then L2 normalization in float
    (the one float step after the embedding lookup)."""

    input: str = _in()


OPS = {cls.__name__: cls for cls in (Embed, LayerNorm, Requantize, Linear, Attention, Gelu,
                                     Residual, Pool)}


@dataclass
class Program:
    """A model as accelerator operations, in execution order.

    Attributes
    ----------
    ops : list of Op
    hidden, heads, max_positions : int
        The encoder's shape, for checks at run time.
    units : dict
        The unit widths the constants were derived for (``{"layernorm": {...}, "gelu":
        {...}, "requant": {...}}``); a config must match them to run the program.
    """

    ops: list
    hidden: int
    heads: int
    max_positions: int
    units: dict

    def __str__(self):
        return "\n".join(f"{i:3d} {op.describe()}" for i, op in enumerate(self.ops))

    def save(self, path):
        """Write the program to one ``.npz`` file: a JSON description plus the arrays."""
        arrays, ops = {}, []
        for i, op in enumerate(self.ops):
            d = {"kind": op.kind}
            for f in dataclasses.fields(op):
                v = getattr(op, f.name)
                if isinstance(v, np.ndarray):
                    # stored in the smallest integer type that holds it (int8 weights, int16
                    # tables); read back as int64
                    arrays[f"{i}.{f.name}"] = _narrow(v)
                    d[f.name] = {"array": f"{i}.{f.name}"}
                else:
                    d[f.name] = v
            ops.append(d)
        meta = {"hidden": self.hidden, "heads": self.heads,
                "max_positions": self.max_positions, "units": self.units, "ops": ops}
        buf = io.BytesIO()
        np.savez(buf, __program__=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                            **arrays)
        Path(path).write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path):
        """Read a program written by :meth:`save`."""
        with np.load(path) as z:
            meta = json.loads(z["__program__"].tobytes())
            ops = []
            for d in meta["ops"]:
                kind = d.pop("kind")
                if kind not in OPS:
                    raise ValueError(f"Program op must be one of {', '.join(OPS)}, not {kind!r}")
                kw = {k: (_widen(z[v["array"]]) if isinstance(v, dict) and "array" in v else v)
                      for k, v in d.items()}
                ops.append(OPS[kind](**kw))
        return cls(ops=ops, hidden=meta["hidden"], heads=meta["heads"],
                   max_positions=meta["max_positions"], units=meta["units"])


def _narrow(a):
    if not np.issubdtype(a.dtype, np.integer):
        return a
    lo, hi = int(a.min(initial=0)), int(a.max(initial=0))
    bits = next(b for b in (8, 16, 32, 64) if -(1 << (b - 1)) <= lo and hi < (1 << (b - 1)))
    return a.astype(f"int{bits}")


def _widen(a):
    return a.astype(np.int64) if np.issubdtype(a.dtype, np.integer) else a
