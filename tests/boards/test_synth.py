"""Tests of the synthesis flow: Yosys runs, multipliers land on DSPs, reports are written."""

import json
import os
import re
import sys
import time

import pytest
from amaranth.back import rtlil

from boards.jobs import run_jobs
from boards.link import LinkTop
from boards.seeds import check_seeds, parse_seeds
from boards.synth import (
    DEVICES,
    SynthReport,
    SynthTarget,
    classify_cells,
    load_report,
    parse_fmax,
    prepare_rtlil,
    relax_collisions,
    synth_unit,
    uncontended_memories,
)
from hw.config import AccelConfig
from hw.gemm import GemmEngine
from hw.memory import UNCONTENDED

TINY = AccelConfig.preset("tiny")
MACS = TINY.array.rows * TINY.array.cols


def _quiet(line):
    pass


@pytest.fixture(scope="module")
def ecp5_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gemm-ecp5")
    return synth_unit(TINY, "gemm", "ecp5", out_dir=out, log=_quiet)


@pytest.fixture(scope="module")
def ice40_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gemm-ice40")
    return synth_unit(TINY, "gemm", "ice40", out_dir=out, log=_quiet)


def test_ecp5_gemm_macs_on_mult18(ecp5_report):
    r = ecp5_report
    assert (r.family, r.device) == ("ecp5", "LFE5U-85F")
    # One MULT18X18D per PE, and every multiplier Yosys inferred is on one of them (a PE that
    # instantiates the DSP block directly has no `$mul` to infer, hence `<=`).
    assert r.cells["MULT18X18D"] == MACS
    assert r.mults <= r.dsp == MACS
    assert r.all_mults_on_dsp
    assert not [t for t in r.cells if "mul" in t.lower() and t != "MULT18X18D"]
    # The rest of the engine is real logic.
    assert r.cells["LUT4"] > 0 and r.ff > 0 and r.carry > 0
    assert r.ff == r.cells["TRELLIS_FF"]
    assert r.carry == r.cells["CCU2C"]
    assert r.lut == r.cells["LUT4"] + 2 * r.cells["CCU2C"]
    assert r.fmax_mhz is None


def test_ecp5_gemm_keeps_its_fast_registers(ecp5_report):
    # The output queues (one per lane) are marked for LUT RAM, and are in it: a block RAM's read
    # data comes 5.8 ns after the clock.
    il = rtlil.convert(GemmEngine(TINY), platform=SynthTarget.for_family("ecp5"))
    assert il.count('attribute \\ram_style "distributed"') == TINY.array.cols
    assert ecp5_report.bram == 0 and ecp5_report.lutram > 0
    # Every element keeps its own `first` and `last` registers; Yosys would otherwise merge
    # those of each anti-diagonal into one flip-flop driving elements across the die.
    netlist = json.loads((ecp5_report.log_dir / "design.json").read_text())
    kept = [name for name in netlist["modules"]["top"]["cells"]
            if re.search(r"\.f_(first|last)_0\b", name)]
    assert len(kept) == 2 * MACS


def test_ice40_gemm_macs_on_sb_mac16(ice40_report):
    r = ice40_report
    assert (r.family, r.device) == ("ice40", "iCE40UP5K")
    assert r.mults == MACS
    assert r.cells["SB_MAC16"] == MACS
    assert r.dsp == MACS and r.all_mults_on_dsp
    assert r.lut == r.cells["SB_LUT4"] > 0
    assert r.ff == sum(n for t, n in r.cells.items() if t.startswith("SB_DFF")) > 0
    assert r.carry == r.cells.get("SB_CARRY", 0) > 0


@pytest.mark.parametrize("which", ["ecp5_report", "ice40_report"])
def test_report_files_and_table(which, request):
    r = request.getfixturevalue(which)
    for name in ("design.il", "yosys.log", "stats.txt", "design.json", "synth.json"):
        assert (r.log_dir / name).is_file(), name
    written = json.loads((r.log_dir / "synth.json").read_text())
    assert written == r.to_dict()
    assert written["dsp"] == MACS and written["log_dir"] == str(r.log_dir)
    again = load_report(r.log_dir)
    assert again == r

    table = r.table()
    assert r.device in table
    capacity = DEVICES[r.family]["capacity"]
    for name in ("lut", "ff", "dsp"):
        count = getattr(r, name)
        pct = f"{100 * count / capacity[name]:.1f}%"
        assert any(line.split() == [name, str(count), pct] for line in table.splitlines()), name


def test_fmax_on_ice40_refused(tmp_path):
    with pytest.raises(ValueError, match=r"nextpnr-ice40 has no out-of-context mode"):
        synth_unit(TINY, "gemm", "ice40", fmax=True, out_dir=tmp_path, log=_quiet)
    assert not any(tmp_path.iterdir())


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"Family must be one of 'ice40', 'ecp5', not 'gowin'"):
        synth_unit(TINY, "gemm", "gowin", out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"Unit must be one of .*, not 'fft'"):
        synth_unit(TINY, "fft", "ecp5", out_dir=tmp_path)
    with pytest.raises(TypeError, match=r"Config must be an AccelConfig, not 'tiny'"):
        synth_unit("tiny", "gemm", "ecp5", out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"Target frequency must be positive, not 0"):
        synth_unit(TINY, "gemm", "ecp5", fmax=True, target_mhz=0, out_dir=tmp_path)


def test_seeds_place_one_netlist(tmp_path):
    # The requantizer of the tiny config: about 10 s of nextpnr-ecp5 per seed, two side by side.
    lines = []
    seeds = (2, 1)              # not in order: the first seed's figures are the report's
    r = synth_unit(TINY, "requant", "ecp5", fmax=True, seeds=seeds, out_dir=tmp_path,
                   log=lines.append)
    assert [run["seed"] for run in r.seed_runs] == list(seeds) and r.seed == 2
    for run in r.seed_runs:
        log = (tmp_path / f"seed-{run['seed']}" / "nextpnr.log").read_text()
        assert run["fmax_mhz"] == min(parse_fmax(log).values())
        assert run["slack_ns"] == pytest.approx(1000 / 125 - 1000 / run["fmax_mhz"])
        assert (tmp_path / f"seed-{run['seed']}" / "report.json").is_file()
        assert any(line.startswith(f"nextpnr-ecp5 seed {run['seed']}: done in ")
                   for line in lines)
    assert r.fmax_mhz == r.seed_runs[0]["fmax_mhz"] and r.target_mhz == 125
    assert r.worst_slack_ns == min(run["slack_ns"] for run in r.seed_runs)
    assert r.critical_path and r.pnr_utilization["MULT18X18D"] == r.dsp
    table = r.table().splitlines()
    for run in r.seed_runs:
        assert sum(f"{run['fmax_mhz']:.2f} MHz" in line and f"seed {run['seed']}: slack "
                   f"{run['slack_ns']:+.2f} ns" in line for line in table) == 1
    assert table[-1].split()[:3] == ["worst", "seed", str(r.worst_seed["seed"])]
    assert load_report(tmp_path) == r

    with pytest.raises(ValueError, match=r"^Several seeds are for place and route: give "
                                         r"fmax=True \(--fmax\) with seeds 1, 2$"):
        synth_unit(TINY, "requant", "ecp5", seeds=(1, 2), out_dir=tmp_path)
    with pytest.raises(TypeError, match=r"^Give seed or seeds, not both"):
        synth_unit(TINY, "requant", "ecp5", fmax=True, seed=1, seeds=(2,), out_dir=tmp_path)
    assert (tmp_path / "seed-1").is_dir()       # refused before the folder was touched


def test_yosys_failure_raises_with_log(tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", "false")
    with pytest.raises(RuntimeError, match=r"Yosys failed \(exit code 1\)"):
        synth_unit(TINY, "gemm", "ecp5", out_dir=tmp_path, log=_quiet)


def test_classify_cells():
    ecp5 = classify_cells("ecp5", {"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 7, "MULT18X18D": 2,
                                   "ALU54B": 1, "DP16KD": 4, "PDPW16KD": 1,
                                   "TRELLIS_DPR16X4": 5, "PFUMX": 9})
    assert ecp5 == {"lut": 16, "ff": 7, "carry": 3, "dsp": 3, "bram": 5, "spram": 0, "lutram": 5}
    ice40 = classify_cells("ice40", {"SB_LUT4": 10, "SB_DFF": 1, "SB_DFFESR": 2, "SB_CARRY": 4,
                                     "SB_MAC16": 2, "SB_RAM40_4K": 3, "SB_SPRAM256KA": 1})
    assert ice40 == {"lut": 10, "ff": 3, "carry": 4, "dsp": 2, "bram": 3, "spram": 1, "lutram": 0}


def test_parse_fmax_takes_last_figure():
    text = ("Info: Max frequency for clock 'clk': 103.78 MHz (FAIL at 125.00 MHz)\n"
            "Info: Critical path report for clock 'clk' (posedge -> posedge):\n"
            "Warning: Max frequency for clock 'clk': 102.92 MHz (FAIL at 125.00 MHz)\n")
    assert parse_fmax(text) == {"clk": 102.92}
    assert parse_fmax("Info: nothing here\n") == {}


def test_table_shows_fmax(tmp_path):
    r = SynthReport(unit="gemm", family="ecp5", device="LFE5U-85F", cells={}, lut=1, ff=2,
                    carry=0, dsp=0, bram=0, spram=0, lutram=0, fmax_mhz=131.5, log_dir=tmp_path,
                    target_mhz=125.0, seed=3)
    assert "131.50 MHz (meets 125 MHz, seed 3)" in r.table()


def test_uncontended_memories_are_the_marked_ones():
    # The memories marked where they are made (hw.memory.uncontended) are the top's buffers,
    # the link's frame buffer and the attention scratchpads; the softmax's buffers (which rely
    # on old data in a collision) and LayerNorm's are not. The claim itself is checked by the
    # tests that run the marked memories with new-data reads (new_data_reads).
    text = rtlil.convert(LinkTop(TINY, 4, depth=16, max_payload=32), emit_src=False)
    memids = set(re.findall(r'MEMID "\\\\([^"]+)"', text))
    assert {"buf_a", "frame", "att_s", "qmem", "emem"} <= memids
    marked = set(uncontended_memories(text))
    assert marked == {"buf_a", "buf_b", "buf_c", "buf_x", "buf_y", "buf_v", "frame", "att_q",
                      "att_k", "att_v", "att_s", "att_p0", "att_p1", "table"}   # table: CHAN
    design, names = prepare_rtlil(text)
    assert names == sorted(marked) and UNCONTENDED not in design
    assert design.count("\n") == text.count("\n") - len(marked)
    # One command per marked memory, naming it, in sorted order; none for no memory.
    script = relax_collisions(names)
    commands = script.split("; ")
    assert commands == [f"setparam -set COLLISION_X_MASK 1 t:$memrd_v2 r:MEMID=\\\\{name} %i"
                        for name in sorted(marked)]
    assert relax_collisions([]) == ""


def _sleeper(seconds, rc=0):
    """argv of a process that notes its pid and start and end times, sleeps, exits with rc."""
    code = (f"import os, sys, time; print(os.getpid(), time.monotonic(), flush=True); "
            f"time.sleep({seconds}); print(time.monotonic(), flush=True); sys.exit({rc})")
    return [sys.executable, "-c", code]


def test_run_jobs_at_most_workers_at_a_time(tmp_path):
    jobs = [(f"job {i}", _sleeper(0.6), tmp_path, f"job{i}") for i in range(3)]
    lines, ended = [], []
    results = run_jobs("jobs", jobs, lines.append, workers=2, heartbeat=0.3,
                       done=lambda index, rc, seconds: ended.append(index))
    assert [rc for rc, _ in results] == [0, 0, 0]
    assert all(seconds >= 0.6 for _, seconds in results)
    assert sorted(ended) == [0, 1, 2] and ended[-1] == 2
    times = [(tmp_path / f"job{i}.stdout").read_text().split() for i in range(3)]
    starts, ends = [float(t[1]) for t in times], [float(t[2]) for t in times]
    assert starts[2] >= min(ends[:2])           # the third waited for a free worker
    # Progress names each job's state; the third waited at first.
    assert lines and all(line.startswith("jobs: still running (") for line in lines)
    assert "job 0 running" in lines[0] and "job 2 waiting" in lines[0]


def test_run_jobs_one_job_progress(tmp_path):
    lines = []
    [(rc, _)] = run_jobs("tool", [("tool", _sleeper(0.5, rc=3), tmp_path, "tool")],
                         lines.append, heartbeat=0.2)
    assert rc == 3
    assert lines and all(re.fullmatch(r"tool: still running \(\d+ s\)", line)
                         for line in lines)


def test_run_jobs_kills_the_rest_when_done_raises(tmp_path):
    jobs = [("fails", _sleeper(0.1, rc=1), tmp_path, "fails"),
            ("slow", _sleeper(60), tmp_path, "slow")]

    def done(index, rc, seconds):
        if rc:
            raise RuntimeError(f"{jobs[index][0]} failed")

    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"^fails failed$"):
        run_jobs("jobs", jobs, lambda line: None, workers=2, done=done)
    assert time.monotonic() - start < 10
    pid = int((tmp_path / "slow.stdout").read_text().split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                         # killed and reaped


def test_run_jobs_finish_all_runs_the_rest_and_raises_after(tmp_path):
    # finish_all: each failure is logged as it ends, the other jobs run to their end, and one
    # error names every failure (or is the one failure's own).
    jobs = [("fails", _sleeper(0.1, rc=1), tmp_path, "fails"),
            ("ok", _sleeper(0.8), tmp_path, "ok"),
            ("fails too", _sleeper(0.2, rc=2), tmp_path, "fails2")]
    ended, lines = [], []

    def done(index, rc, seconds):
        ended.append(index)
        if rc:
            raise ValueError(f"{jobs[index][0]} failed with {rc}")

    with pytest.raises(RuntimeError, match=r"^fails failed with 1\n\nfails too failed with 2$"):
        run_jobs("jobs", jobs, lines.append, workers=3, done=done, finish_all=True)
    assert sorted(ended) == [0, 1, 2]
    assert len((tmp_path / "ok.stdout").read_text().split()) == 3      # ran to its end
    assert "jobs: fails failed" in lines and "jobs: fails too failed" in lines
    with pytest.raises(ValueError, match=r"^fails failed with 1$"):
        run_jobs("jobs", jobs[:2], lines.append, workers=2, done=done, finish_all=True)


def test_seeds():
    assert parse_seeds("1,2,3") == check_seeds([1, 2, 3]) == (1, 2, 3)
    assert parse_seeds(" 5 , 7") == (5, 7) and parse_seeds("4") == (4,)
    for text in ("1,x", "1,,2", "1.5", "1;2"):
        with pytest.raises(ValueError, match=r"^Seeds must be comma-separated integers such as "
                                             r"1,2,3, not '" + re.escape(text) + "'$"):
            parse_seeds(text)
    with pytest.raises(ValueError, match=r"^Seeds must name at least one seed, not ''$"):
        parse_seeds("")
    with pytest.raises(ValueError, match=r"^Seeds must be distinct, not 3, 1, 3, 1 \(1, 3 more "
                                         r"than once\)$"):
        parse_seeds("3,1,3,1")
