"""Deliberately broken variants of a component, for the mutation tests: each wraps the component,
keeps its ports (plus a free ``chaos`` input that triggers the fault) and breaks one of them; or,
for a part that a unit makes inside itself, stands in for it there."""

from amaranth.asserts import AnySeq
from amaranth.hdl import Const, Module, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hw.stream import Credits

__all__ = ["MUTATIONS", "mutant", "forced", "ForgetfulCredits"]


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


def _corrupt(m, inner, outer, chaos):
    """An input stream: the payload's bit 0 flips on its way in while ``chaos`` is high (the
    component keeps a payload other than the one it took)."""
    m.d.comb += [inner.valid.eq(outer.valid), outer.ready.eq(inner.ready),
                 Value.cast(inner.payload).eq(Value.cast(outer.payload) ^ chaos)]


def _address(m, inner, outer, chaos):
    """A memory read port: the address's bit 0 flips while ``chaos`` is high (the memory
    returns another word than the one asked for)."""
    m.d.comb += [outer.addr.eq(inner.addr ^ chaos), inner.data.eq(outer.data)]


def _loop(m, inner, outer, chaos):
    """A reader's control: the loop's ``count_k`` bit 0 flips on its way in while ``chaos`` is
    high (the reader walks another loop than the one asked for)."""
    m.d.comb += [inner.start.eq(outer.start), inner.loop.eq(outer.loop),
                 inner.loop.count_k.eq(outer.loop.count_k ^ chaos)]


def _flip(m, inner, outer, chaos):
    """A plain output's bit 0 flips while ``chaos`` is high."""
    m.d.comb += Value.cast(outer).eq(Value.cast(inner) ^ chaos)


MUTATIONS = {"withdraw": _withdraw, "payload": _payload, "drop": _drop,
             "duplicate": _duplicate, "accept": _accept, "corrupt": _corrupt, "address": _address,
             "loop": _loop, "flip": _flip}


class _Wrapper(wiring.Component):
    """A component around ``self._wrapped``, whose other attributes (``register_file``,
    ``word_width``, ``data``, ``formal_view``) it passes on once ``_delegate`` is set."""

    def __getattr__(self, name):
        if name.startswith("_") or not self.__dict__.get("_delegate"):
            raise AttributeError(name)
        return getattr(self._wrapped, name)


class _Mutant(_Wrapper):
    def __init__(self, dut, port, mutation):
        self._dut = self._wrapped = dut
        self._port = port
        self._mutation = MUTATIONS[mutation] if mutation is not None else None
        members = dict(dut.signature.members.items())
        members["chaos"] = In(1)
        super().__init__(members)
        self._delegate = True

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
        if self._mutation is not None:
            self._mutation(m, getattr(dut, self._port), getattr(self, self._port), self.chaos)
        return m


class _Forced(_Wrapper):
    """``inner`` with its input ``path`` held high while ``fault`` is: every port passes
    through, that one ORed with ``fault``."""

    def __init__(self, inner, path, fault):
        self._inner = self._wrapped = inner
        self._path, self._fault = path, fault
        super().__init__(dict(inner.signature.members.items()))
        self._delegate = True

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self._inner
        for path, member, value in inner.signature.flatten(inner):
            outer = _member(self, path)
            if isinstance(Value.cast(outer), Const):     # always_ready, always_valid
                continue
            if path == self._path:
                m.d.comb += value.eq(outer | self._fault)
            elif member.flow == In:
                m.d.comb += value.eq(outer)
            else:
                m.d.comb += outer.eq(value)
        return m


def mutant(port, mutation):
    """A ``wrap`` for :meth:`formal.proof.Proof.run`: the component with ``port`` broken by
    ``mutation`` (a key of :data:`MUTATIONS`)."""
    return lambda dut: _Mutant(dut, port, mutation)


def forced(submodule, path):
    """A ``wrap`` for the accelerator top: its submodule held in the attribute ``submodule``
    (``"memories"``, ``"dispatcher"``) gets its input ``path`` (a tuple of member names)
    forced high while the free input ``chaos`` is high, as if the command port drove it on any
    cycle the solver picks (an erroring command's included)."""
    def wrap(dut):
        outer = _Mutant(dut, None, None)
        setattr(dut, submodule, _Forced(getattr(dut, submodule), path, outer.chaos))
        return outer
    return wrap


class ForgetfulCredits(Credits):
    """:class:`hw.stream.Credits` that does not count a claim on any cycle the solver picks.
    A test puts it in the place of ``Credits`` in :mod:`hw.reader` (``monkeypatch``): the
    reader may then send its queue more words than it holds."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = Credits(self.depth, early_give=self.early_give)
        m.d.comb += [inner.take.eq(self.take & ~AnySeq(1)), inner.give.eq(self.give),
                     self.count.eq(inner.count), self.room.eq(inner.room)]
        return m
