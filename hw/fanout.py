"""Register copies: one flip-flop per group of loads of a wide control signal, which synthesis
keeps apart."""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, ResetSignal, Signal, Value

from .dsp import is_ecp5

__all__ = ["register_copies", "register_word_copies"]


def register_copies(m, platform, value, copies, *, name, domain="sync"):
    """Add ``copies`` flip-flops to ``m``, each loaded with the one-bit ``value`` on every clock
    edge and reset to 0; return them.

    A select or enable decoded once and read by a hundred flip-flops across the die is one net
    whose route, not its logic, sets the clock. Copies split the loads: give each group of
    nearby loads its own copy, and the placer puts each copy beside its group. Yosys merges
    flip-flops with the same inputs (``opt_merge``), and a ``keep`` attribute on a signal does
    not stop it; so on ECP5 (``platform.family == "ecp5"``) each copy is a TRELLIS_FF instance
    marked ``keep``, configured as Yosys maps a synchronously reset flip-flop. Elsewhere
    (simulation, iCE40, no platform) the copies are ordinary registers, and Yosys may merge
    them. Both are the same registers; ``tests/hw/test_fanout.py`` proves them equivalent.

    Parameters
    ----------
    m : Module
    platform : object or None
        The platform passed to ``elaborate``.
    value : Value
        One bit, the next state of every copy.
    copies : int
        At least 1.
    name : str
        Prefix of the copies' names (``{name}_{i}``).
    domain : str
        Clock domain; its reset (if any) clears the copies.

    Latency: 1 cycle (each copy holds ``value`` of the previous clock edge).
    """
    value = Value.cast(value)
    if len(value) != 1:
        raise ValueError(f"Register copies are of one bit, not {len(value)} ({value!r})")
    if not isinstance(copies, int) or copies < 1:
        raise ValueError(f"Register copies must be a positive integer, not {copies!r}")
    regs = [Signal(name=f"{name}_{i}") for i in range(copies)]
    if not is_ecp5(platform):
        m.d[domain] += [reg.eq(value) for reg in regs]
        return regs
    for i, reg in enumerate(regs):
        m.submodules[f"{name}_{i}"] = Instance(
            "TRELLIS_FF", a_keep=1,
            p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR", p_REGSET="RESET",
            p_SRMODE="LSR_OVER_CE",
            i_CLK=ClockSignal(domain), i_CE=Const(1, 1),
            i_LSR=ResetSignal(domain, allow_reset_less=True), i_DI=value, o_Q=reg)
    return regs


def register_word_copies(m, platform, value, copies, *, name, domain="sync"):
    """:func:`register_copies` of each bit of ``value``: ``copies`` registers of its width,
    each loaded with ``value`` on every clock edge and reset to 0, kept apart from each other
    (and, on ECP5, from any other register with the same input). Returns them, as values.

    Latency: 1 cycle.
    """
    value = Value.cast(value)
    bits = [register_copies(m, platform, bit, copies, name=f"{name}_b{i}", domain=domain)
            for i, bit in enumerate(value)]
    return [Cat(*(bit[k] for bit in bits)) for k in range(copies)]
