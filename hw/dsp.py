"""Registered products: ``a * b`` into a register, on ECP5 the register inside a MULT18X18D."""

from amaranth.hdl import (
    Cat,
    ClockSignal,
    Const,
    Instance,
    Module,
    ResetSignal,
    Signal,
    Value,
)

__all__ = ["ECP5_PORT_WIDTH", "registered_product"]

#: Operand width of one ECP5 sysDSP multiplier block (MULT18X18D), signed or unsigned.
ECP5_PORT_WIDTH = 18


def _is_ecp5(platform):
    return getattr(platform, "family", None) == "ecp5"


def registered_product(m, platform, a, b, prod, *, en=None, name, domain="sync"):
    """Add ``prod <= a * b`` (when ``en``) to ``m``: a product with its own pipeline register.

    ``a`` and ``b`` are any values, signed or unsigned in any mix; ``prod`` is a signal that
    nothing else drives, and gets ``a * b`` truncated or extended to its shape, exactly as
    ``prod.eq(a * b)`` would. ``en`` (default: always) is the only condition of the update:
    the product is a submodule ``name`` of ``m``, so the ``If`` blocks around the call do *not*
    apply (on every target alike, so that a forgotten condition shows in simulation).

    How the product is built depends on the target, read from ``platform.family``:

    * ``"ecp5"``, when both operands fit a multiplier port (at most :data:`ECP5_PORT_WIDTH`
      bits, signed or unsigned, each operand's ``SIGNEDx`` set from its shape) and ``prod``
      resets to 0: a MULT18X18D with its input and pipeline registers bypassed and its output
      register in use (``REG_OUTPUT_CLK="CLK0"``, ``CE0 = en``, ``RST0`` the domain's reset, or
      0 when ``prod`` is reset-less, ``RESETMODE="SYNC"``). Yosys maps ``a * b`` onto the same
      block but never packs a fabric register into it, so the product would leave the block
      unregistered and the block's combinational delay plus a long route to the fabric
      register would be one path; with the output register, the path ends inside the block.
      The block's 36-bit ``P`` holds the exact product (an ``m``-bit by ``n``-bit product has at
      most ``m + n <= 36`` significant bits with the operands' signedness), extended or
      truncated into ``prod`` with that signedness.
    * everywhere else (simulation, iCE40, no platform), and for wider operands:
      ``with If(en): prod.eq(a * b)`` in the fabric.

    Both are the same register, reset value and enable included;
    ``tests/hw/test_dsp_ecp5.py`` proves them equivalent.

    Parameters
    ----------
    m : Module
        Module to add the product to.
    platform : object or None
        The platform passed to ``elaborate``.
    a, b : Value
        Operands.
    prod : Signal
        The product register, with ``init`` 0 (a reset-less signal has no reset at all).
    en : Value, optional
        Clock enable; ``prod`` holds its value while it is 0.
    name : str
        Name of the submodule holding the product.
    domain : str
        Clock domain of the register.

    Latency: 1 cycle (``prod`` holds ``a * b`` of the operands one clock edge earlier).
    Throughput: one product per cycle.
    """
    a, b = Value.cast(a), Value.cast(b)
    if not isinstance(prod, Signal):
        raise TypeError(f"Product must be a Signal, not {prod!r}")
    if prod.init != 0:
        raise ValueError(f"Product {prod.name} must reset to 0, not {prod.init!r}")
    en = Const(1, 1) if en is None else Value.cast(en)

    if not (_is_ecp5(platform) and 0 < len(a) <= ECP5_PORT_WIDTH
            and 0 < len(b) <= ECP5_PORT_WIDTH):
        sub = Module()
        with sub.If(en):
            sub.d[domain] += prod.eq(a * b)
        m.submodules[name] = sub
        return

    # No statements on this path, only the Instance's connections: the operands extended to
    # the port width with their own signedness, and P's bits straight into prod's.
    def port(value):
        ext = value[-1] if value.shape().signed else Const(0, 1)
        return Cat(value, ext.replicate(ECP5_PORT_WIDTH - len(value)))

    a18, b18 = port(a), port(b)
    ports = {
        "i_SIGNEDA": Const(a.shape().signed, 1), "i_SIGNEDB": Const(b.shape().signed, 1),
        "i_SOURCEA": Const(0, 1), "i_SOURCEB": Const(0, 1),
        "i_CLK0": ClockSignal(domain), "i_CE0": en,
        "i_RST0": Const(0, 1) if prod.reset_less else ResetSignal(domain, allow_reset_less=True),
    }
    for k in (1, 2, 3):
        ports.update({f"i_CLK{k}": Const(0, 1), f"i_CE{k}": Const(1, 1), f"i_RST{k}": Const(0, 1)})
    for i in range(ECP5_PORT_WIDTH):
        ports.update({f"i_A{i}": a18[i], f"i_B{i}": b18[i], f"i_C{i}": Const(0, 1)})
    # P is the exact product modulo 2**36 (the product of an m-bit and an n-bit operand has at
    # most m + n <= 36 significant bits, with the operands' signedness), so its low bits are
    # those of prod.eq(a * b), truncated or not; prod's bits above P's copy P's sign (or 0).
    p_width = min(len(prod), 2 * ECP5_PORT_WIDTH)
    for i in range(p_width):
        ports[f"o_P{i}"] = prod[i]
    m.submodules[name] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="NONE", p_REG_INPUTB_CLK="NONE", p_REG_INPUTC_CLK="NONE",
        p_REG_PIPELINE_CLK="NONE", p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0",
        p_REG_OUTPUT_RST="RST0", p_RESETMODE="SYNC", p_GSR="DISABLED", **ports)
    if len(prod) > p_width:
        ext = Module()
        sign = prod[p_width - 1] if a.shape().signed or b.shape().signed else Const(0, 1)
        ext.d.comb += prod[p_width:].eq(sign.replicate(len(prod) - p_width))
        m.submodules[f"{name}_ext"] = ext
