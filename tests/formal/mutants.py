"""Deliberately broken variants of a component, for the mutation tests: each wraps the component,
keeps its ports (plus a free ``chaos`` input that triggers the fault) and breaks one of them."""

from amaranth.hdl import Const, Module, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

__all__ = ["MUTATIONS", "mutant"]


def _member(obj, path):
    for step in path:
        obj = obj[step] if isinstance(step, int) else getattr(obj, step)
    return obj


def _withdraw(m, inner, outer, chaos):
    """``valid`` drops (and the beat stays inside) while ``chaos`` is high."""
    m.d.comb += [outer.valid.eq(inner.valid & ~chaos), inner.ready.eq(outer.ready & ~chaos),
                 outer.payload.eq(inner.payload)]


def _payload(m, inner, outer, chaos):
    """The payload's bit 0 flips while ``chaos`` is high."""
    m.d.comb += [outer.valid.eq(inner.valid), inner.ready.eq(outer.ready),
                 Value.cast(outer.payload).eq(Value.cast(inner.payload) ^ chaos)]


def _drop(m, inner, outer, chaos):
    """A beat taken from the component while ``chaos`` is high goes nowhere."""
    m.d.comb += [outer.valid.eq(inner.valid & ~chaos), inner.ready.eq(outer.ready | chaos),
                 outer.payload.eq(inner.payload)]


def _duplicate(m, inner, outer, chaos):
    """A beat transferred while ``chaos`` is high stays in the component, to be sent again."""
    m.d.comb += [outer.valid.eq(inner.valid), inner.ready.eq(outer.ready & ~chaos),
                 outer.payload.eq(inner.payload)]


def _accept(m, inner, outer, chaos):
    """An input stream: the component's ``ready`` is forced high while ``chaos`` is high (a beat
    taken while it cannot hold it)."""
    m.d.comb += [inner.valid.eq(outer.valid), inner.payload.eq(outer.payload),
                 outer.ready.eq(inner.ready | chaos)]


def _flip(m, inner, outer, chaos):
    """A plain output's bit 0 flips while ``chaos`` is high."""
    m.d.comb += Value.cast(outer).eq(Value.cast(inner) ^ chaos)


MUTATIONS = {"withdraw": _withdraw, "payload": _payload, "drop": _drop,
             "duplicate": _duplicate, "accept": _accept, "flip": _flip}


class _Mutant(wiring.Component):
    def __init__(self, dut, port, mutation):
        self._dut, self._port, self._mutation = dut, port, MUTATIONS[mutation]
        members = dict(dut.signature.members.items())
        members["chaos"] = In(1)
        super().__init__(members)
        self._delegate = True

    def __getattr__(self, name):       # the component's other attributes (register_file)
        if name.startswith("_") or not self.__dict__.get("_delegate"):
            raise AttributeError(name)
        return getattr(self._dut, name)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self._dut
        for path, member, inner in dut.signature.flatten(dut):
            if path[0] == self._port:
                continue
            outer = _member(self, path)
            if isinstance(Value.cast(outer), Const):     # always_ready, always_valid
                continue
            if member.flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)
        self._mutation(m, getattr(dut, self._port), getattr(self, self._port), self.chaos)
        return m


def mutant(port, mutation):
    """A ``wrap`` for :meth:`formal.proof.Proof.run`: the component with ``port`` broken by
    ``mutation`` (a key of :data:`MUTATIONS`)."""
    return lambda dut: _Mutant(dut, port, mutation)
