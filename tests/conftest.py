"""Shared fixtures and Hypothesis profiles."""

import os

import pytest
from amaranth.hdl import MemoryInstance
from amaranth.lib.memory import Memory
from hypothesis import HealthCheck, settings

from hw.memory import UNCONTENDED
from sim.bench import BACKENDS

# Simulations are slow per example; keep example counts modest and deadlines off.
settings.register_profile(
    "default", max_examples=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(config, items):
    """Board builds first: the longest tests start at once, the rest fill the other workers."""
    items.sort(key=lambda item: item.get_closest_marker("place_and_route") is None)


def _new_data_elaborate(self, platform):
    """:meth:`Memory.elaborate` with every read port transparent for every write port: a read
    of the address being written returns the new data, where Amaranth's default (and the
    simulation of the real design) returns the old data."""
    instance = MemoryInstance(data=self.data, attrs=self.attrs, src_loc=self.src_loc)
    writes = [instance.write_port(domain=p.domain, addr=p.addr, data=p.data, en=p.en)
              for p in self.write_ports]
    for p in self.read_ports:
        same = tuple(w for w, port in zip(writes, self.write_ports, strict=True)
                     if port.domain == p.domain)
        instance.read_port(domain=p.domain, data=p.data, addr=p.addr, en=p.en,
                           transparent_for=same if p.domain != "comb" else ())
    return instance


@pytest.fixture
def new_data_reads(monkeypatch):
    """``new_data_reads()`` makes every memory marked :data:`hw.memory.UNCONTENDED` elaborated
    afterwards (for the test's duration) return the new data on a read-write collision. In
    hardware such a block RAM returns undefined data in that cycle (``boards.synth``
    ``relax_collisions``); a design giving the same results with old and with new data does not
    use that data, on the inputs tested. ``new_data_reads(all=True)`` patches every memory (to
    show that the check fails on one that does rely on the old data)."""
    original = Memory.elaborate

    def patch(*, all=False):
        def elaborate(self, platform):
            if all or UNCONTENDED in self.attrs:
                return _new_data_elaborate(self, platform)
            return original(self, platform)
        monkeypatch.setattr(Memory, "elaborate", elaborate)
    return patch


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request):
    """Each simulation backend in turn (:data:`sim.bench.BACKENDS`: Amaranth, then Verilator),
    for the bit-exact unit tests written once for both. The Verilator side builds each unit
    and config once (cached under build/verilator/), so such tests keep to a few configs;
    tests that patch the gateware in Python (white-box) stay on Amaranth, whose cache key does
    not see the patch."""
    return request.param
