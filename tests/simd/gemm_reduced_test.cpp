// The reduced-precision prefill GEMMs (gemm_bf16.hpp on AVX-512 BF16; gemm_f16.hpp on NEON FP16 and on
// AVX512-FP16) against a double-precision reference and against the fp32 GEMM: F16 weights of both
// layouts, odd sizes, prefix views, every ratio's slice, 1 and 2 threads; each precision this build has
// (GemmPrecision::bf16 / fp16), the others skip. Only -march=native builds have them (cmake/test.sh).
//
// Error bounds, per output, relative to s = Σ|w·x| (the scale of its rounding error):
//  bf16: x is rounded to 8 significant bits (relative error ≤ 2⁻⁸), w is split exactly into two bf16
//        values (gemm_bf16.hpp), products are exact and sums fp32 (≤ K·2⁻²⁴ relative, K ≤ 1100 here), so
//        |y − ŷ| ≤ (2⁻⁸ + 1100·2⁻²⁴)·s. Bf16WeightsAreExact checks that nothing but x's rounding is left.
//  fp16: x rounded to 11 bits (2⁻¹¹), w exact, runs of RUN products summed in fp16 (≤ RUN·2⁻¹¹ each)
//        then in fp32: |y − ŷ| < (RUN + 2)·2⁻¹¹·s (RUN = 32 on AVX512-FP16, 16 on NEON).
// The worst case is loose; the RMS of the relative errors over all outputs is also bounded (typical
// rounding, an order of magnitude below the bound), and must be non-zero: the reduced path really ran.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <random>
#include <utility>
#include <vector>

#include "elastilm/model/variant_table.hpp"
#include "elastilm/simd/matmul.hpp"

namespace elastilm {
namespace {

constexpr double kRms = 2e-3;
#if defined(ELASTILM_GEMM_F16)
constexpr double kWorstF16 = (gemm_f16::RUN + 2) / 2048.0;
#else
constexpr double kWorstF16 = 0;  // no fp16 GEMM: its tests skip
#endif
constexpr double kWorstBf16 = 0x1p-8 + 1100 * 0x1p-24;
double worst(GemmPrecision p) { return p == GemmPrecision::bf16 ? kWorstBf16 : kWorstF16; }

struct Stored {
    std::vector<float> f32;
    std::vector<f16_bits> f16;
    MatrixView view;
};

Stored make(int rows, int cols, int rows_stored, int cols_stored, Layout layout, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    Stored s;
    s.f32.resize(std::size_t(rows_stored) * cols_stored);
    for (auto& v : s.f32) {
        s.f16.push_back(f32_to_f16(u(rng)));
        v = f16_to_f32(s.f16.back());
    }
    const std::size_t ld = layout == Layout::out_major ? cols_stored : rows_stored;
    s.view = MatrixView{s.f16.data(), DType::f16, layout, rows_stored, cols_stored, ld}.prefix(rows, cols);
    return s;
}

double at(const Stored& s, int i, int j) {
    const MatrixView& W = s.view;
    return s.f32[W.layout == Layout::out_major ? std::size_t(i) * W.ld + j : std::size_t(j) * W.ld + i];
}

// Output i for the token row x, in double: the exact value and Σ|w·x|, the scale of its rounding error.
struct Reference {
    double want = 0, scale = 0;
};
Reference reference(const Stored& s, int i, const float* x) {
    Reference r;
    for (int j = 0; j < s.view.cols; ++j) {
        const double p = at(s, i, j) * x[j];
        r.want += p;
        r.scale += std::fabs(p);
    }
    return r;
}

class ReducedGemm : public ::testing::TestWithParam<std::tuple<GemmPrecision, Layout, int>> {
protected:
    void SetUp() override {
        if (gemm_instruction(std::get<0>(GetParam())).empty())
            GTEST_SKIP() << "this build has no " << (std::get<0>(GetParam()) == GemmPrecision::bf16 ? "bf16" : "fp16")
                         << " GEMM (-march without AVX-512 BF16 / AVX512-FP16 / NEON FP16 arithmetic)";
    }
};

TEST_P(ReducedGemm, MatchesReferenceWithinItsRounding) {
    const auto [precision, layout, threads] = GetParam();
    ScopedGemmPrecision reduced(precision);  // tests run with fp32 by default (tests/fp32_gemm_by_default.cpp)
    const double kWorst = worst(precision);
    ThreadPool pool(threads);
    double sq = 0;
    long count = 0;
    for (int n : {3, 5, 12, 13, 31, 40}) {
        for (auto [rows, cols] : {std::pair{17, 65}, {65, 17}, {33, 1}, {100, 100}, {40, 1100}, {96, 513}}) {
            const Stored s = make(rows, cols, rows + 3, cols + 2, layout, n * 1000 + rows);
            const int ldx = cols + 4, ldy = rows + 6;
            std::vector<float> X(std::size_t(n) * ldx), Y(std::size_t(n) * ldy, NAN);
            std::mt19937 rng(n);
            for (auto& v : X) v = std::uniform_real_distribution<float>(-2, 2)(rng);
            matmul(Y.data(), ldy, s.view, X.data(), ldx, n, &pool);
            for (int t = 0; t < n; ++t)
                for (int i = 0; i < rows; ++i) {
                    const auto [want, scale] = reference(s, i, X.data() + std::size_t(t) * ldx);
                    const double got = Y[std::size_t(t) * ldy + i];
                    ASSERT_NEAR(got, want, kWorst * scale + 1e-6) << "n=" << n << " " << rows << "x" << cols << " t=" << t << " i=" << i;
                    sq += std::pow((got - want) / scale, 2);
                    ++count;
                }
            // Y's padding columns are never written.
            for (int t = 0; t < n; ++t)
                for (int i = rows; i < ldy; ++i) ASSERT_TRUE(std::isnan(Y[std::size_t(t) * ldy + i]));
        }
    }
    const double rms = std::sqrt(sq / double(count));
    EXPECT_LT(rms, kRms) << gemm_instruction(precision);
    EXPECT_GT(rms, 1e-6) << "as exact as fp32: the reduced path did not run";
}

// Enough rows that each thread's share of the fp16 GEMM spans several row groups (gemm_f16::kGroupBytes of
// W each) and its outputs pass through the staging buffer group by group; 37 tokens end in a short tile.
TEST_P(ReducedGemm, ManyRowGroupsMatchReference) {
    const auto [precision, layout, threads] = GetParam();
    ScopedGemmPrecision reduced(precision);
    ThreadPool pool(threads);
    const int n = 37, rows = 1500, cols = 1024;
    const Stored s = make(rows, cols, rows + 1, cols + 2, layout, 17);
    std::vector<float> X(std::size_t(n) * cols), Y(std::size_t(n) * rows);
    std::mt19937 rng(9);
    for (auto& v : X) v = std::uniform_real_distribution<float>(-2, 2)(rng);
    matmul(Y.data(), rows, s.view, X.data(), cols, n, &pool);
    for (int t = 0; t < n; ++t)
        for (int i = 0; i < rows; ++i) {
            const auto [want, scale] = reference(s, i, X.data() + std::size_t(t) * cols);
            ASSERT_NEAR(Y[std::size_t(t) * rows + i], want, worst(precision) * scale) << "t=" << t << " i=" << i;
        }
}

// Every ratio's slice of tiny-gqa-15M's shapes, against the fp32 GEMM: Wq's first heads·head_dim rows
// (dim inputs) and W_down's first `hidden` inputs, 13 tokens (MR tiles and a tail).
TEST_P(ReducedGemm, EveryRatioSliceMatchesFp32Gemm) {
    using Cfg = TinyGqa15M;
    const auto [precision, layout, threads] = GetParam();
    ThreadPool pool(threads);
    const int n = 13;
    const Stored wq = make(Cfg::n_heads * Cfg::head_dim, Cfg::dim, Cfg::n_heads * Cfg::head_dim, Cfg::dim, layout, 21);
    const Stored down = make(Cfg::dim, Cfg::hidden_dim, Cfg::dim, Cfg::hidden_dim, layout, 22);
    std::vector<float> X(std::size_t(n) * Cfg::hidden_dim);
    std::mt19937 rng(7);
    for (auto& v : X) v = std::uniform_real_distribution<float>(-2, 2)(rng);
    for (const WidthInfo& w : width_table<Cfg>)
        for (const auto& [full, W] : {std::pair{&wq, wq.view.prefix(w.heads * Cfg::head_dim, Cfg::dim)},
                                      std::pair{&down, down.view.prefix(Cfg::dim, w.hidden)}}) {
            std::vector<float> want(std::size_t(n) * W.rows), got(std::size_t(n) * W.rows);
            {
                ScopedGemmPrecision fp32(GemmPrecision::fp32);
                matmul(want.data(), W.rows, W, X.data(), Cfg::hidden_dim, n, &pool);
            }
            {
                ScopedGemmPrecision reduced(precision);
                matmul(got.data(), W.rows, W, X.data(), Cfg::hidden_dim, n, &pool);
            }
            double differ = 0;
            for (int t = 0; t < n; ++t)
                for (int i = 0; i < W.rows; ++i) {
                    double scale = 0;
                    for (int j = 0; j < W.cols; ++j)
                        scale += std::fabs(at(*full, i, j) * X[std::size_t(t) * Cfg::hidden_dim + j]);
                    const std::size_t o = std::size_t(t) * W.rows + i;
                    ASSERT_NEAR(got[o], want[o], worst(precision) * scale) << w.percent << "% " << W.rows << "x" << W.cols << " t=" << t << " i=" << i;
                    differ = std::max(differ, double(std::fabs(got[o] - want[o])));
                }
            EXPECT_GT(differ, 0) << w.percent << "%: identical to fp32, the reduced path did not run";
        }
}

// The bf16 GEMM's only rounding is x's: with activations that bf16 holds exactly, it is as accurate as
// the fp32 GEMM (the fp32 bound below), so W's split into hi + lo is exact and both parts are used —
// rounding w to bf16 as well leaves errors up to 2⁻⁸·|w·x| per product, far above this bound.
TEST_P(ReducedGemm, Bf16WeightsAreExact) {
    const auto [precision, layout, threads] = GetParam();
    if (precision != GemmPrecision::bf16) GTEST_SKIP() << "the fp16 GEMM rounds its sums";
#if !defined(ELASTILM_GEMM_BF16)
    GTEST_SKIP() << "a check of the AVX-512 BF16 GEMM (gemm_bf16.hpp), whose sums are plain fp32";
#endif
    ScopedGemmPrecision bf16(precision);
    ThreadPool pool(threads);
    for (auto [n, rows, cols] : {std::tuple{13, 70, 300}, {40, 65, 513}}) {
        const Stored s = make(rows, cols, rows, cols + 1, layout, 31 + n);
        std::vector<float> X(std::size_t(n) * cols), Y(std::size_t(n) * rows);
        std::mt19937 rng(n);
        for (auto& v : X) v = float(int(rng() % 511) - 255) / 64.0f;  // 8 significant bits at most: exact in bf16
        matmul(Y.data(), rows, s.view, X.data(), cols, n, &pool);
        for (int t = 0; t < n; ++t)
            for (int i = 0; i < rows; ++i) {
                const auto [want, scale] = reference(s, i, X.data() + std::size_t(t) * cols);
                ASSERT_NEAR(Y[std::size_t(t) * rows + i], want, 1e-5 * scale + 1e-6) << n << "x" << rows << "x" << cols << " t=" << t << " i=" << i;
            }
    }
}

// GemmWeights::may_round: the bf16 GEMM rounds each weight once, to the nearest bf16 (one dot per pair),
// so with x exact in bf16 it computes Σ bf16(w)·x to fp32 accuracy — and not Σ w·x; the fp16 GEMM holds
// F16 weights exactly and gives the same outputs either way.
TEST_P(ReducedGemm, MayRoundRoundsWeightsOnceToTheNearestBf16) {
    const auto [precision, layout, threads] = GetParam();
#if !defined(ELASTILM_GEMM_BF16)
    if (precision == GemmPrecision::bf16) GTEST_SKIP() << "a check of the AVX-512 BF16 GEMM (gemm_bf16.hpp)";
#endif
    ScopedGemmPrecision reduced(precision);
    ThreadPool pool(threads);
    auto bf16_nearest = [](double w) {  // round to nearest even, 8 significant bits (w is an F16 value: no NaN)
        const std::uint32_t b = std::bit_cast<std::uint32_t>(float(w));
        return double(std::bit_cast<float>((b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u));
    };
    for (auto [n, rows, cols] : {std::tuple{13, 70, 300}, {40, 65, 513}}) {
        const Stored s = make(rows, cols, rows, cols + 1, layout, 77 + n);
        std::vector<float> X(std::size_t(n) * cols), Y(std::size_t(n) * rows), Y_exact(Y.size());
        std::mt19937 rng(n);
        for (auto& v : X) v = float(int(rng() % 511) - 255) / 64.0f;  // exact in bf16
        matmul(Y.data(), rows, s.view, X.data(), cols, n, &pool, GemmWeights::may_round);
        matmul(Y_exact.data(), rows, s.view, X.data(), cols, n, &pool, GemmWeights::exact);
        if (precision == GemmPrecision::fp16) {
            EXPECT_EQ(Y, Y_exact);
            continue;
        }
        double far_from_exact = 0;
        for (int t = 0; t < n; ++t)
            for (int i = 0; i < rows; ++i) {
                const float* x = X.data() + std::size_t(t) * cols;
                double rounded = 0, scale = 0;
                for (int j = 0; j < cols; ++j) {
                    rounded += bf16_nearest(at(s, i, j)) * x[j];
                    scale += std::fabs(at(s, i, j) * x[j]);
                }
                const double got = Y[std::size_t(t) * rows + i];
                ASSERT_NEAR(got, rounded, 1e-5 * scale + 1e-6) << n << "x" << rows << "x" << cols << " t=" << t << " i=" << i;
                far_from_exact = std::max(far_from_exact, std::fabs(got - reference(s, i, x).want) / scale);
            }
        EXPECT_GT(far_from_exact, 1e-4) << "W was not rounded";
    }
}

// GemmPrecision::reduced on an x86 bf16 build (Zen 4, Zen 5): W that must stay exact goes through the fp32
// GEMM (the very same outputs), W that may round through the one-dot bf16 GEMM (the very same outputs as
// GemmPrecision::bf16 gives it). Elsewhere `reduced` is one GEMM for both, checked above.
TEST(ReducedGemmSetting, ReducedRunsExactWeightsInFp32WhereTheReducedGemmIsBf16) {
    if (!reduced_keeps_exact_weights_fp32) GTEST_SKIP() << "this build's reduced GEMM is not x86 bf16 (" << (reduced_gemm.empty() ? "none" : reduced_gemm) << ")";
    ThreadPool pool(2);
    const int n = 13, rows = 70, cols = 300;
    const Stored s = make(rows, cols, rows, cols, Layout::out_major, 9);
    std::vector<float> X(std::size_t(n) * cols);
    std::mt19937 rng(4);
    for (auto& v : X) v = std::uniform_real_distribution<float>(-2, 2)(rng);
    auto run = [&](GemmPrecision p, GemmWeights w) {
        ScopedGemmPrecision scoped(p);
        std::vector<float> Y(std::size_t(n) * rows);
        matmul(Y.data(), rows, s.view, X.data(), cols, n, &pool, w);
        return Y;
    };
    const auto fp32 = run(GemmPrecision::fp32, GemmWeights::exact);
    EXPECT_EQ(run(GemmPrecision::reduced, GemmWeights::exact), fp32);
    const auto rounded = run(GemmPrecision::reduced, GemmWeights::may_round);
    EXPECT_EQ(rounded, run(GemmPrecision::bf16, GemmWeights::may_round));
    EXPECT_NE(rounded, fp32);
}

// GemmPrecision::fp32 selects the fp32 GEMM: fp32 rounding only (the bound of kernels_test).
void fp32_setting_gives_fp32_accuracy(Layout layout, int threads) {
    ThreadPool pool(threads);
    ScopedGemmPrecision fp32(GemmPrecision::fp32);
    const int n = 13, rows = 70, cols = 300;
    const Stored s = make(rows, cols, rows, cols, layout, 5);
    std::vector<float> X(std::size_t(n) * cols), Y(std::size_t(n) * rows);
    std::mt19937 rng(3);
    for (auto& v : X) v = std::uniform_real_distribution<float>(-2, 2)(rng);
    matmul(Y.data(), rows, s.view, X.data(), cols, n, &pool);
    for (int t = 0; t < n; ++t)
        for (int i = 0; i < rows; ++i) {
            const auto [want, scale] = reference(s, i, X.data() + std::size_t(t) * cols);
            ASSERT_NEAR(Y[t * rows + i], want, 1e-5 * scale + 1e-6);
        }
}

// Runs in every build, whatever reduced GEMMs it has.
TEST(ReducedGemmSetting, Fp32SettingGivesFp32Accuracy) {
    for (Layout layout : {Layout::out_major, Layout::in_major})
        for (int threads : {1, 2}) {
            SCOPED_TRACE(std::to_string(threads) + (layout == Layout::out_major ? " threads, out_major" : " threads, in_major"));
            fp32_setting_gives_fp32_accuracy(layout, threads);
        }
}

// Activations far outside fp16's comfortable range (fp16 sums would overflow): still the right answer
// (fp16 falls back to fp32; bf16 has fp32's range).
TEST_P(ReducedGemm, LargeActivationsStayFinite) {
    const auto [precision, layout, threads] = GetParam();
    ScopedGemmPrecision reduced(precision);
    const double kWorst = worst(precision);
    ThreadPool pool(threads);
    const int n = 9, rows = 40, cols = 200;
    const Stored s = make(rows, cols, rows, cols, layout, 11);
    std::vector<float> X(std::size_t(n) * cols), Y(std::size_t(n) * rows);
    std::mt19937 rng(4);
    for (auto& v : X) v = std::uniform_real_distribution<float>(-3e5f, 3e5f)(rng);
    matmul(Y.data(), rows, s.view, X.data(), cols, n, &pool);
    for (int t = 0; t < n; ++t)
        for (int i = 0; i < rows; ++i) {
            const auto [want, scale] = reference(s, i, X.data() + std::size_t(t) * cols);
            ASSERT_NEAR(Y[t * rows + i], want, kWorst * scale) << t << " " << i;
        }
}

// The fp16 fallback exactly: one activation above gemm_f16::kMaxX (an fp16 run could overflow) makes the
// whole call the fp32 GEMM's, bit for bit; at kMaxX the fp16 path still runs (its result differs).
TEST_P(ReducedGemm, Fp16FallsBackToFp32AboveMaxX) {
    const auto [precision, layout, threads] = GetParam();
    if (precision != GemmPrecision::fp16) GTEST_SKIP() << "bf16 has fp32's range: no fallback";
#if defined(ELASTILM_GEMM_F16)
    ThreadPool pool(threads);
    const int n = 7, rows = 70, cols = 300;
    const Stored s = make(rows, cols, rows, cols, layout, 13);
    for (const float big : {gemm_f16::kMaxX, std::nextafter(gemm_f16::kMaxX, INFINITY), 3e5f, float(INFINITY)}) {
        std::vector<float> X(std::size_t(n) * cols);
        std::mt19937 rng(5);
        for (auto& v : X) v = std::uniform_real_distribution<float>(-2, 2)(rng);
        X[std::size_t(n / 2) * cols + cols / 3] = -big;  // one activation of one token
        std::vector<float> want(std::size_t(n) * rows), got(std::size_t(n) * rows);
        {
            ScopedGemmPrecision fp32(GemmPrecision::fp32);
            matmul(want.data(), rows, s.view, X.data(), cols, n, &pool);
        }
        {
            ScopedGemmPrecision fp16(GemmPrecision::fp16);
            matmul(got.data(), rows, s.view, X.data(), cols, n, &pool);
        }
        bool same = true;
        for (std::size_t o = 0; o < got.size(); ++o) same = same && (got[o] == want[o] || (std::isnan(got[o]) && std::isnan(want[o])));
        if (big > gemm_f16::kMaxX) EXPECT_TRUE(same) << "|x| = " << big << " > kMaxX: the result must be the fp32 GEMM's";
        else EXPECT_FALSE(same) << "|x| = kMaxX: the fp16 path should still run";
    }
#endif
}

INSTANTIATE_TEST_SUITE_P(All, ReducedGemm,
                         ::testing::Combine(::testing::Values(GemmPrecision::bf16, GemmPrecision::fp16),
                                            ::testing::Values(Layout::out_major, Layout::in_major), ::testing::Values(1, 2)),
                         [](const auto& info) {
                             return std::string(std::get<0>(info.param) == GemmPrecision::bf16 ? "bf16_" : "fp16_") +
                                    (std::get<1>(info.param) == Layout::out_major ? "out_major_" : "in_major_") +
                                    std::to_string(std::get<2>(info.param)) + "threads";
                         });


// ---- ARM BFMMLA (simd/gemm_bf16_mmla.hpp): GemmPrecision::bf16 on AArch64 with +bf16 -------------------
// Each rounding scheme (WP, XP parts of W and X, see the header) against the double reference, called
// directly so that 1–3 tokens (which matmul() sends to matvec) reach it too. Derived bound per output,
// relative to s = Σ|w·x|, with u = 2⁻⁸ (bf16's unit roundoff, 8 significant bits):
//   operands  w̃ = w(1 + a), x̃ = x(1 + b): |a| ≤ u with one part of W, 0 with two (F16 = bf16 hi + lo
//             exactly); |b| ≤ u with one part of X, u² with two (x − x_hi − x_lo is lo's rounding);
//             the product is off by ≤ (|a| + |b| + |ab|)·|wx|, plus the dropped w_lo·x_lo ≤ u²(1 + u)|wx|
//             when both have two parts;
//   sums      BFMMLA rounds (to odd) after each of its two-product adds and each accumulation: ≤ 4
//             roundings of ≤ 2⁻²³ of a partial sum ≤ (1 + e)s per instruction, terms·⌈K/4⌉ instructions.
#if defined(ELASTILM_GEMM_BF16_MMLA)
double bfmmla_bound(int wp, int xp, int K) {
    const double u = 1.0 / 256, a = wp == 2 ? 0 : u, b = xp == 2 ? u * u : u;
    const double e = a + b + a * b + (wp == 2 && xp == 2 ? u * u * (1 + u) : 0);
    const int terms = wp + xp - 1;
    return e + terms * ((K + 3) / 4) * 4 * std::ldexp(1.0, -23) * (1 + e);
}

// Y = matmul<WP, XP>(W, X) for n tokens against the double reference; returns the RMS of |y − ŷ| / s.
template <int WP, int XP>
double bfmmla_check(const Stored& s, const std::vector<float>& X, int ldx, int n, int ldy, ThreadPool& pool, double bound_scale = 1) {
    const MatrixView& W = s.view;
    std::vector<float> Y(std::size_t(n) * ldy, NAN);
    gemm_bf16_mmla::matmul<WP, XP>(Y.data(), ldy, W, X.data(), ldx, n, &pool);
    const double bound = bound_scale * bfmmla_bound(WP, XP, W.cols);
    double sq = 0;
    for (int t = 0; t < n; ++t) {
        for (int i = 0; i < W.rows; ++i) {
            const auto [want, scale] = reference(s, i, X.data() + std::size_t(t) * ldx);
            const double got = Y[std::size_t(t) * ldy + i];
            EXPECT_NEAR(got, want, bound * scale + 1e-30) << "WP=" << WP << " XP=" << XP << " n=" << n << " " << W.rows << "x" << W.cols
                                                        << " t=" << t << " i=" << i;
            if (std::fabs(got - want) > bound * scale + 1e-30) return 1;  // one report per call is enough
            if (scale > 0) sq += std::pow((got - want) / scale, 2);
        }
        for (int i = W.rows; i < ldy; ++i) EXPECT_TRUE(std::isnan(Y[std::size_t(t) * ldy + i])) << "padding written";
    }
    return std::sqrt(sq / (double(n) * W.rows));
}

class BfmmlaGemm : public ::testing::TestWithParam<std::tuple<Layout, int>> {};

// The build names its bf16 GEMM (cmake/test.sh greps this line).
TEST(BfmmlaGemmSetting, Bf16IsBfmmla) {
    std::printf("bf16 GEMM: %s\n", std::string(gemm_instruction(GemmPrecision::bf16)).c_str());
    EXPECT_EQ(gemm_instruction(GemmPrecision::bf16), "bf16 (NEON bfmmla)");
}

// Odd sizes: rows not a multiple of the 8-row block, K not a multiple of 4, 1–3 tokens and a tile and a
// half; prefix views with padding on every side. Prints each scheme's RMS error.
TEST_P(BfmmlaGemm, EverySchemeMatchesReferenceWithinItsBound) {
    const auto [layout, threads] = GetParam();
    ThreadPool pool(threads);
    double rms[4] = {};
    int calls = 0;
    for (int n : {1, 2, 3, 5, 12}) {
        for (auto [rows, cols] : {std::pair{17, 65}, {9, 3}, {33, 1}, {40, 1101}, {96, 514}}) {
            const Stored s = make(rows, cols, rows + 3, cols + 2, layout, n * 1000 + rows);
            const int ldx = cols + 4, ldy = rows + 6;
            std::vector<float> X(std::size_t(n) * ldx);
            std::mt19937 rng(n + cols);
            for (auto& v : X) v = std::uniform_real_distribution<float>(-2, 2)(rng);
            rms[0] += bfmmla_check<1, 1>(s, X, ldx, n, ldy, pool);
            rms[1] += bfmmla_check<2, 1>(s, X, ldx, n, ldy, pool);
            rms[2] += bfmmla_check<1, 2>(s, X, ldx, n, ldy, pool);
            rms[3] += bfmmla_check<2, 2>(s, X, ldx, n, ldy, pool);
            ++calls;
        }
    }
    std::printf("mean RMS |y - ŷ| / Σ|wx|: plain %.2e, W split %.2e, X split %.2e, both %.2e\n", rms[0] / calls, rms[1] / calls,
                rms[2] / calls, rms[3] / calls);
    // Rounding really happened, and each split removes its operand's share of it (typical errors are far
    // below the worst case; measured under qemu: plain 7.6e-4, W split 4.7e-4, X split 6.2e-4, both 1e-6).
    EXPECT_GT(rms[0], 1e-4 * calls);
    EXPECT_LT(rms[1], 0.9 * rms[0]);
    EXPECT_LT(rms[2], 0.9 * rms[0]);
    EXPECT_LT(rms[3], 0.01 * rms[0]);
}

// A part that carries everything: activations that are already bf16 (x = x_hi) and F16 weights split in
// two are exact products, so WP = 2 leaves only the fp32 sums' error (a dropped or mis-rounded w_lo, up
// to 2⁻⁹|w|, fails); likewise weights with 8 significant bits and XP = 2 leave x's 2⁻¹⁶.
TEST_P(BfmmlaGemm, SplitPartsCarryTheRoundedBits) {
    const auto [layout, threads] = GetParam();
    ThreadPool pool(threads);
    const int n = 11, rows = 21, cols = 203, ldx = cols;
    const double sums = ((cols + 3) / 4) * 4 * std::ldexp(1.0, -23) * 1.01;  // per term; bound_scale below
    std::mt19937 rng(31);
    std::vector<float> Xb(std::size_t(n) * ldx), Xf(Xb.size());
    for (std::size_t o = 0; o < Xb.size(); ++o) {
        Xf[o] = std::uniform_real_distribution<float>(-2, 2)(rng);
        Xb[o] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(Xf[o]) & 0xffff0000u);  // bf16-exact
    }
    Stored w11 = make(rows, cols, rows, cols, layout, 41);  // F16: 11 significant bits
    Stored w8 = make(rows, cols, rows, cols, layout, 42);
    for (std::size_t o = 0; o < w8.f16.size(); ++o) {  // keep 7 of 10 stored mantissa bits: bf16-exact
        w8.f16[o] &= 0xfff8u;
        w8.f32[o] = f16_to_f32(w8.f16[o]);
    }
    // W split, x bf16: exact products; two terms (w_hi·x, w_lo·x) of sums.
    bfmmla_check<2, 1>(w11, Xb, ldx, n, rows, pool, 2 * sums / bfmmla_bound(2, 1, cols));
    // x split, w bf16: x off by ≤ u², two terms of sums.
    bfmmla_check<1, 2>(w8, Xf, ldx, n, rows, pool, (std::ldexp(1.0, -16) + 2 * sums) / bfmmla_bound(1, 2, cols));
    // Both split, F16 weights and fp32 x: dropped w_lo·x_lo and x's u², three terms of sums.
    bfmmla_check<2, 2>(w11, Xf, ldx, n, rows, pool, 1.0);
}

INSTANTIATE_TEST_SUITE_P(Arm, BfmmlaGemm, ::testing::Combine(::testing::Values(Layout::out_major, Layout::in_major), ::testing::Values(1, 2)),
                         [](const auto& info) {
                             return std::string(std::get<0>(info.param) == Layout::out_major ? "out_major_" : "in_major_") +
                                    std::to_string(std::get<1>(info.param)) + "threads";
                         });
#endif  // ELASTILM_GEMM_BF16_MMLA

}  // namespace
}  // namespace elastilm
