"""Registered products: ``a * b`` into a register, on ECP5 the register inside a MULT18X18D, on
iCE40 two of them in one SB_MAC16."""

from amaranth.hdl import (
    Cat,
    ClockSignal,
    Const,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    Value,
)

__all__ = ["ECP5_PORT_WIDTH", "ICE40_PAIR_WIDTH", "is_ecp5", "is_ice40", "registered_product",
           "registered_product_pair", "shared_product"]

#: Operand width of one ECP5 sysDSP multiplier block (MULT18X18D), signed or unsigned.
ECP5_PORT_WIDTH = 18
#: Operand width of each of the two multipliers of an iCE40 SB_MAC16 in its 8x8 mode.
ICE40_PAIR_WIDTH = 8


def is_ecp5(platform):
    """Whether ``platform`` (the one passed to ``elaborate``, or None) targets ECP5."""
    return getattr(platform, "family", None) == "ecp5"


def is_ice40(platform):
    """Whether ``platform`` is an iCE40 one (``platform.family == "iCE40"``)."""
    return getattr(platform, "family", None) == "iCE40"


def _check_product(prod):
    if not isinstance(prod, Signal):
        raise TypeError(f"Product must be a Signal, not {prod!r}")
    if prod.init != 0:
        raise ValueError(f"Product {prod.name} must reset to 0, not {prod.init!r}")


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
    _check_product(prod)
    en = Const(1, 1) if en is None else Value.cast(en)

    if not (is_ecp5(platform) and 0 < len(a) <= ECP5_PORT_WIDTH
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
    _extend(m, prod, p_width, a.shape().signed or b.shape().signed, name=f"{name}_ext")


def shared_product(m, platform, lo, hi, b, prod, prev, *, second, en=None, name,
                   domain="sync"):
    """Add two products of ``b`` through one registered multiplier, on two cycles.

    ``prod <= Mux(second, hi, lo) * b`` as :func:`registered_product` (submodule ``name``), and
    ``prev <= prod`` on the enabled cycles with ``second`` (submodule ``{name}_prev``): after an
    enabled cycle without ``second`` and then one with it, ``prev`` holds ``lo * b`` (of the first
    cycle's operands) and ``prod`` holds ``hi * b`` (of the second's). With ``lo`` unsigned and
    ``hi`` signed, the multiplier's first operand is signed and one bit wider than ``lo``; with
    ``lo`` of 15 bits, ``hi`` of at most 16 and ``b`` of at most 16 unsigned, it is the one
    16 x 16 SB_MAC16 that ``synth_ice40 -dsp`` maps it onto.

    Parameters
    ----------
    lo, hi : Value
        The two first operands.
    b : Value
        The common second operand.
    prod : Signal
        The product register, wide enough for both products (see :func:`registered_product`).
    prev : Signal
        The register that keeps the first product.
    second : Value
        Which operand the multiplier takes this cycle.
    en : Value, optional
        Clock enable of both registers.

    Latency: 1 cycle per product. Throughput: two products every two cycles.
    """
    registered_product(m, platform, Mux(second, hi, lo), b, prod, en=en, name=name,
                       domain=domain)
    keep = Module()
    with keep.If(second if en is None else en & second):
        keep.d[domain] += prev.eq(prod)
    m.submodules[f"{name}_prev"] = keep


def _extend(m, prod, width, signed, *, name):
    """Drive ``prod``'s bits above ``width`` with a copy of bit ``width - 1`` if ``signed``, else
    with 0, in a submodule ``name`` (nothing when ``prod`` is no wider)."""
    if len(prod) > width:
        ext = Module()
        sign = prod[width - 1] if signed else Const(0, 1)
        ext.d.comb += prod[width:].eq(sign.replicate(len(prod) - width))
        m.submodules[name] = ext


def registered_product_pair(m, platform, first, second, *, en=None, name, domain="sync"):
    """Add two products with their own pipeline registers, reset-less, as one multiplier block.

    ``first`` and ``second`` are ``(a, b, prod)`` triples, each meaning ``prod <= a * b`` (when
    ``en``) exactly as :func:`registered_product`, except that both ``prod`` signals must be
    reset-less (and ``init`` 0): the iCE40 block's product registers reset only asynchronously,
    so they take no reset here, on any target alike.

    On iCE40 (``platform.family == "iCE40"``), when every operand has at most
    :data:`ICE40_PAIR_WIDTH` bits and the two ``a`` (and the two ``b``) have the same signedness,
    the pair is one SB_MAC16 in its dual 8x8 mode (``MODE_8x8``): ``first`` on the bottom
    multiplier (``A[7:0] * B[7:0]`` into ``O[15:0]``), ``second`` on the top one (``A[15:8] *
    B[15:8]`` into ``O[31:16]``), each operand sign- or zero-extended to 8 bits, ``A_SIGNED`` and
    ``B_SIGNED`` from the operands' shapes (in 8x8 mode they make both bytes of the port two's
    complement), each product registered in its multiplier's output register
    (``TOP_8x8_MULT_REG``, ``BOT_8x8_MULT_REG``) and selected onto ``O`` (``TOPOUTPUT_SELECT`` =
    ``BOTOUTPUT_SELECT`` = 2), ``CE`` = ``en``, input and accumulator registers and resets unused.
    An 8 x 8-bit product has at most 16 significant bits with the operands' signedness, so each
    half of ``O`` holds it exactly. Yosys' ``synth_ice40 -dsp`` maps ``a * b`` onto a whole
    SB_MAC16 in 16x16 mode and leaves the register in the fabric.

    Everywhere else (simulation, ECP5, no platform), and for other operands: two
    :func:`registered_product` calls, ``{name}_0`` and ``{name}_1``.

    ``tests/hw/test_dsp_ice40.py`` proves the two versions equivalent.

    Parameters
    ----------
    m : Module
        Module to add the products to.
    platform : object or None
        The platform passed to ``elaborate``.
    first, second : tuple of (Value, Value, Signal)
        Operands and reset-less product register of each product.
    en : Value, optional
        Clock enable of both; the products hold their values while it is 0.
    name : str
        Name of the submodule holding the products.
    domain : str
        Clock domain of the registers.

    Latency: 1 cycle. Throughput: two products per cycle.
    """
    (a0, b0, p0), (a1, b1, p1) = first, second
    a0, b0, a1, b1 = (Value.cast(v) for v in (a0, b0, a1, b1))
    for prod in (p0, p1):
        _check_product(prod)
        if not prod.reset_less:
            raise ValueError(f"Product {prod.name} of a pair must be reset-less")

    a_signed, b_signed = a0.shape().signed, b0.shape().signed
    if not (is_ice40(platform)
            and all(0 < len(v) <= ICE40_PAIR_WIDTH for v in (a0, b0, a1, b1))
            and a1.shape().signed == a_signed and b1.shape().signed == b_signed):
        registered_product(m, platform, a0, b0, p0, en=en, name=f"{name}_0", domain=domain)
        registered_product(m, platform, a1, b1, p1, en=en, name=f"{name}_1", domain=domain)
        return

    en = Const(1, 1) if en is None else Value.cast(en)

    def byte(value):
        ext = value[-1] if value.shape().signed else Const(0, 1)
        return Cat(value, ext.replicate(ICE40_PAIR_WIDTH - len(value)))

    # Each half of O is the exact product (see above), its low bits straight into prod's, the
    # bits prod does not keep into an unused signal.
    half = 2 * ICE40_PAIR_WIDTH
    outs, widths = [], []
    for prod in (p0, p1):
        width = min(len(prod), half)
        outs += [prod[:width], Signal(half - width, name=f"{prod.name}_unused")]
        widths.append(width)
    zero = Const(0, 1)
    m.submodules[name] = Instance(
        "SB_MAC16",
        p_NEG_TRIGGER=Const(0, 1), p_C_REG=Const(0, 1), p_A_REG=Const(0, 1),
        p_B_REG=Const(0, 1), p_D_REG=Const(0, 1),
        p_TOP_8x8_MULT_REG=Const(1, 1), p_BOT_8x8_MULT_REG=Const(1, 1),
        p_PIPELINE_16x16_MULT_REG1=Const(0, 1), p_PIPELINE_16x16_MULT_REG2=Const(0, 1),
        p_TOPOUTPUT_SELECT=Const(2, 2), p_TOPADDSUB_LOWERINPUT=Const(0, 2),
        p_TOPADDSUB_UPPERINPUT=Const(0, 1), p_TOPADDSUB_CARRYSELECT=Const(0, 2),
        p_BOTOUTPUT_SELECT=Const(2, 2), p_BOTADDSUB_LOWERINPUT=Const(0, 2),
        p_BOTADDSUB_UPPERINPUT=Const(0, 1), p_BOTADDSUB_CARRYSELECT=Const(0, 2),
        p_MODE_8x8=Const(1, 1), p_A_SIGNED=Const(a_signed, 1), p_B_SIGNED=Const(b_signed, 1),
        i_CLK=ClockSignal(domain), i_CE=en,
        i_A=Cat(byte(a0), byte(a1)), i_B=Cat(byte(b0), byte(b1)),
        i_C=Const(0, half), i_D=Const(0, half),
        i_AHOLD=zero, i_BHOLD=zero, i_CHOLD=zero, i_DHOLD=zero,
        i_IRSTTOP=zero, i_IRSTBOT=zero, i_ORSTTOP=zero, i_ORSTBOT=zero,
        i_OLOADTOP=zero, i_OLOADBOT=zero, i_ADDSUBTOP=zero, i_ADDSUBBOT=zero,
        i_OHOLDTOP=zero, i_OHOLDBOT=zero, i_CI=zero, i_ACCUMCI=zero, i_SIGNEXTIN=zero,
        o_O=Cat(*outs))
    for i, (a, b, prod) in enumerate([(a0, b0, p0), (a1, b1, p1)]):
        _extend(m, prod, widths[i], a.shape().signed or b.shape().signed, name=f"{name}_ext{i}")
