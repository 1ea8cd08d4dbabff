"""Verilog of a component, Verilated with its generated harness into a shared library, cached.

A build lives in ``build/verilator/<hash>/``, where the hash covers the Verilog, the harness,
the build flags and the toolchain versions: the same design is built once, and any change to
it (or to the tools) builds anew. Builds take a lock, so that test workers asking for the same
model at once build it once. Converting a component to Verilog costs a Yosys run; a caller that
names its design with a ``key`` (e.g. ``("gemm", cfg)``) skips it on later runs, through an
index keyed by that key and by the source of the gateware.
"""

import fcntl
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from hw.config import build_dir

from . import toolchain
from .harness import harness_cpp, ports_of

__all__ = ["builds_dir", "Build", "Probed", "verilog_of", "build_model", "build_component"]

ROOT = Path(__file__).resolve().parent.parent.parent


def builds_dir():
    """Where the builds are cached: ``verilator/`` in the build folder
    (:func:`hw.config.build_dir`)."""
    return build_dir() / "verilator"


# Verilator flags. -O3 and --x-assign fast: the fastest model; --x-initial unique (the
# default) keeps the Verilog's initial values, which are Amaranth's reset values.
# -Wno-fatal: warnings are the lint test's business (tests/intformer/test_generate.py), not
# the simulator's. -CFLAGS: position-independent code for the shared library, and the model's
# time from its context (no sc_time_stamp() to define).
VERILATOR_FLAGS = ["--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "-Wno-fatal",
                   "-Wno-lint", "-Wno-style", "-CFLAGS", "-fPIC -DVL_TIME_CONTEXT",
                   "-LDFLAGS", "-shared", "--prefix", "Vdut", "-o", "libmodel.so"]
#: C++ optimization of the model (the PyPI package's default is -Os everywhere): -O2 for the
#: code that runs every cycle, -O0 for the rest (constructors, initial values, the runtime
#: library), which is most of the compile time. Measured on the ulx3s top (512-word buffers):
#: a 47 s build, against 72 s with -O1 for the rest and no faster in use.
OPT = ["-MAKEFLAGS", "OPT_FAST=-O2", "-MAKEFLAGS", "OPT_SLOW=-O0", "-MAKEFLAGS",
       "OPT_GLOBAL=-O0"]


@dataclass(frozen=True)
class Build:
    """A built model: the shared library, its :class:`~sim.verilator.harness.Ports`, and the
    seconds the build took (0.0 when it came from the cache)."""

    library: Path
    ports: object
    seconds: float


class Probed(wiring.Component):
    """``dut`` with some of its internal 1-bit signals brought out as ports ``probe_<name>``,
    so that the harness can count the cycles they are high.

    Every port of ``dut`` is passed through under the same name.
    """

    def __init__(self, dut, probes):
        self.dut, self.probes = dut, dict(probes)
        members = dict(dut.signature.members)
        for name, signal in self.probes.items():
            members[f"probe_{name}"] = Out(len(signal))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        inner = list(self.dut.signature.flatten(self.dut))
        outer = list(self.signature.flatten(self))[:len(inner)]
        for (_, member, value), (_, _, port) in zip(inner, outer, strict=True):
            if member.flow == wiring.In:
                m.d.comb += value.eq(port)
            else:
                m.d.comb += port.eq(value)
        for name, signal in self.probes.items():
            m.d.comb += getattr(self, f"probe_{name}").eq(signal)
        return m


def verilog_of(component, name):
    """Verilog of ``component`` as module ``name``, as ``intformer generate`` writes it."""
    # The toolchain environment (YoWASP Yosys) has one home, boards/toolchain.py; boards
    # imports nothing of sim, so this late import makes no cycle.
    from boards.toolchain import setup_environment

    setup_environment()
    return verilog.convert(component, name=name, emit_src=False)


def _digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def _source_digest():
    """A hash of the gateware and harness sources: what a design's Verilog depends on."""
    import amaranth

    files = sorted((ROOT / "hw").glob("*.py")) + sorted(Path(__file__).parent.glob("*.py"))
    return _digest(amaranth.__version__, *(f.read_bytes() for f in files))


def build_model(verilog_text, top, ports, *, log=None):
    """Build (or find in the cache) the model of ``verilog_text``, top module ``top``, with
    the harness for ``ports``. Returns a :class:`Build`.

    Raises :exc:`~sim.verilator.toolchain.VerilatorUnavailable` without the tools and
    :exc:`~sim.verilator.toolchain.VerilatorBuildError` (first error only) on a failed build.
    """
    root, compiler = toolchain.check_available()
    harness = harness_cpp(ports)
    flags = VERILATOR_FLAGS + OPT + toolchain.make_flags(compiler)
    digest = _digest(verilog_text, harness, top, " ".join(flags), _toolchain_version())
    out = builds_dir() / digest
    library = out / "libmodel.so"
    if library.exists():
        return Build(library, ports, 0.0)
    builds_dir().mkdir(parents=True, exist_ok=True)
    with open(builds_dir() / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if library.exists():                    # another process built it meanwhile
            return Build(library, ports, 0.0)
        t0 = time.monotonic()
        work = builds_dir() / f"{digest}.build"     # kept with its build.log if the build fails
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "dut.v").write_text(verilog_text)
        (work / "harness.cpp").write_text(harness)
        if log:
            log(f"verilator: building {top} in {out}")
        jobs = os.environ.get("INTFORMER_VERILATOR_JOBS", "2")
        toolchain.run(toolchain.verilator_command(root) + flags + [
            "-j", jobs, "--top-module", top, "--Mdir", "obj", "dut.v", "harness.cpp"],
            work, root, f"Verilator build of {top}")
        shutil.move(work / "obj" / "libmodel.so", work / "libmodel.so")
        shutil.rmtree(work / "obj")             # objects are big; the library is all we need
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
        seconds = time.monotonic() - t0
        (out / "build_seconds.txt").write_text(f"{seconds:.1f}\n")
        if log:
            log(f"verilator: built {top} in {seconds:.1f} s")
        return Build(library, ports, seconds)


_VERSION = None


def _toolchain_version():
    global _VERSION
    if _VERSION is None:
        _VERSION = toolchain.toolchain_version()
    return _VERSION


_MEMO = {}


def build_component(component, top, *, key=None, log=None):
    """Build ``component`` (module name ``top``); with ``key`` (hashable, naming the design
    and its config), reuse the Verilog of an earlier build of the same key and sources.
    Returns a :class:`Build`."""
    ports = ports_of(component)
    index = None
    if key is not None:
        memo = (top, key)
        if memo in _MEMO and _MEMO[memo].library.exists():
            _silence(component)
            return Build(_MEMO[memo].library, ports, 0.0)
        index = builds_dir() / "index" / _digest(repr(memo), _source_digest(),
                                               " ".join(VERILATOR_FLAGS + OPT),
                                               _toolchain_version())
        if index.exists():
            library = builds_dir() / index.read_text().strip() / "libmodel.so"
            if library.exists():
                _silence(component)
                _MEMO[memo] = Build(library, ports, 0.0)
                return _MEMO[memo]
    result = build_model(verilog_of(component, top), top, ports, log=log)
    if key is not None:
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text(result.library.parent.name + "\n")
        _MEMO[(top, key)] = result
    return result


def _silence(component, seen=None):
    """A component built only for its ports (its model came from the cache) is never
    elaborated: mark it, and the elaboratables it made, as intended to be unused."""
    seen = set() if seen is None else seen
    if id(component) in seen or not isinstance(component, Elaboratable):
        return
    seen.add(id(component))
    component._MustUse__silence = True
    for value in vars(component).values():
        _silence(value, seen)
