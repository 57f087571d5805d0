// matvec and matmul against a double-precision scalar reference: odd sizes, both dtypes, both layouts,
// prefix views (cols < ld, rows < stored rows), with and without threads.
// Tolerance: relative to Σ|w·x| of each output (the scale of its rounding error), 1e-5 for fp32 data.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "elastilm/simd/matmul.hpp"
#include "elastilm/simd/matvec.hpp"

namespace elastilm {
namespace {

struct Stored {
    std::vector<float> f32;
    std::vector<f16_bits> f16;
    MatrixView view;
};

// A stored rows_ld × cols_ld matrix of which the leading rows × cols block is viewed.
Stored make(int rows, int cols, int rows_stored, int cols_stored, DType dtype, Layout layout, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    Stored s;
    const std::size_t n = std::size_t(rows_stored) * cols_stored;
    s.f32.resize(n);
    for (auto& v : s.f32) v = f16_to_f32(f32_to_f16(u(rng)));  // exactly representable in both dtypes
    if (dtype == DType::f16)
        for (float v : s.f32) s.f16.push_back(f32_to_f16(v));
    const void* data = dtype == DType::f16 ? static_cast<const void*>(s.f16.data()) : s.f32.data();
    const std::size_t ld = layout == Layout::out_major ? cols_stored : rows_stored;
    s.view = MatrixView{data, dtype, layout, rows_stored, cols_stored, ld}.prefix(rows, cols);
    return s;
}

double at(const Stored& s, int i, int j) {
    const MatrixView& W = s.view;
    return s.f32[W.layout == Layout::out_major ? std::size_t(i) * W.ld + j : std::size_t(j) * W.ld + i];
}

struct Shape {
    int rows, cols;
};

class Kernels : public ::testing::TestWithParam<std::tuple<DType, Layout, int>> {};

TEST_P(Kernels, MatvecMatchesReference) {
    const auto [dtype, layout, threads] = GetParam();
    ThreadPool pool(threads);
    for (Shape sh : {Shape{1, 1}, Shape{3, 17}, Shape{17, 3}, Shape{63, 100}, Shape{100, 63}, Shape{173, 257}, Shape{300, 700}, Shape{1030, 96}}) {
        const Stored s = make(sh.rows, sh.cols, sh.rows + 5, sh.cols + 9, dtype, layout, sh.rows * 31 + sh.cols);
        std::vector<float> x(sh.cols), y(sh.rows, NAN);
        std::mt19937 rng(7);
        for (auto& v : x) v = std::uniform_real_distribution<float>(-2, 2)(rng);
        matvec(y.data(), s.view, x.data(), &pool);
        for (int i = 0; i < sh.rows; ++i) {
            double want = 0, scale = 0;
            for (int j = 0; j < sh.cols; ++j) { want += at(s, i, j) * x[j]; scale += std::fabs(at(s, i, j) * x[j]); }
            ASSERT_NEAR(y[i], want, 1e-5 * scale + 1e-6) << sh.rows << "x" << sh.cols << " row " << i;
        }
    }
}

// y = W·x + E·z in one pass (how decode reads a LoRA adapter's B): E is f16 in W's layout with a few
// columns, the threads split W's rows (out_major) or the columns of [W | E] (in_major).
TEST_P(Kernels, MatvecWithExtraColumnsMatchesReference) {
    const auto [dtype, layout, threads] = GetParam();
    ThreadPool pool(threads);
    for (Shape sh : {Shape{17, 3}, Shape{173, 257}, Shape{300, 700}, Shape{1030, 96}}) {
        for (int extra_cols : {1, 4, 8, 11}) {
            const Stored s = make(sh.rows, sh.cols, sh.rows + 5, sh.cols + 9, dtype, layout, sh.rows * 31 + sh.cols);
            const Stored e = make(sh.rows, extra_cols, sh.rows, extra_cols, DType::f16, layout, 99 + extra_cols);
            std::vector<float> x(sh.cols), z(extra_cols), y(sh.rows, NAN);
            std::mt19937 rng(extra_cols);
            for (auto& v : x) v = std::uniform_real_distribution<float>(-2, 2)(rng);
            for (auto& v : z) v = std::uniform_real_distribution<float>(-2, 2)(rng);
            const ExtraColumns extra{e.view, z.data()};
            matvec(y.data(), s.view, x.data(), &pool, &extra);
            for (int i = 0; i < sh.rows; ++i) {
                double want = 0, scale = 0;
                for (int j = 0; j < sh.cols; ++j) { want += at(s, i, j) * x[j]; scale += std::fabs(at(s, i, j) * x[j]); }
                for (int k = 0; k < extra_cols; ++k) { want += at(e, i, k) * z[k]; scale += std::fabs(at(e, i, k) * z[k]); }
                ASSERT_NEAR(y[i], want, 1e-5 * scale + 1e-6) << sh.rows << "x" << sh.cols << " + " << extra_cols << " row " << i;
            }
        }
    }
}

TEST_P(Kernels, MatmulMatchesReference) {
    const auto [dtype, layout, threads] = GetParam();
    ThreadPool pool(threads);
    ScopedGemmPrecision fp32(GemmPrecision::fp32);  // the reduced-precision GEMM: gemm_reduced_test.cpp
    for (int n : {1, 2, 3, 5, 7, 13, 33}) {
        for (Shape sh : {Shape{1, 3}, Shape{17, 65}, Shape{65, 17}, Shape{100, 100}, Shape{40, 1100}}) {
            const Stored s = make(sh.rows, sh.cols, sh.rows + 3, sh.cols + 2, dtype, layout, n * 1000 + sh.rows);
            const int ldx = sh.cols + 4, ldy = sh.rows + 6;
            std::vector<float> X(std::size_t(n) * ldx), Y(std::size_t(n) * ldy, NAN);
            std::mt19937 rng(n);
            for (auto& v : X) v = std::uniform_real_distribution<float>(-2, 2)(rng);
            matmul(Y.data(), ldy, s.view, X.data(), ldx, n, &pool);
            for (int t = 0; t < n; ++t)
                for (int i = 0; i < sh.rows; ++i) {
                    double want = 0, scale = 0;
                    for (int j = 0; j < sh.cols; ++j) {
                        want += at(s, i, j) * X[std::size_t(t) * ldx + j];
                        scale += std::fabs(at(s, i, j) * X[std::size_t(t) * ldx + j]);
                    }
                    ASSERT_NEAR(Y[std::size_t(t) * ldy + i], want, 1e-5 * scale + 1e-6)
                        << "n=" << n << " " << sh.rows << "x" << sh.cols << " t=" << t << " i=" << i;
                }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(All, Kernels,
                         ::testing::Combine(::testing::Values(DType::f32, DType::f16),
                                            ::testing::Values(Layout::out_major, Layout::in_major), ::testing::Values(1, 2)),
                         [](const auto& info) {
                             return std::string(to_string(std::get<0>(info.param))) +
                                    (std::get<1>(info.param) == Layout::out_major ? "_out_major_" : "_in_major_") +
                                    std::to_string(std::get<2>(info.param)) + "threads";
                         });

TEST(F16, WideningMatchesScalarForEveryHalf) {
    std::vector<f16_bits> all(65536 + simd::lanes);
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = f16_bits(i);
    for (std::size_t i = 0; i + simd::lanes <= 65536; i += simd::lanes) {
        alignas(64) float out[64];
        simd::load_f16(all.data() + i).store_aligned(out);
        for (int k = 0; k < simd::lanes; ++k) {
            const float want = f16_to_f32(all[i + k]);
            if (std::isnan(want)) ASSERT_TRUE(std::isnan(out[k]));
            else ASSERT_EQ(out[k], want) << i + k;
        }
    }
}

}  // namespace
}  // namespace elastilm
