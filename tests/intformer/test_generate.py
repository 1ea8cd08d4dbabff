"""Generated Verilog is accepted by an independent tool (Verilator) for every unit of every
preset, and described for an outsider: intformer.json and a Markdown datasheet per unit."""

import json

import pytest

from hw import isa
from hw.config import PRESETS, AccelConfig
from hw.units import UNITS
from intformer.generate import generate_verilog, write_outputs
from sim.verilator.toolchain import LINT_WAIVERS, lint


@pytest.mark.parametrize("unit", list(UNITS))
@pytest.mark.parametrize("preset", PRESETS)
def test_verilator_lints_every_unit(preset, unit, tmp_path):
    # Every warning of Verilator's default lint set, except those of LINT_WAIVERS (each
    # documented with the Yosys/Amaranth construct behind it), fails; so does every error.
    # Each test generates only its unit, so that test workers share the work evenly.
    path = tmp_path / f"{unit}.v"
    path.write_text(generate_verilog(AccelConfig.preset(preset), unit))
    code, log = lint(path, f"intformer_{unit}")
    assert code == 0, log
    assert "%Warning" not in log and "%Error" not in log, log
    if (preset, unit) == ("tiny", "top"):
        # Each waiver is still needed: the tiny top raises every one of them.
        _, log = lint(path, f"intformer_{unit}", waivers=())
        for waiver in LINT_WAIVERS:
            assert f"%Warning-{waiver}" in log, waiver


@pytest.fixture(scope="module", params=PRESETS)
def generated(request, tmp_path_factory):
    # The units the description tests read; the tiny preset writes every unit.
    out = tmp_path_factory.mktemp(f"verilog-{request.param}")
    units = None if request.param == "tiny" else ["gemm", "top"]
    write_outputs(AccelConfig.preset(request.param), out, units=units)
    return request.param, out


def test_datasheets(generated):
    # One test per preset, so that test workers do not each generate the same files.
    check_json_describes_config_ports_and_payloads(*generated)
    check_top_protocol_comes_from_the_isa(*generated)


def check_json_describes_config_ports_and_payloads(preset, out):
    desc = json.loads((out / "intformer.json").read_text())
    cfg = AccelConfig.preset(preset)
    assert AccelConfig.from_dict(desc["config"]) == cfg
    assert desc["acc_width"] == cfg.acc_width
    gemm = desc["units"]["gemm"]
    R, C = cfg.array.rows, cfg.array.cols
    assert gemm["ports"]["a__payload"] == {
        "direction": "in", "width": R * 8, "role": "stream a: payload",
        "description": gemm["ports"]["a__payload"]["description"]}
    assert gemm["ports"]["out__payload"]["width"] == C * cfg.acc_width
    assert gemm["ports"]["out__ready"]["direction"] == "in"
    assert gemm["ports"]["clk"]["role"] == "clock (rising edge)"
    assert gemm["reset"] == {**gemm["reset"], "port": "rst", "polarity": "active-high",
                             "kind": "synchronous"}
    # The GEMM command: m in the low bits, then k, then n, each bits_for(max).
    m_bits, k_bits = cfg.gemm.max_m.bit_length(), cfg.gemm.max_k.bit_length()
    assert [(f["name"], f["lsb"], f["width"], f["signed"])
            for f in gemm["streams"]["cmd"]["fields"]] == [
        ("m", 0, m_bits, False), ("k", m_bits, k_bits, False),
        ("n", m_bits + k_bits, cfg.gemm.max_n.bit_length(), False)]
    # Operand lanes: lane 0 in the low bits, signed.
    assert gemm["streams"]["a"]["fields"][1] == {"name": "lane[1]", "lsb": 8, "msb": 15,
                                                 "width": 8, "signed": True}
    assert "Latency" in gemm["behaviour"] and "row tile" in gemm["behaviour"]
    for unit in desc["units"]:
        assert (out / desc["units"][unit]["file"]).read_text().count(
            f"module intformer_{unit}") == 1
        assert (out / f"{unit}.md").read_text().startswith(f"# `intformer_{unit}`")
    if preset == "tiny":
        assert set(desc["units"]) == set(UNITS)


def check_top_protocol_comes_from_the_isa(preset, out):
    cfg = AccelConfig.preset(preset)
    proto = json.loads((out / "intformer.json").read_text())["units"]["top"]["protocol"]
    assert [(c["name"], c["value"]) for c in proto["commands"]] == \
        [(c.name, c.value) for c in isa.Command]
    assert [(e["name"], e["value"]) for e in proto["errors"]] == \
        [(e.name, e.value) for e in isa.Error]
    specs = isa.buffer_specs(cfg)
    assert {b["name"]: (b["lanes"], b["elem_width"], b["word_bytes"], b["depth"])
            for b in proto["buffers"]} == {
        s.buf.name: (s.lanes, s.elem_width, s.nbytes, s.depth) for s in specs.values()}
    assert {r["name"]: (r["width"], r["max"]) for r in proto["registers"]} == \
        {r.name: v for r, v in isa.register_specs(cfg).items()}
    text = (out / "top.md").read_text()
    assert "| WRITE_BUFFER | 0x02 |" in text and "| BUSY | 0x09 |" in text
    assert all(r["meaning"] for r in proto["registers"])
