// Block formats and the integer-dot-product kernels (decode matvec, prefill GEMM) against a scalar
// reference in double: weights dequantized by the reference dequantizer, activations quantized per
// block of 32 by quantize_activations and dequantized. The kernels must agree with that to fp32
// rounding (1e-5 of Σ|w·x| per output) — on x86 (AVX2, or VNNI when compiled for it) and on aarch64
// under qemu (NEON, SDOT with +dotprod, the SMMLA prefill GEMM with +i8mm) — at odd sizes, prefix views
// and every ratio's slice.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include "elastilm/model/variant_table.hpp"
#include "elastilm/simd/matmul.hpp"
#include "elastilm/simd/matvec.hpp"
#include "elastilm/simd/decode_prefetch.hpp"
#include "elastilm/simd/quant_blocks.hpp"
#include "elastilm/simd/quant_interleaved.hpp"

namespace elastilm {
namespace {

TEST(QuantBlocks, Q4_0NibbleOrderIsGgufs) {
    BlockQ4_0 b;
    b.d = f32_to_f16(0.5f);
    for (int k = 0; k < 16; ++k) b.qs[k] = std::uint8_t(k | ((15 - k) << 4));
    float out[32];
    dequantize(out, b);
    for (int k = 0; k < 16; ++k) {
        EXPECT_EQ(out[k], float(k - 8) * 0.5f) << k;            // low nibble: element k
        EXPECT_EQ(out[k + 16], float(15 - k - 8) * 0.5f) << k;  // high nibble: element 16 + k
    }
}

TEST(QuantBlocks, Q8_0IsInt8TimesScale) {
    BlockQ8_0 b;
    b.d = f32_to_f16(0.25f);
    for (int k = 0; k < 32; ++k) b.q[k] = std::int8_t(k * 8 - 127);
    float out[32];
    dequantize(out, b);
    for (int k = 0; k < 32; ++k) EXPECT_EQ(out[k], float(k * 8 - 127) * 0.25f);
}

TEST(QuantBlocks, RoundTripErrorWithinHalfAStep) {
    std::mt19937 rng(7);
    std::normal_distribution<float> g(0, 1);
    for (int trial = 0; trial < 200; ++trial) {
        float x[32], y[32];
        for (float& v : x) v = g(rng) * (trial % 7 + 1);
        const BlockQ8_0 q8 = quantize_q8_0(x);
        dequantize(y, q8);
        const float d8 = f16_to_f32(q8.d);
        for (int k = 0; k < 32; ++k) ASSERT_LE(std::fabs(x[k] - y[k]), 0.5f * d8 * 1.001f + 1e-7f);
        const BlockQ4_0 q4 = quantize_q4_0(x);
        dequantize(y, q4);
        const float d4 = std::fabs(f16_to_f32(q4.d));
        // The grid is −8..7 steps: the extreme lands on −8 exactly, the opposite side may clip at +7.
        for (int k = 0; k < 32; ++k) ASSERT_LE(std::fabs(x[k] - y[k]), d4 * 1.001f + 1e-6f);
    }
    float zero[32] = {};
    float y[32];
    dequantize(y, quantize_q4_0(zero));
    for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(QuantBlocks, BadScalesAreFound) {
    std::vector<BlockQ8_0> blocks(3);
    for (auto& b : blocks) b.d = f32_to_f16(1.0f);
    const auto bytes = [&] { return std::span<const std::byte>(reinterpret_cast<const std::byte*>(blocks.data()), blocks.size() * 34); };
    EXPECT_EQ(first_bad_scale(DType::q8_0, bytes()), -1);
    blocks[2].d = 0x7e00;  // NaN
    EXPECT_EQ(first_bad_scale(DType::q8_0, bytes()), 2);
    blocks[1].d = 0xfc00;  // −inf
    EXPECT_EQ(first_bad_scale(DType::q8_0, bytes()), 1);
}

// A stored rows_stored × cols_stored matrix of `dtype` blocks, viewed as its leading rows × cols.
struct Stored {
    std::vector<std::byte> bytes;
    std::vector<float> dequantized;  // rows_stored × cols_stored, the reference's weights
    MatrixView view;
};

Stored make(int rows, int cols, int rows_stored, int cols_stored, DType dtype, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0, 1);
    Stored s;
    std::vector<float> row(cols_stored);
    const std::size_t row_bytes = bytes_for(dtype, cols_stored);
    s.bytes.resize(row_bytes * rows_stored);
    s.dequantized.resize(std::size_t(rows_stored) * cols_stored);
    for (int r = 0; r < rows_stored; ++r) {
        for (int j = 0; j < cols_stored; ++j) row[j] = g(rng) * (1 + (j / 32) % 5);  // scales differ per block
        quantize_row(s.bytes.data() + r * row_bytes, dtype, row.data(), cols_stored);
        dequantize_row(s.dequantized.data() + std::size_t(r) * cols_stored, dtype, s.bytes.data() + r * row_bytes, cols_stored);
    }
    s.view = MatrixView{s.bytes.data(), dtype, Layout::out_major, rows_stored, cols_stored, std::size_t(cols_stored)}.prefix(rows, cols);
    return s;
}

std::vector<float> activations(int n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0, 1);
    std::vector<float> x(n);
    for (float& v : x) v = g(rng);
    return x;
}

// x as the kernels see it: quantized per block, dequantized.
std::vector<double> as_quantized(const float* x, int n) {
    std::vector<ActBlock> q(n / 32);
    quantize_activations(q.data(), x, n);
    std::vector<double> out(n);
    for (int j = 0; j < n; ++j) out[j] = double(q[j / 32].q[j % 32]) * q[j / 32].d;
    return out;
}

// y[i] against Σ_j w(i, j)·xq[j] (+ extra), tolerance relative to Σ|terms|.
void expect_rows(const Stored& s, const std::vector<double>& xq, const float* y, const std::vector<float>* E = nullptr,
                 const std::vector<float>* z = nullptr, int e_cols = 0, const char* what = "") {
    const MatrixView& W = s.view;
    for (int i = 0; i < W.rows; ++i) {
        double ref = 0, mag = 0;
        for (int j = 0; j < W.cols; ++j) {
            const double t = s.dequantized[std::size_t(i) * W.ld + j] * xq[j];
            ref += t;
            mag += std::fabs(t);
        }
        for (int k = 0; k < e_cols; ++k) {
            const double t = double(f16_to_f32(f32_to_f16((*E)[std::size_t(i) * e_cols + k]))) * (*z)[k];
            ref += t;
            mag += std::fabs(t);
        }
        ASSERT_NEAR(y[i], ref, 1e-5 * mag + 1e-6) << what << " row " << i << " of " << W.rows << "×" << W.cols << " "
                                                  << to_string(W.dtype);
    }
}

class QuantKernels : public ::testing::TestWithParam<DType> {};

// A copy of s with its stored rows' blocks interleaved (simd/quant_interleaved.hpp), viewed the same.
Stored interleaved_copy(const Stored& s) {
    Stored out = s;
    const int row_blocks = int(s.view.ld / kQuantBlock);
    const std::size_t rows = s.bytes.size() / (std::size_t(row_blocks) * block_bytes(s.view.dtype));
    interleaved::interleave_rows(out.bytes.data(), s.view.dtype, rows, row_blocks);
    out.view.data = out.bytes.data();
    out.view.order = BlockOrder::interleaved;
    return out;
}

// |y − want| within 2e-5 of Σ|w·x| per row: two kernels that sum in different orders.
void expect_close(const Stored& s, const std::vector<double>& xq, const std::vector<float>& y, const std::vector<float>& want,
                  const std::string& what) {
    for (int i = 0; i < s.view.rows; ++i) {
        double mag = 0;
        for (int j = 0; j < s.view.cols; ++j) mag += std::fabs(s.dequantized[std::size_t(i) * s.view.ld + j] * xq[j]);
        ASSERT_NEAR(y[i], want[i], 2e-5 * mag + 1e-6) << what << ", row " << i;
    }
}

TEST_P(QuantKernels, MatvecOddSizesPrefixesThreads) {
    const DType dtype = GetParam();
    ThreadPool pool(2);
    for (int rows : {1, 3, 17, 66})
        for (int cols : {32, 96, 352})
            for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
                const Stored s = make(rows, cols, rows + 5, cols + 64, dtype, rows * 1000 + cols);
                const auto x = activations(cols, cols);
                std::vector<float> y(rows, -1.0f);
                matvec(y.data(), s.view, x.data(), p, nullptr, /*parallel_from=*/0);
                expect_rows(s, as_quantized(x.data(), cols), y.data(), nullptr, nullptr, 0, "matvec");
            }
}

// Products of one input fused into one (quant_matvecs: Wq, Wk, Wv at decode) give each matrix exactly
// the floats of its own matvec, whichever thread a row falls to: odd row counts, prefixes of wider
// stored matrices (each its own row stride), the threads' split falling inside and across matrices.
TEST_P(QuantKernels, FusedProductsOfOneInputMatchTheirOwnMatvecs) {
    const DType dtype = GetParam();
    ThreadPool pool(2);
    for (int cols : {32, 352, 2048}) {
        const Stored a = make(5, cols, 9, cols + 32, dtype, 71), b = make(40, cols, 40, cols, dtype, 72), c = make(3, cols, 7, cols + 96, dtype, 73);
        const auto x = activations(cols, 74);
        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
            std::vector<float> ya(5, -1), yb(40, -1), yc(3, -1), ra(5), rb(40), rc(3);
            float* const y[] = {ya.data(), yb.data(), yc.data()};
            const MatrixView W[] = {a.view, b.view, c.view};
            quant_matvecs(y, W, x.data(), p, /*parallel_from=*/0);
            matvec(ra.data(), a.view, x.data(), p, nullptr, 0);
            matvec(rb.data(), b.view, x.data(), p, nullptr, 0);
            matvec(rc.data(), c.view, x.data(), p, nullptr, 0);
            EXPECT_EQ(ya, ra) << cols;
            EXPECT_EQ(yb, rb) << cols;
            EXPECT_EQ(yc, rc) << cols;
            expect_rows(b, as_quantized(x.data(), cols), yb.data(), nullptr, nullptr, 0, "fused");
        }
    }
    // Matrices that cannot share one product (a different block format) run one matvec each.
    const DType other = dtype == DType::q8_0 ? DType::q4_0 : DType::q8_0;
    const Stored a = make(17, 96, 17, 96, dtype, 75), b = make(6, 96, 6, 96, other, 76);
    const auto x = activations(96, 77);
    std::vector<float> ya(17), yb(6), ra(17), rb(6);
    float* const y[] = {ya.data(), yb.data()};
    const MatrixView W[] = {a.view, b.view};
    matvecs(y, W, x.data(), &pool);
    matvec(ra.data(), a.view, x.data(), &pool);
    matvec(rb.data(), b.view, x.data(), &pool);
    EXPECT_EQ(ya, ra);
    EXPECT_EQ(yb, rb);
}

// The rows split across 2 and 3 threads in dynamic chunks (each thread prefetching on into its next
// chunk) or static shares: every row's floats are those of the single-threaded product.
TEST_P(QuantKernels, EveryRowSplitGivesTheSameFloats) {
    const DType dtype = GetParam();
    const Stored a = make(300, 96, 300, 160, dtype, 81), b = make(77, 96, 80, 96, dtype, 82);
    const auto x = activations(96, 83);
    std::vector<float> ra(300), rb(77);
    float* const r[] = {ra.data(), rb.data()};
    const MatrixView W[] = {a.view, b.view};
    quant_matvecs(r, W, x.data(), nullptr, 0);
    expect_rows(a, as_quantized(x.data(), 96), ra.data(), nullptr, nullptr, 0, "one thread");
    for (int threads : {2, 3}) {
        ThreadPool pool(threads);
        for (ThreadPool::Split split : {ThreadPool::Split::stealing, ThreadPool::Split::stealing_committed, ThreadPool::Split::dynamic,
                                        ThreadPool::Split::static_shares}) {
            set_quant_row_split(split);
            std::vector<float> ya(300, -1), yb(77, -1);
            float* const y[] = {ya.data(), yb.data()};
            quant_matvecs(y, W, x.data(), &pool, 0);
            EXPECT_EQ(ya, ra) << threads << " threads";
            EXPECT_EQ(yb, rb) << threads << " threads";
        }
        set_quant_row_split(ThreadPool::Split::stealing);
    }
}

// How the rows ahead are prefetched (simd/decode_prefetch.hpp: hint, distance) changes where they are
// cached and when, never a float: with each hint and distance (one line, 1 MB, each thread's adaptive
// one), on one thread and split across two, the product equals the one-thread product by default.
TEST_P(QuantKernels, EveryPrefetchGivesTheSameFloats) {
    const DType dtype = GetParam();
    const Stored a = make(300, 128, 300, 160, dtype, 91);  // a ratio's slice: a prefix of each row's blocks
    const auto x = activations(128, 92);
    std::vector<float> ref(300);
    quant_matvec(ref.data(), a.view, x.data(), nullptr, nullptr, nullptr, 0);
    expect_rows(a, as_quantized(x.data(), 128), ref.data(), nullptr, nullptr, 0, "default prefetch");
    ThreadPool pool(2);
    for (PrefetchHint hint : {PrefetchHint::cached, PrefetchHint::non_temporal})
        for (std::size_t distance : {std::size_t(64), std::size_t(1) << 20, std::size_t(0)}) {
            set_quant_prefetch_hint(hint);
            set_quant_prefetch_distance(distance);
            for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
                std::vector<float> y(300, -1);
                quant_matvec(y.data(), a.view, x.data(), p, nullptr, nullptr, 0);
                EXPECT_EQ(y, ref) << to_string(hint) << ", " << distance << " B ahead, " << (p ? "2 threads" : "1 thread");
            }
        }
    set_quant_prefetch_hint(default_prefetch_hint());
    set_quant_prefetch_distance(default_prefetch_distance());
}

TEST_P(QuantKernels, MatvecWithExtraColumns) {  // a LoRA adapter's B read with the base weights
    const DType dtype = GetParam();
    ThreadPool pool(2);
    const int rows = 37, cols = 160, e_cols = 11;
    const Stored s = make(rows, cols, rows, cols, dtype, 5);
    const auto x = activations(cols, 1), z = activations(e_cols, 2), e = activations(rows * e_cols, 3);
    std::vector<f16_bits> e16;
    for (float v : e) e16.push_back(f32_to_f16(v));
    const ExtraColumns extra{MatrixView{e16.data(), DType::f16, Layout::out_major, rows, e_cols, std::size_t(e_cols)}, z.data()};
    std::vector<float> y(rows);
    matvec(y.data(), s.view, x.data(), &pool, &extra, 0);
    expect_rows(s, as_quantized(x.data(), cols), y.data(), &e, &z, e_cols, "matvec+extra");
}

// The decode kernel at every row length from 1 to 70 blocks (around its 2- / 4-block vectors and its
// 16-block groups of scales, whole and partial), row counts that are not multiples of 4, with and
// without a LoRA adapter's extra columns, single-threaded and split across the pool.
TEST_P(QuantKernels, MatvecEveryBlockCountWithAndWithoutExtra) {
    const DType dtype = GetParam();
    ThreadPool pool(2);
    for (int blocks = 1; blocks <= 70; ++blocks) {
        const int cols = 32 * blocks, rows = 1 + blocks % 7, e_cols = 1 + blocks % 5;
        const Stored s = make(rows, cols, rows + 1, cols + 32 * (blocks % 3), dtype, std::uint64_t(blocks) * 31 + 7);
        const auto x = activations(cols, std::uint64_t(blocks) + 100);
        const auto xq = as_quantized(x.data(), cols);
        std::vector<float> y(rows, -1.0f);
        matvec(y.data(), s.view, x.data(), blocks % 2 ? &pool : nullptr, nullptr, 0);
        expect_rows(s, xq, y.data(), nullptr, nullptr, 0, ("matvec, " + std::to_string(blocks) + " blocks").c_str());
        const auto z = activations(e_cols, blocks), e = activations(rows * e_cols, blocks + 1);
        std::vector<f16_bits> e16;
        for (float v : e) e16.push_back(f32_to_f16(v));
        const ExtraColumns extra{MatrixView{e16.data(), DType::f16, Layout::out_major, rows, e_cols, std::size_t(e_cols)}, z.data()};
        matvec(y.data(), s.view, x.data(), blocks % 2 ? nullptr : &pool, &extra, 0);
        expect_rows(s, xq, y.data(), &e, &z, e_cols, ("matvec+extra, " + std::to_string(blocks) + " blocks").c_str());
    }
}

// Every ratio's slice of tiny-gqa-15M's and docs-95M's shapes through the decode kernel: Wq's leading
// rows, W_down's leading inputs (a prefix of each row's blocks), with the extra columns on W_down.
template <class Cfg>
void matvec_every_ratio(DType dtype, BlockOrder order = BlockOrder::gguf) {
    ThreadPool pool(2);
    Stored wq = make(Cfg::n_heads * Cfg::head_dim, Cfg::dim, Cfg::n_heads * Cfg::head_dim, Cfg::dim, dtype, 31);
    Stored down = make(Cfg::dim, Cfg::hidden_dim, Cfg::dim, Cfg::hidden_dim, dtype, 32);
    if (order == BlockOrder::interleaved) wq = interleaved_copy(wq), down = interleaved_copy(down);
    const int e_cols = 8;
    const auto z = activations(e_cols, 33), e = activations(Cfg::dim * e_cols, 34);
    std::vector<f16_bits> e16;
    for (float v : e) e16.push_back(f32_to_f16(v));
    const ExtraColumns extra{MatrixView{e16.data(), DType::f16, Layout::out_major, Cfg::dim, e_cols, std::size_t(e_cols)}, z.data()};
    for (const WidthInfo& w : width_table<Cfg>) {
        const std::string what = std::string(Cfg::name) + " " + std::to_string(w.percent) + "%";
        Stored q = wq, d = down;
        q.view = wq.view.prefix(w.heads * Cfg::head_dim, Cfg::dim);
        d.view = down.view.prefix(Cfg::dim, w.hidden);
        const auto x = activations(Cfg::hidden_dim, w.percent + 50);
        std::vector<float> y(Cfg::hidden_dim);
        matvec(y.data(), q.view, x.data(), &pool, nullptr, 0);
        expect_rows(q, as_quantized(x.data(), Cfg::dim), y.data(), nullptr, nullptr, 0, (what + " Wq slice").c_str());
        matvec(y.data(), d.view, x.data(), &pool, &extra, 0);
        expect_rows(d, as_quantized(x.data(), w.hidden), y.data(), &e, &z, e_cols, (what + " W_down slice + extra").c_str());
    }
}

TEST_P(QuantKernels, MatvecEveryRatioSliceTwoModels) {
    matvec_every_ratio<TinyGqa15M>(GetParam());
    matvec_every_ratio<Docs95M>(GetParam());
}

// The same slices of interleaved rows (the loader's order for a --no-mmap copy where the interleaved
// kernel is compiled): Wq's rows end in a short group (docs-95M: 24 blocks), W_down's slices end inside
// groups.
TEST_P(QuantKernels, InterleavedDecodeEveryRatioSliceTwoModels) {
    if (!interleaved::kInterleavedDecode)
        GTEST_SKIP() << "interleaved decode kernel not compiled: needs x86 with AVX2, FMA and F16C (x86-64-v3) or AVX-512 VNNI";
    matvec_every_ratio<TinyGqa15M>(GetParam(), BlockOrder::interleaved);
    matvec_every_ratio<Docs95M>(GetParam(), BlockOrder::interleaved);
}

// Blocks at the edges of their formats: Q8_0 bytes −128 (a GGUF file may hold it, our quantizer never
// writes it) and 127, Q4_0 nibbles all 15 or all 0; scales 0, the largest fp16 (65504) and the smallest
// subnormal (2⁻²⁴); activations with one huge value per block (the rest quantize to 0) and ±max.
Stored extreme_matrix(int rows, int blocks, DType dtype) {
    const int cols = 32 * blocks;
    Stored s = make(rows, cols, rows, cols, dtype, 41);
    const f16_bits scales[] = {0x0000, 0x7bff, 0x0001, 0x3c00, 0x8001, 0xfbff};
    for (int r = 0; r < rows; ++r)
        for (int b = 0; b < blocks; ++b) {
            std::byte* blk = s.bytes.data() + bytes_for(dtype, std::size_t(r) * cols) + b * block_bytes(dtype);
            const f16_bits d = scales[(r + 2 * b) % 6];
            std::memcpy(blk, &d, 2);
            const int kind = (r + b) % 4;
            if (dtype == DType::q8_0) {
                auto* q = reinterpret_cast<std::int8_t*>(blk + 2);
                for (int k = 0; k < 32; ++k) q[k] = kind == 0 ? -128 : kind == 1 ? 127 : kind == 2 ? std::int8_t(k % 2 ? -128 : 127) : q[k];
            } else {
                auto* q = reinterpret_cast<std::uint8_t*>(blk + 2);
                for (int k = 0; k < 16; ++k) q[k] = kind == 0 ? 0xff : kind == 1 ? 0x00 : kind == 2 ? 0x0f : q[k];
            }
        }
    for (int r = 0; r < rows; ++r)
        dequantize_row(s.dequantized.data() + std::size_t(r) * cols, dtype, s.bytes.data() + bytes_for(dtype, std::size_t(r) * cols), cols);
    return s;
}

std::vector<float> extreme_activations(int blocks, std::uint64_t seed) {
    auto x = activations(32 * blocks, seed);
    for (int b = 0; b < blocks; ++b)
        if (b % 3 == 0) x[32 * b + b % 32] = 1e4f;                                  // one huge value: the rest round to 0
        else if (b % 3 == 1) for (int k = 0; k < 32; ++k) x[32 * b + k] = k % 2 ? 3.0f : -3.0f;  // ±127 everywhere
    return x;
}

TEST_P(QuantKernels, MatvecExtremeValues) {
    const int rows = 23, blocks = 37, cols = 32 * blocks;
    const Stored s = extreme_matrix(rows, blocks, GetParam());
    const auto x = extreme_activations(blocks, 42);
    std::vector<float> y(rows);
    matvec(y.data(), s.view, x.data(), nullptr, nullptr, 0);
    expect_rows(s, as_quantized(x.data(), cols), y.data(), nullptr, nullptr, 0, "extremes");
    if (interleaved::kInterleavedDecode) {
        const Stored t = interleaved_copy(s);
        matvec(y.data(), t.view, x.data(), nullptr, nullptr, 0);
        expect_rows(t, as_quantized(x.data(), cols), y.data(), nullptr, nullptr, 0, "extremes, interleaved");
    }
}

// The prefill GEMM on the same extremes, with a row and a token count off its tiles (odd both ways).
TEST_P(QuantKernels, MatmulExtremeValues) {
    const int rows = 23, blocks = 37, cols = 32 * blocks, n = 7;
    const Stored s = extreme_matrix(rows, blocks, GetParam());
    std::vector<float> X;
    for (int t = 0; t < n; ++t) {
        const auto x = extreme_activations(blocks, 42 + t);
        X.insert(X.end(), x.begin(), x.end());
    }
    std::vector<float> Y(std::size_t(n) * rows);
    matmul(Y.data(), rows, s.view, X.data(), cols, n, nullptr);
    for (int t = 0; t < n; ++t)
        expect_rows(s, as_quantized(X.data() + std::size_t(t) * cols, cols), Y.data() + std::size_t(t) * rows, nullptr, nullptr, 0,
                    ("GEMM extremes, token " + std::to_string(t)).c_str());
}

TEST_P(QuantKernels, MatmulOddSizesAndTokenCounts) {
    const DType dtype = GetParam();
    ThreadPool pool(2);
    for (int n : {1, 2, 3, 4, 5, 9, 70})  // 70 > one chunk of tokens
        for (int rows : {1, 3, 17})
            for (int cols : {32, 160}) {
                const Stored s = make(rows, cols, rows + 2, cols + 32, dtype, n * 100 + rows);
                const int ldx = cols + 7, ldy = rows + 3;
                const auto X = activations(n * ldx, n);
                std::vector<float> Y(std::size_t(n) * ldy, -1.0f);
                matmul(Y.data(), ldy, s.view, X.data(), ldx, n, &pool);
                for (int t = 0; t < n; ++t) expect_rows(s, as_quantized(X.data() + t * ldx, cols), Y.data() + t * ldy, nullptr, nullptr, 0, "matmul");
            }
}

// Every ratio's slice of tiny-gqa-15M's shapes: Wq rows (q_dim × dim) and W_down inputs (dim × hidden).
TEST_P(QuantKernels, EveryRatioSlice) {
    using Cfg = TinyGqa15M;
    const DType dtype = GetParam();
    ThreadPool pool(2);
    const Stored wq = make(Cfg::n_heads * Cfg::head_dim, Cfg::dim, Cfg::n_heads * Cfg::head_dim, Cfg::dim, dtype, 11);
    const Stored down = make(Cfg::dim, Cfg::hidden_dim, Cfg::dim, Cfg::hidden_dim, dtype, 12);
    for (const WidthInfo& w : width_table<Cfg>) {
        ASSERT_EQ(w.hidden % 32, 0) << w.percent << "%: W_down's input slice must be whole blocks";
        Stored q = wq, d = down;
        q.view = wq.view.prefix(w.heads * Cfg::head_dim, Cfg::dim);
        d.view = down.view.prefix(Cfg::dim, w.hidden);
        const auto x = activations(Cfg::hidden_dim, w.percent);
        std::vector<float> y(Cfg::hidden_dim);
        matvec(y.data(), q.view, x.data(), &pool, nullptr, 0);
        expect_rows(q, as_quantized(x.data(), Cfg::dim), y.data(), nullptr, nullptr, 0, "Wq slice");
        matvec(y.data(), d.view, x.data(), &pool, nullptr, 0);
        expect_rows(d, as_quantized(x.data(), w.hidden), y.data(), nullptr, nullptr, 0, "W_down slice");
        const int n = 5;
        std::vector<float> Y(std::size_t(n) * Cfg::hidden_dim);
        const auto X = activations(n * Cfg::hidden_dim, w.percent + 1);
        matmul(Y.data(), Cfg::dim, d.view, X.data(), Cfg::hidden_dim, n, &pool);
        for (int t = 0; t < n; ++t)
            expect_rows(d, as_quantized(X.data() + t * Cfg::hidden_dim, w.hidden), Y.data() + t * Cfg::dim, nullptr, nullptr, 0, "W_down GEMM");
        matmul(Y.data(), Cfg::hidden_dim, q.view, X.data(), Cfg::hidden_dim, 3, &pool);
        for (int t = 0; t < 3; ++t)
            expect_rows(q, as_quantized(X.data() + t * Cfg::hidden_dim, Cfg::dim), Y.data() + t * Cfg::hidden_dim, nullptr, nullptr, 0, "Wq GEMM");
    }
}

// Against the unquantized product: the error quantization itself adds stays small (a sanity bound on
// the formats, not on the kernels): relative L2 error of y below 1% (Q8_0) and 12% (Q4_0).
TEST_P(QuantKernels, CloseToTheFloatProduct) {
    const DType dtype = GetParam();
    const int rows = 64, cols = 512;
    std::mt19937_64 rng(3);
    std::normal_distribution<float> g(0, 1);
    std::vector<float> w(std::size_t(rows) * cols);
    for (float& v : w) v = g(rng);
    std::vector<std::byte> q(bytes_for(dtype, w.size()));
    for (int r = 0; r < rows; ++r)
        quantize_row(q.data() + bytes_for(dtype, std::size_t(r) * cols), dtype, w.data() + std::size_t(r) * cols, cols);
    const auto x = activations(cols, 4);
    std::vector<float> y(rows);
    matvec(y.data(), MatrixView{q.data(), dtype, Layout::out_major, rows, cols, std::size_t(cols)}, x.data());
    double err = 0, norm = 0;
    for (int r = 0; r < rows; ++r) {
        double ref = 0;
        for (int j = 0; j < cols; ++j) ref += double(w[std::size_t(r) * cols + j]) * x[j];
        err += (y[r] - ref) * (y[r] - ref);
        norm += ref * ref;
    }
    EXPECT_LT(std::sqrt(err / norm), dtype == DType::q8_0 ? 0.01 : 0.12);
}

// The packed AVX-512 VNNI GEMM (simd/quant_gemm_packed.hpp, compiled with -march having VNNI and BW)
// against the scalar reference and against the tiled GEMM every other build uses, from the same quantized
// activations: rows around the 16-lane vectors and 32-row panels, token counts around its 6-token tile.
[[maybe_unused]] std::vector<ActBlock> quantized_tokens(const std::vector<float>& X, int ldx, int cols, int n) {
    std::vector<ActBlock> xq(std::size_t(n) * (cols / 32));
    for (int t = 0; t < n; ++t) quantize_activations(xq.data() + std::size_t(t) * (cols / 32), X.data() + std::size_t(t) * ldx, cols);
    return xq;
}

// Both GEMMs on the same W and activations; each checked against the reference, and against each other.
void expect_packed_matches(const Stored& s, int n, ThreadPool* pool, const char* what) {
#if ELASTILM_QGEMM_PACKED
    const int cols = s.view.cols, rows = s.view.rows, ldx = cols + 32, ldy = rows + 5;
    const auto X = activations(n * ldx, std::uint64_t(n) * 7919 + rows);
    const auto xq = quantized_tokens(X, ldx, cols, n);
    std::vector<float> packed(std::size_t(n) * ldy, -1.0f), tiled(std::size_t(n) * ldy, -1.0f);
    qgemm_packed::matmul(packed.data(), ldy, s.view, xq.data(), n, pool);
    qgemm::matmul_tiled(tiled.data(), ldy, s.view, xq.data(), n, pool);
    for (int t = 0; t < n; ++t) {
        const auto x = as_quantized(X.data() + std::size_t(t) * ldx, cols);
        expect_rows(s, x, packed.data() + std::size_t(t) * ldy, nullptr, nullptr, 0, what);
        for (int i = 0; i < rows; ++i) {
            double mag = 0;
            for (int j = 0; j < cols; ++j) mag += std::fabs(s.dequantized[std::size_t(i) * s.view.ld + j] * x[j]);
            ASSERT_NEAR(packed[std::size_t(t) * ldy + i], tiled[std::size_t(t) * ldy + i], 2e-5 * mag + 1e-6)
                << what << ": packed vs tiled, token " << t << " row " << i << " of " << rows << "×" << cols;
        }
        for (int i = rows; i < ldy; ++i)  // past the matrix's rows: not written
            ASSERT_EQ(packed[std::size_t(t) * ldy + i], -1.0f) << what << ": wrote row " << i << " of " << rows;
    }
#else
    (void)s, (void)n, (void)pool, (void)what;
#endif
}

TEST_P(QuantKernels, PackedGemmOddSizes) {
    if (!ELASTILM_QGEMM_PACKED) GTEST_SKIP() << "packed GEMM not compiled: needs -march with AVX-512 VNNI and BW (" << simd::qarch::kName << ")";
    const DType dtype = GetParam();
    ThreadPool pool(2);
    for (int rows : {1, 15, 16, 17, 31, 32, 33, 70})
        for (int cols : {32, 160})
            for (int n : {1, 2, 3, 6, 7, 13}) {
                const Stored s = make(rows, cols, rows + 3, cols + 64, dtype, std::uint64_t(rows) * 131 + cols + n);
                expect_packed_matches(s, n, n % 2 ? &pool : nullptr, "packed odd sizes");
            }
}

// Every ratio's slice of tiny-gqa-15M's and docs-95M's shapes: Wq's leading rows, W_down's leading inputs.
template <class Cfg>
void packed_every_ratio(DType dtype) {
    ThreadPool pool(2);
    const Stored wq = make(Cfg::n_heads * Cfg::head_dim, Cfg::dim, Cfg::n_heads * Cfg::head_dim, Cfg::dim, dtype, 21);
    const Stored down = make(Cfg::dim, Cfg::hidden_dim, Cfg::dim, Cfg::hidden_dim, dtype, 22);
    for (const WidthInfo& w : width_table<Cfg>) {
        SCOPED_TRACE(std::string(Cfg::name) + " " + std::to_string(w.percent) + "%");
        Stored q = wq, d = down;
        q.view = wq.view.prefix(w.heads * Cfg::head_dim, Cfg::dim);
        d.view = down.view.prefix(Cfg::dim, w.hidden);
        const int n = 1 + w.percent / 20;  // 2 … 6 tokens
        expect_packed_matches(q, n, &pool, "Wq slice");
        expect_packed_matches(d, n + 1, &pool, "W_down slice");
    }
}

TEST_P(QuantKernels, PackedGemmEveryRatioSlice) {
    if (!ELASTILM_QGEMM_PACKED) GTEST_SKIP() << "packed GEMM not compiled: needs -march with AVX-512 VNNI and BW";
    packed_every_ratio<TinyGqa15M>(GetParam());
    packed_every_ratio<Docs95M>(GetParam());
}

// The +128 bias at its extremes: weights −128 (a GGUF file may hold it though our quantizer never writes
// it) and 127, activations ±127: the correction 128·Σw must cancel exactly.
TEST(QuantKernels, PackedGemmExtremeValues) {
    if (!ELASTILM_QGEMM_PACKED) GTEST_SKIP() << "packed GEMM not compiled: needs -march with AVX-512 VNNI and BW";
    const int rows = 19, cols = 64;
    Stored s = make(rows, cols, rows, cols, DType::q8_0, 9);
    auto* blocks = reinterpret_cast<BlockQ8_0*>(s.bytes.data());
    for (int r = 0; r < rows; ++r)
        for (int b = 0; b < cols / 32; ++b)
            for (int k = 0; k < 32; ++k) {
                const std::int8_t v = (r + b) % 3 == 0 ? -128 : (r + b) % 3 == 1 ? 127 : std::int8_t(k % 2 ? -128 : 127);
                blocks[r * (cols / 32) + b].q[k] = v;
            }
    for (int r = 0; r < rows; ++r)
        dequantize_row(s.dequantized.data() + std::size_t(r) * cols, DType::q8_0, s.bytes.data() + bytes_for(DType::q8_0, std::size_t(r) * cols), cols);
    expect_packed_matches(s, 7, nullptr, "extremes");
}

// The packed GEMM quantizes activations itself, straight to x + 128: the same bytes and scales as
// quantize_activations, including all-zero blocks and values at exact half steps (round to even).
TEST(QuantKernels, PackedGemmQuantizesLikeDecode) {
#if ELASTILM_QGEMM_PACKED
    const int n = 32 * 40;
    auto x = activations(n, 77);
    for (int k = 0; k < 32; ++k) x[32 + k] = 0;                 // block 1: zeros
    for (int k = 0; k < 32; ++k) x[64 + k] = float(k - 16) * 0.5f;  // block 2: max 8, steps of 127/16 …
    for (int k = 0; k < 32; ++k) x[96 + k] = k == 0 ? 127.0f : float(k) + 0.5f;  // block 3: d = 1, ties
    x[200] = 1e30f;
    std::vector<ActBlock> ref(n / 32);
    std::vector<qgemm_packed::ActBlockU8> got(n / 32);
    quantize_activations(ref.data(), x.data(), n);
    qgemm_packed::quantize_activations_u8(got.data(), x.data(), n);
    for (int b = 0; b < n / 32; ++b) {
        ASSERT_EQ(got[b].d, ref[b].d) << "block " << b;
        for (int k = 0; k < 32; ++k) ASSERT_EQ(int(got[b].q[k]), ref[b].q[k] + 128) << "block " << b << " element " << k;
    }
#else
    GTEST_SKIP() << "packed GEMM not compiled: needs -march with AVX-512 VNNI and BW";
#endif
}

// Activations for the decode kernels' own quantizers, and quantize_activations' blocks of them: block
// 0 one huge value, block 1 zeros, the rest random.
[[maybe_unused]] std::vector<float> quantizer_edge_cases(int blocks, std::uint64_t seed) {
    auto x = activations(32 * blocks, seed);
    for (int k = 0; k < 32 && blocks > 1; ++k) x[32 + k] = 0;
    x[0] = 1e30f;
    return x;
}
[[maybe_unused]] std::vector<ActBlock> reference_blocks(const std::vector<float>& x) {
    std::vector<ActBlock> ref(x.size() / 32);
    quantize_activations(ref.data(), x.data(), int(x.size()));
    return ref;
}

// The zmm decode kernel quantizes x into its own layouts: the same bytes and scales as
// quantize_activations, each where the kernel reads it, and each lane's start value −128 (Q8_0) or
// −8 (Q4_0) times the sum of the bytes that lane multiplies. Padding past the last block is zero.
TEST(QuantKernels, ZmmDecodeQuantizesLikeTheReference) {
#if ELASTILM_QMATVEC_VNNI
    using namespace qvnni_matvec;
    for (int blocks : {1, 15, 16, 17, 40}) {
        const int n = 32 * blocks;
        const auto x = quantizer_edge_cases(blocks, 5 + blocks);
        const auto ref = reference_blocks(x);
        std::vector<ActGroupQ8> a8;
        std::vector<ActGroupQ4> a4;
        qvnni_matvec::quantize_activations<BlockQ8_0>(a8, x.data(), n);
        qvnni_matvec::quantize_activations<BlockQ4_0>(a4, x.data(), n);
        ASSERT_EQ(a8.size(), std::size_t((blocks + 15) / 16));
        ASSERT_EQ(a4.size(), a8.size());
        for (int b = 0; b < 16 * int(a8.size()); ++b) {
            const ActGroupQ8& g8 = a8[b / 16];
            const ActGroupQ4& g4 = a4[b / 16];
            const int j = b % 16;
            const float d = b < blocks ? ref[b].d : 0.0f;
            ASSERT_EQ(g8.d[j], d) << "block " << b;
            ASSERT_EQ(g4.d[j], d) << "block " << b;
            for (int l = 0; l < 4; ++l) ASSERT_EQ(g4.d_lanes[j / 4][4 * (j % 4) + l], d) << "block " << b << " lane " << l;
            for (int k = 0; k < 32; ++k) {
                const int q = b < blocks ? ref[b].q[k] : 0;
                ASSERT_EQ(g8.x[j / 2][32 * (j % 2) + k], q) << "Q8_0 layout, block " << b << " element " << k;
                ASSERT_EQ(k < 16 ? g4.lo[j / 4][16 * (j % 4) + k] : g4.hi[j / 4][16 * (j % 4) + k - 16], q)
                    << "Q4_0 layout, block " << b << " element " << k;
            }
        }
        for (const ActGroupQ8& g : a8)
            for (int p = 0; p < 8; ++p)
                for (int l = 0; l < 16; ++l) {
                    int sum = 0;
                    for (int i = 0; i < 4; ++i) sum += g.x[p][4 * l + i];
                    ASSERT_EQ(g.c[p][l], -128 * sum);
                }
        for (const ActGroupQ4& g : a4)
            for (int q = 0; q < 4; ++q)
                for (int l = 0; l < 16; ++l) {
                    int sum = 0;
                    for (int i = 0; i < 4; ++i) sum += g.lo[q][4 * l + i] + g.hi[q][4 * l + i];
                    ASSERT_EQ(g.c[q][l], -8 * sum);
                }
    }
#else
    GTEST_SKIP() << "zmm decode kernel not compiled: needs -march with AVX-512 VNNI and BW (" << simd::qarch::kName << ")";
#endif
}

// The interleaved kernel's activations (simd/quant_matvec_interleaved.hpp, with the build's AVX-512 or
// AVX2 operations): the bytes and scales of quantize_activations, vector v of a half holding elements
// 4v..4v+3 of its 16 blocks (Q4_0: lo[v] elements 4v.. of 0..15, hi[v] elements 16+4v..), each lane's
// start value −128 (Q8_0) or −8 (Q4_0) times its block's sum; blocks past n are zeros.
TEST(QuantKernels, InterleavedDecodeQuantizesLikeTheReference) {
#if ELASTILM_QMATVEC_INTERLEAVED
    namespace qi = interleaved_matvec;
    for (int blocks : {1, 15, 16, 17, 40}) {
        const int n = 32 * blocks;
        const auto x = quantizer_edge_cases(blocks, 7 + blocks);
        const auto ref = reference_blocks(x);
        std::vector<qi::ActHalfQ8> h8;
        std::vector<qi::ActHalfQ4> h4;
        qi::quantize_activations<BlockQ8_0>(h8, x.data(), n);
        qi::quantize_activations<BlockQ4_0>(h4, x.data(), n);
        ASSERT_EQ(h8.size(), std::size_t((blocks + 15) / 16));
        ASSERT_EQ(h4.size(), h8.size());
        for (std::size_t h = 0; h < h8.size(); ++h)
            for (int j = 0; j < 16; ++j) {
                const int b = int(h) * 16 + j;
                const bool live = b < blocks;
                int sum = 0;
                for (int k = 0; k < 32; ++k) {
                    const int q = live ? ref[std::size_t(b)].q[k] : 0;
                    sum += q;
                    ASSERT_EQ(h8[h].x[k / 4][4 * j + k % 4], q) << "Q8_0, block " << b << ", element " << k;
                    const std::int8_t* v = k < 16 ? h4[h].lo[k / 4] : h4[h].hi[(k - 16) / 4];
                    ASSERT_EQ(v[4 * j + k % 4], q) << "Q4_0, block " << b << ", element " << k;
                }
                EXPECT_EQ(h8[h].d[j], live ? ref[std::size_t(b)].d : 0.0f) << b;
                EXPECT_EQ(h4[h].d[j], live ? ref[std::size_t(b)].d : 0.0f) << b;
                EXPECT_EQ(h8[h].c[j], -128 * sum) << b;
                EXPECT_EQ(h4[h].c[j], -8 * sum) << b;
            }
    }
#else
    GTEST_SKIP() << "interleaved decode kernel not compiled: needs x86 with AVX2, FMA and F16C (x86-64-v3) or AVX-512 VNNI";
#endif
}

// The zmm decode kernel and the one-block-at-a-time kernel it replaced give the same products (to
// fp32 rounding) on the same matrix, Q8_0 and Q4_0: at block counts around its pairs and quads (1–3
// blocks left over), its groups of 16 (a partial last group) and a row prefix of a wider matrix.
TEST_P(QuantKernels, ZmmDecodeMatchesTheYmmKernel) {
#if ELASTILM_QMATVEC_VNNI
    const DType dtype = GetParam();
    const int rows = 45;
    for (int blocks : {1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18, 19, 20, 53})
        for (int stored_blocks : {blocks, blocks + 3}) {
            const int cols = 32 * blocks;
            const Stored s = make(rows, cols, rows, 32 * stored_blocks, dtype, 61 + blocks);
            const auto x = activations(cols, 62 + blocks);
            std::vector<float> zmm(rows), ymm(rows);
            detail::quant_matvec<detail::DecodeKernel::build>(zmm.data(), s.view, x.data(), nullptr, nullptr, nullptr, 0);
            detail::quant_matvec<detail::DecodeKernel::one_block>(ymm.data(), s.view, x.data(), nullptr, nullptr, nullptr, 0);
            const auto xq = as_quantized(x.data(), cols);
            for (int i = 0; i < rows; ++i) {
                double mag = 0;
                for (int j = 0; j < cols; ++j) mag += std::fabs(s.dequantized[std::size_t(i) * 32 * stored_blocks + j] * xq[j]);
                ASSERT_NEAR(zmm[i], ymm[i], 2e-5 * mag) << "row " << i << ", " << blocks << " of " << stored_blocks << " blocks";
            }
        }
#else
    GTEST_SKIP() << "zmm decode kernel not compiled: needs -march with AVX-512 VNNI and BW";
#endif
}

// The interleaved decode kernel (simd/quant_matvec_interleaved.hpp: AVX-512 VNNI or AVX2, whichever the
// build has) against the reference and against the build's GGUF-order kernel on the same blocks: block counts around its halves of 16 and groups of 32,
// rows stored exactly (the row's last group stored short) or wider (a ratio's prefix: the last group
// partly live, or short and partly live), one thread and two.
TEST_P(QuantKernels, InterleavedDecodeOddSizesAndPrefixes) {
    if (!interleaved::kInterleavedDecode)
        GTEST_SKIP() << "interleaved decode kernel not compiled: needs x86 with AVX2, FMA and F16C (x86-64-v3) or AVX-512 VNNI";
    const DType dtype = GetParam();
    ThreadPool pool(2);
    for (int blocks : {1, 2, 3, 15, 16, 17, 31, 32, 33, 40, 47, 48, 49, 63, 64, 65, 176})
        for (int wider : {0, 3, 37}) {
            const int rows = 19 + blocks % 7, cols = 32 * blocks;
            const std::string what = "interleaved, " + std::to_string(blocks) + " of " + std::to_string(blocks + wider) + " blocks";
            const Stored s = make(rows, cols, rows + 2, cols + 32 * wider, dtype, 90 + std::uint64_t(blocks) * 3 + wider);
            const Stored t = interleaved_copy(s);
            const auto x = activations(cols, 91 + blocks);
            std::vector<float> y(rows, -1), gguf(rows, -1);
            matvec(y.data(), t.view, x.data(), blocks % 2 ? &pool : nullptr, nullptr, 0);
            matvec(gguf.data(), s.view, x.data(), nullptr, nullptr, 0);
            const auto xq = as_quantized(x.data(), cols);
            expect_rows(t, xq, y.data(), nullptr, nullptr, 0, what.c_str());
            expect_close(s, xq, y, gguf, what + " vs GGUF order");
        }
}

// Products of one input fused over interleaved matrices (Wq, Wk, Wv at decode) give each one exactly the
// floats of its own matvec, as in GGUF's order.
TEST_P(QuantKernels, InterleavedFusedProductsMatchTheirOwnMatvecs) {
    if (!interleaved::kInterleavedDecode)
        GTEST_SKIP() << "interleaved decode kernel not compiled: needs x86 with AVX2, FMA and F16C (x86-64-v3) or AVX-512 VNNI";
    const DType dtype = GetParam();
    ThreadPool pool(2);
    for (int cols : {32, 1056, 2048}) {
        const Stored a = interleaved_copy(make(5, cols, 9, cols + 32, dtype, 71)),
                     b = interleaved_copy(make(40, cols, 40, cols, dtype, 72));
        const auto x = activations(cols, 74);
        std::vector<float> ya(5, -1), yb(40, -1), ra(5), rb(40);
        float* const y[] = {ya.data(), yb.data()};
        const MatrixView W[] = {a.view, b.view};
        quant_matvecs(y, W, x.data(), &pool, /*parallel_from=*/0);
        matvec(ra.data(), a.view, x.data(), &pool, nullptr, 0);
        matvec(rb.data(), b.view, x.data(), &pool, nullptr, 0);
        EXPECT_EQ(ya, ra) << cols;
        EXPECT_EQ(yb, rb) << cols;
        expect_rows(b, as_quantized(x.data(), cols), yb.data(), nullptr, nullptr, 0, "fused, interleaved");
    }
}

// The matrices a GEMM that reads interleaved rows is checked on: same(stored, tokens, what) for odd
// sizes (rows, blocks, and a wider stored row: a slice's last group partly live) and docs-95M's W_down
// at every ratio's slice.
template <class Same>
void gemm_interleaving_cases(DType dtype, std::uint64_t seed, Same&& same) {
    for (int rows : {1, 17, 33})
        for (int blocks : {1, 17, 33, 49})
            for (int wider : {0, 5}) same(make(rows, 32 * blocks, rows, 32 * (blocks + wider), dtype, seed), 7, "odd sizes");
    const Stored down = make(Docs95M::dim, Docs95M::hidden_dim, Docs95M::dim, Docs95M::hidden_dim, dtype, seed + 1);
    for (const WidthInfo& w : width_table<Docs95M>) {
        Stored d = down;
        d.view = down.view.prefix(Docs95M::dim, w.hidden);
        same(d, 3, "docs-95M W_down at " + std::to_string(w.percent) + "%");
    }
}

// The packed GEMM reads interleaved rows (the layers of a --no-mmap copy) into the very panels it packs
// from GGUF's order: bit for bit the same products, at odd sizes and every ratio's slice.
TEST_P(QuantKernels, PackedGemmReadsInterleavedRowsAsGguf) {
#if ELASTILM_QGEMM_PACKED
    const DType dtype = GetParam();
    ThreadPool pool(2);
    auto same = [&](const Stored& s, int n, const std::string& what) {
        const Stored t = interleaved_copy(s);
        const int cols = s.view.cols, ldy = s.view.rows;
        const auto X = activations(n * cols, std::uint64_t(n) * 31 + cols);
        std::vector<float> a(std::size_t(n) * ldy, -1), b(std::size_t(n) * ldy, -2);
        matmul(a.data(), ldy, s.view, X.data(), cols, n, &pool);
        matmul(b.data(), ldy, t.view, X.data(), cols, n, &pool);
        ASSERT_EQ(a, b) << what;
    };
    gemm_interleaving_cases(dtype, 97, same);
#else
    GTEST_SKIP() << "packed GEMM not compiled: needs -march with AVX-512 VNNI and BW";
#endif
}

// The kernel that reads only GGUF's order refuses interleaved rows instead of computing garbage: the
// one-block decode kernel (on every build), and so a build's public matvec where it is the only one.
TEST_P(QuantKernels, KernelsForGgufOrderRefuseInterleavedRows) {
    const Stored t = interleaved_copy(make(4, 64, 4, 64, GetParam(), 99));
    const auto x = activations(64, 100);
    std::vector<float> y(4);
    EXPECT_THROW(detail::quant_matvec<detail::DecodeKernel::one_block>(y.data(), t.view, x.data(), nullptr, nullptr, nullptr, 0), Error);
    if (!interleaved::kInterleavedDecode) {
        EXPECT_THROW(matvec(y.data(), t.view, x.data(), nullptr, nullptr, 0), Error);
    }
}

// The tiled GEMM (AVX2, NEON and scalar builds' prefill) reads interleaved rows — the layers of a
// --no-mmap copy on an x86-64-v3 build — as the GGUF blocks they came from, a tile's slice at a time:
// bit for bit the same products, at odd sizes and every ratio's slice, with both its micro-kernels
// where the build has two.
TEST_P(QuantKernels, TiledGemmReadsInterleavedRowsAsGguf) {
    const DType dtype = GetParam();
    ThreadPool pool(2);
    auto same = [&](const Stored& s, int n, const std::string& what) {
        const Stored t = interleaved_copy(s);
        const int cols = s.view.cols, ldy = s.view.rows;
        const auto X = activations(n * cols, std::uint64_t(n) * 37 + cols);
        const auto xq = quantized_tokens(X, cols, cols, n);
        std::vector<float> a(std::size_t(n) * ldy, -1), b(std::size_t(n) * ldy, -2);
        qgemm::matmul_tiled(a.data(), ldy, s.view, xq.data(), n, &pool);
        qgemm::matmul_tiled(b.data(), ldy, t.view, xq.data(), n, &pool);
        ASSERT_EQ(a, b) << what;
        if (qgemm::kMicro != qgemm::Micro::dot) {
            qgemm::matmul_tiled<qgemm::Micro::dot>(a.data(), ldy, s.view, xq.data(), n, &pool);
            qgemm::matmul_tiled<qgemm::Micro::dot>(b.data(), ldy, t.view, xq.data(), n, &pool);
            ASSERT_EQ(a, b) << what << ", dot micro-kernel";
        }
    };
    gemm_interleaving_cases(dtype, 101, same);
}

// The SMMLA micro-kernel (ARM with I8MM) against the dot-product one it replaces, on the same quantized
// activations, at rows and token counts around its 2×2 tiles and the 2×4 register tile.
TEST_P(QuantKernels, MmlaGemmMatchesTheDotKernel) {
#if ELASTILM_QGEMM_MMLA
    const DType dtype = GetParam();
    ThreadPool pool(2);
    for (int rows : {1, 2, 3, 5, 8})
        for (int n : {1, 2, 3, 4, 5, 6, 7, 11})
            for (int cols : {32, 96}) {
                const Stored s = make(rows, cols, rows + 1, cols + 32, dtype, std::uint64_t(rows) * 100 + n);
                const int ldx = cols + 32, ldy = rows + 3;
                const auto X = activations(n * ldx, std::uint64_t(n) * 13 + rows);
                const auto xq = quantized_tokens(X, ldx, cols, n);
                std::vector<float> mmla(std::size_t(n) * ldy, -1.0f), dot(std::size_t(n) * ldy, -1.0f);
                qgemm::matmul_tiled<qgemm::Micro::mmla>(mmla.data(), ldy, s.view, xq.data(), n, n % 2 ? &pool : nullptr);
                qgemm::matmul_tiled<qgemm::Micro::dot>(dot.data(), ldy, s.view, xq.data(), n, nullptr);
                for (int t = 0; t < n; ++t) {
                    const auto x = as_quantized(X.data() + std::size_t(t) * ldx, cols);
                    expect_rows(s, x, mmla.data() + std::size_t(t) * ldy, nullptr, nullptr, 0, "smmla");
                    for (int i = 0; i < ldy; ++i) {
                        double mag = 0;
                        for (int j = 0; i < rows && j < cols; ++j) mag += std::fabs(s.dequantized[std::size_t(i) * s.view.ld + j] * x[j]);
                        ASSERT_NEAR(mmla[std::size_t(t) * ldy + i], dot[std::size_t(t) * ldy + i], 2e-5 * mag)
                            << "smmla vs dot, token " << t << " of " << n << ", row " << i << " of " << rows << "×" << cols;
                    }
                }
            }
#else
    GTEST_SKIP() << "smmla GEMM not compiled: needs aarch64 -march with i8mm (" << qgemm::kName << ")";
#endif
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantKernels, ::testing::Values(DType::q8_0, DType::q4_0),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(QuantKernels, NamesItsArchitecture) {
    std::printf("integer dot products: %s\nprefill GEMM: %s\n", simd::qarch::kName, qgemm::kName);
#if defined(__ARM_FEATURE_MATMUL_INT8)
    EXPECT_EQ(qgemm::kMicro, qgemm::Micro::mmla) << "built with I8MM, but the GEMM tests run the dot-product kernel";
#endif
}

}  // namespace
}  // namespace elastilm
