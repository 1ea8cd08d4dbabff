"""Generated Verilog is accepted by an independent tool (Verilator), and described in JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hw.config import AccelConfig
from hw.units import UNITS
from intformer.generate import write_outputs

VERILATOR = Path(sys.executable).parent / "verilator-cli"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("verilog")
    write_outputs(AccelConfig.preset("tiny"), out)
    return out


@pytest.mark.parametrize("unit", list(UNITS))
def test_verilator_accepts(generated, unit):
    # Yosys' Verilog mixes widths freely, leaves `case` statements over Amaranth `Array`
    # indices without a default, and writes zero-width signals (a counter over range(1)) as
    # [-1:0]: legal Verilog that Verilator warns about. Every other warning and every error
    # fails.
    proc = subprocess.run(
        [str(VERILATOR), "--lint-only", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
         "-Wno-CASEINCOMPLETE", "-Wno-ASCRANGE",
         "--top-module", f"intformer_{unit}", f"{unit}.v"],
        cwd=generated, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "%Error" not in proc.stderr


def test_json_describes_config_and_ports(generated):
    desc = json.loads((generated / "intformer.json").read_text())
    cfg = AccelConfig.preset("tiny")
    assert AccelConfig.from_dict(desc["config"]) == cfg
    assert desc["acc_width"] == cfg.acc_width
    ports = desc["units"]["gemm"]["ports"]
    assert ports["a__payload"] == {"direction": "in", "width": 2 * 8}
    assert ports["out__payload"] == {"direction": "out", "width": 2 * cfg.acc_width}
    assert ports["out__ready"] == {"direction": "in", "width": 1}
    for unit in UNITS:
        assert (generated / desc["units"][unit]["file"]).read_text().count(
            f"module intformer_{unit}") == 1
