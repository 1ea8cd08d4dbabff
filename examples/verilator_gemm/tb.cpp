// A self-checking testbench of the generated GEMM engine (gemm.v), written as an outsider
// would: it uses only gemm.v and the parameters that json2header.py takes from
// intformer.json (intformer_gemm.h), and checks every output row against an exact integer
// matrix product computed here.
//
// Protocol, from gemm.md: a command {m, k, n} on `cmd`, then for each row tile i0 (R rows),
// each column tile j0 (C columns), each k: one beat on `a` (A[i0+r][k], lane r) and one on
// `b` (B[k][j0+c], lane c), both taken on the same cycle. Out: for each row tile, each column
// tile, one row per real row, C lanes of signed GEMM_ACC_WIDTH bits, lane 0 in the low bits.
// Reset: active-high, synchronous, optional.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <utility>
#include <vector>

#include "Vgemm.h"
#include "intformer_gemm.h"
#include "verilated.h"

// Verilator escapes "__" in port names as "___05F": port a__payload is member a___05Fpayload.
#define PORT(stream, sig) stream##___05F##sig

// Bit access for every width Verilator uses: integers up to 64 bits, VlWide above.
template <typename T> static void set_bits(T& v, int lsb, int width, uint64_t value) {
    const uint64_t mask = (1ULL << width) - 1;
    v = (T)(((uint64_t)v & ~(mask << lsb)) | ((value & mask) << lsb));
}
template <std::size_t N> static void set_bits(VlWide<N>& v, int lsb, int width, uint64_t value) {
    for (int i = 0; i < width; i++) {
        const int bit = lsb + i;
        const uint32_t m = 1u << (bit % 32);
        v[bit / 32] = (value >> i & 1) ? (v[bit / 32] | m) : (v[bit / 32] & ~m);
    }
}
static int64_t to_signed(uint64_t u, int width) {
    return (u >> (width - 1)) & 1 ? (int64_t)(u - (1ULL << width)) : (int64_t)u;
}
template <typename T> static int64_t get_signed(const T& v, int lsb, int width) {
    return to_signed(((uint64_t)v >> lsb) & ((1ULL << width) - 1), width);
}
template <std::size_t N> static int64_t get_signed(const VlWide<N>& v, int lsb, int width) {
    uint64_t u = 0;
    for (int i = 0; i < width; i++)
        u |= (uint64_t)(v[(lsb + i) / 32] >> ((lsb + i) % 32) & 1) << i;
    return to_signed(u, width);
}
template <typename T> static void clear(T& v) { v = 0; }
template <std::size_t N> static void clear(VlWide<N>& v) {
    for (std::size_t i = 0; i < N; i++) v[i] = 0;
}

struct Bench {
    VerilatedContext ctx;
    Vgemm top{&ctx};
    uint64_t cycles = 0;
    void tick() {  // one rising edge; inputs were set and settled before
        top.clk = 1;
        top.eval();
        top.clk = 0;
        top.eval();
        cycles++;
    }
};

static bool run_one(Bench& tb, int M, int K, int N, std::mt19937& rng) {
    const int R = GEMM_R, C = GEMM_C;
    std::uniform_int_distribution<int> byte(-128, 127);
    std::vector<int> A(M * K), B(K * N);
    for (auto& x : A) x = byte(rng);
    for (auto& x : B) x = byte(rng);
    const int tm = (M + R - 1) / R, tn = (N + C - 1) / C;
    std::vector<std::pair<int, int>> order;  // (row i, column tile) of each output row
    for (int ti = 0; ti < tm; ti++)
        for (int tj = 0; tj < tn; tj++)
            for (int i = ti * R; i < std::min(ti * R + R, M); i++) order.push_back({i, tj});

    // The command, held until taken.
    clear(tb.top.PORT(cmd, payload));
    set_bits(tb.top.PORT(cmd, payload), GEMM_CMD_M_LSB, GEMM_CMD_M_WIDTH, M);
    set_bits(tb.top.PORT(cmd, payload), GEMM_CMD_K_LSB, GEMM_CMD_K_WIDTH, K);
    set_bits(tb.top.PORT(cmd, payload), GEMM_CMD_N_LSB, GEMM_CMD_N_WIDTH, N);
    tb.top.PORT(cmd, valid) = 1;
    tb.top.PORT(out, ready) = 1;
    const long beats = (long)tm * tn * K, rows = (long)order.size();
    long beat = 0, row = 0;
    uint64_t idle = 0;
    while (row < rows) {
        if (beat < beats) {  // operand beat `beat`: tile (ti, tj), index k
            const long t = beat / K, k = beat % K, ti = t / tn, tj = t % tn;
            clear(tb.top.PORT(a, payload));
            clear(tb.top.PORT(b, payload));
            for (int r = 0; r < R; r++) {
                const long i = ti * R + r;
                set_bits(tb.top.PORT(a, payload), r * GEMM_IN_WIDTH, GEMM_IN_WIDTH,
                         (uint64_t)(i < M ? A[i * K + k] : 0));
            }
            for (int c = 0; c < C; c++) {
                const long j = tj * C + c;
                set_bits(tb.top.PORT(b, payload), c * GEMM_IN_WIDTH, GEMM_IN_WIDTH,
                         (uint64_t)(j < N ? B[k * N + j] : 0));
            }
        }
        tb.top.PORT(a, valid) = tb.top.PORT(b, valid) = beat < beats;
        tb.top.eval();
        const bool took_cmd = tb.top.PORT(cmd, valid) && tb.top.PORT(cmd, ready);
        const bool took_ab = beat < beats && tb.top.PORT(a, ready) && tb.top.PORT(b, ready);
        const bool got = tb.top.PORT(out, valid);
        if (got) {
            const int i = order[row].first, tj = order[row].second;
            for (int c = 0; c < C && tj * C + c < N; c++) {
                const int j = tj * C + c;
                int64_t want = 0;
                for (int k = 0; k < K; k++) want += (int64_t)A[i * K + k] * B[k * N + j];
                const int64_t have = get_signed(tb.top.PORT(out, payload), c * GEMM_ACC_WIDTH,
                                                GEMM_ACC_WIDTH);
                if (have != want) {
                    std::printf("FAIL %dx%dx%d: C[%d][%d] = %lld, expected %lld\n", M, K, N, i,
                                j, (long long)have, (long long)want);
                    return false;
                }
            }
            row++;
        }
        tb.tick();
        if (took_cmd) tb.top.PORT(cmd, valid) = 0;
        if (took_ab) beat++;
        idle = (took_cmd || took_ab || got) ? 0 : idle + 1;
        if (idle > 10000) {
            std::printf("FAIL %dx%dx%d: no progress for 10000 cycles (beat %ld of %ld, row %ld "
                        "of %ld)\n", M, K, N, beat, beats, row, rows);
            return false;
        }
    }
    std::printf("ok   %dx%dx%d (%ld rows)\n", M, K, N, rows);
    return true;
}

int main(int argc, char** argv) {
    Bench tb;
    tb.ctx.commandArgs(argc, argv);
    tb.top.rst = 1;  // optional: one cycle of reset
    tb.top.eval();
    tb.tick();
    tb.top.rst = 0;
    std::mt19937 rng(1);
    const int shapes[][3] = {{1, 1, 1},
                             {GEMM_R, 8, GEMM_C},
                             {2 * GEMM_R + 1, 17, GEMM_C + 1},
                             {GEMM_MAX_M < 9 ? GEMM_MAX_M : 9, GEMM_MAX_K, 3}};
    bool ok = true;
    for (const auto& s : shapes) ok = run_one(tb, s[0], s[1], s[2], rng) && ok;
    std::printf("%s after %llu cycles\n", ok ? "PASS" : "FAIL", (unsigned long long)tb.cycles);
    tb.top.final();
    return ok ? 0 : 1;
}
