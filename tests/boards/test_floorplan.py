"""The ECP5 floorplan: the array's and the requantizer's DSP sites, and their pinning in a Yosys
JSON netlist."""

import json
import re

import pytest

from boards.floorplan import ECP5_DSP_SITES, apply_floorplan, array_bels

ALL_SITES = [site for row in ECP5_DSP_SITES.values() for site in row]


def _xy(site):
    x, y = re.match(r"X(\d+)/Y(\d+)/MULT18_\d$", site).groups()
    return int(x), int(y)


def test_sites_are_the_devices():
    # 3 rows of 52 MULT18X18D sites, 156 in all (the LFE5U-85F's count), each named once.
    assert len(ALL_SITES) == len(set(ALL_SITES)) == 156
    assert {_xy(site)[1] for site in ALL_SITES} == {10, 34, 58}


@pytest.mark.parametrize("rows, cols, bands", [(16, 6, 3), (8, 6, 2), (16, 8, 3), (2, 2, 1),
                                               (12, 4, 2), (8, 4, 1)])
def test_neighbours_sit_side_by_side(rows, cols, bands):
    bels = array_bels(rows, cols, cols)
    sites = list(bels.values())
    assert len(sites) == len(set(sites)) == rows * cols + cols
    assert set(sites) <= set(ALL_SITES)
    assert len({_xy(site)[1] for site in sites}) == bands
    per = -(-cols // bands)
    index = {site: i for row in ECP5_DSP_SITES.values() for i, site in enumerate(row)}
    for r in range(rows):
        for c in range(cols):
            here = bels["pe", r, c]
            if r + 1 < rows:        # b and the drain chain: `per` sites along the same band,
                below = bels["pe", r + 1, c]    # or past the free group in its middle
                assert _xy(below)[1] == _xy(here)[1]
                assert index[below] - index[here] in (per, per + 4)
            if c + 1 < cols:        # a: the next site, or the same X in the next band
                right = bels["pe", r, c + 1]
                if (c + 1) % per:
                    assert abs(index[right] - index[here]) == 1
                else:
                    assert _xy(right)[0] == _xy(here)[0] and _xy(right)[1] != _xy(here)[1]
    # The lanes take the first group of sites of their column's band, before row 0.
    for c in range(cols):
        lane, top = bels["lane", c], bels["pe", 0, c]
        assert _xy(lane)[1] == _xy(top)[1] and index[lane] < 4 <= index[top]


@pytest.mark.parametrize("rows, cols", [(22, 6), (16, 6), (12, 4)])
def test_free_sites_include_the_middle_group(rows, cols):
    # The other units' multipliers take the sites the array leaves: four of them in the middle
    # group of each band's row (X58 to X63), the rest before the elements (after the lanes) or
    # after them. Each of these arrays has 2 columns a band, so its elements take 2 * rows sites.
    bels = array_bels(rows, cols, cols)
    index = {site: i for row in ECP5_DSP_SITES.values() for i, site in enumerate(row)}
    for y in {_xy(site)[1] for site in bels.values()}:
        taken = {index[site] for site in bels.values() if _xy(site)[1] == y}
        free = set(range(52)) - taken
        assert {24, 25, 26, 27} <= free
        assert {_xy(ECP5_DSP_SITES[y][i])[0] for i in (24, 25, 26, 27)} == {58, 59, 62, 63}
        assert free - {24, 25, 26, 27} == {2, 3} | set(range(4 + 2 * rows + 4, 52))


def test_too_large_or_too_many_lanes():
    assert array_bels(52, 1) is None                    # 52 rows leave no site for a lane group
    assert array_bels(16, 10) is None                   # 4 columns a band: 4 + 64 > 52 sites
    with pytest.raises(ValueError, match="at most the array's columns"):
        array_bels(4, 4, 5)


def _netlist(path, rows, cols, lanes):
    cells = {f"link.accel.gemm.array.pe_{r}_{c}.mult": {"type": "MULT18X18D", "attributes": {}}
             for r in range(rows) for c in range(cols)}
    cells.update({f"link.accel.requant.p_{j}": {"type": "MULT18X18D", "attributes": {}}
                  for j in range(lanes)})
    cells["link.accel.softmax.prod4_0$238"] = {"type": "MULT18X18D", "attributes": {}}
    cells["link.accel.gemm.array.pe_0_0.acc_LUT4"] = {"type": "LUT4", "attributes": {}}
    path.write_text(json.dumps({"modules": {"top": {"cells": cells}}}))
    return path


def test_apply_pins_the_array_and_the_lanes_only(tmp_path):
    path = _netlist(tmp_path / "top.json", 16, 6, 6)
    line = apply_floorplan(path, 16, 6)
    assert line == ("floorplan: the 16x6 array's MULT18X18Ds and the requantizer's 6 lanes' "
                    "pinned in DSP rows Y10, Y34, Y58")
    cells = json.loads(path.read_text())["modules"]["top"]["cells"]
    want = array_bels(16, 6, 6)
    for (r, c) in ((0, 0), (15, 5), (7, 3)):
        assert cells[f"link.accel.gemm.array.pe_{r}_{c}.mult"]["attributes"]["BEL"] == \
            want["pe", r, c]
    assert cells["link.accel.requant.p_4"]["attributes"]["BEL"] == want["lane", 4]
    pinned = [name for name, cell in cells.items() if "BEL" in cell["attributes"]]
    assert len(pinned) == 16 * 6 + 6
    assert "BEL" not in cells["link.accel.softmax.prod4_0$238"]["attributes"]
    assert "BEL" not in cells["link.accel.gemm.array.pe_0_0.acc_LUT4"]["attributes"]


def test_apply_leaves_lanes_that_are_not_one_a_column(tmp_path):
    # A requantizer without one MULT18X18D a column (not half-rate): the array alone.
    for lanes in (0, 3):
        path = _netlist(tmp_path / f"top{lanes}.json", 8, 6, lanes)
        assert apply_floorplan(path, 8, 6) == \
            "floorplan: the 8x6 array's MULT18X18Ds pinned in DSP rows Y34, Y58"
        cells = json.loads(path.read_text())["modules"]["top"]["cells"]
        assert sum("BEL" in cell["attributes"] for cell in cells.values()) == 48


def test_apply_refuses_another_array_and_leaves_a_large_one(tmp_path):
    path = _netlist(tmp_path / "top.json", 4, 4, 4)
    with pytest.raises(ValueError, match=r"must hold the 4x5 array's MULT18X18Ds .* not 16"):
        apply_floorplan(path, 4, 5)
    design = json.loads(path.read_text())
    design["modules"]["top"]["cells"]["link.accel.attention.gemm.array.pe_1_2.mult"] = {
        "type": "MULT18X18D", "attributes": {}}
    path.write_text(json.dumps(design))
    with pytest.raises(ValueError, match=r"must hold one array, not two cells .*pe_1_2.mult"):
        apply_floorplan(path, 4, 4)
    path = _netlist(tmp_path / "big.json", 16, 10, 0)
    before = path.read_text()
    assert apply_floorplan(path, 16, 10) == \
        "floorplan: none (a 16x10 array fits no banding of the DSP rows)"
    assert path.read_text() == before
