"""A non-editable install works away from the checkout: presets come from package data, and
generated output goes to ./build under the current directory or to --build-dir."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import intformer

CHECKOUT = Path(intformer.__file__).resolve().parent.parent


def test_installed_copy_runs_outside_the_checkout(tmp_path):
    # Built from a copy: setuptools builds in the source tree, and the test leaves nothing.
    src, site = tmp_path / "src", tmp_path / "site"
    shutil.copytree(CHECKOUT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(src)],
                   check=True, cwd=tmp_path, capture_output=True)
    assert (site / "hw" / "presets" / "ulx3s.toml").exists()
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("INTFORMER_BUILD_DIR", None)

    def run(*args):
        return subprocess.run([sys.executable, *args], check=True, cwd=work, env=env,
                              capture_output=True, text=True).stdout

    # The installed copy is the one imported, not the checkout.
    where = run("-c", "import hw, intformer; print(hw.__file__); print(intformer.__file__)")
    assert all(line.startswith(str(site)) for line in where.split())
    out = run("-m", "intformer.cli", "generate", "--preset", "ulx3s", "--unit", "requant")
    assert (work / "build" / "ulx3s" / "verilog" / "requant.v").exists(), out
    run("-m", "intformer.cli", "--build-dir", str(tmp_path / "elsewhere"), "generate",
        "--preset", "tiny", "--unit", "requant")
    assert (tmp_path / "elsewhere" / "tiny" / "verilog" / "requant.v").exists()
    assert run("-c", "import intformer as itf; print(itf.AttentionConfig().max_seq_len)").strip()
