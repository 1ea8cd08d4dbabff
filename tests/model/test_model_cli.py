"""intformer embed / compile on a saved program (quantizing is covered elsewhere)."""

import pytest

from boards.ulx3s import CLK_FREQ
from hw.config import AccelConfig
from intformer.cli import main

ULX3S = AccelConfig.preset("ulx3s")
#: How the compile table names the preset's array, and its peak GOPS at the board's clock.
ARRAY = f"{ULX3S.array.rows}x{ULX3S.array.cols} array"
PEAK = 2 * ULX3S.array.rows * ULX3S.array.cols * CLK_FREQ / 1e9


@pytest.fixture(scope="module")
def saved(quantized, tmp_path_factory):
    path = tmp_path_factory.mktemp("prog") / "minilm.npz"
    quantized.program.save(path)
    return path


@pytest.fixture(scope="module")
def small(unfitted, tmp_path_factory):
    """The unfitted config as a TOML file."""
    path = tmp_path_factory.mktemp("cfg") / "small.toml"
    unfitted.to_toml(path)
    return path


def test_compile_refuses_small_config(saved, small, capsys):
    assert main(["compile", "--program", str(saved), "--config", str(small)]) == 2
    err = capsys.readouterr().err
    assert "intformer compile: error: Config 'ulx3s' must fit the model" in err
    assert "layernorm.max_len must be at least 384, not 64" in err


def test_compile_fit_prints_cycles(saved, small, capsys, tmp_path):
    fitted = tmp_path / "fitted.toml"
    assert main(["compile", "--program", str(saved), "--config", str(small), "--fit",
                 "--seq-len", "32", "--save-config", str(fitted)]) == 0
    out = capsys.readouterr().out
    assert (f"on ulx3s+model ({ARRAY}, buffers of 512 words, {CLK_FREQ / 1e6:g} MHz, link "
            "3000000 baud), one sequence of 32 tokens") in out
    assert "L5.ffn2" in out and "modelled cycles" in out and "link kB" in out
    # Per layer: runs, modelled cycles, latency at the clock, GOPS against the peak (the
    # array at the ULX3S's clock), link bytes and seconds; the rows add up to the total.
    table = out[out.index("\nlayer "):].split("\n")[1:]
    assert table[0].split() == ["layer", "ops", "runs", "cycles", "latency", "ms", "GOPS",
                                "peak%", "link", "bytes", "link", "s"]
    rows = {}
    for line in table[1:]:
        rows[line.split()[0]] = line.split()
        if line.startswith("total"):
            break
    assert list(rows) == ["emb", *(f"L{i}" for i in range(6)), "embedding", "total"]
    cycles = [int(r[3].replace(",", "")) for name, r in rows.items() if name != "total"]
    assert sum(cycles) == int(rows["total"][3].replace(",", ""))
    # Both figures are printed rounded: GOPS to 0.01, peak% to 0.1.
    assert 0 < float(rows["L0"][5]) < PEAK and float(rows["L0"][6]) == pytest.approx(
        100 * float(rows["L0"][5]) / PEAK, abs=0.05 + 100 * 0.005 / PEAK)
    assert "GOPS, " in out and f"% of the {PEAK:.2f} peak" in out
    assert "buffers.depth raised from 256 to 512 words to fit the model" in out
    # The fitted config, its depth included, for a board or `intformer sim-board --config`.
    assert f"wrote {fitted} (the ulx3s+model config, buffers.depth = 512" in out
    cfg = AccelConfig.from_toml(fitted)
    assert (cfg.name, cfg.buffers.depth, cfg.layernorm.max_len) == ("ulx3s+model", 512, 384)


def test_compile_on_the_preset(saved, capsys):
    """The ulx3s preset runs the model as it is: nothing raised."""
    assert main(["compile", "--program", str(saved), "--preset", "ulx3s", "--seq-len",
                 "64"]) == 0
    out = capsys.readouterr().out
    assert (f"on ulx3s ({ARRAY}, buffers of 2048 words, {CLK_FREQ / 1e6:g} MHz, link "
            "3000000 baud), one sequence of 64 tokens") in out
    assert "raised" not in out and "L5.ffn2" in out
    assert main(["compile", "--program", str(saved), "--preset", "ulx3s", "--seq-len", "32",
                 "--batch", "2"]) == 0
    assert "link 3000000 baud), a batch of 2 sequences of 32 tokens:" in capsys.readouterr().out


def test_embed(saved, capsys):
    assert main(["embed", "--program", str(saved), "Hello world.", "A cat sat."]) == 0
    out = capsys.readouterr().out
    assert out.count("cosine to float") == 2 and "cycles" in out
    cos = [float(line.split("cosine to float ")[1].split()[0])
           for line in out.splitlines() if "cosine to float" in line]
    assert min(cos) > 0.95
