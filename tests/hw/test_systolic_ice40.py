"""On iCE40, the systolic array with ``dsp_pairs`` (two elements of a column on one SB_MAC16, in
its dual 8x8 mode) is formally equivalent to the simulated array.

:class:`hw.systolic.SystolicArray` with ``dsp_pairs`` builds the products of rows 2k and 2k+1
of each column with :func:`hw.dsp.registered_product_pair` and feeds them to the two elements,
and on iCE40 the elements restart their sums with a load after the adder rather than a gate
before it. Simulation runs the array elaborated without a platform, so the iCE40 array is proved
equivalent to it, as in ``tests/hw/test_dsp_ice40.py`` (which holds the SB_MAC16 model and states
what the proof establishes): every register and output of the two arrays agree on every cycle,
reset included.
"""

import re

import pytest
from amaranth.back import rtlil
from test_dsp_ice40 import ICE40, prove_ice40

from hw.systolic import SystolicArray


def _rtlil(shape, name, platform):
    return rtlil.convert(SystolicArray(*shape, dsp_pairs=True), name=name, platform=platform)


def _prove(tmp_path, shape, gate):
    return prove_ice40(tmp_path, _rtlil(shape, "array_gold", None), gate, "array_gold",
                       "array_gate")


# (rows, cols, in_width, acc_width): one pair; pairs in two columns and an odd row (its own
# product, in the fabric, which synth_ice40 -dsp maps onto a whole SB_MAC16).
@pytest.mark.parametrize("shape", [(2, 1, 8, 20), (3, 2, 8, 20), (2, 1, 5, 12)])
def test_ice40_array_equivalent_to_simulated(tmp_path, shape):
    R, C = shape[:2]
    gate = _rtlil(shape, "array_gate", ICE40)
    assert gate.count("cell \\SB_MAC16 ") == R // 2 * C
    assert gate.count("cell $mul ") == R % 2 * C
    rc, log = _prove(tmp_path, shape, gate)
    assert rc == 0, log[-3000:]
    assert "Equivalence successfully proven!" in log
    # Each paired element's product register (gold: in the fabric; gate: in the block, the
    # only $mul-free driver of the element's product port) was compared.
    for r in range(R // 2 * 2):
        for c in range(C):
            name = f"prod_{r}_{c}"
            assert re.search(rf"^Presumably equivalent wires: {name}_gold .* -> {name}$", log,
                             re.M), name
    found = int(re.search(r"Found (\d+) \$equiv cells in equiv", log)[1])
    # Every element's a, b, flags, product, accumulator and drain slot, bit by bit.
    assert found > R * C * (4 * shape[2] + 2 * shape[3])
    assert f"Of those cells {found} are proven and 0 are unproven." in log


# Mutations of the iCE40 array's RTLIL (one pair, 5-bit operands, so that SAT finds the
# counterexamples fast): each must make the proof fail.
_MUTATIONS = {
    # Row 1's operand on the bottom multiplier and row 0's on the top one.
    "elements swapped": [("\\a_out$21 [4] \\a_out$21 [4] \\a_out$21 [4] \\a_out$21 [4:0] "
                          "\\a_out [4] \\a_out [4] \\a_out [4] \\a_out [4:0] }",
                          "\\a_out [4] \\a_out [4] \\a_out [4] \\a_out [4:0] "
                          "\\a_out$21 [4] \\a_out$21 [4] \\a_out$21 [4] \\a_out$21 [4:0] }")],
    "unsigned B": [("parameter \\B_SIGNED 1'1", "parameter \\B_SIGNED 1'0")],
    "16x16 mode": [("parameter \\MODE_8x8 1'1", "parameter \\MODE_8x8 1'0")],
}


@pytest.mark.parametrize("mutation", sorted(_MUTATIONS))
def test_miswired_array_fails_the_proof(tmp_path, mutation):
    shape = (2, 1, 5, 12)
    gate = _rtlil(shape, "array_gate", ICE40)
    for old, new in _MUTATIONS[mutation]:
        assert gate.count(old) == 1, old
        gate = gate.replace(old, new)
    rc, log = _prove(tmp_path, shape, gate)
    assert rc != 0
    assert re.search(r"Of those cells \d+ are proven and [1-9]\d* are unproven", log), log[-2000:]


def test_unpaired_array_has_no_block():
    text = rtlil.convert(SystolicArray(2, 2, 8, 20), name="array", platform=ICE40)
    assert "SB_MAC16" not in text
    assert text.count("cell $mul ") == 4
