"""Verilog of a component, Verilated with its generated harness into a shared library, cached.

A build lives in ``build/verilator/<hash>/``, where the hash covers the Verilog, the harness,
the build flags and the toolchain versions: the same design is built once, and any change to
it (or to the tools) builds anew. Builds take a lock, so that test workers asking for the same
model at once build it once. Converting a component to Verilog costs a Yosys run; a caller that
names its design with a ``key`` (e.g. ``("gemm", cfg)``) skips it on later runs, through an
index keyed by that key and by the source of the gateware.

Verilator's runtime library is compiled once per toolchain and flags, in ``runtime/``, and
copied into each build. A build may be profile-guided (:class:`Training`): compiled
instrumented, run on a workload, compiled again with the counts, which are kept beside the
library in ``profile/``; the hash then names the workload too.
"""

import fcntl
import hashlib
import os
import re
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

__all__ = ["builds_dir", "Build", "Training", "Probed", "verilog_of", "build_model",
           "build_component", "inputs_reach_outputs", "reset_tied", "source_files"]

ROOT = Path(__file__).resolve().parent.parent.parent


def builds_dir():
    """Where the builds are cached: ``verilator/`` in the build folder
    (:func:`hw.config.build_dir`)."""
    return build_dir() / "verilator"


# Verilator flags. -O3 and --x-assign fast: the fastest model; --x-initial unique (the
# default) keeps the Verilog's initial values, which are Amaranth's reset values. -fno-table:
# case statements stay branches rather than lookup tables (2% fewer instructions a cycle on the
# ulx3s top). -Wno-fatal: warnings are the lint test's business
# (tests/intformer/test_generate.py), not the simulator's. -CFLAGS: position-independent code
# for the shared library, the model's time from its context (no sc_time_stamp() to define), and
# every symbol but the harness's C API hidden and bound inside the library
# (-fvisibility=hidden, -fno-semantic-interposition, -Bsymbolic): calls and global data inside
# the model go direct, not through the PLT and GOT; the ulx3s top's loop 4 to 5% faster (CPU
# time, interleaved runs).
VERILATOR_FLAGS = ["--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "-fno-table",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "-CFLAGS",
                   "-fPIC -DVL_TIME_CONTEXT -fno-semantic-interposition -fvisibility=hidden "
                   "-fvisibility-inlines-hidden",
                   "-LDFLAGS", "-shared -Wl,-Bsymbolic", "--prefix", "Vdut", "-o", "libmodel.so"]
#: C++ optimization of the model, make variable by make variable (the PyPI package's default is
#: -Os everywhere): -O2 for the code that runs every cycle (OPT_FAST) and for the runtime
#: library (OPT_GLOBAL: verilated.cpp, whose end-of-eval bookkeeping runs on every eval, a
#: quarter of the 6x6 engine's loop at -O0), -O0 for the rest (constructors, initial values).
#: Measured on the ulx3s top (512-word buffers): a 47 s build, against 72 s with -O1 for the
#: rest and no faster in use; -O3 for OPT_FAST within 2% of -O2.
OPT = {"OPT_FAST": "-O2", "OPT_SLOW": "-O0", "OPT_GLOBAL": "-O2"}
#: Profile-guided optimization (:class:`Training`), GCC's: the code that runs every cycle and
#: the harness are compiled instrumented, the workload runs, and they are compiled again with
#: its counts. Untrained code is still optimized as usual (-fprofile-partial-training), and
#: code the workload never reached has no counts to miss (-Wno-missing-profile). The runtime
#: library is left out (compiled once, below): its profile made no measurable difference.
#: The instrumented library exports GCC's ``__gcov_dump`` (linked in with ``-u``), so that the
#: training writes the counts when it is done rather than at the process's exit.
PROFILE_GENERATE = {"OPT_FAST": "-fprofile-generate -fprofile-update=single",
                    "USER_LDFLAGS": "-fprofile-generate -Wl,-u,__gcov_dump"}
PROFILE_USE = {"OPT_FAST": "-fprofile-use -fprofile-partial-training -Wno-missing-profile"}


def _make_flags(opt):
    return [flag for name, value in opt.items() for flag in ("-MAKEFLAGS", f"{name}={value}")]


def _with(opt, extra):
    """``opt`` with ``extra``'s flags appended to its variables (or added)."""
    return {**opt, **{name: f"{opt[name]} {value}" if name in opt else value
                      for name, value in extra.items()}}


@dataclass(frozen=True)
class Training:
    """A workload for a profile-guided build (``train`` of :func:`build_model`).

    ``run(build)`` drives the instrumented model (a :class:`Build`) as the model's users will;
    GCC then optimizes for the branches it took. ``name`` names the workload in the build's
    hash: builds trained on different workloads are cached apart. A profile changes the
    model's speed only, never what it computes.
    """

    name: str
    run: object


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


def source_files():
    """The gateware and harness sources, what a design's Verilog depends on: every module of
    the ``hw`` package and its subpackages, and of this one."""
    return sorted((ROOT / "hw").rglob("*.py")) + sorted(Path(__file__).parent.glob("*.py"))


def _source_digest():
    """A hash of :func:`source_files` and the Amaranth version."""
    import amaranth

    return _digest(amaranth.__version__, *(f.read_bytes() for f in source_files()))


_IMPORTED_SOURCES = _source_digest()

_PORT = re.compile(r"^\s*(input|output)\s+(\[[^\]]*\]\s*)?([A-Za-z_]\w*)\s*;", re.M)


def reset_tied(verilog_text, top):
    """``verilog_text`` with a module ``itf_sim`` around ``top``, that ties its ``rst`` input
    low and passes every other port through; None if ``top`` has no ``rst`` input (or a
    header this reader does not know).

    The harness never resets the design (the Verilog's initial values are its reset values),
    and a reset that is a top-level input puts every block of logic that reads it (the
    next-state logic of every register, in Amaranth's Verilog) in the logic Verilator runs
    again on every input change; tied low, it folds away. Measured on the ulx3s top (one
    attention head, best CPU time of 20): 586 k cycles/s with ``rst`` an input, 805 k tied.
    """
    header = re.search(r"^module " + re.escape(top) + r"\(([^;]*)\);\n(.*?)^endmodule",
                       verilog_text, re.M | re.S)
    if header is None:
        return None
    ports = _PORT.findall(header.group(2))
    names = [p.strip() for p in header.group(1).split(",")]
    if ("input", "", "rst") not in ports or sorted(names) != sorted(n for _, _, n in ports):
        return None
    kept = [(d, w, n) for d, w, n in ports if n != "rst"]
    decls = "".join(f"  {d} {w}{n};\n" for d, w, n in kept)
    conns = ", ".join([".rst(1'b0)"] + [f".{n}({n})" for _, _, n in kept])
    return (f"{verilog_text}\n// Added by sim/verilator/build.py: {top} with rst tied low.\n"
            f"module itf_sim({', '.join(n for _, _, n in kept)});\n{decls}"
            f"  {top} dut ({conns});\nendmodule\n")


def build_model(verilog_text, top, ports, *, train=None, log=None):
    """Build (or find in the cache) the model of ``verilog_text``, top module ``top``, with
    the harness for ``ports``; profile-guided on ``train`` (a :class:`Training`) if given.
    Returns a :class:`Build`.

    Raises :exc:`~sim.verilator.toolchain.VerilatorUnavailable` without the tools and
    :exc:`~sim.verilator.toolchain.VerilatorBuildError` (first error only) on a failed build.
    """
    root, compiler = toolchain.check_available()
    tied = reset_tied(verilog_text, top)
    if tied is not None:
        verilog_text, top = tied, "itf_sim"
    harness = harness_cpp(ports)
    flags = VERILATOR_FLAGS + _make_flags(OPT) + toolchain.make_flags(compiler)
    digest = _digest(verilog_text, harness, top, " ".join(flags), _toolchain_version(),
                     *(() if train is None else (f"profile-guided on {train.name}",)))
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
        obj = work / "obj"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "dut.v").write_text(verilog_text)
        (work / "harness.cpp").write_text(harness)
        if log:
            log(f"verilator: building {top} in {out}" + ("" if train is None else
                                                         f", profile-guided on {train.name}"))
        # Verilate, look at what the model does with its inputs, then compile.
        toolchain.run(toolchain.verilator_command(root) + [f for f in flags if f != "--build"]
                      + ["--top-module", top, "--Mdir", "obj", "dut.v", "harness.cpp"],
                      work, root, f"Verilator build of {top}")
        reach = inputs_reach_outputs(obj, ports)
        (obj / "itf_settle.h").write_text(f"#define ITF_INPUTS_REACH_OUTPUTS {int(reach)}\n")
        runtime = _Runtime(obj, flags)
        runtime.fetch()

        def make(opt):
            jobs = os.environ.get("INTFORMER_VERILATOR_JOBS", "2")
            toolchain.run(["make", "-C", "obj", "-f", "Vdut.mk", "-j", jobs]
                          + [f"{name}={value}" for name, value in opt.items()]
                          + [f for f in toolchain.make_flags(compiler) if f != "-MAKEFLAGS"],
                          work, root, f"Verilator build of {top}")

        if train is None:
            make(OPT)
        else:
            make(_with(OPT, PROFILE_GENERATE))
            train.run(Build(obj / "libmodel.so", ports, 0.0))
            _dump_profile(obj / "libmodel.so")
            # Compile again what was instrumented (the objects with counts, and the
            # precompiled header they include), with the counts.
            counts = sorted(obj.glob("*.gcda"))
            for path in counts:
                (obj / f"{path.stem}.o").unlink(missing_ok=True)
            for path in [*obj.glob("*.fast.gch"), obj / "libmodel.so"]:
                path.unlink()
            make(_with(OPT, PROFILE_USE))
            (work / "profile").mkdir()
            for path in counts:
                shutil.move(path, work / "profile" / path.name)
        runtime.keep()
        shutil.move(obj / "libmodel.so", work / "libmodel.so")
        shutil.move(obj / "itf_settle.h", work / "itf_settle.h")     # for the reader
        shutil.rmtree(obj)             # objects are big; the library is all we need
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
        seconds = time.monotonic() - t0
        (out / "build_seconds.txt").write_text(f"{seconds:.1f}\n")
        if log:
            log(f"verilator: built {top} in {seconds:.1f} s")
        return Build(library, ports, seconds)


def _dump_profile(library):
    """Write the counts of the instrumented ``library``, loaded by the training, to its
    objects' ``.gcda`` files now; GCC's exit handler then finds them written."""
    import ctypes

    ctypes.CDLL(str(library))["__gcov_dump"]()


_GLOBAL_CLASSES = re.compile(r"^VM_GLOBAL_(?:FAST|SLOW) \+= \\\n((?:[ \t]+\S+ \\\n)*)", re.M)
# The model settings that reach the runtime's compile flags (VM_TRACE, VM_TIMING and the
# rest); VM_PARALLEL_BUILDS, which only says whether the model is split in several files,
# does not.
_SETTING = re.compile(r"^VM_(?!PARALLEL_BUILDS )\w+ = \S*$", re.M)


class _Runtime:
    """Verilator's runtime library (``verilated.cpp`` and the other global classes), compiled
    once per toolchain, flags and model settings (``VM_TRACE`` and the rest) into
    ``runtime/<hash>/`` and copied into each build: it does not depend on the design, and it
    is a third of the compile time of a model."""

    def __init__(self, obj, flags):
        classes = (obj / "Vdut_classes.mk").read_text()
        self.obj = obj
        self.names = [f"{name}.o" for block in _GLOBAL_CLASSES.findall(classes)
                      for name in block.split() if name != "\\"]
        self.dir = builds_dir() / "runtime" / _digest(" ".join(flags), _toolchain_version(),
                                                     *_SETTING.findall(classes))

    def fetch(self):
        """Copy the compiled objects into the build, if there are; make then keeps them (a
        copy is newer than its sources)."""
        if self.names and all((self.dir / name).exists() for name in self.names):
            for name in self.names:
                shutil.copy(self.dir / name, self.obj / name)

    def keep(self):
        """Store the build's runtime objects, if none are stored."""
        if not self.names or self.dir.exists():
            return
        staging = self.dir.with_name(f"{self.dir.name}.{os.getpid()}")
        staging.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            shutil.copy(self.obj / name, staging / name)
        try:
            staging.rename(self.dir)
        except OSError:                     # another build stored them first
            shutil.rmtree(staging)


_FUNCTION = re.compile(r"^\w[\w:<>* ]* (Vdut___024root___\w*ico\w*)\([^;{]*\{\n(.*?)^\}$",
                       re.M | re.S)


def inputs_reach_outputs(obj, ports):
    """Whether an output port of the Verilated model in ``obj`` depends combinationally on
    an input: whether Verilator's input-combinational region (the ``ico`` functions, run
    when inputs change) assigns one. When none does, the harness samples the outputs right
    after the clock edge and evaluates once a cycle; a model whose code it cannot read is
    taken to depend (evaluated twice a cycle, always right)."""
    from .harness import verilator_name

    outputs = [verilator_name(p.name) for p in ports.outputs]
    for s in ports.sources:
        outputs.append(verilator_name(s.name + "__ready"))
    for s in ports.sinks:
        outputs += [verilator_name(s.name + "__valid"), verilator_name(s.name + "__payload")]
    text = "".join(f.read_text() for f in sorted(Path(obj).glob("Vdut___024root__*.cpp"))
                   if "Slow" not in f.name)
    if "Vdut___024root___eval_phase__ico" not in text:
        return True                     # not the code this reader knows
    if not outputs:
        return False
    names = "|".join(map(re.escape, outputs))
    assigned = re.compile(r"\b(?:" + names + r")\b(?:\[[^]]*\])?\s*=[^=]")
    return any(assigned.search(body) for _, body in _FUNCTION.findall(text))


_VERSION = None


def _toolchain_version():
    global _VERSION
    if _VERSION is None:
        _VERSION = toolchain.toolchain_version()
    return _VERSION


_MEMO = {}


def build_component(component, top, *, key=None, train=None, log=None):
    """Build ``component`` (module name ``top``), profile-guided on ``train`` (a
    :class:`Training`) if given; with ``key`` (hashable, naming the design and its config),
    reuse the Verilog of an earlier build of the same key and sources. Returns a
    :class:`Build`."""
    ports = ports_of(component)
    index = None
    # The index names a build by the sources on disk, but the design in hand was elaborated from
    # the sources this process imported: use it only while the two are the same (an edit made
    # since, or during the build, is never indexed under a build that may not hold it).
    if key is not None and _source_digest() != _IMPORTED_SOURCES:
        key = None
    if key is not None:
        memo = (top, key, None if train is None else train.name)
        if memo in _MEMO and _MEMO[memo].library.exists():
            _silence(component)
            return Build(_MEMO[memo].library, ports, 0.0)
        index = builds_dir() / "index" / _digest(repr(memo), _IMPORTED_SOURCES,
                                               " ".join(VERILATOR_FLAGS + _make_flags(OPT)),
                                               _toolchain_version())
        if index.exists():
            library = builds_dir() / index.read_text().strip() / "libmodel.so"
            if library.exists():
                _silence(component)
                _MEMO[memo] = Build(library, ports, 0.0)
                return _MEMO[memo]
    result = build_model(verilog_of(component, top), top, ports, train=train, log=log)
    if key is not None and _source_digest() == _IMPORTED_SOURCES:
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text(result.library.parent.name + "\n")
        _MEMO[memo] = result
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
