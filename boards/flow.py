"""Board synthesis: Yosys, a fit check, nextpnr and icepack/ecppack on a board top; a report."""

import json
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from hw.config import AccelConfig, build_dir
from hw.dsp import ICE40_PAIR_WIDTH

from . import floorplan as dsp_floorplan
from . import icebreaker, ulx3s
from .framing import BAUD
from .jobs import run_jobs, run_tool, tail
from .seeds import check_seeds, clear_seed_dirs, seed_dir, slack_ns
from .synth import (
    PNR_OPTIONS,
    SYNTH_COMMANDS,
    classify_cells,
    parse_fmax,
    prepare_rtlil,
    relax_collisions,
)
from .toolchain import setup_environment, tool_command

__all__ = [
    "BOARDS", "BoardSpec", "BoardReport", "array_dsp_blocks", "check_fit", "parse_utilisation",
    "slack_ns", "synth_board",
    "load_board_report",
]

#: The checkout (or installed package) root: no path under it may reach a netlist.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Resource names of a board report, in table order.
RESOURCES = ("lut", "ff", "carry", "dsp", "bram", "spram")

_RESOURCE_LABELS = {
    "ice40": {"lut": "logic cells", "ff": "flip-flops", "carry": "carries", "dsp": "SB_MAC16",
              "bram": "EBR (4 kbit)", "spram": "SPRAM"},
    "ecp5": {"lut": "LUT4", "ff": "flip-flops", "carry": "CCU2C", "dsp": "MULT18X18D",
             "bram": "DP16KD", "spram": "-"},
}


@dataclass(frozen=True)
class BoardSpec:
    """How to build for one board.

    Attributes
    ----------
    name : str
        ``"icebreaker"`` or ``"ulx3s"``.
    family : str
        ``"ice40"`` or ``"ecp5"`` (as :data:`boards.synth.FAMILIES`).
    device : str
        The FPGA.
    capacity : dict
        Device capacity per resource: ``lut`` is logic cells (iCE40: LUT4 + carry + FF each)
        or LUT4 sites (ECP5, each CCU2C takes two), ``ff``, ``carry`` (carry cells that fit,
        one per logic cell / two LUT4s), ``dsp`` (SB_MAC16 / MULT18X18D), ``bram`` (EBR /
        DP16KD), ``spram``.
    top : type
        The board top (:class:`~boards.icebreaker.ICEBreakerTop`, :class:`~boards.ulx3s.ULX3STop`).
    make_platform : callable
        Makes the amaranth-boards platform the top is elaborated with.
    nextpnr : tuple of str
        The toolchain variable of nextpnr and its device arguments.
    """

    name: str
    family: str
    device: str
    capacity: dict
    top: type
    make_platform: object
    nextpnr: tuple


BOARDS = {
    "icebreaker": BoardSpec(
        "icebreaker", "ice40", "iCE40UP5K",
        {"lut": 5280, "ff": 5280, "carry": 5280, "dsp": 8, "bram": 30, "spram": 4},
        icebreaker.ICEBreakerTop, icebreaker.make_platform,
        ("NEXTPNR_ICE40", "--up5k", "--package", "sg48")),
    "ulx3s": BoardSpec(
        "ulx3s", "ecp5", "LFE5U-85F",
        {"lut": 83640, "ff": 83640, "carry": 41820, "dsp": 156, "bram": 208, "spram": 0},
        ulx3s.ULX3STop, ulx3s.make_platform,
        ("NEXTPNR_ECP5", "--85k", "--package", "CABGA381", "--speed", "6")),
}

#: nextpnr ``utilization`` bel -> report resource, per family (the placed figures).
_PNR_BELS = {
    "ice40": {"ICESTORM_LC": "lut", "ICESTORM_DSP": "dsp", "ICESTORM_RAM": "bram",
              "ICESTORM_SPRAM": "spram"},
    "ecp5": {"TRELLIS_COMB": "lut", "TRELLIS_FF": "ff", "MULT18X18D": "dsp", "DP16KD": "bram"},
}


_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def parse_utilisation(log_text):
    """``{bel: (used, available)}`` from nextpnr's last "Device utilisation" table in a log."""
    return {bel: (int(used), int(avail)) for bel, used, avail in _UTIL_RE.findall(log_text)}


def _check_board(board):
    if board not in BOARDS:
        raise ValueError(f"Board must be one of {', '.join(map(repr, BOARDS))}, not {board!r}")
    return BOARDS[board]


@dataclass
class BoardReport:
    """Resources, Fmax and timing of a placed and routed board top.

    Attributes
    ----------
    board, device, family : str
        The board, its FPGA and family.
    config : dict
        The accelerator configuration (:meth:`AccelConfig.to_dict`).
    clk_mhz : float
        The ``sync`` clock the board top runs at (the PLL output), the timing constraint.
    resources : dict
        Resource -> ``{"count", "capacity", "percent"}``. ``lut``, ``dsp``, ``bram``, ``spram``
        are what nextpnr placed (iCE40 ``lut`` is logic cells, ICESTORM_LC, each a LUT4 with its
        carry and FF; ECP5 ``lut`` is TRELLIS_COMB, LUT4 sites including carries and LUT RAM);
        ``ff`` and ``carry`` come from Yosys' cell counts (iCE40) or nextpnr (ECP5 ``ff``).
    synth_cells : dict
        Yosys' resource counts (:func:`boards.synth.classify_cells`) before placement.
    fmax_mhz : dict
        Clock net -> the Fmax nextpnr reports after routing, at ``seed`` (the bitstream's).
    timing_passed : bool
        Every clock's Fmax is at least ``clk_mhz`` at every seed of ``seed_runs``.
    seed : int
        nextpnr's placer seed of the bitstream and of ``resources``: the first seed.
    bitstream : str
        Path of the bitstream (``top.bin`` for iCE40, ``top.bit`` for ECP5).
    out_dir : str
        Where everything went.
    elapsed_s : dict
        Seconds per step (``elaborate``, ``yosys``, ``pack_check``, ``nextpnr``, ``bitstream``);
        ``nextpnr`` is the time of all seeds, run side by side.
    seed_runs : list of dict
        One per seed, in the order given: ``seed``, ``fmax_mhz`` (clock -> MHz), ``slack_ns``
        (:func:`slack_ns` of the slowest clock), ``timing_passed`` and ``elapsed_s`` (that
        seed's nextpnr seconds). Each seed placed the same netlist, in ``seed-<n>/``.
    """

    board: str
    device: str
    family: str
    config: dict
    clk_mhz: float
    resources: dict
    synth_cells: dict
    fmax_mhz: dict
    timing_passed: bool
    seed: int
    bitstream: str
    out_dir: str
    elapsed_s: dict = field(default_factory=dict)
    seed_runs: list = field(default_factory=list)

    @property
    def fmax(self):
        """The slowest clock's Fmax in MHz at ``seed`` (the ``sync`` clock; the board has one
        domain)."""
        return min(self.fmax_mhz.values())

    @property
    def seeds(self):
        """The seeds placed, in order; the first is the bitstream's."""
        return tuple(run["seed"] for run in self.seed_runs)

    @property
    def worst_seed(self):
        """The seed run with the least slack (the first such seed on a tie)."""
        return min(self.seed_runs, key=lambda run: run["slack_ns"])

    @property
    def worst_slack_ns(self):
        """The least slack over the seeds, in ns: what every seed's placement meets."""
        return self.worst_seed["slack_ns"]

    def to_dict(self):
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data):
        report = cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})
        if not report.seed_runs:        # a report of one seed from before seed_runs
            report.seed_runs = [_seed_run(report.seed, report.fmax_mhz, report.clk_mhz,
                                          report.elapsed_s.get("nextpnr", 0.0))]
        return report

    def table(self):
        """The report as a text table: resource, used, available, % of device; then Fmax."""
        cfg = AccelConfig.from_dict(self.config)
        units = ", ".join(["gemm", "requant"] + [u for u in ("softmax", "gelu", "layernorm",
                                                             "attention")
                                                 if getattr(cfg, u).enabled])
        labels = _RESOURCE_LABELS[self.family]
        lines = [f"{self.board} ({self.device}): {cfg}; units: {units}",
                 f"{'resource':<14} {'used':>7} {'of':>7} {'%':>7}"]
        for name in RESOURCES:
            if name not in self.resources:
                continue
            r = self.resources[name]
            pct = f"{r['percent']:.1f}%" if r["percent"] is not None else "-"
            of = r["capacity"] if r["capacity"] else "-"
            lines.append(f"{labels[name]:<14} {r['count']:>7} {of:>7} {pct:>7}")
        for run in self.seed_runs:
            for clock, mhz in run["fmax_mhz"].items():
                verdict = "meets" if mhz >= self.clk_mhz else "MISSES"
                lines.append(f"Fmax {mhz:.2f} MHz on '{clock}' ({verdict} the {self.clk_mhz:g} "
                             f"MHz clock, seed {run['seed']}: slack "
                             f"{slack_ns(self.clk_mhz, mhz):+.2f} ns)")
        seeds = self.seeds
        if len(seeds) > 1:
            lines.append(f"worst of seeds {', '.join(map(str, seeds))}: seed "
                         f"{self.worst_seed['seed']}, slack {self.worst_slack_ns:+.2f} ns")
            missed = [str(run["seed"]) for run in self.seed_runs if not run["timing_passed"]]
            verdict = (f"FAILED at seed{'s' if len(missed) > 1 else ''} {', '.join(missed)}"
                       if missed else "passed at every seed")
            lines.append(f"timing {verdict}; bitstream {self.bitstream} (seed {self.seed})")
        else:
            lines.append(f"timing {'passed' if self.timing_passed else 'FAILED'}; "
                         f"bitstream {self.bitstream}")
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in self.elapsed_s.items())
        lines.append(f"run time: {steps}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def _seed_run(seed, fmax, clk_mhz, seconds):
    """The :attr:`BoardReport.seed_runs` entry of one seed's ``{clock: Fmax}``."""
    return {"seed": seed, "fmax_mhz": fmax, "slack_ns": slack_ns(clk_mhz, min(fmax.values())),
            "timing_passed": all(mhz >= clk_mhz for mhz in fmax.values()),
            "elapsed_s": seconds}


def load_board_report(path):
    """Read a :class:`BoardReport` from a ``report.json`` (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    return BoardReport.from_dict(json.loads(path.read_text()))


def check_fit(board, counts):
    """Raise ``ValueError`` when ``counts`` (resource -> cells, as from
    :func:`boards.synth.classify_cells`) exceed the board's device, naming every resource over.

    On iCE40 a logic cell holds one LUT4, one carry and one FF, so ``lut``, ``ff`` and ``carry``
    are each checked against the logic cells (a lower bound on what placement needs).
    """
    spec = _check_board(board)
    over = [f"{counts[name]} {_RESOURCE_LABELS[spec.family][name]} > {cap}"
            for name, cap in spec.capacity.items() if counts.get(name, 0) > cap]
    if over:
        have = ", ".join(f"{cap} {_RESOURCE_LABELS[spec.family][name]}"
                         for name, cap in spec.capacity.items() if cap)
        raise ValueError(f"{board} design must fit the {spec.device} ({have}), "
                         f"not {', '.join(over)}")


def array_dsp_blocks(cfg, family):
    """The DSP blocks the systolic array of ``cfg`` takes on ``family``, and whether they are
    pairs: one per PE on both families (an INT8 product fits an SB_MAC16 and a MULT18X18D), or
    one per pair of PEs on iCE40 with ``array.dsp_pairs``."""
    a = cfg.array
    pairs = a.dsp_pairs and family == "ice40" and a.in_width <= ICE40_PAIR_WIDTH
    return (-(-a.rows // 2) * a.cols if pairs else a.rows * a.cols), pairs


def _early_check(spec, cfg):
    # An array larger than the DSP count cannot fit; refuse it before spending minutes in Yosys.
    blocks, pairs = array_dsp_blocks(cfg, spec.family)
    a = cfg.array
    if blocks > spec.capacity["dsp"]:
        label = _RESOURCE_LABELS[spec.family]["dsp"]
        raise ValueError(
            f"{spec.name} design must fit the {spec.device} ({spec.capacity['dsp']} {label}), "
            f"not a {a.rows}x{a.cols} array ({blocks} {label}, one per "
            f"{'pair of PEs' if pairs else 'PE'})")


def _yosys_script(family, uncontended):
    synth = SYNTH_COMMANDS[family]
    return "; ".join(command for command in [
        "read_rtlil top.il",
        relax_collisions(uncontended),
        "proc",          # proc; splitnets avoid a Yosys 0.70 assertion on some Amaranth RTLIL
        "splitnets",
        "hierarchy -top top",
        synth,
        "tee -q -o stats.txt stat",
        "tee -q -o stats.json stat -json",
        "write_json top.json",
    ] if command)


def synth_board(cfg, board, *, clk_freq=None, baud=BAUD, seed=None, seeds=None, out_dir=None,
                floorplan=True, log=print):
    """Build the board top of ``cfg`` for ``board`` to a bitstream, with no hardware attached,
    placed at one nextpnr seed or several.

    Steps, all in ``out_dir`` (the YoWASP tools only open files below their working folder):

    1. elaborate the board top with the amaranth-boards platform (``platform.prepare``), writing
       ``top.il`` and the pin constraints ``top.pcf`` / ``top.lpf``;
    2. Yosys ``synth_ice40 -dsp`` / ``synth_ecp5`` (log ``yosys.log``, counts ``stats.json``);
    3. :func:`check_fit` on Yosys' counts; on the LFE5U-85F,
       :func:`boards.floorplan.apply_floorplan` pins the array's DSPs in ``top.json``; then
       :func:`check_fit` on nextpnr's packed counts (``--pack-only``, ``pack.log``): a design
       that cannot fit is refused here, before place and route;
    4. nextpnr at the board top's clock, ``--timing-allow-fail`` (a missed clock still gives a
       valid Fmax), with :data:`boards.synth.PNR_OPTIONS` (router2 on ECP5), once per seed on
       the same netlist, each seed in ``seed-<n>/`` (log ``nextpnr.log``, utilization
       ``nextpnr.json``, ``top.asc`` or ``top.config``); the seeds run side by side, as many at
       a time as the machine has cores (each nextpnr takes one);
    5. icepack (``top.bin``) or ecppack (``top.bit``) of the first seed's placement;
    6. ``report.json`` (:class:`BoardReport`): the resources and Fmax of the first seed, the
       Fmax, slack and verdict of each seed, the worst seed's slack.

    A step longer than 30 s logs a progress line every 30 s (naming each seed's state), and
    each seed logs its Fmax and slack as it ends.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator configuration.
    board : str
        ``"icebreaker"`` or ``"ulx3s"`` (:data:`BOARDS`).
    clk_freq : float or None
        The ``sync`` clock in Hz; ``None`` takes the board's default (``boards.<board>.CLK_FREQ``).
    baud : int
        The UART's rate (default :data:`boards.framing.BAUD`); the clock must divide it to
        within 2% (:func:`boards.uart.uart_divisor`, which names the nearest rate otherwise).
    seed : int or None
        nextpnr placer seed; the same as ``seeds=(seed,)``. Give ``seed`` or ``seeds``, not
        both; with neither, seed 1.
    seeds : sequence of int or None
        nextpnr placer seeds, distinct, at least one: each places the netlist; the first gives
        the bitstream.
    out_dir : path-like or None
        Output folder; by default ``build/<board>/`` in the repository.
    floorplan : bool
        On the LFE5U-85F (:data:`boards.floorplan.DEVICE`), pin the array's and the
        requantizer's MULT18X18Ds (:mod:`boards.floorplan`); ``False`` leaves their placement
        to nextpnr.
    log : callable
        Called with one line of progress text at a time.

    Returns
    -------
    BoardReport

    Raises
    ------
    ValueError
        When the design cannot fit the device (before place and route), with the figures.
    RuntimeError
        When a tool fails; the message carries the end of its log.
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Config must be an AccelConfig, not {cfg!r}")
    spec = _check_board(board)
    if seed is not None and seeds is not None:
        raise TypeError(f"Give seed or seeds, not both (seed {seed!r}, seeds {seeds!r})")
    seeds = check_seeds((1 if seed is None else seed,) if seeds is None else seeds)
    _early_check(spec, cfg)
    board_module = {"icebreaker": icebreaker, "ulx3s": ulx3s}[board]
    top = spec.top(cfg, clk_freq=board_module.CLK_FREQ if clk_freq is None else clk_freq,
                   baud=baud)
    clk_mhz = top.clk_freq / 1e6

    setup_environment()
    out_dir = Path(out_dir) if out_dir is not None else build_dir() / board
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("stats.json", "stats.txt", "top.json", "pack.log", "nextpnr.log",
                  "nextpnr.json", "report.json", "top.asc", "top.bin", "top.config", "top.bit"):
        (out_dir / stale).unlink(missing_ok=True)
    clear_seed_dirs(out_dir)

    elapsed = {}
    start = time.monotonic()
    log(f"{board}: elaborating {cfg} at {clk_mhz:g} MHz into {out_dir}")
    uncontended = _elaborate(spec, top, out_dir)
    elapsed["elaborate"] = time.monotonic() - start
    counts = _synthesize(spec, board, uncontended, out_dir, elapsed, log)
    check_fit(board, counts)
    if floorplan and spec.device == dsp_floorplan.DEVICE:
        log(dsp_floorplan.apply_floorplan(out_dir / "top.json", cfg.array.rows, cfg.array.cols))
    _pack_check(spec, board, out_dir, elapsed, log)
    seed_runs = _place_and_route(spec, board, clk_mhz, seeds, out_dir, elapsed, log)
    bitstream = _bitstream(spec, board, seeds[0], out_dir, elapsed, log)

    used = dict(counts)
    pnr = json.loads((out_dir / seed_dir(seeds[0]) / "nextpnr.json").read_text())
    pnr = pnr.get("utilization", {})
    for bel, name in _PNR_BELS[spec.family].items():
        if bel in pnr:
            used[name] = pnr[bel]["used"]
    resources = {}
    for name in RESOURCES:
        cap = spec.capacity[name]
        if not cap:
            continue
        resources[name] = {"count": used[name], "capacity": cap,
                           "percent": round(100 * used[name] / cap, 1)}
    report = BoardReport(
        board=board, device=spec.device, family=spec.family, config=cfg.to_dict(),
        clk_mhz=clk_mhz, resources=resources, synth_cells=counts,
        fmax_mhz=seed_runs[0]["fmax_mhz"],
        timing_passed=all(run["timing_passed"] for run in seed_runs), seed=seeds[0],
        bitstream=str(out_dir / bitstream), out_dir=str(out_dir), elapsed_s=elapsed,
        seed_runs=seed_runs)
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    log(f"{board}: report in {out_dir / 'report.json'}")
    return report


def _elaborate(spec, top, out_dir):
    """Step 1: ``top.il`` and the pin constraints; returns the memories to relax."""
    # No source locations in the netlist: they hold the checkout's absolute path, and both
    # Yosys's mapping and nextpnr's placement depend on every string they read (the same design
    # from two folders gave different netlists and Fmax; docs/timing.md). Without them a build
    # gives the same result from any folder.
    plan = spec.make_platform().prepare(top, name="top", emit_src=False)
    constraints = "top.pcf" if spec.family == "ice40" else "top.lpf"
    design, uncontended = prepare_rtlil(plan.files["top.il"])
    (out_dir / "top.il").write_text(design)
    content = plan.files[constraints]
    (out_dir / constraints).write_text(content if isinstance(content, str) else content.decode())
    return uncontended


def _synthesize(spec, board, uncontended, out_dir, elapsed, log):
    """Step 2: Yosys; returns its cell counts by resource."""
    synth = "synth_ice40 -dsp" if spec.family == "ice40" else "synth_ecp5"
    log(f"yosys: {synth} for {spec.device} (this takes a few minutes)")
    argv = [*shlex.split(tool_command("YOSYS")), "-q", "-l", "yosys.log",
            "-p", _yosys_script(spec.family, uncontended)]
    rc, elapsed["yosys"] = run_tool("yosys", argv, out_dir, "yosys", log)
    if rc != 0 or not (out_dir / "stats.json").exists():
        raise RuntimeError(f"Yosys failed (exit code {rc}) for {board}; end of "
                           f"{out_dir / 'yosys.log'}:\n{tail(out_dir / 'yosys.log')}")
    modules = json.loads((out_dir / "stats.json").read_text())["modules"]
    cells = dict(modules["\\top"]["num_cells_by_type"])
    counts = classify_cells(spec.family, cells)
    log(f"yosys: done in {elapsed['yosys']:.0f} s: " +
        ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    return counts


def _io_args(spec, folder="."):
    """nextpnr's constraints file and placed output (in ``folder``, below the output folder)."""
    if spec.family == "ice40":
        return ["--pcf", "top.pcf", "--asc", f"{folder}/top.asc"]
    return ["--lpf", "top.lpf", "--textcfg", f"{folder}/top.config"]


def _pack_check(spec, board, out_dir, elapsed, log):
    """Step 3: nextpnr's packed counts against the device."""
    tool, *device_args = spec.nextpnr
    io_args = _io_args(spec)
    # Packing is exact where Yosys' counts are a lower bound (an iCE40 logic cell takes a LUT,
    # a carry and a FF only when their controls agree): check the packed design before placing.
    argv = [*shlex.split(tool_command(tool)), *device_args, "--json", "top.json",
            io_args[0], io_args[1], "--pack-only", "-q", "-l", "pack.log"]
    log("nextpnr: packing")
    rc, elapsed["pack_check"] = run_tool("nextpnr --pack-only", argv, out_dir, "pack", log)
    packed = parse_utilisation((out_dir / "pack.log").read_text(errors="replace")
                               if (out_dir / "pack.log").exists() else "")
    if not packed:
        raise RuntimeError(f"nextpnr failed to pack (exit code {rc}) for {board}; end of "
                           f"{out_dir / 'pack.log'}:\n{tail(out_dir / 'pack.log')}")
    packed_counts = {name: packed[bel][0] for bel, name in _PNR_BELS[spec.family].items()
                     if bel in packed}
    check_fit(board, packed_counts)


def _place_and_route(spec, board, clk_mhz, seeds, out_dir, elapsed, log):
    """Step 4: nextpnr at each seed, side by side; returns :attr:`BoardReport.seed_runs`."""
    tool, *device_args = spec.nextpnr
    jobs = []
    for seed in seeds:
        folder = seed_dir(seed)
        (out_dir / folder).mkdir()
        # Run in the output folder (the netlist and constraints are read from it), every
        # output in the seed's folder.
        argv = [*shlex.split(tool_command(tool)), *device_args, "--json", "top.json",
                *_io_args(spec, folder), *PNR_OPTIONS[spec.family],
                "--freq", f"{clk_mhz:g}", "--seed", str(seed),
                "--report", f"{folder}/nextpnr.json", "--timing-allow-fail", "-q",
                "-l", f"{folder}/nextpnr.log"]
        jobs.append((f"seed {seed}", argv, out_dir, f"{folder}/nextpnr"))
    workers = min(len(seeds), os.cpu_count() or 1)
    several = (f"seeds {', '.join(map(str, seeds))}, {workers} at a time" if len(seeds) > 1
               else f"seed {seeds[0]}")
    log(f"nextpnr: place and route at {clk_mhz:g} MHz, {several} (this takes minutes)")
    runs = [None] * len(seeds)

    def done(index, rc, seconds):
        seed = seeds[index]
        folder = out_dir / seed_dir(seed)
        nextpnr_log = (folder / "nextpnr.log").read_text(errors="replace") \
            if (folder / "nextpnr.log").exists() else ""
        fmax = parse_fmax(nextpnr_log)
        if rc != 0 or not fmax or not (folder / "nextpnr.json").exists():
            raise RuntimeError(f"nextpnr failed (exit code {rc}) for {board} at seed {seed}; "
                               f"end of {folder / 'nextpnr.log'}:\n"
                               f"{tail(folder / 'nextpnr.log')}")
        runs[index] = _seed_run(seed, fmax, clk_mhz, seconds)
        log(f"nextpnr seed {seed}: done in {seconds:.0f} s: Fmax " +
            ", ".join(f"{mhz:.2f} MHz ('{clock}')" for clock, mhz in fmax.items()) +
            f", slack {runs[index]['slack_ns']:+.2f} ns at {clk_mhz:g} MHz")

    start = time.monotonic()
    run_jobs("nextpnr", jobs, log, workers=workers, done=done, finish_all=True)
    elapsed["nextpnr"] = time.monotonic() - start
    if len(seeds) > 1:
        worst = min(runs, key=lambda run: run["slack_ns"])
        log(f"nextpnr: seeds done in {elapsed['nextpnr']:.0f} s; worst seed {worst['seed']}, "
            f"slack {worst['slack_ns']:+.2f} ns")
    return runs


def _bitstream(spec, board, seed, out_dir, elapsed, log):
    """Step 5: icepack or ecppack of the placement at ``seed``; returns the bitstream's file
    name."""
    folder = seed_dir(seed)
    if spec.family == "ice40":
        bitstream = "top.bin"
        argv = [*shlex.split(tool_command("ICEPACK")), f"{folder}/top.asc", bitstream]
    else:
        bitstream = "top.bit"
        argv = [*shlex.split(tool_command("ECPPACK")), "--input", f"{folder}/top.config",
                "--bit", bitstream]
    rc, elapsed["bitstream"] = run_tool("pack", argv, out_dir, "bitstream", log)
    if rc != 0 or not (out_dir / bitstream).exists():
        stdout = out_dir / "bitstream.stdout"
        raise RuntimeError(f"Bitstream packing failed (exit code {rc}) for {board}; end of "
                           f"{stdout}:\n{tail(stdout)}")
    return bitstream
