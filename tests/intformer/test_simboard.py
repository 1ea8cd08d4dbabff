"""``intformer sim-board``: the Verilated LinkTop behind a pseudo-terminal, driven by the
unmodified host driver (boards.board.Board) over pyserial: bit-exact GEMM and attention,
link-level errors for corrupted frames, and a clean exit when the peer closes the port.

Two boards: the tiny preset (small attention, buffers of 32 words) and the ulx3s preset as
``intformer sim-board --preset ulx3s`` runs it (2048-word buffers), on shapes its buffers hold;
4 cycles per UART bit. Each model is built once and cached under build/verilator/ (the tiny
one about 40 s, the ulx3s one 143 s, measured with the machine at a load of 10 on 2 cores).
"""

import contextlib
import subprocess
import sys

import numpy as np

from boards.board import Board
from boards.host import BoardError
from boards.link import SYNC, crc8
from hw.config import AccelConfig, AttentionConfig, BufferConfig, LayerNormConfig
from hw.isa import Buf, Command
from sim import golden

CFG = AccelConfig.preset("tiny").replace(layernorm=LayerNormConfig(enabled=False),
                                         attention=AttentionConfig(max_seq_len=8, max_head_dim=4),
                                         buffers=BufferConfig(32))
SCALES = (0.05, 0.04, 0.03, 0.02)


def _frame(opcode, payload, crc_delta=0):
    body = bytes([opcode]) + len(payload).to_bytes(2, "little") + payload
    return bytes([SYNC]) + body + bytes([(crc8(body) + crc_delta) & 0xff])


@contextlib.contextmanager
def sim_board(cfg, *options):
    """A ``sim-board`` server run with ``options`` (``cfg`` as a preset or a TOML file), and the
    Board of ``cfg`` that opened its pty: both take the buffers' depth from the config. On
    leaving, the port is closed and the server must end cleanly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "intformer.cli", "sim-board", "--divisor", "4", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()            # after the build: the pty's path
        assert line.startswith("simulated "), line + proc.stderr.read()
        assert f"buffers of {cfg.buffers.depth} words" in line
        assert line.rstrip().endswith(", cfg)")
        board = Board(line.split(" on ")[1].split()[0], cfg, timeout=20)
        assert board.depth == cfg.buffers.depth
        yield board
        # A dead peer ends the server cleanly.
        board.transport.close()
        assert proc.wait(timeout=20) == 0, "sim-board did not end when its peer closed the port"
        assert "the peer closed the port" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sim_board_over_a_pty(tmp_path):
    # One server for every check (a pytest-xdist worker each would start one per test).
    toml = tmp_path / "cfg.toml"
    CFG.to_toml(toml)
    with sim_board(CFG, "--config", str(toml)) as board:
        check_bit_exact(board, CFG, (5, 7, 3), (7, 4))
        check_corrupted_frames(board)


def test_sim_board_ulx3s_over_a_pty():
    # The preset itself, buffers of 2048 words: a GEMM of ragged tiles of its array, and a
    # MiniLM head (L = 64, d = 32: V is ceil(32/6)*64 = 384 words).
    cfg = AccelConfig.preset("ulx3s")
    with sim_board(cfg, "--preset", "ulx3s") as board:
        check_bit_exact(board, cfg, (13, 40, 11), (64, 32))
        check_corrupted_frames(board)


def check_bit_exact(board, cfg, gemm_shape, head_shape):
    rng = np.random.default_rng(1)
    M, K, N = gemm_shape
    a, b = rng.integers(-128, 128, (M, K)), rng.integers(-128, 128, (K, N))
    np.testing.assert_array_equal(board.gemm(a, b), golden.gemm(a, b))
    q, k, v = (rng.integers(-128, 128, head_shape) for _ in range(3))
    for causal in (False, True):
        np.testing.assert_array_equal(
            board.attention(q, k, v, *SCALES, causal=causal)[0],
            golden.attention(q, k, v, *SCALES, causal=causal, cfg=cfg)[0])
    assert board.status() == (False, True, "OK")


def check_corrupted_frames(board):
    words = np.arange(4 * board.buffers[Buf.A].lanes).reshape(4, -1)
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
