"""Runs :mod:`sim.bench`'s stream sources and sinks against a Verilated unit.

:func:`run_streams` is the Verilator twin of the Amaranth testbench run in
:func:`sim.bench.run_streams`: the same items, stall probabilities, generators, budgets and start
cycles, hence the same transfers on the same cycles.
"""

import time

from ..bench import SimTimeout
from .build import Probed, build_component
from .model import Model

__all__ = ["run_streams", "LAST_RUN"]

#: Timing of the latest :func:`run_streams`: ``build_seconds`` (0.0 from the cache),
#: ``run_seconds`` (the C++ clock loop alone) and ``cycles``. For benchmarks.
LAST_RUN = {}


def _name_of(dut, port):
    for name in dut.signature.members:
        if getattr(dut, name) is port:
            return name
    raise ValueError(f"Stream must be a port of the unit, not {port!r}")


def _input_name(dut, signal):
    for path, _, value in dut.signature.flatten(dut):
        if value is signal:
            return "__".join(str(p) for p in path)
    raise ValueError(f"Constant must be a port of the unit, not {signal!r}")


def run_streams(dut, sources, sinks, *, constants=(), probes=None, key=None, log=None):
    """Run ``sources`` and ``sinks`` (:class:`sim.bench.StreamSource`/``StreamSink`` on ports
    of ``dut``) to completion on Verilator, with ``constants`` (``(port, value)`` pairs) held
    on plain input ports. Fills each stream's ``items``, ``first_cycle`` and ``last_cycle`` as
    the Amaranth run would; returns ``{probe name: cycles high}`` for ``probes``
    (``{name: internal 1-bit signal}``).

    ``key`` (hashable: the unit's name and config) lets later runs skip the Verilog
    conversion; see :func:`sim.verilator.build.build_component`.
    """
    top = Probed(dut, probes) if probes else dut
    name = f"intformer_{key[0]}" if key else "intformer_unit"
    build = build_component(top, name, key=None if key is None else (key, tuple(probes or ())),
                            log=log)
    model = Model(build)
    names = {}
    for s in sources:
        names[id(s)] = n = _name_of(dut, s.port)
        model.configure(n, stall=s.stall, rng=s.rng, budget=s.budget, start=s.start)
        model.push(n, s.items)
    for s in sinks:
        names[id(s)] = n = _name_of(dut, s.port)
        model.configure(n, stall=s.stall, rng=s.rng, budget=s.budget, start=s.start)
        model.expect(n, s.count)
    for signal, value in constants:
        model.set_input(_input_name(dut, signal), value)
    t0 = time.perf_counter()
    status, late = model.run(Model.RUN_DRAIN)
    LAST_RUN.update(build_seconds=build.seconds, run_seconds=time.perf_counter() - t0,
                    cycles=model.cycle)
    for s in (*sources, *sinks):
        first, last, transfers, left, _ = model.stats(names[id(s)])
        s.first_cycle = None if first < 0 else first
        s.last_cycle = None if last < 0 else last
    for s in sinks:
        s.items = model.take(names[id(s)])
    if status == Model.TIMEOUT:
        s = next(s for s in (*sources, *sinks) if names[id(s)] == late)
        raise SimTimeout(s.timeout_message(model.stats(late)[2]))
    return {n: model.count(f"probe_{n}") for n in (probes or {})}
