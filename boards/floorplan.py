"""The ECP5 floorplan of a board build: the systolic array's MULT18X18Ds, and the requantizer's
lanes at the drain's exit, pinned to DSP sites (nextpnr's ``BEL`` attribute) in the netlist.

Left to itself, nextpnr's placer scatters the array's DSPs over the die's three rows of DSP
sites, and the array's operand and product nets crowd the middle of the die: a 16x6 array did
not route at any seed (docs/timing.md). Pinned so that each element sits beside its
neighbours, every systolic net is short: in a band (one row of DSP sites), the elements go row
by row of the array, ``per`` columns of it each, so that ``a`` passes to the next site, ``b``
and the drain chain ``per`` sites along; the next band holds the next ``per`` columns, mirrored,
so that the ``a`` nets between bands cross one above the other. Each column's requantizer lane
takes a site at the band's start, where the drain leaves row 0. The sites a band leaves free
include a group of four in its middle: the other units' multipliers take them, and from the
middle of the die their logic is never more than half its width away (docs/timing.md).
"""

import json
import re
from pathlib import Path

__all__ = ["DEVICE", "ECP5_DSP_SITES", "array_bels", "apply_floorplan"]

#: The device whose DSP sites this floorplan knows.
DEVICE = "LFE5U-85F"

#: The LFE5U-85F's MULT18X18D sites: three rows (Y) of 13 groups of four (X, X+1, X+4, X+5,
#: sites MULT18_0, 1, 4, 5), 156 in all, as nextpnr-ecp5 names them.
_GROUP_X = (4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114)
ECP5_DSP_SITES = {
    y: tuple(f"X{x + dx}/Y{y}/MULT18_{z}" for x in _GROUP_X for dx, z in ((0, 0), (1, 1), (4, 4),
                                                                            (5, 5)))
    for y in (10, 34, 58)
}

#: The DSP rows a floorplan of 1, 2 or 3 bands takes, in band order (adjacent rows together).
_BANDS = {1: (34,), 2: (34, 58), 3: (10, 34, 58)}

#: The share of a row of DSP sites a band may fill when more bands would hold the array: a full
#: row (16x6 in two bands takes 52 of 52 sites) crowds its elements' products, operands and
#: accumulators into the fabric beside one row of DSPs, so that the placer may put an
#: accumulator far from its DSP (docs/timing.md).
_BAND_FILL = 0.75

#: The free sites a band leaves in the middle of its row, when it has any: a group of four,
#: beside the units whose multipliers are not the array's.
_MIDDLE_GAP = 4

#: The flattened names of the cells pinned (hw.systolic names its elements ``pe_<r>_<c>``,
#: hw.dsp their MULT18X18D ``mult``; hw.requant names lane j's ``p_<j>``).
_PE = re.compile(r"(?:^|\.)gemm\.array\.pe_(\d+)_(\d+)\.mult$")
_LANE = re.compile(r"(?:^|\.)requant\.p_(\d+)$")


def array_bels(rows, cols, lanes=0):
    """The floorplan of an R x C array and ``lanes`` requantizer lanes (lane j drains column
    j) on the LFE5U-85F, or ``None`` when no banding holds it.

    Returns
    -------
    dict or None
        ``("pe", r, c)`` and ``("lane", j)`` -> site name. The fewest bands whose rows hold
        ``per = ceil(C / bands)`` columns of every array row beside a group of sites for the
        lanes, leaving a quarter of each row's sites free (:data:`_BAND_FILL`), or else the
        fewest that hold them at all: band ``k`` holds columns ``k*per`` to
        ``k*per + per - 1``; element (r, c) takes site ``4*ceil(per/4) + r*per + i`` and lane c
        site ``i``, with ``i = c - k*per`` (or ``per - 1 - i`` in an odd band). Where a band
        leaves sites free after its elements, up to four of them (:data:`_MIDDLE_GAP`) move to
        the middle of the row: the elements of rows ``h`` and after take theirs that many sites
        further on, ``h`` the row whose site is nearest the row's middle group
        (:func:`_middle_row`).
    """
    if lanes > cols:
        raise ValueError(f"Requantizer lanes must be at most the array's columns ({cols}), "
                         f"not {lanes}")

    n_sites = len(ECP5_DSP_SITES[_BANDS[1][0]])
    fits = {}       # bands -> (columns a band, its first element site, the sites it takes)
    for bands in _BANDS:
        per = -(-cols // bands)
        start = 4 * -(-per // 4)
        if start + rows * per <= n_sites:
            fits[bands] = per, start, start + rows * per
    if not fits:
        return None
    bands = next((b for b, (*_, used) in fits.items() if used <= _BAND_FILL * n_sites),
                 next(iter(fits)))
    ys = _BANDS[bands]
    per, start, used = fits[bands]
    gap, h = min(n_sites - used, _MIDDLE_GAP), _middle_row(n_sites, start, per, rows)
    bels = {}
    for c in range(cols):
        band, i = divmod(c, per)
        if band % 2:
            i = per - 1 - i
        sites = ECP5_DSP_SITES[ys[band]]
        for r in range(rows):
            bels["pe", r, c] = sites[start + r * per + (gap if r >= h else 0) + i]
        if c < lanes:
            bels["lane", c] = sites[i]
    return bels


def _middle_row(n_sites, start, per, rows):
    """The array row whose elements follow the free sites of a band: the one whose first site,
    ``start + h*per``, is nearest the start of the row's middle group of four sites (rows ``h``
    and after then sit beyond the free sites)."""
    middle = 4 * (n_sites // 4 // 2)
    return min(range(rows + 1), key=lambda h: abs(start + h * per - middle))


def apply_floorplan(netlist, rows, cols):
    """Pin the array's and the requantizer's MULT18X18Ds of the Yosys JSON ``netlist`` (a
    path) to :func:`array_bels`' sites, rewriting the file.

    Returns
    -------
    str
        One line that says what was pinned, or why nothing was.

    Raises
    ------
    ValueError
        When the netlist's array elements are not the R x C that the config gives, or a name
        is there twice (two arrays).
    """
    netlist = Path(netlist)
    design = json.loads(netlist.read_text())
    cells = {name: cell for module in design["modules"].values()
             for name, cell in module["cells"].items() if cell["type"] == "MULT18X18D"}
    pes, lanes = {}, {}
    for name in cells:
        for found, pattern in ((pes, _PE), (lanes, _LANE)):
            if m := pattern.search(name):
                key = tuple(int(g) for g in m.groups())
                if key in found:
                    raise ValueError(f"Netlist must hold one array, not two cells "
                                     f"{found[key]!r} and {name!r}")
                found[key] = name
    want = {(r, c) for r in range(rows) for c in range(cols)}
    if set(pes) != want:
        raise ValueError(f"Netlist must hold the {rows}x{cols} array's MULT18X18Ds "
                         f"(pe_<r>_<c>.mult), not {len(pes)} of them: {sorted(pes)[:4]}...")
    # A lane a column (the half-rate requantizer's): pinned beside its column; else left free.
    n_lanes = cols if set(lanes) == {(j,) for j in range(cols)} else 0
    bels = array_bels(rows, cols, n_lanes)
    if bels is None:
        return f"floorplan: none (a {rows}x{cols} array fits no banding of the DSP rows)"
    for key, bel in bels.items():
        name = pes[key[1:]] if key[0] == "pe" else lanes[key[1:]]
        cells[name]["attributes"]["BEL"] = bel
    netlist.write_text(json.dumps(design))
    ys = sorted({int(bel.split("/")[1][1:]) for bel in bels.values()})
    with_lanes = f" and the requantizer's {n_lanes} lanes'" if n_lanes else ""
    return (f"floorplan: the {rows}x{cols} array's MULT18X18Ds{with_lanes} pinned in DSP rows "
            f"{', '.join(f'Y{y}' for y in ys)}")
