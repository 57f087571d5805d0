// The distillation step through a width-sliced model: its forward against an independent naive forward
// in double (LoRA attached, per-layer widths, anchors at full width), its gradient of every sampled A and
// B entry against central finite differences of that double loss, and the properties training relies
// on: zero loss and gradient at the teacher, descent under plain SGD, accumulation, input checks.
// Synthetic stories260K-shaped weights.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "elastilm/lora/train_step.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "model/reference_forward.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

using Cfg = Stories260K;
using Vec = std::vector<double>;

std::vector<int> some_tokens(int n, int salt = 0) {
    std::vector<int> t(n);
    for (int i = 0; i < n; ++i) t[i] = (i * 131 + 7 + salt * 59) % Cfg::vocab_size;
    return t;
}

// A fresh adapter whose B is random too, so that every A has a gradient and the student differs from
// the sliced base model.
LoraAdapter random_adapter(int percent, const std::vector<int>& anchors, int rank, std::uint64_t seed, float b_range = 0.3f) {
    LoraAdapter ad = make_lora<Cfg>(percent, anchors, rank, 2.0f * rank, seed);
    std::mt19937_64 rng(seed + 1000);
    std::uniform_real_distribution<float> u(-b_range, b_range);
    for (LoraLayer& l : ad.layers)
        for (LoraPair& p : l.pairs)
            for (float& v : p.b) v = u(rng);
    return ad;
}

// One entry of an adapter, moved by `delta` in the reference (in double).
struct Perturbation {
    int layer = -1;
    std::size_t matrix = 0;
    bool b = false;
    std::size_t index = 0;
    double delta = 0;
};

// The frozen model as dense double matrices (row-major, full size), read once.
struct DenseModel {
    struct Layer {
        Vec wq, wk, wv, wo, w_gate, w_up, w_down;
        std::vector<float> attn_norm, ffn_norm;
    };
    std::vector<Layer> layers;
    Vec embedding, lm_head;
    std::vector<float> final_norm;
    RopePairing pairing;

    explicit DenseModel(const ModelWeights& w) : pairing(w.rope_pairing) {
        auto dense = [](const MatrixView& m) {
            Vec out(std::size_t(m.rows) * m.cols);
            for (int i = 0; i < m.rows; ++i)
                for (int j = 0; j < m.cols; ++j) out[std::size_t(i) * m.cols + j] = test::weight_at(m, i, j);
            return out;
        };
        for (const LayerWeights& l : w.layers)
            layers.push_back({dense(l.wq), dense(l.wk), dense(l.wv), dense(l.wo), dense(l.w_gate), dense(l.w_up), dense(l.w_down),
                              l.attn_norm, l.ffn_norm});
        embedding = dense(w.embedding);
        lm_head = dense(w.lm_head);
        final_norm = w.final_norm;
    }
};

// Naive double forward of the adapted sub-model over all tokens: logits [n × vocab].
Vec reference_logits(const DenseModel& dm, const LoraAdapter& ad, const std::vector<int>& anchors, const std::vector<int>& tokens,
                     const Perturbation& pert = {}) {
    const int dim = Cfg::dim, hd = Cfg::head_dim, group = Cfg::n_heads / Cfg::n_kv_heads, T = int(tokens.size());
    const double scale = ad.scale();
    // y = W[:rows, :cols]·x + s·B·(A·x); W is the full row-major matrix with `full_cols` columns.
    auto proj = [&](const Vec& W, int full_cols, int rows, int cols, int l, std::size_t m, const Vec& x) {
        Vec y(rows, 0.0);
        for (int i = 0; i < rows; ++i)
            for (int j = 0; j < cols; ++j) y[i] += W[std::size_t(i) * full_cols + j] * x[j];
        const LoraPair& p = ad.layers[l].pairs[m];
        auto a = [&](int k, int j) {
            const std::size_t at = std::size_t(k) * p.cols + j;
            return double(p.a[at]) + (pert.layer == l && pert.matrix == m && !pert.b && pert.index == at ? pert.delta : 0.0);
        };
        auto b = [&](int i, int k) {
            const std::size_t at = std::size_t(i) * p.rank + k;
            return double(p.b[at]) + (pert.layer == l && pert.matrix == m && pert.b && pert.index == at ? pert.delta : 0.0);
        };
        Vec u(p.rank, 0.0);
        for (int k = 0; k < p.rank; ++k)
            for (int j = 0; j < cols; ++j) u[k] += a(k, j) * x[j];
        for (int i = 0; i < rows; ++i)
            for (int k = 0; k < p.rank; ++k) y[i] += scale * b(i, k) * u[k];
        return y;
    };
    auto rmsnorm = [&](const Vec& x, const std::vector<float>& g) {
        double ss = 0;
        for (double v : x) ss += v * v;
        const double s = 1.0 / std::sqrt(ss / x.size() + Cfg::norm_eps);
        Vec o(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) o[i] = x[i] * s * g[i];
        return o;
    };
    auto rope = [&](Vec& v, int n_heads, int pos) {
        for (int h = 0; h < n_heads; ++h)
            for (int i = 0; i < hd / 2; ++i) {
                const double f = std::pow(double(Cfg::rope_theta), -2.0 * i / hd), c = std::cos(pos * f), s = std::sin(pos * f);
                const int a = h * hd + (dm.pairing == RopePairing::adjacent ? 2 * i : i);
                const int b = h * hd + (dm.pairing == RopePairing::adjacent ? 2 * i + 1 : i + hd / 2);
                const double x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
    };

    std::vector<Vec> x(T, Vec(dim));
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < dim; ++i) x[t][i] = dm.embedding[std::size_t(tokens[t]) * dim + i];
    for (int l = 0; l < Cfg::n_layers; ++l) {
        const auto& L = dm.layers[l];
        const bool anchor = std::find(anchors.begin(), anchors.end(), l) != anchors.end();
        const LayerExtents e = layer_extents<Cfg>(ad.percent, anchor);
        const int heads = e.q_dim / hd, kv_heads = e.kv_dim / hd;
        std::vector<Vec> q(T), k(T), v(T);
        for (int t = 0; t < T; ++t) {
            const Vec xn = rmsnorm(x[t], L.attn_norm);
            q[t] = proj(L.wq, dim, e.q_dim, dim, l, lora_slot::q, xn);
            k[t] = proj(L.wk, dim, e.kv_dim, dim, l, lora_slot::k, xn);
            v[t] = proj(L.wv, dim, e.kv_dim, dim, l, lora_slot::v, xn);
            rope(q[t], heads, t);
            rope(k[t], kv_heads, t);
        }
        for (int t = 0; t < T; ++t) {
            Vec att(e.q_dim, 0.0);
            for (int h = 0; h < heads; ++h) {
                const int g = h / group;
                Vec s(t + 1);
                double mx = -1e300, sum = 0;
                for (int p = 0; p <= t; ++p) {
                    double d = 0;
                    for (int i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[p][g * hd + i];
                    s[p] = d / std::sqrt(double(hd));
                    mx = std::max(mx, s[p]);
                }
                for (double& w : s) sum += w = std::exp(w - mx);
                for (int p = 0; p <= t; ++p)
                    for (int i = 0; i < hd; ++i) att[h * hd + i] += s[p] / sum * v[p][g * hd + i];
            }
            const Vec o = proj(L.wo, Shape<Cfg>::q_dim, dim, e.q_dim, l, lora_slot::o, att);
            for (int i = 0; i < dim; ++i) x[t][i] += o[i];
            const Vec xn = rmsnorm(x[t], L.ffn_norm);
            Vec gt = proj(L.w_gate, dim, e.hidden, dim, l, lora_slot::gate, xn);
            const Vec up = proj(L.w_up, dim, e.hidden, dim, l, lora_slot::up, xn);
            for (int i = 0; i < e.hidden; ++i) gt[i] = gt[i] / (1.0 + std::exp(-gt[i])) * up[i];
            const Vec d = proj(L.w_down, Shape<Cfg>::hidden_dim, dim, e.hidden, l, lora_slot::down, gt);
            for (int i = 0; i < dim; ++i) x[t][i] += d[i];
        }
    }
    Vec logits(std::size_t(T) * Cfg::vocab_size, 0.0);
    for (int t = 0; t < T; ++t) {
        const Vec xn = rmsnorm(x[t], dm.final_norm);
        for (int o = 0; o < Cfg::vocab_size; ++o)
            for (int i = 0; i < dim; ++i) logits[std::size_t(t) * Cfg::vocab_size + o] += dm.lm_head[std::size_t(o) * dim + i] * xn[i];
    }
    return logits;
}

// Mean over tokens of KL(softmax(teacher) ‖ softmax(student)), in double.
double reference_loss(const Vec& student, const std::vector<float>& teacher, int n) {
    const int V = Cfg::vocab_size;
    double total = 0;
    for (int t = 0; t < n; ++t) {
        const double* s = student.data() + std::size_t(t) * V;
        const float* z = teacher.data() + std::size_t(t) * V;
        double ms = -1e300, mt = -1e300, ss = 0, st = 0;
        for (int i = 0; i < V; ++i) ms = std::max(ms, s[i]), mt = std::max(mt, double(z[i]));
        for (int i = 0; i < V; ++i) ss += std::exp(s[i] - ms), st += std::exp(z[i] - mt);
        const double ls = ms + std::log(ss), lt = mt + std::log(st);
        for (int i = 0; i < V; ++i) total += std::exp(z[i] - lt) * ((z[i] - lt) - (s[i] - ls));
    }
    return total / n;
}

std::vector<float> teacher_logits(const Model<Cfg>& m, ThreadPool& pool, const std::vector<int>& tokens) {
    Session<Cfg> s(m, pool, int(tokens.size()), int(tokens.size()), DType::f32);  // as the trainer: fp32 K/V
    return s.append_all_logits(tokens, 100);
}

struct GradCase {
    int percent;
    DType dtype;
    Layout layout;
};

void PrintTo(const GradCase& c, std::ostream* os) {
    *os << c.percent << "% " << to_string(c.dtype) << (c.layout == Layout::out_major ? " out_major" : " in_major");
}

class DistillGradient : public ::testing::TestWithParam<GradCase> {};

TEST_P(DistillGradient, MatchesFiniteDifferencesOfTheDoubleLoss) {
    const GradCase c = GetParam();
    const std::vector<int> anchors = {1};
    Model<Cfg> m(synthetic_weights<Cfg>({c.dtype, 5, c.layout}), anchors);
    ThreadPool pool(2);
    const int n = test::emulated() ? 4 : 7;
    const auto tokens = some_tokens(n);
    const auto teacher = teacher_logits(m, pool, tokens);
    const LoraAdapter ad = random_adapter(c.percent, anchors, 4, 11);
    const DenseModel dm(m.weights());

    // The fp32 training forward equals the double reference.
    DistillStep<Cfg> step(m, 16);
    const auto logits = step.forward(ad, tokens, pool);
    const Vec ref = reference_logits(dm, ad, anchors, tokens);
    double max_ref = 0, max_err = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(ref[i]));
        max_err = std::max(max_err, std::fabs(double(logits[i]) - ref[i]));
    }
    EXPECT_LT(max_err, (c.dtype == DType::f16 ? 1e-4 : 1e-5) * std::max(1.0, max_ref)) << "forward logits";

    LoraAdapter grad = lora_zeros_like(ad);
    const double loss = step.step(ad, tokens, teacher, grad, pool);
    const double ref_loss = reference_loss(ref, teacher, n);
    EXPECT_NEAR(loss, ref_loss, 1e-5 * std::max(1.0, ref_loss));
    EXPECT_GT(loss, 1e-3) << "the student should differ from the teacher";

    // Sampled entries per pair: the largest |gradient| of A and of B, and one random entry of each.
    const std::vector<int> layers = test::emulated() ? std::vector<int>{0, 1} : std::vector<int>{0, 1, 2, Cfg::n_layers - 1};
    std::mt19937_64 rng(c.percent);
    const double h = 1e-4;
    int checked = 0;
    for (int l : layers)
        for (std::size_t mi = 0; mi < kLayerMatrixCount; ++mi) {
            if (test::emulated() && mi % 3 != 0) continue;
            const LoraPair& g = grad.layers[l].pairs[mi];
            for (bool is_b : {false, true}) {
                const std::vector<float>& gv = is_b ? g.b : g.a;
                std::size_t largest = 0;
                for (std::size_t i = 0; i < gv.size(); ++i)
                    if (std::fabs(gv[i]) > std::fabs(gv[largest])) largest = i;
                const double pair_scale = std::fabs(gv[largest]);
                ASSERT_GT(pair_scale, 1e-7) << LoraAdapter::tensor_name(l, mi) << (is_b ? " B" : " A") << " has no gradient";
                for (std::size_t index : {largest, std::size_t(rng() % gv.size())}) {
                    Perturbation p{l, mi, is_b, index, h};
                    const double up = reference_loss(reference_logits(dm, ad, anchors, tokens, p), teacher, n);
                    p.delta = -h;
                    const double down = reference_loss(reference_logits(dm, ad, anchors, tokens, p), teacher, n);
                    const double numeric = (up - down) / (2 * h);
                    EXPECT_NEAR(gv[index], numeric, 2e-3 * std::fabs(numeric) + 2e-3 * pair_scale + 1e-7)
                        << LoraAdapter::tensor_name(l, mi) << (is_b ? " lora_b[" : " lora_a[") << index << "] at " << c.percent << "%";
                    ++checked;
                }
            }
        }
    EXPECT_GT(checked, 8);
}

INSTANTIATE_TEST_SUITE_P(Ratios, DistillGradient,
                         ::testing::Values(GradCase{20, DType::f32, Layout::out_major}, GradCase{50, DType::f32, Layout::out_major},
                                           GradCase{100, DType::f32, Layout::out_major}, GradCase{50, DType::f16, Layout::in_major}),
                         [](const auto& info) {
                             return std::to_string(info.param.percent) + "pct_" + std::string(to_string(info.param.dtype)) +
                                    (info.param.layout == Layout::out_major ? "_out_major" : "_in_major");
                         });

// The training forward is the engine's forward: Session logits with the adapter attached
// (Model::set_adapter) equal DistillStep's, at several widths, with an anchor layer.
TEST(DistillStep, ForwardEqualsSessionWithTheAdapterAttached) {
    const std::vector<int> anchors = {3};
    for (const SyntheticOptions& o : {SyntheticOptions{DType::f32, 13}, SyntheticOptions{DType::f16, 14, Layout::in_major}})
        for (int percent : {20, 50, 100}) {
            SCOPED_TRACE(std::to_string(percent) + "% " + std::string(to_string(o.dtype)));
            Model<Cfg> m(synthetic_weights<Cfg>(o), anchors);
            ThreadPool pool(2);
            const auto tokens = some_tokens(11, 4);
            const auto ad = std::make_shared<LoraAdapter>(random_adapter(percent, anchors, 4, 21 + percent));
            DistillStep<Cfg> step(m, 16);
            const auto trained = step.forward(*ad, tokens, pool);
            const std::vector<float> plain = [&] {  // before attaching: the sliced base model
                Session<Cfg> s(m, pool, 16, 16, DType::f32);  // the trainer keeps K/V in fp32
                return s.append_all_logits(tokens, percent);
            }();
            m.set_adapter(ad);
            Session<Cfg> s(m, pool, 16, 5, DType::f32);  // chunk 5: prefill crosses chunk boundaries
            const auto served = s.append_all_logits(tokens, percent);
            ASSERT_EQ(served.size(), trained.size());
            double largest = 0, err = 0, moved = 0;
            for (std::size_t i = 0; i < served.size(); ++i) {
                largest = std::max(largest, std::fabs(double(served[i])));
                err = std::max(err, std::fabs(double(served[i]) - trained[i]));
                moved = std::max(moved, std::fabs(double(served[i]) - plain[i]));
            }
            EXPECT_LT(err, 1e-3 * largest);
            EXPECT_GT(moved, 1e-2 * largest) << "the adapter should change the logits";
        }
}

TEST(DistillStep, ZeroLossAndGradientAtTheTeacher) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 6}), std::vector<int>{2});
    ThreadPool pool(2);
    const auto tokens = some_tokens(9, 1);
    const LoraAdapter ad = make_lora<Cfg>(100, {2}, 4, 8.0f, 3);  // B = 0: the student is the full model
    DistillStep<Cfg> step(m, 16);

    // Teacher = the student's own logits: the loss and every gradient are exactly zero.
    const auto own = step.forward(ad, tokens, pool);
    const std::vector<float> self(own.begin(), own.end());
    LoraAdapter grad = lora_zeros_like(ad);
    EXPECT_EQ(step.step(ad, tokens, self, grad, pool), 0.0);
    for (const LoraLayer& l : grad.layers)
        for (const LoraPair& p : l.pairs) {
            for (float v : p.a) ASSERT_EQ(v, 0.0f);
            for (float v : p.b) ASSERT_EQ(v, 0.0f);
        }

    // Teacher = the inference engine's full model: the same up to fp32 rounding. The engine's prefill
    // attention is tiled (another summation order than the trainer's per-query one), so logits differ by
    // ~1e-6 and the KL, summed in fp32 over log-probabilities of that size, is zero only to ~1e-8 (measured
    // 1.3e-8; exactly 0 when the engine runs the per-query attention).
    const auto teacher = teacher_logits(m, pool, tokens);
    for (std::size_t i = 0; i < self.size(); ++i) ASSERT_NEAR(self[i], teacher[i], 1e-4);
    EXPECT_LT(std::fabs(step.step(ad, tokens, teacher, grad, pool)), 1e-6);
    float largest = 0;
    for (const LoraLayer& l : grad.layers)
        for (const LoraPair& p : l.pairs) {
            for (float v : p.a) largest = std::max(largest, std::fabs(v));
            for (float v : p.b) largest = std::max(largest, std::fabs(v));
        }
    EXPECT_LT(largest, 1e-5f);
}

TEST(DistillStep, SgdLowersTheLossOnAFixedBatch) {
    const std::vector<int> anchors = {0};
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 8}), anchors);
    ThreadPool pool(2);
    const auto tokens = some_tokens(test::emulated() ? 8 : 24, 2);
    const auto teacher = teacher_logits(m, pool, tokens);
    LoraAdapter ad = make_lora<Cfg>(20, anchors, 8, 16.0f, 4);
    LoraAdapter grad = lora_zeros_like(ad);
    DistillStep<Cfg> step(m, 32);
    const float lr = 0.5f;
    std::vector<double> losses;
    for (int it = 0; it < (test::emulated() ? 4 : 12); ++it) {
        set_zero(grad);
        losses.push_back(step.step(ad, tokens, teacher, grad, pool));
        for (std::size_t l = 0; l < ad.layers.size(); ++l)
            for (std::size_t i = 0; i < kLayerMatrixCount; ++i) {
                LoraPair& p = ad.layers[l].pairs[i];
                const LoraPair& g = grad.layers[l].pairs[i];
                for (std::size_t j = 0; j < p.a.size(); ++j) p.a[j] -= lr * g.a[j];
                for (std::size_t j = 0; j < p.b.size(); ++j) p.b[j] -= lr * g.b[j];
            }
    }
    for (std::size_t i = 1; i < losses.size(); ++i) EXPECT_LT(losses[i], losses[i - 1]) << "step " << i;
    EXPECT_LT(losses.back(), 0.9 * losses.front());
}

TEST(DistillStep, GradientAccumulatesAndThreadsAgree) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f16, 9, Layout::in_major}), std::vector<int>{});
    const auto tokens = some_tokens(10, 3);
    ThreadPool one(1), two(2);
    const auto teacher = teacher_logits(m, one, tokens);
    const LoraAdapter ad = random_adapter(40, {}, 4, 12);
    DistillStep<Cfg> step(m, 10);
    LoraAdapter g1 = lora_zeros_like(ad), g2 = lora_zeros_like(ad);
    const double l1 = step.step(ad, tokens, teacher, g1, one);
    const double l2 = step.step(ad, tokens, teacher, g2, two);
    EXPECT_NEAR(l1, l2, 1e-6 * l1);
    step.step(ad, tokens, teacher, g2, two);  // now twice the gradient
    for (std::size_t l = 0; l < ad.layers.size(); ++l)
        for (std::size_t i = 0; i < kLayerMatrixCount; ++i) {
            const LoraPair &a = g1.layers[l].pairs[i], &b = g2.layers[l].pairs[i];
            float scale = 0;
            for (float v : a.a) scale = std::max(scale, std::fabs(v));
            for (std::size_t j = 0; j < a.a.size(); ++j) ASSERT_NEAR(b.a[j], 2 * a.a[j], 1e-4f * scale + 1e-9f);
            scale = 0;
            for (float v : a.b) scale = std::max(scale, std::fabs(v));
            for (std::size_t j = 0; j < a.b.size(); ++j) ASSERT_NEAR(b.b[j], 2 * a.b[j], 1e-4f * scale + 1e-9f);
        }
    // The free function gives the same step.
    LoraAdapter g3 = lora_zeros_like(ad);
    EXPECT_NEAR(distill_step(m, ad, tokens, teacher, g3, two), l1, 1e-6 * l1);
}

TEST(DistillStep, RejectsBadInput) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 10}), std::vector<int>{1});
    ThreadPool pool(1);
    DistillStep<Cfg> step(m, 8);
    const LoraAdapter ad = make_lora<Cfg>(50, {1}, 2, 4.0f);
    LoraAdapter grad = lora_zeros_like(ad);
    const auto tokens = some_tokens(4);
    const std::vector<float> teacher(4 * Cfg::vocab_size, 0.0f);
    EXPECT_NO_THROW(step.step(ad, tokens, teacher, grad, pool));
    auto throws = [&](auto&& fn, const char* expected) {
        try {
            fn();
            ADD_FAILURE() << "no error, expected one mentioning '" << expected << "'";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
        }
    };
    throws([&] { step.step(ad, some_tokens(9), std::vector<float>(9 * Cfg::vocab_size), grad, pool); }, "max_tokens");
    throws([&] { step.step(ad, std::vector<int>{1, -1, 3, 4}, teacher, grad, pool); }, "outside the vocabulary");
    throws([&] { step.step(ad, tokens, std::vector<float>(7), grad, pool); }, "teacher logits");
    throws([&] { step.step(ad, std::vector<int>{}, std::vector<float>{}, grad, pool); }, "tokens");
    LoraAdapter wrong = lora_zeros_like(make_lora<Cfg>(30, {1}, 2, 4.0f));
    throws([&] { step.step(ad, tokens, teacher, wrong, pool); }, "gradient is not shaped");
    // An adapter for other anchors (layer 1 not full width) does not fit this model.
    const LoraAdapter other = make_lora<Cfg>(50, {}, 2, 4.0f);
    LoraAdapter other_grad = lora_zeros_like(other);
    throws([&] { step.step(other, tokens, teacher, other_grad, pool); }, "anchor");
}

}  // namespace
}  // namespace elastilm
