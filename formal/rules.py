"""The stream rules as properties: asserted on the streams a component drives, assumed on the
streams it receives.

Of Amaranth's four rules (see :mod:`hw.stream`), two are properties of a trace and are checked
here: once ``valid`` is high it holds, and the payload with it, until the beat transfers. The other
two ("valid never waits for ready", "ready may depend on valid") are about combinational paths,
not traces; a cycle between ``valid`` and ``ready`` would be a combinational loop, which Amaranth
rejects before a proof starts.
"""

from amaranth.asserts import Initial
from amaranth.hdl import Assert, Assume, Cover, Signal, Value

__all__ = ["past", "transfer", "stream_rules"]


def past(m, value, *, name):
    """``value`` one cycle earlier, as a register added to ``m.d.sync`` (its ``init`` on the
    first cycle, which no property reads: see :func:`stream_rules`)."""
    reg = Signal.like(Value.cast(value), name=f"past_{name}")
    m.d.sync += reg.eq(value)
    return reg


def transfer(port):
    """High on the cycles where a beat of ``port`` transfers."""
    return port.valid & port.ready


def stream_rules(m, port, *, name, assume=False, cover=True):
    """Add the stream rules of ``port`` to ``m``: asserted (``assume=False``, the component under
    proof drives the stream) or assumed (it receives the stream, from any producer that obeys
    them).

    - after a cycle with ``valid & ~ready``, ``valid`` is still high;
    - and the payload has not changed.

    With ``cover``, also a :class:`~amaranth.hdl.Cover` that a beat transfers, so that the
    property is not vacuous.

    Parameters
    ----------
    m : Module
        The proof's module.
    port : stream interface
        The stream, seen from the component under proof.
    name : str
        The stream's name, for the properties' messages and the registers' names.
    assume : bool
        Assume the rules rather than assert them.
    cover : bool
        Cover a transfer.
    """
    check = Assume if assume else Assert
    payload = Value.cast(port.payload)
    waited = past(m, port.valid & ~port.ready, name=f"{name}_waited")
    held = past(m, payload, name=f"{name}_payload")
    with m.If(~Initial() & waited):
        m.d.comb += [
            check(port.valid, f"{name}: valid withdrawn before ready"),
            check(payload == held, f"{name}: payload changed while waiting"),
        ]
    if cover:
        m.d.comb += Cover(transfer(port), f"{name}: a beat transfers")
