// A width variant reads exactly the prefix of every sliced matrix it should — no byte beyond it, and
// every byte of it. Method: every weight outside the prefixes is set to NaN. A single read of one would
// turn the logits into NaN (NaN·x and 0·NaN are NaN). The logits must instead be finite and equal to
// the clean model's; and poisoning one weight inside a prefix must reach the logits.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"

namespace elastilm {
namespace {

using Cfg = Stories260K;

void set(const MatrixView& W, int i, int j, float v) {
    const std::size_t k = W.layout == Layout::out_major ? std::size_t(i) * W.ld + j : std::size_t(j) * W.ld + i;
    const_cast<float*>(static_cast<const float*>(W.data))[k] = v;
}

// Poisons W(i, j) for i >= rows or j >= cols.
void poison_outside(const MatrixView& W, int rows, int cols) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int i = 0; i < W.rows; ++i)
        for (int j = 0; j < W.cols; ++j)
            if (i >= rows || j >= cols) set(W, i, j, nan);
}

template <int Percent>
void check_variant(Layout layout, const std::vector<int>& anchors) {
    using W = Width<Cfg, Percent>;
    const std::vector<int> tokens = {1, 40, 300, 7, 99, 250};
    ThreadPool pool(2);
    const ModelWeights clean = synthetic_weights<Cfg>({DType::f32, 17, layout});
    Model<Cfg> reference(clean, anchors);
    Session<Cfg> rs(reference, pool, 16, 4);
    const auto r = rs.append(tokens, Percent);
    const std::vector<float> want(r.begin(), r.end());

    ModelWeights poisoned = synthetic_weights<Cfg>({DType::f32, 17, layout});
    for (int l = 0; l < Cfg::n_layers; ++l) {
        if (std::find(anchors.begin(), anchors.end(), l) != anchors.end()) continue;
        const LayerWeights& L = poisoned.layers[l];
        poison_outside(L.wq, W::q_dim, Cfg::dim);
        poison_outside(L.wk, W::kv_dim, Cfg::dim);
        poison_outside(L.wv, W::kv_dim, Cfg::dim);
        poison_outside(L.wo, Cfg::dim, W::q_dim);
        poison_outside(L.w_gate, W::hidden, Cfg::dim);
        poison_outside(L.w_up, W::hidden, Cfg::dim);
        poison_outside(L.w_down, Cfg::dim, W::hidden);
    }
    {
        Model<Cfg> m(poisoned, anchors);
        Session<Cfg> s(m, pool, 16, 4);
        const auto got = s.append(tokens, Percent);
        for (int i = 0; i < Cfg::vocab_size; ++i) {
            ASSERT_TRUE(std::isfinite(got[i])) << Percent << "% read outside its prefix (logit " << i << ")";
            ASSERT_EQ(got[i], want[i]) << Percent << "%";
        }
    }
    // The last element of each prefix is read: poisoning it reaches the logits.
    const int l = anchors.empty() || anchors[0] != 0 ? 0 : 1;
    const LayerWeights& L = poisoned.layers[l];
    const MatrixView* mats[] = {&L.wq, &L.wk, &L.wo, &L.w_gate, &L.w_down};
    const int rows[] = {W::q_dim - 1, W::kv_dim - 1, Cfg::dim - 1, W::hidden - 1, Cfg::dim - 1};
    const int cols[] = {Cfg::dim - 1, Cfg::dim - 1, W::q_dim - 1, Cfg::dim - 1, W::hidden - 1};
    for (int k = 0; k < 5; ++k) {
        ModelWeights one = synthetic_weights<Cfg>({DType::f32, 17, layout});
        const LayerWeights& O = one.layers[l];
        const MatrixView* target[] = {&O.wq, &O.wk, &O.wo, &O.w_gate, &O.w_down};
        set(*target[k], rows[k], cols[k], std::numeric_limits<float>::quiet_NaN());
        Model<Cfg> m(one, anchors);
        Session<Cfg> s(m, pool, 16, 4);
        const auto got = s.append(tokens, Percent);
        EXPECT_TRUE(std::isnan(got[0])) << Percent << "% did not read the last element of its prefix of matrix " << k;
        (void)mats;
    }
}

TEST(PrefixLayout, VariantsReadExactlyTheirPrefixes) {
    for (Layout layout : {Layout::out_major, Layout::in_major}) {
        check_variant<20>(layout, {});
        check_variant<50>(layout, {2});
        check_variant<70>(layout, {0, 4});
        check_variant<90>(layout, {});
    }
}

}  // namespace
}  // namespace elastilm
