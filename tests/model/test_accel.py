"""intformer.model.accel: the integer program on the RTL top (Verilator) and on the simulated
board over a pty, every tensor equal to the golden executor's; bad programs refused before
anything runs; a difference named by op and index.

Models built here (cached under build/verilator/): the MiniLM top (the ulx3s preset, 2048-word
buffers) and, for the 1-layer random BERT, the tiny fitted top
and its board (256-word buffers).
"""

import contextlib
import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import intformer as itf
from boards import framing
from boards.board import Board
from boards.host import Client
from intformer.cli import main
from intformer.model import accel, compiler, executor, reference
from intformer.model import program as P
from intformer.model.sentences import CALIBRATION, of_length

#: 18 tokens with [CLS] and [SEP].
SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank today."


def _minilm_target(prog):
    """The ulx3s preset, which fits MiniLM as it is (fit_config keeps it)."""
    return compiler.fit_config(itf.AccelConfig.preset("ulx3s"), prog, 64)


def test_minilm_forward_on_sim_equals_golden(quantized):
    """The whole 6-layer forward of one sentence of 18 tokens on the Verilated top: every
    tensor equal to golden's, every op's link bytes the plan's. About 150 s of simulation
    (measured at a load of 3 on 2 cores) after the model's build."""
    prog = quantized.program
    cfg = _minilm_target(prog)
    assert (cfg.name, cfg.buffers.depth) == ("ulx3s", 2048)
    tok, lengths = reference.pad_batch(quantized.tokenize([SENTENCE]))
    assert tok.shape == (1, 18)
    done = []
    run = accel.execute(prog, cfg, tok, lengths, target="sim", keep=True,
                        progress=lambda i, n, name: done.append((i, n, name)))
    assert done[0] == (1, len(prog.ops), "Embed emb") and done[-1][0] == len(prog.ops)
    want = executor.run_program(prog, cfg, tok, lengths, keep=True)
    assert run.tensors.keys() == want.keys()
    for name, tensor in want.items():
        np.testing.assert_array_equal(run.tensors[name], tensor, err_msg=name)
    np.testing.assert_array_equal(run.output, want["embedding"])
    where = {r.op.kind: r.where for r in run.records}
    assert where == {"Embed": "host", "Requantize": "host", "Pool": "host",
                     "LayerNorm": "accelerator", "Linear": "accelerator",
                     "Attention": "accelerator", "Gelu": "accelerator",
                     "Residual": "on chip"}
    # Both residual adds of each layer stay on chip: the LayerNorm after each runs the pair
    # (RES_TO_X); so does each FFN's first Linear, whose results its GELU takes over C
    # (GELU_IN_C). The next op's tensor is equal to golden's (checked above).
    chip = [r.op.output for r in run.records if r.where == "on chip"]
    assert len(chip) == 18 and sum(name.endswith(".ffn1") for name in chip) == 6
    for r in run.records:
        assert r.sent + r.received == r.link_bytes, r.op.output
        if r.where == "accelerator":
            # sim.cyclemodel's runs and the command port's cycles: exact for every op but
            # attention (a fitted model; 0.2% here).
            assert abs(r.cycles / r.model_cycles - 1) < (0.01 if r.op.kind == "Attention"
                                                         else 1e-9), r.op.output
    text = str(run)
    assert "buffers of 2048 words" in text and "every tensor equal to golden" in text
    assert ("55 on the accelerator, 18 kept on chip for the op after them (Linear, Residual), "
            "20 on the host (Embed, Pool, Requantize)") in text
    assert "L5" in text and "Attention" in text


@pytest.mark.slow
def test_minilm_64_tokens_on_sim_as_modelled(quantized):
    """A 64-token forward (the sequence the fitted config is planned for) on the Verilated
    top, every tensor checked against golden's as it runs, every layer's RTL cycles within
    0.1% of the plan's (exact but for attention's fitted model). 497 s measured at a load of 5
    to 6 on 2 cores; ``bench/model.py --rtl`` prints the figures."""
    prog = quantized.program
    cfg = _minilm_target(prog)
    tok, lengths = reference.pad_batch(quantized.tokenize([of_length(quantized.tokenize, 64)]))
    assert tok.shape == (1, 64)
    run = accel.execute(prog, cfg, tok, lengths, target="sim")
    for name, rs in run.groups("layer").items():
        rtl, model = (sum(getattr(r, f) or 0 for r in rs) for f in ("cycles", "model_cycles"))
        assert abs(rtl - model) <= 1e-3 * model, (name, rtl, model)
    assert run.cycles > 0 and "GOPS of the array's" in run.summary()


@pytest.fixture(scope="module")
def tiny_model(tiny_bert, tmp_path_factory):
    """A 1-layer random BERT (hidden 8, 2 heads), quantized, compiled on the tiny preset
    fitted to it (256-word buffers)."""
    folder = tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")
    m = itf.model.load(str(folder))
    m.quantize(CALIBRATION[:4])
    c = m.compile(itf.AccelConfig.preset("tiny"), fit=True, seq_len=16)
    assert (c.cfg.name, c.depth) == ("tiny+model", 256)
    m.program.save(folder / "program.npz")
    return m, folder


TEXTS = ["A cat sat on the mat.", "Integer transformers run on small FPGAs, bit for bit."]


def test_padded_batch_on_sim_equals_golden(tiny_model):
    """Three sentences of different lengths in one padded batch on the Verilated top: the row
    ops on every row, padded ones included, attention per item with its key mask (ATT_KEYS);
    every tensor equal to the golden executor's. The plan of the batch counts every op's link
    bytes (but for the padded items' ATT_KEYS SET_REGs) and, attention aside, its cycles."""
    m, _ = tiny_model
    c = m.compiled
    tok, lengths = reference.pad_batch(m.tokenize([TEXTS[1], "Hi.", TEXTS[0]]))
    assert len(set(lengths.tolist())) == 3 and lengths.max() == tok.shape[1]
    run = accel.execute(m.program, c.cfg, tok, lengths, target="sim", keep=True)
    want = executor.run_program(m.program, c.cfg, tok, lengths, keep=True)
    assert run.tensors.keys() == want.keys()
    for name, tensor in want.items():
        np.testing.assert_array_equal(run.tensors[name], tensor, err_msg=name)
    att = [r for r in run.records if isinstance(r.op, P.Attention)]
    heads = att[0].op.heads
    assert att and all(r.runs == 3 * heads for r in att)
    # Masked keys are computed all the same: the cycles the plan models for 3 x L (attention's
    # fitted model, within 2%).
    assert all(abs(r.cycles / r.model_cycles - 1) < 0.02 for r in att)
    # Each padded item sets ATT_KEYS to its length, the next full one back to 0 (L): at most
    # three SET_REGs an attention op beyond the plan's.
    keys = framing.LinkCount()
    keys.set_reg(int(lengths.max()), times=3)
    for r in run.records:
        if r.op.kind == "Attention":
            assert 0 <= r.sent + r.received - r.link_bytes <= keys.total, r.op.output
        else:
            assert r.sent + r.received == r.link_bytes, r.op.output
            assert r.where != "accelerator" or r.cycles == r.model_cycles, r.op.output


def test_model_run_on_sim(tiny_model):
    m, _ = tiny_model
    got = m.run(TEXTS, "sim", keep=True)
    want = m.run(TEXTS, "golden", keep=True)
    for g, w in zip(got, want, strict=True):     # batched alike: one padded batch of two
        assert g.keys() == w.keys() and g["_row"] == w["_row"]
        for name in w:
            if name != "_row":
                np.testing.assert_array_equal(g[name], w[name], err_msg=name)
    emb = m.run(TEXTS, "sim")
    assert len(m.executions) == 1 and m.executions[0].cycles > 0
    np.testing.assert_array_equal(emb, m.run(TEXTS, "golden"))


def test_embed_cli_on_sim(tiny_model, capsys):
    m, folder = tiny_model
    assert main(["embed", "--model", str(folder), "--program", str(folder / "program.npz"),
                 "--preset", "tiny", "--fit", "--target", "sim", "--clock-mhz", "24",
                 *TEXTS]) == 0
    cap = capsys.readouterr()
    assert "sim: tiny+model, buffers of 256 words" in cap.out
    assert "on tiny+model, sim: every tensor equal to golden" in cap.out
    # Per layer and per op kind: RTL cycles against the model's, the latency at the clock,
    # the GOPS achieved against the peak (a 2x2 array at 24 MHz: 0.192), link bytes.
    head = ["RTL", "cycles", "model", "RTL/model", "latency", "ms", "GOPS", "peak%", "link",
            "bytes"]
    tables = [line.split() for line in cap.out.splitlines() if line.split()[4:14] == head]
    assert [t[0] for t in tables] == ["layer", "kind"]     # one batch: one pair of tables
    l0 = next(line.split() for line in cap.out.splitlines() if line.startswith("L0 "))
    rtl, model = (int(v.replace(",", "")) for v in l0[4:6])
    assert float(l0[6]) == pytest.approx(rtl / model, abs=1e-3)
    assert float(l0[7]) == pytest.approx(rtl / 24e6 * 1e3, abs=1e-3)
    assert 0 < float(l0[8]) < 0.192
    assert "compute: " in cap.out and "GOPS of the array's 0.19 peak" in cap.out
    assert "link: " in cap.out and "s at 3000000 baud" in cap.out
    assert "sim forward: 18/18 batch 1/1: Pool embedding" in cap.err


@contextlib.contextmanager
def sim_board(cfg, tmp_path):
    """``intformer sim-board`` of ``cfg`` (4 cycles a UART bit; its buffers.depth from the TOML)
    and a Board on its pty."""
    toml = tmp_path / "cfg.toml"
    cfg.to_toml(toml)
    proc = subprocess.Popen(
        [sys.executable, "-m", "intformer.cli", "sim-board", "--divisor", "4", "--config",
         str(toml)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()            # after the build: the pty's path
        assert line.startswith("simulated "), line + proc.stderr.read()
        assert f"buffers of {cfg.buffers.depth} words" in line
        board = Board(line.split(" on ")[1].split()[0], cfg, timeout=20)
        yield board
        board.transport.close()
        assert proc.wait(timeout=20) == 0, "sim-board did not end when its peer closed the port"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_program_on_the_simulated_board(tiny_model, tmp_path):
    """The 1-layer program on the board top (UART included) behind a pty, through the
    unmodified serial driver, on a padded batch of two sentences: every tensor equal to
    golden's."""
    m, _ = tiny_model
    c = m.compiled
    with sim_board(c.cfg, tmp_path) as board:
        got = m.run(TEXTS, "board", client=board, keep=True)[0]
        run = m.executions[0]
    want = m.run(TEXTS, "golden", keep=True)[0]
    for name in want:
        if name != "_row":
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert run.cycles is None and "RTL/model" in str(run)
    # The plan of the batch counts every byte but the padded item's ATT_KEYS SET_REGs and the
    # STATUS polls after the first of a run (a run outlasts a poll at the board's UART pace):
    # 0.6% here.
    sent, planned = (sum(r.sent + r.received for r in run.records),
                     sum(r.link_bytes for r in run.records))
    assert planned <= sent <= 1.02 * planned, (sent, planned)


class _NoLink(Client):
    """A client that fails the test if anything is sent."""

    def _exchange(self, opcode, payload):
        raise AssertionError("a command was sent")


def test_bad_programs_refused_before_anything_runs(quantized, tiny_model):
    prog = quantized.program
    fitted = _minilm_target(prog)
    tok, lengths = reference.pad_batch(quantized.tokenize([SENTENCE]))

    def refused(p, match, cfg=fitted, client=None, tok=tok, lengths=lengths):
        client = _NoLink(cfg) if client is None else client
        with pytest.raises(ValueError, match=match):
            accel.execute(p, cfg, tok, lengths, target="sim", client=client)

    shallow = fitted.replace(buffers=itf.BufferConfig(256))
    refused(prog, r"^LayerNorm 'emb.out' cannot be split to fit the buffers of 'ulx3s' "
                  r"\(depth 256\): RUN LAYERNORM of ROW_LEN=384, ROWS=1 needs 384 words of X, "
                  r"at most 256$", cfg=shallow)
    # A client of another depth would split the runs otherwise than the plan.
    refused(prog, r"^Client buffer depth must be the config's buffers.depth \(2048\), not 256$",
            client=_NoLink(shallow))
    ops = list(prog.ops)
    ops[4] = dataclasses.replace(ops[4], weight=None)
    refused(dataclasses.replace(prog, ops=ops),
            r"^Linear 'L0.k' must have its constant 'weight', not None$")
    ops[4] = dataclasses.replace(prog.ops[4], bias=prog.ops[4].bias[:-1])
    refused(dataclasses.replace(prog, ops=ops), r"^Linear 'L0.k' bias must have shape "
                                                r"\(384,\), not \(383,\)$")
    ops[4] = dataclasses.replace(prog.ops[4], input="nowhere")
    refused(dataclasses.replace(prog, ops=ops), r"^Linear 'L0.k' must read tensors written by "
                                                r"earlier ops, not 'nowhere'$")
    refused(prog, r"^Sequence lengths must be 1 values from 1 to 18, not \[19\]$",
            lengths=np.array([19]))


def test_difference_names_op_and_index(tiny_model, monkeypatch):
    m, _ = tiny_model
    tok, lengths = reference.pad_batch(m.tokenize(TEXTS[:1]))
    c = m.compiled

    def on_host(client, op, env, lengths):
        """The golden result, standing in for the accelerator's; one GELU output off by 1."""
        y = executor._RUN[type(op)](op, env, c.cfg, tok, lengths).copy()
        if isinstance(op, P.Gelu):
            y[0, 3, 5] += 1
        return y

    monkeypatch.setattr(accel, "ACCEL", dict.fromkeys(accel.ACCEL, on_host))
    monkeypatch.setattr(accel, "CHAINED", dict.fromkeys(
        accel.CHAINED, lambda client, op, env, lengths, after: on_host(client, op, env, lengths)))
    with pytest.raises(accel.MismatchError, match=r"^Gelu 'L0.gelu' on sim differs from golden "
                                                  r"at index \(0, 3, 5\): -?\d+, golden -?\d+$"):
        accel.execute(m.program, c.cfg, tok, lengths, target="sim", client=_NoLink(c.cfg))
