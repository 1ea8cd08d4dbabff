"""Datasheets of the generated Verilog: what an outsider needs to drive ``<unit>.v`` alone.

For each unit, :func:`describe` gives a JSON-ready description (clock, reset, every port with
its direction, width and role, every stream payload as bit fields, and the unit's own
documentation: beat order, latency, throughput), and :func:`markdown` renders it. For the
accelerator top, :func:`protocol` adds the command protocol (opcodes, ops, buffers with their
word layouts and depths, registers with widths and maxima, status codes), read from
:mod:`hw.isa`, the one home of those numbers, so that the datasheet cannot drift from the
gateware.
"""

import inspect
import re

from amaranth.hdl import Shape
from amaranth.lib import data, stream, wiring

from hw import isa

__all__ = ["describe", "protocol", "markdown", "payload_fields", "member_docs"]

CLOCK = {"port": "clk", "edge": "rising",
         "note": "One clock domain; every register and memory is clocked on its rising edge."}
RESET = {"port": "rst", "polarity": "active-high", "kind": "synchronous", "required": False,
         "note": "Every register is declared with its reset value as its initial value, so "
                 "reset is not needed after configuration or at simulation start. Holding rst "
                 "high for one rising edge returns every register to that value; memory "
                 "contents are not reset. Tie rst low if unused."}
STREAM_RULES = ("A stream transfers a beat on each rising edge where valid and ready are both "
                "high. Once valid is high, payload and valid hold until the transfer. A "
                "producer never waits for ready before raising valid; ready may depend on "
                "valid.")


def payload_fields(shape, name=""):
    """The bit fields of a payload shape: ``[{"name", "lsb", "msb", "width", "signed"}]``,
    least significant first. Array layouts give one field per lane, ``name[i]``: lane 0 in
    the low bits (``lane[i]``)."""
    if isinstance(shape, data.Layout):
        fields = []
        for key, field in shape:
            sub = f"{name or 'lane'}[{key}]" if isinstance(key, int) else (
                f"{name}.{key}" if name else key)
            for f in payload_fields(field.shape, sub):
                fields.append(dict(f, lsb=f["lsb"] + field.offset,
                                   msb=f["msb"] + field.offset))
        return fields
    s = Shape.cast(shape)
    return [{"name": name or "value", "lsb": 0, "msb": s.width - 1, "width": s.width,
             "signed": s.signed}]


_ENTRY = re.compile(r"^(\w+(?:, \w+)*) : (.*)$")


def member_docs(cls):
    """``{port name: (declared type, description)}`` from the numpydoc ``Members`` section of
    ``cls``'s docstring (``a, b : type`` entries give both names the same text)."""
    doc = inspect.getdoc(cls) or ""
    found = re.search(r"^Members\n-+\n(.*?)(?:\n\n[A-Z][^\n]*\n-+\n|\n\n(?=[A-Z])|\Z)", doc,
                      re.S | re.M)
    if not found:
        return {}
    out, pending, text = {}, [], []

    def flush():
        for (names, kind) in pending:
            for n in names:
                out[n] = (kind, " ".join(text))

    for line in found.group(1).splitlines():
        entry = _ENTRY.match(line)
        if entry:
            if text:
                flush()
                pending, text = [], []
            pending.append((entry.group(1).split(", "), entry.group(2)))
        elif line.strip():
            text.append(line.strip())
    flush()
    return out


def _behaviour(cls):
    """The docstring of ``cls`` without its Parameters and Members sections."""
    doc = inspect.getdoc(cls) or ""
    kept, skip = [], False
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        heading = i + 1 < len(lines) and set(lines[i + 1]) == {"-"} and line.strip()
        if heading:
            skip = line.strip() in ("Parameters", "Members")
        elif skip and i and not lines[i - 1].strip() and line[:1].isalpha() \
                and not _ENTRY.match(line):
            skip = False            # a paragraph after the section (e.g. "Latency: ...")
        if not skip:
            kept.append(line)
    return "\n".join(kept).strip()


def describe(unit, component):
    """JSON-ready datasheet of ``component`` as generated for ``unit`` (``intformer_<unit>``)."""
    docs = member_docs(type(component))
    members = component.signature.members
    ports = {"clk": {"direction": "in", "width": 1, "role": "clock (rising edge)"},
             "rst": {"direction": "in", "width": 1,
                     "role": "reset, active-high, synchronous (optional)"}}
    streams = {}
    for path, member, value in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        width = len(value.as_value() if hasattr(value, "as_value") else value)
        top = members[path[0]]
        entry = {"direction": member.flow.value.lower(), "width": width}
        if top.is_signature and isinstance(top.signature, stream.Signature):
            producer = "the host" if top.flow == wiring.In else "the unit"
            entry["role"] = {"valid": f"stream {path[0]}: valid (driven by {producer})",
                             "ready": f"stream {path[0]}: ready (driven by the "
                                      f"{'unit' if top.flow == wiring.In else 'host'})",
                             "payload": f"stream {path[0]}: payload"}[path[-1]]
        elif member.flow == wiring.In:
            entry["role"] = "input, held constant while the unit works"
        else:
            entry["role"] = "output"
        if path[0] in docs and path[-1] not in ("valid", "ready"):
            entry["description"] = docs[path[0]][1]
        ports[name] = entry
    for name, member in members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            fields = payload_fields(member.signature.members["payload"].shape)
            streams[name] = {"direction": "in" if member.flow == wiring.In else "out",
                             "payload_width": max(f["msb"] for f in fields) + 1,
                             "fields": fields}
    doc = inspect.getdoc(type(component)) or ""
    return {
        "module": f"intformer_{unit}", "file": f"{unit}.v",
        "summary": doc.splitlines()[0] if doc else "",
        "clock": CLOCK, "reset": RESET, "stream_rules": STREAM_RULES,
        "ports": ports, "streams": streams, "behaviour": _behaviour(type(component)),
    }


def _enum_docs(enum_cls):
    """``{member name: its #: comment}`` from the source of an :mod:`hw.isa` enum: the
    comment after the member on its line, or the ``#:`` lines just above it."""
    out, above = {}, []
    for line in inspect.getsource(enum_cls).splitlines():
        comment = re.match(r"\s+#: (.*)$", line)
        if comment:
            above.append(comment.group(1).strip())
            continue
        found = re.match(r"\s+(\w+) = \w+(?:\s+#: (.*))?$", line)
        if found and (found.group(2) or above):
            out[found.group(1)] = (found.group(2) or " ".join(above)).strip()
        above = []
    return out


def protocol(cfg, depth=None):
    """The command protocol of ``Accelerator(cfg, depth=depth)`` (``depth`` by default the
    config's, ``cfg.buffers.depth``), from :mod:`hw.isa`."""
    def table(enum_cls):
        docs = {"OK": "the command was carried out", **_enum_docs(enum_cls)}
        return [{"name": m.name, "value": m.value, "meaning": docs.get(m.name, "")}
                for m in enum_cls]

    specs = isa.buffer_specs(cfg, depth)
    regs = isa.register_specs(cfg, depth)
    return {
        "framing": {
            "command": "opcode (1 byte), length (2 bytes, little-endian), payload (length "
                       "bytes) on cmd",
            "response": "status (1 byte, an error code), length (2 bytes, little-endian), "
                        "payload (length bytes) on rsp; exactly one response per command",
            "byte_order": "little-endian for every multi-byte field and word",
            "run": "RUN answers as soon as the run has started; poll STATUS until its busy "
                   "flag (bit 0) is clear. While a run is busy only STATUS is accepted.",
        },
        "commands": table(isa.Command),
        "ops": [dict(op, enabled=_op_enabled(cfg, op["name"])) for op in table(isa.Op)],
        "buffers": [{"name": s.buf.name, "value": s.buf.value, "lanes": s.lanes,
                     "elem_width": s.elem_width, "signed": True, "word_bytes": s.nbytes,
                     "depth": s.depth, "readable": s.readable, "writable": s.writable,
                     "meaning": _enum_docs(isa.Buf).get(s.buf.name, "")}
                    for s in specs.values()],
        "registers": [{"name": r.name, "value": r.value, "width": w, "max": hi,
                       "meaning": _register_meaning(r)} for r, (w, hi) in regs.items()],
        "errors": table(isa.Error),
    }


#: What the registers without a comment in hw/isa.py hold.
_REGISTER_MEANINGS = {
    isa.Reg.M: "GEMM M (rows of A)", isa.Reg.K: "GEMM K (inner dimension)",
    isa.Reg.N: "GEMM N (columns of B)", isa.Reg.ROW_LEN: "nonlinear row length (elements)",
    isa.Reg.ROWS: "nonlinear rows per RUN", isa.Reg.RQ_MULT: "GEMM requantization multiplier m",
    isa.Reg.RQ_SHIFT: "GEMM requantization shift s",
}


def _register_meaning(reg):
    for regs, what in ((isa.SOFTMAX_REGS, "softmax constant"), (isa.GELU_REGS, "GELU constant"),
                       (isa.ATTENTION_REGS, "attention softmax constant")):
        for field, r in regs.items():
            if r == reg:
                return f"{what} `{field}` (sim.golden)"
    return _enum_docs(isa.Reg).get(reg.name) or _REGISTER_MEANINGS.get(reg, "")


def _op_enabled(cfg, name):
    if name in ("GEMM", "GEMM_RAW"):
        return True
    return getattr(cfg, name.lower()).enabled


def _row(*cells):
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def markdown(sheet, cfg_name):
    """The datasheet ``sheet`` (from :func:`describe`, with ``protocol`` for the top) as
    Markdown."""
    out = [f"# `{sheet['module']}` ({sheet['file']}, config `{cfg_name}`)", "",
           sheet["summary"], "", "Generated by `intformer generate`; the same facts are in "
           "`intformer.json`.", "", "## Clock and reset", "",
           f"- `clk`: {sheet['clock']['note']}",
           f"- `rst`: active-high, synchronous. {sheet['reset']['note']}", "",
           "## Ports", "", _row("port", "dir", "width", "role", "description"),
           _row("---", "---", "---:", "---", "---")]
    for name, p in sheet["ports"].items():
        out.append(_row(f"`{name}`", p["direction"], p["width"], p["role"],
                        p.get("description", "")))
    out += ["", "## Streams", "", sheet["stream_rules"], ""]
    for name, s in sheet["streams"].items():
        out += [f"### `{name}` ({s['direction']}, payload {s['payload_width']} bits)", "",
                _row("field", "bits", "width", "signed"), _row("---", "---", "---:", "---")]
        for f in s["fields"]:
            out.append(_row(f"`{f['name']}`", f"[{f['msb']}:{f['lsb']}]", f["width"],
                            "yes" if f["signed"] else "no"))
        out.append("")
    out += ["## Behaviour: beat order, latency, throughput", "",
            "From the unit's documentation:", "", "```text", sheet["behaviour"], "```", ""]
    if "protocol" in sheet:
        out += _protocol_markdown(sheet["protocol"])
    return "\n".join(out) + "\n"


def _protocol_markdown(p):
    out = ["## Command protocol", ""]
    out += [f"- {key.replace('_', ' ')}: {text}" for key, text in p["framing"].items()]
    out += ["", "### Opcodes", "", _row("opcode", "value", "payload / meaning"),
            _row("---", "---:", "---")]
    out += [_row(c["name"], f"0x{c['value']:02x}", c["meaning"]) for c in p["commands"]]
    out += ["", "### Ops of RUN", "", _row("op", "value", "in this config", "meaning"),
            _row("---", "---:", "---", "---")]
    out += [_row(o["name"], f"0x{o['value']:02x}", "yes" if o["enabled"] else "no (UNIT)",
                 o["meaning"]) for o in p["ops"]]
    out += ["", "### Buffers", "", "A word is `word bytes` bytes, little-endian, lane 0 in the "
            "low bits, each lane a two's-complement integer of `elem width` bits.", "",
            _row("buffer", "value", "lanes", "elem width", "word bytes", "depth (words)",
                 "readable", "writable", "meaning"),
            _row("---", "---:", "---:", "---:", "---:", "---:", "---", "---", "---")]
    out += [_row(b["name"], b["value"], b["lanes"], b["elem_width"], b["word_bytes"],
                 b["depth"], "yes" if b["readable"] else "no",
                 "yes" if b["writable"] else "no", b["meaning"])
            for b in p["buffers"]]
    out += ["", "### Registers (SET_REG: reg, then the value in 1 to 8 bytes, little-endian)",
            "", _row("register", "value", "width", "max", "meaning"),
            _row("---", "---:", "---:", "---:", "---")]
    out += [_row(r["name"], f"0x{r['value']:02x}", r["width"], r["max"], r["meaning"])
            for r in p["registers"]]
    out += ["", "### Status codes", "", _row("status", "value", "meaning"),
            _row("---", "---:", "---")]
    out += [_row(e["name"], f"0x{e['value']:02x}", e["meaning"]) for e in p["errors"]]
    return out + [""]
