"""Tests of the board tops and the board flow: both presets place, fit and meet their clock;
several seeds place one netlist."""

import json

import pytest

from boards import flow
from boards.floorplan import array_bels
from boards.flow import (
    BOARDS,
    REPO_ROOT,
    BoardReport,
    array_dsp_blocks,
    check_fit,
    load_board_report,
    synth_board,
)
from boards.icebreaker import ice40_pll
from boards.synth import parse_fmax
from boards.toolchain import tool_command
from boards.ulx3s import CLK_FREQ, ecp5_pll
from hw.config import AccelConfig, ArrayConfig, BufferConfig, GemmConfig


def _quiet(line):
    pass


def _check_placed(report, board, out_dir):
    spec = BOARDS[board]
    assert (report.board, report.device) == (board, spec.device)
    # The preset's claim: at most 90% of logic and block RAM (so it fits with room). DSP blocks
    # are dedicated sites that a preset may fill on purpose (the ULX3S's array and units take
    # all but one): they must fit, and the clock below is met.
    for name, share in (("lut", 0.9), ("dsp", 1.0), ("bram", 0.9)):
        r = report.resources[name]
        assert r["capacity"] == spec.capacity[name]
        assert r["count"] <= share * r["capacity"], (name, r)
    cfg = AccelConfig.preset(board)
    # Every PE's multiplier went to a DSP block, one per pair of PEs with dsp_pairs on iCE40
    # (the placed count includes the requantizer's).
    blocks, _ = array_dsp_blocks(cfg, BOARDS[board].family)
    assert report.resources["dsp"]["count"] >= blocks
    # Timing: the slowest clock's Fmax reaches the PLL frequency the top runs at.
    assert report.fmax_mhz and report.timing_passed
    assert report.fmax >= report.clk_mhz
    assert report.seeds == (1,) and report.seed == 1
    assert report.worst_slack_ns == 1000 / report.clk_mhz - 1000 / report.fmax >= 0
    assert (out_dir / report.bitstream.rsplit("/", 1)[-1]).stat().st_size > 1000
    # No checkout path in the netlist, so that the build is the same from any folder.
    assert str(REPO_ROOT) not in (out_dir / "top.il").read_text()
    assert load_board_report(out_dir) == report
    assert f"{report.clk_mhz:g} MHz" in report.table()


@pytest.mark.place_and_route
def test_icebreaker_preset_places_fits_and_meets_clock(tmp_path):
    report = synth_board(AccelConfig.preset("icebreaker"), "icebreaker", out_dir=tmp_path,
                         log=_quiet)
    _check_placed(report, "icebreaker", tmp_path)
    assert report.clk_mhz > 12          # above the board oscillator: the PLL buys frequency


@pytest.mark.place_and_route   # the longest test: about 10 minutes of Yosys and nextpnr
def test_ulx3s_preset_places_fits_and_meets_clock(tmp_path):
    lines = []
    cfg = AccelConfig.preset("ulx3s")
    report = synth_board(cfg, "ulx3s", out_dir=tmp_path, log=lines.append)
    _check_placed(report, "ulx3s", tmp_path)
    assert report.clk_mhz == CLK_FREQ / 1e6     # 78.125, met at seeds 1 to 3
    # The floorplan pinned every element's and requantizer lane's MULT18X18D in the netlist
    # that nextpnr placed, at the sites boards.floorplan gives.
    R, C = cfg.array.rows, cfg.array.cols
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"]
    pinned = {cell["attributes"]["BEL"] for cell in cells.values()
              if cell["type"] == "MULT18X18D" and "BEL" in cell["attributes"]}
    assert pinned == set(array_bels(R, C, C).values())
    assert any(line.startswith(f"floorplan: the {R}x{C} array's") for line in lines)


@pytest.mark.place_and_route   # about 1 minute on 2 cores: a small top, three seeds
def test_seeds_place_one_netlist(tmp_path, monkeypatch):
    # A 2x1 array with small buffers: the flow of the preset, at a fraction of its nextpnr time.
    cfg = AccelConfig.preset("icebreaker").replace(
        array=ArrayConfig(rows=2, cols=1, dsp_pairs=True),
        gemm=GemmConfig(max_m=8, max_k=8, max_n=8), buffers=BufferConfig(16))
    runs = []

    def spy(what, argv, *args, **kwargs):
        runs.append((what, argv))
        return run(what, argv, *args, **kwargs)

    run = flow.run_tool
    monkeypatch.setattr(flow, "run_tool", spy)
    lines = []
    seeds = (2, 1, 3)           # not in order: the first seed is the bitstream's, not seed 1
    report = synth_board(cfg, "icebreaker", seeds=seeds, out_dir=tmp_path, log=lines.append)

    # Yosys and the pack check once; nextpnr once per seed; the bitstream once, of seed 2.
    assert [what for what, _ in runs] == ["yosys", "nextpnr --pack-only", "pack"]
    assert runs[-1][1][-2:] == ["seed-2/top.asc", "top.bin"]
    assert [path.name for path in tmp_path.rglob("*.bin")] == ["top.bin"]
    assert report.bitstream == str(tmp_path / "top.bin") and report.seed == 2
    placements = {(tmp_path / f"seed-{seed}" / "top.asc").read_bytes() for seed in seeds}
    assert len(placements) == 3     # each seed placed the netlist its own way

    # Each seed's figures are its own log's, its slack computed from its Fmax.
    assert report.seeds == seeds
    for run_, seed in zip(report.seed_runs, seeds, strict=True):
        fmax = parse_fmax((tmp_path / f"seed-{seed}" / "nextpnr.log").read_text())
        assert run_["seed"] == seed and run_["fmax_mhz"] == fmax
        slowest = min(fmax.values())
        assert run_["slack_ns"] == pytest.approx(1000 / report.clk_mhz - 1000 / slowest)
        assert run_["timing_passed"] == (slowest >= report.clk_mhz)
        assert any(line.startswith(f"nextpnr seed {seed}: done in ") for line in lines)
    assert report.fmax_mhz == report.seed_runs[0]["fmax_mhz"]
    assert report.worst_slack_ns == min(run_["slack_ns"] for run_ in report.seed_runs)
    assert report.timing_passed == all(run_["timing_passed"] for run_ in report.seed_runs)
    assert report.timing_passed         # 24 MHz, with the preset's margin and more

    table = report.table().splitlines()
    for run_ in report.seed_runs:
        mhz = min(run_["fmax_mhz"].values())
        assert sum(f"{mhz:.2f} MHz" in line and f"seed {run_['seed']}: slack "
                   f"{run_['slack_ns']:+.2f} ns" in line for line in table) == 1
    assert (f"worst of seeds 2, 1, 3: seed {report.worst_seed['seed']}, slack "
            f"{report.worst_slack_ns:+.2f} ns") in table
    assert load_board_report(tmp_path) == report

    # Bad seeds are refused before the folder is touched; a new build clears every seed folder
    # and the bitstream of the last.
    with pytest.raises(ValueError, match=r"^Seeds must be distinct"):
        synth_board(cfg, "icebreaker", seeds=(1, 1), out_dir=tmp_path, log=_quiet)
    assert {path.name for path in tmp_path.glob("seed-*")} == {"seed-1", "seed-2", "seed-3"}
    # A seed whose nextpnr fails does not stop the others: each ends, and the error names the
    # failed seed.
    real = tool_command("NEXTPNR_ICE40")
    wrapper = tmp_path.parent / "nextpnr_fails_at_seed_3"
    wrapper.write_text(f'case " $* " in *" --seed 3 "*) exit 7;; esac\nexec {real} "$@"\n')
    monkeypatch.setenv("NEXTPNR_ICE40", f"sh {wrapper}")
    lines.clear()
    with pytest.raises(RuntimeError, match=r"^nextpnr failed \(exit code 7\) for icebreaker "
                                           r"at seed 3; end of "):
        synth_board(cfg, "icebreaker", seeds=(3, 1), out_dir=tmp_path, log=lines.append)
    assert "nextpnr: seed 3 failed" in lines
    assert any(line.startswith("nextpnr seed 1: done in ") for line in lines)
    assert parse_fmax((tmp_path / "seed-1" / "nextpnr.log").read_text())
    monkeypatch.setenv("NEXTPNR_ICE40", real)
    monkeypatch.setenv("YOSYS", "false")
    with pytest.raises(RuntimeError, match=r"^Yosys failed \(exit code 1\)"):
        synth_board(cfg, "icebreaker", out_dir=tmp_path, log=_quiet)
    assert not list(tmp_path.glob("seed-*")) and not (tmp_path / "top.bin").exists()


def test_one_seed_report_from_before_seed_runs():
    report = BoardReport.from_dict({
        "board": "icebreaker", "device": "iCE40UP5K", "family": "ice40",
        "config": AccelConfig.preset("icebreaker").to_dict(), "clk_mhz": 24.0, "resources": {},
        "synth_cells": {}, "fmax_mhz": {"clk": 32.0}, "timing_passed": True, "seed": 1,
        "bitstream": "top.bin", "out_dir": ".", "elapsed_s": {"nextpnr": 80.0}})
    assert report.seeds == (1,)
    assert report.worst_slack_ns == 1000 / 24 - 1000 / 32
    assert "Fmax 32.00 MHz on 'clk' (meets the 24 MHz clock, seed 1: slack +10.42 ns)" in \
        report.table()


def test_report_names_the_seeds_that_miss_the_clock():
    runs = [{"seed": seed, "fmax_mhz": {"clk": mhz}, "slack_ns": 1000 / 24 - 1000 / mhz,
             "timing_passed": mhz >= 24} for seed, mhz in ((1, 30.0), (2, 23.0), (3, 22.5))]
    report = BoardReport.from_dict({
        "board": "icebreaker", "device": "iCE40UP5K", "family": "ice40",
        "config": AccelConfig.preset("icebreaker").to_dict(), "clk_mhz": 24.0, "resources": {},
        "synth_cells": {}, "fmax_mhz": {"clk": 30.0}, "timing_passed": False, "seed": 1,
        "bitstream": "top.bin", "out_dir": ".", "seed_runs": runs})
    assert "timing FAILED at seeds 2, 3; bitstream top.bin (seed 1)" in report.table()
    report.seed_runs = runs[:2]
    assert "timing FAILED at seed 2; bitstream" in report.table()
    report.seed_runs, report.timing_passed = [runs[0], {**runs[0], "seed": 4}], True
    assert "timing passed at every seed; bitstream" in report.table()


def test_bad_seeds_refused_before_any_tool(tmp_path):
    cfg = AccelConfig.preset("icebreaker")
    with pytest.raises(TypeError, match=r"^Give seed or seeds, not both \(seed 1, seeds "
                                        r"\(1, 2\)\)$"):
        synth_board(cfg, "icebreaker", seed=1, seeds=(1, 2), out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^Seeds must name at least one seed, not \(\)$"):
        synth_board(cfg, "icebreaker", seeds=[], out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^Seeds must be distinct, not 1, 2, 1 \(1 more than "
                                         r"once\)$"):
        synth_board(cfg, "icebreaker", seeds=(1, 2, 1), out_dir=tmp_path)
    with pytest.raises(TypeError, match=r"^Seed must be an integer, not '2'$"):
        synth_board(cfg, "icebreaker", seeds=(1, "2"), out_dir=tmp_path)
    with pytest.raises(TypeError, match=r"^Seed must be an integer, not True$"):
        synth_board(cfg, "icebreaker", seed=True, out_dir=tmp_path)
    with pytest.raises(TypeError, match=r"^Seeds must be a sequence of integers, not '123'$"):
        synth_board(cfg, "icebreaker", seeds="123", out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_too_big_array_refused_before_place_and_route(tmp_path):
    cfg = AccelConfig.preset("icebreaker").replace(array=ArrayConfig(rows=4, cols=4))
    with pytest.raises(ValueError, match=r"^icebreaker design must fit the iCE40UP5K \(.*8 "
                                         r"SB_MAC16.*\), not a 4x4 array \(16 SB_MAC16, one "
                                         r"per PE\)$"):
        synth_board(cfg, "icebreaker", out_dir=tmp_path, log=_quiet)
    assert not list(tmp_path.iterdir())     # refused before any tool ran
    # With dsp_pairs, one SB_MAC16 per pair of PEs of a column (an odd row takes its own).
    cfg = cfg.replace(array=ArrayConfig(rows=5, cols=3, dsp_pairs=True))
    with pytest.raises(ValueError, match=r"^icebreaker design must fit the iCE40UP5K \(.*8 "
                                         r"SB_MAC16.*\), not a 5x3 array \(9 SB_MAC16, one "
                                         r"per pair of PEs\)$"):
        synth_board(cfg, "icebreaker", out_dir=tmp_path, log=_quiet)
    assert not list(tmp_path.iterdir())


def test_check_fit_names_every_resource_over():
    fits = {"lut": 4000, "ff": 2000, "carry": 1000, "dsp": 8, "bram": 30, "spram": 0}
    check_fit("icebreaker", fits)
    with pytest.raises(ValueError, match=r"^icebreaker design must fit the iCE40UP5K \(5280 "
                                         r"logic cells, .*\), not 7807 logic cells > 5280, "
                                         r"25 SB_MAC16 > 8$"):
        check_fit("icebreaker", {**fits, "lut": 7807, "dsp": 25})
    with pytest.raises(ValueError, match=r"^ulx3s design must fit the LFE5U-85F \(.*\), "
                                         r"not 209 DP16KD > 208$"):
        check_fit("ulx3s", {**fits, "bram": 209})


def test_unknown_board():
    with pytest.raises(ValueError, match=r"^Board must be one of 'icebreaker', 'ulx3s', "
                                         r"not 'arty'$"):
        check_fit("arty", {})
    with pytest.raises(TypeError, match=r"^Config must be an AccelConfig, not 'tiny'$"):
        synth_board("tiny", "icebreaker")


@pytest.mark.parametrize("f_out", [16e6, 18e6, 24e6, 30e6, 48e6])
def test_ice40_pll(f_out):
    p = ice40_pll(12e6, f_out)
    f_pfd = 12e6 / (p["DIVR"] + 1)
    f_vco = f_pfd * (p["DIVF"] + 1)
    assert 10e6 <= f_pfd <= 133e6 and 533e6 <= f_vco <= 1066e6
    assert p["freq"] == f_vco / 2 ** p["DIVQ"]
    assert abs(p["freq"] - f_out) <= 0.01 * f_out


@pytest.mark.parametrize("f_out", [50e6, 75e6, 100e6, 125e6])
def test_ecp5_pll(f_out):
    p = ecp5_pll(25e6, f_out)
    assert p["freq"] == 25e6 / p["CLKI_DIV"] * p["CLKFB_DIV"]
    assert 400e6 <= p["freq"] * p["CLKOP_DIV"] <= 800e6
    assert abs(p["freq"] - f_out) <= 0.01 * f_out


def test_pll_unreachable():
    with pytest.raises(ValueError, match=r"^PLL output frequency must be reachable from 12 MHz "
                                         r".*, not 1000 MHz$"):
        ice40_pll(12e6, 1000e6)
    with pytest.raises(ValueError, match=r"^PLL output frequency must be reachable from 25 MHz "
                                         r".*, not 1 MHz$"):
        ecp5_pll(25e6, 1e6)
