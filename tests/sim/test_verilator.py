"""The Verilator backend (sim/verilator/) against the Amaranth one and the golden models: the
same outputs and the same cycle counts under the same stalls, for every unit; its build cache,
its error messages, and ``backend="auto"``.

Each unit's model is built once per config and cached under build/verilator/ (about 5 to 10 s
per unit on the tiny config; reruns take none of it).
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import intformer as itf
from hw.config import BUILD_DIR_ENV, AccelConfig, ArrayConfig, AttentionConfig, GemmConfig
from sim import golden
from sim.bench import SimTimeout
from sim.verilator import toolchain
from sim.verilator.build import build_model, reset_tied
from sim.verilator.harness import Port, Ports

TINY = AccelConfig.preset("tiny").replace(attention=AttentionConfig(max_seq_len=10,
                                                                    max_head_dim=5))
SCALES = (0.05, 0.04, 0.03, 0.02)


def both(fn, *args, **kwargs):
    """Run ``fn`` on both backends; assert equal outputs, cycles and extras; return one."""
    ra = fn(*args, **kwargs, backend="amaranth")
    rv = fn(*args, **kwargs, backend="verilator")
    assert rv.extra.pop("backend") == "verilator"
    assert ra.extra.pop("backend") == "amaranth"
    np.testing.assert_array_equal(rv.output, ra.output)
    assert rv.cycles == ra.cycles
    assert rv.scale == ra.scale and rv.utilization == ra.utilization
    assert rv.extra.keys() == ra.extra.keys()
    for key, value in ra.extra.items():
        np.testing.assert_array_equal(rv.extra[key], value)
    return rv


@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_gemm(stall):
    rng = np.random.default_rng(1)
    for M, K, N in [(7, 20, 5), (1, 1, 1), (2, 64, 3)]:
        a, b = rng.integers(-128, 128, (M, K)), rng.integers(-128, 128, (K, N))
        r = both(itf.simulate.gemm, TINY, a, b, stall=stall, seed=M)
        np.testing.assert_array_equal(r.output, golden.gemm(a, b))


def test_gemm_edges_wide_rows():
    # -128 everywhere at the largest K, on a 4x4 array whose output rows (4 lanes x 21 bits)
    # do not fit 64 bits: Verilator's wide words.
    cfg = AccelConfig(array=ArrayConfig(4, 4), gemm=GemmConfig(max_m=8, max_k=40, max_n=8))
    assert cfg.array.cols * cfg.acc_width > 64
    a, b = np.full((7, 40), -128), np.full((40, 8), -128)
    r = both(itf.simulate.gemm, cfg, a, b, stall=0.2, seed=3)
    np.testing.assert_array_equal(r.output, golden.gemm(a, b))


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_requantize(stall):
    top = 1 << (TINY.acc_width - 1)
    acc = np.random.default_rng(2).integers(-top, top, 37)
    acc[:4] = [-top, top - 1, 0, -1]
    m, s = golden.quantize_multiplier(1 / 3000)
    r = both(itf.simulate.requantize, TINY, acc, m, s, stall=stall, seed=5)
    np.testing.assert_array_equal(r.output, golden.requantize(acc, m, s, acc_width=TINY.acc_width))


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_softmax(stall):
    q = np.random.default_rng(3).integers(-3000, 3000, (4, 10))
    q[1, 3] = 40_000
    r = both(itf.simulate.softmax, TINY, q, 1e-3, stall=stall, seed=2)
    np.testing.assert_array_equal(r.output, golden.softmax(q, 1e-3, TINY.softmax)[0])


def test_gelu_every_int8():
    q = np.arange(-128, 128)
    r = both(itf.simulate.gelu, TINY, q, 0.05, stall=0.3, seed=4)
    np.testing.assert_array_equal(r.output, golden.gelu(q, 0.05, TINY.gelu)[0])


@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_layernorm(stall):
    rng = np.random.default_rng(5)
    q = rng.integers(-3000, 3000, (3, 11))
    q[2] = 77
    gamma, beta = rng.normal(1, 0.3, 11), rng.normal(0, 0.5, 11)
    r = both(itf.simulate.layernorm, TINY, q, 0.01, gamma, beta, stall=stall, seed=6)
    np.testing.assert_array_equal(r.output,
                                  golden.layernorm(q, 0.01, gamma, beta, TINY.layernorm)[0])


@pytest.mark.parametrize(("causal", "stall"), [(False, 0.0), (True, 0.4)])
def test_attention(causal, stall):
    rng = np.random.default_rng(7)
    q, k, v = (rng.integers(-128, 128, (2, 9, 5)) for _ in range(3))
    r = both(itf.simulate.attention, TINY, q, k, v, *SCALES, causal=causal, stall=stall, seed=8)
    np.testing.assert_array_equal(r.output,
                                  golden.attention(q, k, v, *SCALES, causal=causal, cfg=TINY)[0])
    assert r.extra["array_busy"] > 0 and r.extra["softmax_wait"] > 0


def test_timeout_names_the_stream():
    # A GEMM whose output is never wanted cannot finish: the Verilator run times out with the
    # Amaranth runner's message. (Here: a zero budget makes the first wait fail at once.)
    from sim import bench

    cfg = TINY
    for backend in ("amaranth", "verilator"):
        dut = __import__("hw.gemm", fromlist=["GemmEngine"]).GemmEngine(cfg)
        src = bench.StreamSource(dut.a, [1, 2], name="gemm a", rng=np.random.default_rng(0),
                                 budget=3)
        with pytest.raises(SimTimeout, match=r"^gemm a: item 0 of 2 was not accepted within "
                                             r"3 cycles$"):
            bench.run_streams(dut, [src], [], backend=backend, key=("gemm", cfg))


def test_auto_picks_by_length():
    rng = np.random.default_rng(9)
    a, b = rng.integers(-128, 128, (2, 3)), rng.integers(-128, 128, (3, 2))
    assert itf.simulate.gemm(TINY, a, b, backend="auto").extra["backend"] == "amaranth"
    a, b = rng.integers(-128, 128, (32, 64)), rng.integers(-128, 128, (64, 32))
    r = itf.simulate.gemm(TINY, a, b, backend="auto")
    assert r.extra["backend"] == "verilator"
    assert r.cycles > itf.simulate.AUTO_CYCLES
    np.testing.assert_array_equal(r.output, golden.gemm(a, b))


def test_no_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr(itf.simulate, "AUTO_CYCLES", 10)      # a short run counts as long
    a = np.ones((3, 4), dtype=int)
    with pytest.raises(toolchain.VerilatorUnavailable,
                       match=r"^Verilator backend needs a C\+\+ compiler and make \(e\.g\. "
                             r"apt-get install g\+\+ make\), or CXX set to one$"):
        itf.simulate.gemm(TINY, a, a.T, backend="verilator")
    with pytest.warns(UserWarning, match="backend='auto' uses amaranth for .* cycles: "
                                         "Verilator backend needs a C"):
        r = itf.simulate.gemm(TINY, a, a.T, backend="auto")
    assert r.extra["backend"] == "amaranth"


def test_bad_backend():
    with pytest.raises(ValueError, match="Simulation backend must be one of amaranth, verilator "
                                         "or auto, not 'iverilog'"):
        itf.simulate.gemm(TINY, np.ones((1, 1)), np.ones((1, 1)), backend="iverilog")


def test_build_failure_shows_the_first_error():
    ports = Ports((Port("a", 8),), (), (), ())
    with pytest.raises(toolchain.VerilatorBuildError) as info:
        build_model("module broken(input clk, input rst);\n  wire x = y +;\nendmodule\n",
                    "broken", ports)
    message = str(info.value)
    assert message.startswith("Verilator build of broken failed: %Error: dut.v:2")
    assert message.count("%Error") == 1 and "\n" not in message


def test_attention_ulx3s_full_length():
    # Only the fast backend affords it: two heads at L = max_seq_len, d = max_head_dim on the
    # ulx3s preset, causal and not, under stalls (about 60 k cycles; the model builds once,
    # about 35 s).
    cfg = AccelConfig.preset("ulx3s")
    L, d = cfg.attention.max_seq_len, cfg.attention.max_head_dim
    rng = np.random.default_rng(11)
    q, k, v = (rng.integers(-128, 128, (2, L, d)) for _ in range(3))
    for causal in (False, True):
        r = itf.simulate.attention(cfg, q, k, v, *SCALES, causal=causal, stall=0.2, seed=12,
                                   backend="verilator")
        np.testing.assert_array_equal(
            r.output, golden.attention(q, k, v, *SCALES, causal=causal, cfg=cfg)[0])
        assert r.utilization > 0.3


def test_reset_tied_wrapper():
    # The harness never resets: the build wraps a top with an rst input in itf_sim, rst low.
    text = ("module t(clk, rst, a, y);\n  input clk;\n  input rst;\n  input [3:0] a;\n"
            "  output [3:0] y;\n  reg [3:0] y = 4'h0;\n"
            "  always @(posedge clk) y <= rst ? 4'h0 : a;\nendmodule\n")
    tied = reset_tied(text, "t")
    assert tied.startswith(text)
    assert "module itf_sim(clk, a, y);" in tied
    assert "t dut (.rst(1'b0), .clk(clk), .a(a), .y(y));" in tied
    assert reset_tied(text.replace("rst", "go"), "t") is None     # no rst: built as it is
    assert reset_tied(text, "other") is None


def test_inputs_reaching_outputs_decide_the_evaluations():
    # The GEMM engine's a.ready depends on b.valid (both operands move together): two
    # evaluations a cycle; the top's ports are registered: one.
    from hw.gemm import GemmEngine
    from hw.top import Accelerator
    from sim.verilator.build import build_component

    gemm = build_component(GemmEngine(TINY), "intformer_gemm", key=("gemm", TINY))
    top = build_component(Accelerator(TINY, depth=64), "intformer_top", key=("top", TINY, 64))
    settle = "itf_settle.h"
    assert (gemm.library.parent / settle).read_text() == "#define ITF_INPUTS_REACH_OUTPUTS 1\n"
    assert (top.library.parent / settle).read_text() == "#define ITF_INPUTS_REACH_OUTPUTS 0\n"


def test_runtime_library_compiled_once(tmp_path, monkeypatch):
    # Verilator's runtime library (verilated.cpp) does not depend on the design: the first
    # build in a build folder compiles it, the next copies its objects; both models work.
    from hw.skid import SkidBuffer
    from sim.verilator.build import build_component
    from sim.verilator.model import Model

    monkeypatch.setenv(BUILD_DIR_ENV, str(tmp_path))
    compiled = []
    for width in (8, 9):
        build = build_component(SkidBuffer(width), "intformer_skid")
        compiled.append("verilated.cpp" in (build.library.parent / "build.log").read_text())
        model = Model(build)
        items = list(range(1, 2 ** width, 37))
        model.push("i", items)
        model.expect("o", len(items))
        assert model.run(Model.RUN_DRAIN) == (Model.FINISHED, None)
        assert model.take("o") == items
    assert compiled == [True, False]


def test_index_only_for_the_imported_sources(tmp_path, monkeypatch):
    # A keyed build is indexed by the sources this process imported; once the sources on disk
    # differ (an edit since the import, or during the build), it is neither looked up nor
    # indexed, so an index entry never names a build of other sources.
    from hw.skid import SkidBuffer
    from sim.verilator import build as vb

    monkeypatch.setenv(BUILD_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(vb, "_MEMO", {})
    vb.build_component(SkidBuffer(8), "intformer_skid", key=("skid", 8))
    assert len(list((tmp_path / "verilator" / "index").iterdir())) == 1
    monkeypatch.setattr(vb, "_IMPORTED_SOURCES", "edited since")
    again = vb.build_component(SkidBuffer(9), "intformer_skid", key=("skid", 9))
    assert again.library.exists()
    assert len(list((tmp_path / "verilator" / "index").iterdir())) == 1


def test_sources_cover_every_gateware_module():
    # The index key hashes the sources a design's Verilog comes from: every hw module, those of
    # its subpackages too (an edit to one not hashed would leave the index naming a stale build).
    import hw.attention.controller
    import hw.config.layernorm
    import hw.softmax.unit  # noqa: F401  (subpackage modules, imported for the check)
    from sim.verilator import build as vb

    hashed = {path.resolve() for path in vb.source_files()}
    modules = {Path(mod.__file__).resolve() for name, mod in list(sys.modules.items())
               if (name == "hw" or name.startswith("hw.")) and getattr(mod, "__file__", None)}
    assert {Path(hw.attention.controller.__file__).resolve()} <= modules
    assert modules <= hashed, sorted(str(p) for p in modules - hashed)


def test_transfer_bytes():
    # A request and its answer in one call (Model.transfer_bytes, VerilatorTop's commands):
    # bytes in, the bytes the sink collected out; a second call takes what the first left.
    from hw.skid import SkidBuffer
    from sim.verilator.build import build_component
    from sim.verilator.model import Model

    model = Model(build_component(SkidBuffer(8), "intformer_skid", key=("skid", 8)))
    sent = bytes(range(0, 250, 7))
    assert model.transfer_bytes("i", sent, "o", 20) == (Model.FINISHED, sent[:20])
    assert model.transfer_bytes("i", b"", "o", len(sent) - 20) == (Model.FINISHED, sent[20:])
    assert model.transfer_bytes("i", b"", "o", 1, max_cycles=50) == (Model.OUT_OF_CYCLES, None)


def test_transfer_bytes_only_on_byte_streams():
    from hw.skid import SkidBuffer
    from sim.verilator.build import build_component
    from sim.verilator.model import Model

    model = Model(build_component(SkidBuffer(9), "intformer_skid", key=("skid", 9)))
    with pytest.raises(ValueError, match=r"^Stream of bytes must have a payload of at most 8 "
                                         r"bits, not 9 \(i\)$"):
        model.transfer_bytes("i", b"\x01", "o", 1)
