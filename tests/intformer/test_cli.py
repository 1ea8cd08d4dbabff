"""The command line, driven in-process."""

import json

import pytest

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


def test_synth_bad_seeds_are_a_clear_error(capsys):
    # Refused before elaboration: each returns at once.
    for seeds, message in [
            ("1,x", "Seeds must be comma-separated integers such as 1,2,3, not '1,x'"),
            ("", "Seeds must name at least one seed, not ''"),
            ("1,2,1", "Seeds must be distinct, not 1, 2, 1 (1 more than once)")]:
        assert main(["synth", "--board", "icebreaker", "--seeds", seeds]) == 2
        assert capsys.readouterr().err == f"intformer synth: error: {message}\n"
    assert main(["synth", "--unit", "gemm", "--family", "ecp5", "--seeds", "1,2"]) == 2
    assert capsys.readouterr().err == (
        "intformer synth: error: Several seeds are for place and route: give fmax=True "
        "(--fmax) with seeds 1, 2\n")
    with pytest.raises(SystemExit):
        main(["synth", "--board", "icebreaker", "--seed", "1", "--seeds", "1,2"])
    assert "not allowed with argument --seed" in capsys.readouterr().err
    # The floorplan is the LFE5U-85F board flow's: refused for the iCEBreaker and for a unit.
    for where, named in ((["--board", "icebreaker"], "--board icebreaker"),
                         (["--unit", "gemm"], "a unit")):
        assert main(["synth", *where, "--no-floorplan"]) == 2
        assert capsys.readouterr().err == (
            f"intformer synth: error: --no-floorplan applies to a board build on the "
            f"LFE5U-85F (--board ulx3s), not to {named}\n")


def test_sim_every_unit(capsys):
    for unit in ("softmax", "gelu", "layernorm"):
        assert main(["sim", "--preset", "tiny", "--unit", unit, "--rows", "2", "--length", "5",
                     "--stall", "0.3"]) == 0
    assert main(["sim", "--preset", "tiny", "--unit", "attention", "--length", "5",
                 "--head-dim", "3", "--causal"]) == 0
    out = capsys.readouterr().out
    assert out.count("bit-exact with golden") == 4


def test_sim_backends(capsys, monkeypatch):
    # The same run on each backend: bit-exact, the same cycles; the report names the backend.
    args = ["sim", "--preset", "tiny", "-m", "5", "-k", "7", "-n", "3", "--stall", "0.3"]
    for backend in ("amaranth", "verilator"):
        assert main(args + ["--backend", backend]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "GEMM 5x7x3 on 2x2 (stall 0.3, amaranth): bit-exact with golden"
    assert lines[2] == "GEMM 5x7x3 on 2x2 (stall 0.3, verilator): bit-exact with golden"
    cycles = [line.split(",")[0] for line in (lines[1], lines[3])]
    assert cycles[0] == cycles[1] and cycles[0].startswith("  cycles ")
    # auto (the default): Amaranth for a short run, Verilator for a long one.
    assert main(args) == 0
    assert "(stall 0.3, amaranth): bit-exact" in capsys.readouterr().out
    assert main(["sim", "--preset", "tiny", "-m", "32", "-k", "64", "-n", "32"]) == 0
    assert "(stall 0.0, verilator): bit-exact" in capsys.readouterr().out
    # Without a compiler: --backend verilator is a one-line error, auto falls back.
    monkeypatch.setenv("CXX", "no-such-compiler")
    assert main(args + ["--backend", "verilator"]) == 2
    assert capsys.readouterr().err == (
        "intformer sim: error: Verilator backend needs a C++ compiler and make (e.g. apt-get "
        "install g++ make), or CXX set to one\n")
    with pytest.warns(UserWarning, match="backend='auto' uses amaranth"):
        assert main(["sim", "--preset", "tiny", "-m", "32", "-k", "64", "-n", "32"]) == 0
    assert "(stall 0.0, amaranth): bit-exact" in capsys.readouterr().out


def test_prove_prints_a_table(tmp_path, monkeypatch, capsys):
    from hw.config import BUILD_DIR_ENV

    monkeypatch.setenv(BUILD_DIR_ENV, str(tmp_path))
    assert main(["prove", "--unit", "credits"]) == 0
    out = capsys.readouterr().out
    assert "property" in out and "depth" in out
    for name in ("credits.early", "credits.late"):
        assert any(line.split()[:4] == [name, "prove", "2", "PASS"] for line in out.splitlines())
    assert "== 2 of 2 proofs pass" in out
    assert (tmp_path / "formal" / "credits.early" / "credits.early.sby").exists()
