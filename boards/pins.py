"""Board pins through Amaranth 0.5 I/O buffers (ports requested with ``dir="-"``)."""

from amaranth.lib import io

__all__ = ["input_pin", "output_pin"]


def input_pin(m, name, port):
    """The input signal of ``port``, through an input buffer named ``name``."""
    m.submodules[name] = buf = io.Buffer("i", port)
    return buf.i


def output_pin(m, name, port):
    """The output signal driving ``port``, through an output buffer named ``name``."""
    m.submodules[name] = buf = io.Buffer("o", port)
    return buf.o
