"""The command line, driven in-process."""

import json

from intformer.cli import main


def test_generate(tmp_path, capsys):
    assert main(["generate", "--preset", "tiny", "--out", str(tmp_path), "--unit", "requant"]) == 0
    assert (tmp_path / "requant.v").exists()
    assert not (tmp_path / "gemm.v").exists()
    assert "requant" in json.loads((tmp_path / "intformer.json").read_text())["units"]
    assert "wrote" in capsys.readouterr().out


def test_generate_from_config_file(tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text("[array]\nrows = 3\ncols = 1\n")
    assert main(["generate", "--config", str(cfg), "--out", str(tmp_path / "v"),
                 "--unit", "gemm"]) == 0
    desc = json.loads((tmp_path / "v" / "intformer.json").read_text())
    assert desc["config"]["name"] == "mine"
    assert desc["config"]["array"]["rows"] == 3


def test_sim_reports_bit_exact(capsys):
    assert main(["sim", "--preset", "tiny", "-m", "3", "-k", "5", "-n", "3",
                 "--stall", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact with golden" in out
    assert "utilization" in out


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["sim", "--preset", "tiny", "-m", "99"]) == 2
    assert "GEMM M must be from 1 to 32 (gemm.max_m), not 99" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[array]\nrows = 0\n")
    assert main(["generate", "--config", str(bad), "--out", str(tmp_path)]) == 2
    assert "Array rows must be an integer from 1 to 64, not 0" in capsys.readouterr().err


def test_sim_every_unit(capsys):
    for unit in ("softmax", "gelu", "layernorm"):
        assert main(["sim", "--preset", "tiny", "--unit", unit, "--rows", "2", "--length", "5",
                     "--stall", "0.3"]) == 0
    assert main(["sim", "--preset", "tiny", "--unit", "attention", "--length", "5",
                 "--head-dim", "3", "--causal"]) == 0
    out = capsys.readouterr().out
    assert out.count("bit-exact with golden") == 4
