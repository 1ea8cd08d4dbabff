"""``intformer sim-board``: the Verilated LinkTop behind a pseudo-terminal, driven by the
unmodified host driver (boards.host.Board) over pyserial: bit-exact GEMM and attention,
link-level errors for corrupted frames, and a clean exit when the peer closes the port.

The model (tiny preset, small attention, buffers of 32 words, 4 cycles per UART bit) is built
once, about 40 s, and cached under build/verilator/.
"""

import subprocess
import sys

import numpy as np

from boards.host import Board, BoardError
from boards.link import SYNC, crc8
from hw.config import AccelConfig, AttentionConfig, LayerNormConfig
from hw.isa import Buf, Command
from sim import golden

CFG = AccelConfig.preset("tiny").replace(layernorm=LayerNormConfig(enabled=False),
                                         attention=AttentionConfig(max_seq_len=8, max_head_dim=4))
DEPTH = 32
SCALES = (0.05, 0.04, 0.03, 0.02)


def _frame(opcode, payload, crc_delta=0):
    body = bytes([opcode]) + len(payload).to_bytes(2, "little") + payload
    return bytes([SYNC]) + body + bytes([(crc8(body) + crc_delta) & 0xff])


def test_sim_board_over_a_pty(tmp_path):
    # One server for every check (a pytest-xdist worker each would start one per test).
    toml = tmp_path / "cfg.toml"
    CFG.to_toml(toml)
    proc = subprocess.Popen(
        [sys.executable, "-m", "intformer.cli", "sim-board", "--config", str(toml),
         "--divisor", "4", "--depth", str(DEPTH)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()            # after the build: the pty's path
        assert line.startswith("simulated "), line + proc.stderr.read()
        board = Board(line.split(" on ")[1].split()[0], CFG, depth=DEPTH, timeout=20)
        check_bit_exact(board)
        check_corrupted_frames(board)
        # A dead peer ends the server cleanly.
        board.transport.close()
        assert proc.wait(timeout=20) == 0, "sim-board did not end when its peer closed the port"
        assert "the peer closed the port" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def check_bit_exact(board):
    rng = np.random.default_rng(1)
    a, b = rng.integers(-128, 128, (5, 7)), rng.integers(-128, 128, (7, 3))
    np.testing.assert_array_equal(board.gemm(a, b), golden.gemm(a, b))
    q, k, v = (rng.integers(-128, 128, (7, 4)) for _ in range(3))
    for causal in (False, True):
        np.testing.assert_array_equal(
            board.attention(q, k, v, *SCALES, causal=causal)[0],
            golden.attention(q, k, v, *SCALES, causal=causal, cfg=CFG)[0])
    assert board.status() == (False, True, "OK")


def check_corrupted_frames(board):
    words = np.arange(8).reshape(4, 2)
    board.write_buffer(Buf.A, 0, words)
    write = bytes([Buf.A.value, 0, 0, 1, 0, 0x55, 0x55])      # would overwrite word 0
    for damaged, code in [(_frame(Command.WRITE_BUFFER.value, write, crc_delta=1), "CHECKSUM"),
                          (_frame(Command.WRITE_BUFFER.value, write)[:6], "TIMEOUT"),
                          (bytes([SYNC, Command.WRITE_BUFFER.value, 0xff, 0x01]) + bytes(40),
                           "OVERSIZE")]:
        board.transport.write(damaged)
        status, payload = board.receive_frame()
        assert (BoardError(status).name, payload) == (code, b"")
    np.testing.assert_array_equal(board.read_buffer(Buf.A, 0, 4), words)   # nothing written
    assert board.status().error == "OK"
