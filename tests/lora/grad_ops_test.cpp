// Every backward in lora/grad_ops.hpp against central finite differences of its forward. The finite
// differences run on small double-precision re-implementations of the forward ops (each first checked
// against the engine's fp32 op), so the step can be tiny and the tolerance tight; the analytic
// gradients are the fp32 code under test. Also: the transposed-view claim linear(transposed(W)) = Wᵀ·y.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "elastilm/lora/grad_ops.hpp"
#include "elastilm/ops/rmsnorm.hpp"
#include "elastilm/ops/swiglu.hpp"
#include "elastilm/simd/f16.hpp"

namespace elastilm {
namespace {

using Vec = std::vector<double>;

std::vector<float> random_floats(std::size_t n, std::uint64_t seed, float lo = -1, float hi = 1) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    return v;
}
Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

double dot(const Vec& a, const Vec& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

// Central differences of f at x, h = 1e-6 in double: truncation ~h², rounding ~1e-16/h.
Vec numeric_gradient(const std::function<double(const Vec&)>& f, Vec x, double h = 1e-6) {
    Vec g(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const double up = f(x);
        x[i] = x0 - h;
        const double down = f(x);
        x[i] = x0;
        g[i] = (up - down) / (2 * h);
    }
    return g;
}

// fp32 analytic against double numeric: |a − n| ≤ rel·max|n| + 1e-6 per entry.
void expect_gradient_near(const std::vector<float>& analytic, const Vec& numeric, double rel, const char* what) {
    ASSERT_EQ(analytic.size(), numeric.size()) << what;
    double scale = 0;
    for (double v : numeric) scale = std::max(scale, std::fabs(v));
    ASSERT_GT(scale, 1e-3) << what << ": the test's gradient is degenerate";
    for (std::size_t i = 0; i < numeric.size(); ++i)
        EXPECT_NEAR(analytic[i], numeric[i], rel * scale + 1e-6) << what << " entry " << i;
}

// ---- RMSNorm ---------------------------------------------------------------------------------------

Vec rmsnorm_ref(const Vec& x, const std::vector<float>& w, double eps) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double r = 1.0 / std::sqrt(ss / x.size() + eps);
    Vec y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * w[i];
    return y;
}

TEST(GradOps, RmsNormBackwardMatchesFiniteDifferences) {
    const int n = 24;
    const float eps = 1e-5f;
    const auto x = random_floats(n, 1), w = random_floats(n, 2, 0.5f, 1.5f), c = random_floats(n, 3);
    std::vector<float> y(n);
    rmsnorm(y.data(), x.data(), w.data(), n, eps);
    const Vec yr = rmsnorm_ref(to_double(x), w, eps);
    for (int i = 0; i < n; ++i) ASSERT_NEAR(y[i], yr[i], 1e-5);

    std::vector<float> dx(n, 0.25f);  // it adds: start from a known residual gradient
    rmsnorm_backward(dx.data(), c.data(), x.data(), w.data(), n, eps);
    for (float& v : dx) v -= 0.25f;
    const Vec cd = to_double(c);
    expect_gradient_near(dx, numeric_gradient([&](const Vec& xv) { return dot(cd, rmsnorm_ref(xv, w, eps)); }, to_double(x)), 1e-5,
                         "rmsnorm dx");
}

// ---- RoPE ------------------------------------------------------------------------------------------

TEST(GradOps, RopeBackwardIsTheAdjointRotation) {
    const int heads = 3, head_dim = 8, pos = 5;
    const RopeTable table(16, head_dim, 10000.0f);
    for (RopePairing pairing : {RopePairing::adjacent, RopePairing::halves}) {
        const auto x = random_floats(heads * head_dim, 4), c = random_floats(heads * head_dim, 5);
        // The forward is linear in x: loss = c·rope(x), so dx = ropeᵀ(c) exactly; finite differences of
        // the fp32 forward are exact up to rounding for a linear map.
        auto loss = [&](const Vec& xv) {
            std::vector<float> v(xv.begin(), xv.end());
            apply_rope(v.data(), heads, head_dim, pos, table, pairing);
            return dot(to_double(c), to_double(v));
        };
        std::vector<float> d = c;
        rope_backward(d.data(), heads, head_dim, pos, table, pairing);
        expect_gradient_near(d, numeric_gradient(loss, to_double(x), 1e-2), 1e-5, to_string(pairing).data());
        // And backward undoes forward (a rotation's inverse is its transpose).
        std::vector<float> v = x;
        apply_rope(v.data(), heads, head_dim, pos, table, pairing);
        rope_backward(v.data(), heads, head_dim, pos, table, pairing);
        for (std::size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], x[i], 1e-6);
    }
}

// ---- Attention -------------------------------------------------------------------------------------

struct AttentionShape {
    int n = 6, heads = 4, group = 2, head_dim = 4;
    int kv_heads() const { return heads / group; }
    int q_dim() const { return heads * head_dim; }
};

// out[t, h] = Σ_{p ≤ t} softmax(q_t,h·k_p,g / sqrt(hd)) v_p,g ; k, v head-major [g][p][e].
Vec attention_ref(const AttentionShape& s, const Vec& q, const Vec& k, const Vec& v) {
    Vec out(std::size_t(s.n) * s.q_dim(), 0.0);
    for (int t = 0; t < s.n; ++t)
        for (int h = 0; h < s.heads; ++h) {
            const int g = h / s.group;
            Vec w(t + 1);
            double mx = -1e300, sum = 0;
            for (int p = 0; p <= t; ++p) {
                double d = 0;
                for (int e = 0; e < s.head_dim; ++e) d += q[t * s.q_dim() + h * s.head_dim + e] * k[(g * s.n + p) * s.head_dim + e];
                w[p] = d / std::sqrt(double(s.head_dim));
                mx = std::max(mx, w[p]);
            }
            for (double& e : w) sum += e = std::exp(e - mx);
            for (int p = 0; p <= t; ++p)
                for (int e = 0; e < s.head_dim; ++e)
                    out[t * s.q_dim() + h * s.head_dim + e] += w[p] / sum * v[(g * s.n + p) * s.head_dim + e];
        }
    return out;
}

TEST(GradOps, CausalAttentionBackwardMatchesFiniteDifferences) {
    const AttentionShape s;
    const std::size_t nq = std::size_t(s.n) * s.q_dim(), nkv = std::size_t(s.kv_heads()) * s.n * s.head_dim;
    const auto q = random_floats(nq, 6, -1.5f, 1.5f), k = random_floats(nkv, 7, -1.5f, 1.5f), v = random_floats(nkv, 8);
    const auto c = random_floats(nq, 9);
    const KvLayerView kv{k.data(), v.data(), std::size_t(s.n) * s.head_dim};
    std::vector<float> out(nq), probs(std::size_t(s.heads) * s.n * s.n);
    for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        causal_attention(out.data(), q.data(), kv, probs.data(), s.n, s.heads, s.group, s.head_dim, &pool);
        const Vec ref = attention_ref(s, to_double(q), to_double(k), to_double(v));
        for (std::size_t i = 0; i < nq; ++i) ASSERT_NEAR(out[i], ref[i], 1e-5) << i;

        std::vector<float> dq(nq), dk(nkv), dv(nkv), dscores(probs.size());
        causal_attention_backward(dq.data(), dk.data(), dv.data(), c.data(), q.data(), kv, probs.data(), s.n, s.heads, s.group,
                                  s.head_dim, dscores.data(), &pool);
        const Vec cd = to_double(c), qd = to_double(q), kd = to_double(k), vd = to_double(v);
        expect_gradient_near(dq, numeric_gradient([&](const Vec& x) { return dot(cd, attention_ref(s, x, kd, vd)); }, qd), 1e-4, "dq");
        expect_gradient_near(dk, numeric_gradient([&](const Vec& x) { return dot(cd, attention_ref(s, qd, x, vd)); }, kd), 1e-4, "dk");
        expect_gradient_near(dv, numeric_gradient([&](const Vec& x) { return dot(cd, attention_ref(s, qd, kd, x)); }, vd), 1e-4, "dv");
    }
}

// ---- SwiGLU ----------------------------------------------------------------------------------------

TEST(GradOps, SwigluBackwardMatchesFiniteDifferences) {
    const int n = 32;
    const auto gate = random_floats(n, 10, -4, 4), up = random_floats(n, 11, -2, 2), c = random_floats(n, 12);
    auto ref = [&](const Vec& g, const Vec& u) {
        Vec h(n);
        for (int i = 0; i < n; ++i) h[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
        return h;
    };
    std::vector<float> h = gate;
    silu_mul(h.data(), up.data(), n);
    const Vec hr = ref(to_double(gate), to_double(up));
    for (int i = 0; i < n; ++i) ASSERT_NEAR(h[i], hr[i], 1e-5);

    std::vector<float> dgate(n), dup(n);
    swiglu_backward(dgate.data(), dup.data(), c.data(), gate.data(), up.data(), n);
    const Vec cd = to_double(c), gd = to_double(gate), ud = to_double(up);
    expect_gradient_near(dgate, numeric_gradient([&](const Vec& x) { return dot(cd, ref(x, ud)); }, gd), 1e-5, "dgate");
    expect_gradient_near(dup, numeric_gradient([&](const Vec& x) { return dot(cd, ref(gd, x)); }, ud), 1e-5, "dup");
}

// ---- Frozen weight matrices of either dtype and layout -----------------------------------------------

// A rows × cols matrix W (with ld = its full extent + padding, as a prefix view sees it) in the given
// dtype and layout, and its values as double.
struct TestMatrix {
    std::vector<float> f32;
    std::vector<f16_bits> f16;
    MatrixView view;
    std::vector<double> w;  // row-major rows × cols, the values the view holds

    TestMatrix(int rows, int cols, DType dtype, Layout layout, std::uint64_t seed, int pad = 3) {
        const int full_rows = rows + pad, full_cols = cols + pad;
        const auto values = random_floats(std::size_t(full_rows) * full_cols, seed, -0.5f, 0.5f);
        const std::size_t ld = layout == Layout::out_major ? full_cols : full_rows;
        if (dtype == DType::f32) f32 = values;
        else
            for (float v : values) f16.push_back(f32_to_f16(v));
        view = MatrixView{dtype == DType::f32 ? static_cast<const void*>(f32.data()) : f16.data(), dtype, layout, full_rows, full_cols, ld}
                   .prefix(rows, cols);
        w.resize(std::size_t(rows) * cols);
        for (int i = 0; i < rows; ++i)
            for (int j = 0; j < cols; ++j) {
                const std::size_t at = layout == Layout::out_major ? i * ld + j : j * ld + i;
                w[std::size_t(i) * cols + j] = dtype == DType::f32 ? f32[at] : f16_to_f32(f16[at]);
            }
    }
};

struct MatrixCase {
    DType dtype;
    Layout layout;
};
const MatrixCase kMatrixCases[] = {{DType::f32, Layout::out_major}, {DType::f32, Layout::in_major},
                                   {DType::f16, Layout::out_major}, {DType::f16, Layout::in_major}};

TEST(GradOps, TransposedViewComputesTheTransposeWithLinear) {
    const int rows = 37, cols = 53;  // not multiples of any SIMD width or GEMM tile
    for (const MatrixCase mc : kMatrixCases)
        for (int n : {1, 2, 7, 20})  // matvec, matvec pairs, GEMM with a token tail
            for (int threads : {1, 2}) {
                SCOPED_TRACE(std::string(to_string(mc.dtype)) + (mc.layout == Layout::out_major ? " out_major" : " in_major") +
                             " n=" + std::to_string(n) + " threads=" + std::to_string(threads));
                const TestMatrix W(rows, cols, mc.dtype, mc.layout, 13);
                const MatrixView T = transposed(W.view);
                ASSERT_EQ(T.rows, cols);
                ASSERT_EQ(T.cols, rows);
                const auto y = random_floats(std::size_t(n) * rows, 14);
                std::vector<float> x(std::size_t(n) * cols);
                ThreadPool pool(threads);
                linear(x.data(), cols, T, y.data(), rows, n, pool);
                for (int t = 0; t < n; ++t)
                    for (int j = 0; j < cols; ++j) {
                        double ref = 0;
                        for (int i = 0; i < rows; ++i) ref += W.w[std::size_t(i) * cols + j] * y[std::size_t(t) * rows + i];
                        ASSERT_NEAR(x[std::size_t(t) * cols + j], ref, 1e-4) << "t " << t << " j " << j;
                    }
                // Transposing twice gives the original view back.
                const MatrixView back = transposed(T);
                EXPECT_EQ(back.layout, W.view.layout);
                EXPECT_EQ(back.rows, rows);
                EXPECT_EQ(back.cols, cols);
            }
}

// ---- Linear layer with a LoRA pair -------------------------------------------------------------------

TEST(GradOps, LoraLinearBackwardMatchesFiniteDifferences) {
    const int rows = 19, cols = 23, rank = 3, n = 5;
    const float scale = 0.7f;
    for (const MatrixCase mc : kMatrixCases) {
        SCOPED_TRACE(std::string(to_string(mc.dtype)) + (mc.layout == Layout::out_major ? " out_major" : " in_major"));
        const TestMatrix W(rows, cols, mc.dtype, mc.layout, 15);
        LoraPair pair{rank, rows, cols, random_floats(std::size_t(rank) * cols, 16), random_floats(std::size_t(rows) * rank, 17)};
        const int ldx = cols + 2, ldy = rows + 1;  // strided activations
        const auto X = random_floats(std::size_t(n) * ldx, 18), C = random_floats(std::size_t(n) * ldy, 19);

        // Y[t] = W·X[t] + s·B·A·X[t], in double, from flat (X, A, B).
        auto ref = [&](const Vec& x, const Vec& a, const Vec& b) {
            Vec y(std::size_t(n) * ldy, 0.0);
            for (int t = 0; t < n; ++t) {
                Vec u(rank, 0.0);
                for (int k = 0; k < rank; ++k)
                    for (int j = 0; j < cols; ++j) u[k] += a[std::size_t(k) * cols + j] * x[std::size_t(t) * ldx + j];
                for (int i = 0; i < rows; ++i) {
                    double acc = 0;
                    for (int j = 0; j < cols; ++j) acc += W.w[std::size_t(i) * cols + j] * x[std::size_t(t) * ldx + j];
                    for (int k = 0; k < rank; ++k) acc += scale * b[std::size_t(i) * rank + k] * u[k];
                    y[std::size_t(t) * ldy + i] = acc;
                }
            }
            return y;
        };
        // The padding columns of Y are not outputs: the loss ignores them.
        Vec cd = to_double(C);
        for (int t = 0; t < n; ++t) cd[std::size_t(t) * ldy + rows] = 0;
        const Vec xd = to_double(X), ad = to_double(pair.a), bd = to_double(pair.b);

        for (int threads : {1, 2}) {
            ThreadPool pool(threads);
            std::vector<float> Y(std::size_t(n) * ldy, 0.0f), U(std::size_t(n) * rank);
            lora_linear(Y.data(), ldy, W.view, pair, scale, X.data(), ldx, U.data(), n, pool);
            const Vec yr = ref(xd, ad, bd);
            for (int t = 0; t < n; ++t)
                for (int i = 0; i < rows; ++i) ASSERT_NEAR(Y[std::size_t(t) * ldy + i], yr[std::size_t(t) * ldy + i], 1e-4);

            std::vector<float> dY(C);
            for (int t = 0; t < n; ++t) dY[std::size_t(t) * ldy + rows] = 0;
            LoraPair grad{rank, rows, cols, std::vector<float>(pair.a.size(), 1.0f), std::vector<float>(pair.b.size(), -1.0f)};
            std::vector<float> dX(std::size_t(n) * ldx, 0.0f), dU(std::size_t(n) * rank);
            lora_linear_backward(dX.data(), ldx, grad, W.view, pair, scale, X.data(), ldx, U.data(), dY.data(), ldy, dU.data(), n, pool);
            // dA, dB accumulate: take off the starting values.
            for (float& v : grad.a) v -= 1.0f;
            for (float& v : grad.b) v += 1.0f;
            expect_gradient_near(grad.a, numeric_gradient([&](const Vec& a) { return dot(cd, ref(xd, a, bd)); }, ad), 1e-4, "dA");
            expect_gradient_near(grad.b, numeric_gradient([&](const Vec& b) { return dot(cd, ref(xd, ad, b)); }, bd), 1e-4, "dB");
            Vec ndx = numeric_gradient([&](const Vec& x) { return dot(cd, ref(x, ad, bd)); }, xd);
            std::vector<float> dx_used;
            Vec ndx_used;
            for (int t = 0; t < n; ++t)
                for (int j = 0; j < cols; ++j) {
                    dx_used.push_back(dX[std::size_t(t) * ldx + j]);
                    ndx_used.push_back(ndx[std::size_t(t) * ldx + j]);
                }
            expect_gradient_near(dx_used, ndx_used, 1e-4, "dX");

            // No input gradient requested: dA, dB are the same, nothing else is touched.
            LoraPair grad2{rank, rows, cols, std::vector<float>(pair.a.size(), 0.0f), std::vector<float>(pair.b.size(), 0.0f)};
            lora_linear_backward(nullptr, ldx, grad2, W.view, pair, scale, X.data(), ldx, U.data(), dY.data(), ldy, dU.data(), n, pool);
            for (std::size_t i = 0; i < grad.a.size(); ++i) EXPECT_NEAR(grad2.a[i], grad.a[i], 1e-5);
            for (std::size_t i = 0; i < grad.b.size(); ++i) EXPECT_NEAR(grad2.b[i], grad.b[i], 1e-5);
        }
    }
}

TEST(GradOps, EmptyPairIsThePlainLinearLayer) {
    const int rows = 9, cols = 11, n = 4;
    const TestMatrix W(rows, cols, DType::f32, Layout::out_major, 20);
    const auto X = random_floats(std::size_t(n) * cols, 21);
    ThreadPool pool(1);
    std::vector<float> Y(std::size_t(n) * rows), plain(Y.size());
    LoraPair none;
    lora_linear(Y.data(), rows, W.view, none, 2.0f, X.data(), cols, nullptr, n, pool);
    linear(plain.data(), rows, W.view, X.data(), cols, n, pool);
    EXPECT_EQ(Y, plain);
}

// ---- Distillation loss -----------------------------------------------------------------------------

double kl_ref(const Vec& s, const Vec& t) {
    auto lse = [](const Vec& z) {
        double mx = -1e300, sum = 0;
        for (double v : z) mx = std::max(mx, v);
        for (double v : z) sum += std::exp(v - mx);
        return mx + std::log(sum);
    };
    const double ls = lse(s), lt = lse(t);
    double kl = 0;
    for (std::size_t i = 0; i < s.size(); ++i) kl += std::exp(t[i] - lt) * ((t[i] - lt) - (s[i] - ls));
    return kl;
}

TEST(GradOps, DistillKlMatchesReferenceAndFiniteDifferences) {
    const int vocab = 45;  // not a multiple of the SIMD width: the scalar tail runs too
    const auto s = random_floats(vocab, 22, -4, 4), t = random_floats(vocab, 23, -4, 4);
    const float grad_scale = 0.25f;
    std::vector<float> d(vocab);
    const double kl = distill_kl(d.data(), s.data(), t.data(), vocab, grad_scale);
    EXPECT_NEAR(kl, kl_ref(to_double(s), to_double(t)), 1e-5);
    EXPECT_GT(kl, 0.1);
    const Vec td = to_double(t);
    Vec numeric = numeric_gradient([&](const Vec& z) { return kl_ref(z, td); }, to_double(s));
    for (double& v : numeric) v *= grad_scale;
    expect_gradient_near(d, numeric, 1e-5, "dlogits");

    // In place (dstudent = student) gives the same gradient.
    std::vector<float> z = s;
    EXPECT_NEAR(distill_kl(z.data(), z.data(), t.data(), vocab, grad_scale), kl, 1e-9);
    for (int i = 0; i < vocab; ++i) EXPECT_FLOAT_EQ(z[i], d[i]);

    // Equal distributions (even shifted logits): zero loss, zero gradient.
    std::vector<float> shifted = t;
    for (float& v : shifted) v += 3.0f;
    EXPECT_NEAR(distill_kl(d.data(), shifted.data(), t.data(), vocab, 1.0f), 0.0, 1e-6);
    for (float v : d) EXPECT_NEAR(v, 0.0f, 1e-6);

    // A vocabulary-sized row (the vectorised sums flush to double along the way).
    const int big = 32000 + 3;
    const auto s2 = random_floats(big, 24, -8, 8), t2 = random_floats(big, 25, -8, 8);
    std::vector<float> d2(big);
    const double kl2 = distill_kl(d2.data(), s2.data(), t2.data(), big, 1.0f);
    EXPECT_NEAR(kl2, kl_ref(to_double(s2), to_double(t2)), 1e-5 * kl2);
    double sum = 0;
    for (float v : d2) sum += v;
    EXPECT_NEAR(sum, 0.0, 1e-5);  // both distributions sum to one
}

}  // namespace
}  // namespace elastilm
