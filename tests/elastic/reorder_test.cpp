// Reordering units keeps the full model's function; importance collection sees every unit.
#include <gtest/gtest.h>

#include "elastilm/elastic/importance.hpp"
#include "elastilm/elastic/reorder.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"

namespace elastilm {
namespace {

using Cfg = Stories260K;

std::vector<int> tokens(int n) {
    std::vector<int> t(n);
    for (int i = 0; i < n; ++i) t[i] = (i * 53 + 7) % Cfg::vocab_size;
    return t;
}

TEST(Reorder, FullWidthFunctionUnchanged) {
    for (DType dtype : {DType::f32, DType::f16}) {
        for (Layout layout : {Layout::out_major, Layout::in_major}) {
            const ModelWeights base = synthetic_weights<Cfg>({dtype, 21, layout});
            Model<Cfg> original(base);
            Model<Cfg> shuffled(reorder_units<Cfg>(base, UnitOrder::random<Cfg>(5)));
            ThreadPool pool(2);
            Session<Cfg> a(original, pool, 64), b(shuffled, pool, 64);
            const auto la = a.append(tokens(12));
            const auto lb = b.append(tokens(12));
            for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_NEAR(la[i], lb[i], 1e-4) << i;
            // …while a narrow sub-model does change: different units are in the prefix now.
            Session<Cfg> c(original, pool, 64), d(shuffled, pool, 64);
            const auto lc = c.append(tokens(12), 30);
            const auto ld = d.append(tokens(12), 30);
            double diff = 0;
            for (int i = 0; i < Cfg::vocab_size; ++i) diff = std::max(diff, double(std::fabs(lc[i] - ld[i])));
            EXPECT_GT(diff, 1e-3);
        }
    }
}

TEST(Reorder, RejectsOrdersThatAreNotPermutations) {
    const ModelWeights base = synthetic_weights<Cfg>({DType::f32, 1});
    UnitOrder o = UnitOrder::identity<Cfg>();
    o.neuron[2][0] = 1;  // neuron 1 twice
    EXPECT_THROW(reorder_units<Cfg>(base, o), Error);
    o = UnitOrder::identity<Cfg>();
    o.kv_group.pop_back();
    EXPECT_THROW(reorder_units<Cfg>(base, o), Error);
}

// Importance follows the units when they move: scoring the shuffled model gives the shuffled scores.
TEST(Importance, FollowsUnitsThroughAPermutation) {
    const ModelWeights base = synthetic_weights<Cfg>({DType::f32, 4});
    const UnitOrder order = UnitOrder::random<Cfg>(9);
    Model<Cfg> original(base), shuffled(reorder_units<Cfg>(base, order));
    ThreadPool pool(1);
    auto score = [&](const Model<Cfg>& m) {
        ImportanceCollector<Cfg> c(m);
        Session<Cfg> s(m, pool, 64, 16);
        s.set_observer(&c);
        s.append(tokens(40));
        return c.result();
    };
    const UnitImportance a = score(original), b = score(shuffled);
    EXPECT_EQ(a.tokens, 40);
    for (int l = 0; l < Cfg::n_layers; ++l) {
        EXPECT_NEAR(a.layer[l], b.layer[l], 1e-5);
        EXPECT_GT(a.layer[l], 0.0f);
        for (int i = 0; i < Cfg::n_kv_heads; ++i)
            EXPECT_NEAR(b.kv_group[l][i], a.kv_group[l][order.kv_group[l][i]], 1e-4 * a.kv_group[l][order.kv_group[l][i]]);
        for (int j = 0; j < Cfg::hidden_dim; ++j)
            EXPECT_NEAR(b.neuron[l][j], a.neuron[l][order.neuron[l][j]], 1e-4 * a.neuron[l][order.neuron[l][j]] + 1e-7);
    }
    const auto anchors = choose_anchors(a.layer, 2);
    ASSERT_EQ(anchors.size(), 2u);
    EXPECT_LT(anchors[0], anchors[1]);
}

}  // namespace
}  // namespace elastilm
