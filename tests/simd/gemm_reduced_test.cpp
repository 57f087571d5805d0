// The reduced-precision prefill GEMM (gemm_bf16.hpp on AVX-512 BF16, gemm_f16.hpp on NEON FP16) against
// a double-precision reference, F16 weights of both layouts, odd sizes, prefix views, 1 and 2 threads.
//
// Error bounds, per output, relative to s = Σ|w·x| (the scale of its rounding error):
//  bf16: x and w are each rounded to 8 significant bits (relative error ≤ 2⁻⁹ each), products and sums
//        are fp32, so |y − ŷ| ≤ (2·2⁻⁹ + 2⁻¹⁸ + fp32 sums)·s < 2⁻⁷·s.
//  fp16: x rounded to 11 bits (2⁻¹¹), w exact, runs of RUN = 16 products summed in fp16 (≤ 16·2⁻¹¹ each)
//        then in fp32: |y − ŷ| < 2⁻⁶·s.
// The worst case is loose; the RMS of the relative errors over all outputs is also bounded (typical
// rounding, an order of magnitude below the bound), and must be non-zero: the reduced path really ran.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "elastilm/simd/matmul.hpp"

namespace elastilm {
namespace {

#if defined(ELASTILM_GEMM_BF16)
constexpr double kWorst = 1.0 / 128, kRms = 2e-3;
#else
constexpr double kWorst = 1.0 / 64, kRms = 2e-3;
#endif

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

class ReducedGemm : public ::testing::TestWithParam<std::tuple<Layout, int>> {};

TEST_P(ReducedGemm, MatchesReferenceWithinItsRounding) {
    if (reduced_gemm.empty()) GTEST_SKIP() << "this build has no reduced-precision GEMM (-march without AVX-512 BF16 / FP16 arithmetic)";
    ScopedGemmPrecision reduced(GemmPrecision::reduced);  // tests run with fp32 by default (tests/fp32_gemm_by_default.cpp)
    const auto [layout, threads] = GetParam();
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
                    double want = 0, scale = 0;
                    for (int j = 0; j < cols; ++j) {
                        want += at(s, i, j) * X[std::size_t(t) * ldx + j];
                        scale += std::fabs(at(s, i, j) * X[std::size_t(t) * ldx + j]);
                    }
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
    EXPECT_LT(rms, kRms) << reduced_gemm;
    EXPECT_GT(rms, 1e-6) << "as exact as fp32: the reduced path did not run";
}

// GemmPrecision::fp32 selects the fp32 GEMM: fp32 rounding only (the bound of kernels_test).
TEST_P(ReducedGemm, Fp32SettingGivesFp32Accuracy) {
    const auto [layout, threads] = GetParam();
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
            double want = 0, scale = 0;
            for (int j = 0; j < cols; ++j) { want += at(s, i, j) * X[t * cols + j]; scale += std::fabs(at(s, i, j) * X[t * cols + j]); }
            ASSERT_NEAR(Y[t * rows + i], want, 1e-5 * scale + 1e-6);
        }
}

// Activations far outside fp16's comfortable range (fp16 sums would overflow): still the right answer
// (NEON falls back to fp32; bf16 has fp32's range).
TEST_P(ReducedGemm, LargeActivationsStayFinite) {
    ScopedGemmPrecision reduced(GemmPrecision::reduced);
    const auto [layout, threads] = GetParam();
    ThreadPool pool(threads);
    const int n = 9, rows = 40, cols = 200;
    const Stored s = make(rows, cols, rows, cols, layout, 11);
    std::vector<float> X(std::size_t(n) * cols), Y(std::size_t(n) * rows);
    std::mt19937 rng(4);
    for (auto& v : X) v = std::uniform_real_distribution<float>(-3e5f, 3e5f)(rng);
    matmul(Y.data(), rows, s.view, X.data(), cols, n, &pool);
    for (int t = 0; t < n; ++t)
        for (int i = 0; i < rows; ++i) {
            double want = 0, scale = 0;
            for (int j = 0; j < cols; ++j) { want += at(s, i, j) * X[t * cols + j]; scale += std::fabs(at(s, i, j) * X[t * cols + j]); }
            ASSERT_NEAR(Y[t * rows + i], want, kWorst * scale) << t << " " << i;
        }
}

INSTANTIATE_TEST_SUITE_P(All, ReducedGemm, ::testing::Combine(::testing::Values(Layout::out_major, Layout::in_major), ::testing::Values(1, 2)),
                         [](const auto& info) {
                             return std::string(std::get<0>(info.param) == Layout::out_major ? "out_major_" : "in_major_") +
                                    std::to_string(std::get<1>(info.param)) + "threads";
                         });

}  // namespace
}  // namespace elastilm
