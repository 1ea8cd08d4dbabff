"""A formal specification around one component: its free inputs and its properties."""

from amaranth.asserts import AnyConst
from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Fragment, Module, Value
from amaranth.lib import stream, wiring

from .rules import stream_rules
from .runner import FREE_INIT

__all__ = ["Spec", "stream_ports"]


def stream_ports(component):
    """The component's stream members as ``(name, port, flow)``, ``flow`` being
    :data:`wiring.In` for a stream it receives and :data:`wiring.Out` for one it drives."""
    found = []
    for name, member in component.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            found.append((name, getattr(component, name), member.flow))
    return found


class Spec:
    """The module of a proof: the component under proof, its clock, and the properties added by
    the proof.

    Every input of the component is free (any value on any cycle) unless the proof drives it
    (:meth:`drive`) or holds it constant (:meth:`const`). The clock domain ``sync`` never
    resets: the registers start at their ``init`` values (bounded proofs) or in any state
    (the induction step of an unbounded one), or at any value for those passed to
    :meth:`start_anywhere`.

    The component is elaborated here, before the proof adds its properties, so that they can
    read what its elaboration makes: the ``formal_view`` of :class:`~hw.skid.SkidBuffer`,
    :class:`~hw.stream.Queue` and :class:`~hw.reader.BufferReader` (see :mod:`formal.views`).

    Parameters
    ----------
    dut : wiring.Component
        The component under proof, added as submodule ``dut``.

    Attributes
    ----------
    m : Module
        Where the proof adds its properties.
    """

    def __init__(self, dut):
        self.dut = dut
        self.m = m = Module()
        m.domains.sync = self._cd = ClockDomain("sync")
        m.d.comb += self._cd.rst.eq(0)
        m.submodules.dut = Fragment.get(dut, platform=None)
        self._driven = set()

    def drive(self, port, value):
        """Drive the input ``port`` of the component with ``value``."""
        port = Value.cast(port)
        self._driven.add(id(port))
        self.m.d.comb += port.eq(value)

    def const(self, *ports):
        """Hold each input in ``ports`` at any constant value."""
        for port in ports:
            port = Value.cast(port)
            self.drive(port, AnyConst(port.shape()))

    def start_anywhere(self, *registers):
        """Let each of ``registers`` (flip-flops of the component) start at any value instead of
        its ``init``; a proof constrains them with ``Assume`` under
        :func:`~amaranth.asserts.Initial`. Marks the signals with the attribute
        :data:`~formal.runner.FREE_INIT`, whose ``init`` the runner drops."""
        for reg in registers:
            reg.attrs[FREE_INIT] = 1

    def stream_rules(self, *, cover=True):
        """The stream rules on every stream port: assumed on those the component receives,
        asserted on those it drives."""
        for name, port, flow in stream_ports(self.dut):
            stream_rules(self.m, port, name=name, assume=flow == wiring.In, cover=cover)

    def rtlil(self):
        """The proof's RTLIL text, with the component's free inputs as the top's inputs."""
        ports = {"clk": (self._cd.clk, None)}
        for path, member, value in self.dut.signature.flatten(self.dut):
            value = Value.cast(value)
            if member.flow == wiring.In and id(value) not in self._driven:
                ports["__".join(map(str, path))] = (value, None)
        return rtlil.convert(self.m, ports=ports)
