"""Shared fixtures and Hypothesis profiles."""

import os

import pytest
from amaranth.hdl import MemoryInstance
from amaranth.lib.memory import Memory
from hypothesis import HealthCheck, settings

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


class NewDataMemory(Memory):
    """A :class:`~amaranth.lib.memory.Memory` whose every read port is transparent for every
    write port: a read of the address being written returns the new data, where Amaranth's
    default (and the simulation of the real design) returns the old data. In hardware, a block
    RAM whose read-write collisions Yosys is told are undefined
    (``boards.synth.UNCONTENDED_MEMORIES``) returns undefined data in such a cycle; a design
    giving the same results with old and with new data does not use that data, on the inputs
    tested."""

    def elaborate(self, platform):
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
    """``new_data_reads(module, ...)`` makes the memories each module creates afterwards
    :class:`NewDataMemory` (for the test's duration)."""
    def patch(*modules):
        for module in modules:
            monkeypatch.setattr(module, "Memory", NewDataMemory)
    return patch
