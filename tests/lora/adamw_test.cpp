// AdamW over a LoRA adapter: the update matches a hand computation of the paper's equations, it
// minimises a quadratic, and a checkpoint resumes the exact same trajectory.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "elastilm/lora/adamw.hpp"

namespace elastilm {
namespace {

namespace fs = std::filesystem;

fs::path temp_path(const std::string& name) {
    return fs::temp_directory_path() / ("elastilm_adamw_" + std::to_string(::getpid()) + "_" + name);
}

// Visits every parameter tensor of `x` together with the same tensor of the others.
template <class F, class... A>
void each_tensor(F&& f, A&... x) {
    auto& first = std::get<0>(std::tie(x...));
    for (std::size_t l = 0; l < first.layers.size(); ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            f(x.layers[l].pairs[m].a...);
            f(x.layers[l].pairs[m].b...);
        }
}

LoraAdapter small_adapter(std::uint64_t seed = 3) {
    LoraAdapter ad = make_lora<Stories260K>(100, {}, 2, 4.0f, seed);
    std::mt19937 rng{std::uint32_t(seed)};
    std::normal_distribution<float> n(0.0f, 0.1f);
    for (auto& l : ad.layers)
        for (auto& p : l.pairs)
            for (float& v : p.b) v = n(rng);
    ad.layers[4].pairs[lora_slot::down] = LoraPair{};  // a frozen (absent) matrix
    return ad;
}

LoraAdapter zeros_like(const LoraAdapter& x) {
    LoraAdapter z = x;
    each_tensor([](std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); }, z);
    return z;
}

// A gradient that depends on the parameters and the step: loss Σ ½(p − t)² + c·sin(...) terms.
LoraAdapter gradient(const LoraAdapter& p, int step) {
    LoraAdapter g = zeros_like(p);
    std::size_t k = 0;
    each_tensor(
        [&](const std::vector<float>& x, std::vector<float>& out) {
            for (std::size_t i = 0; i < x.size(); ++i, ++k)
                out[i] = (x[i] - 0.05f * std::sin(float(k) * 0.37f)) + 0.01f * std::cos(float(k + 31 * step) * 0.11f);
        },
        p, g);
    return g;
}

bool same_bits(const LoraAdapter& x, const LoraAdapter& y) {
    bool same = x.layers.size() == y.layers.size();
    if (!same) return false;
    LoraAdapter xx = x, yy = y;
    each_tensor(
        [&](std::vector<float>& a, std::vector<float>& b) {
            same = same && a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
        },
        xx, yy);
    return same;
}

TEST(AdamW, MatchesAHandComputationOfTheEquations) {
    const AdamWOptions o{0.01f, 0.9f, 0.99f, 1e-6f, 0.1f};
    LoraAdapter p = small_adapter();
    AdamW opt(p, o);
    // The same recurrences in double, element by element.
    std::vector<double> hp, hm, hv;
    each_tensor([&](const std::vector<float>& x) { hp.insert(hp.end(), x.begin(), x.end()); }, p);
    hm.assign(hp.size(), 0.0);
    hv.assign(hp.size(), 0.0);
    for (int t = 1; t <= 5; ++t) {
        const LoraAdapter g = gradient(p, t);
        std::vector<double> hg;
        each_tensor([&](const std::vector<float>& x) { hg.insert(hg.end(), x.begin(), x.end()); }, g);
        const LoraAdapter before = p;
        opt.step(p, g);
        std::vector<double> got, prev;
        each_tensor([&](const std::vector<float>& x) { got.insert(got.end(), x.begin(), x.end()); }, p);
        each_tensor([&](const std::vector<float>& x) { prev.insert(prev.end(), x.begin(), x.end()); }, before);
        double worst = 0;
        for (std::size_t i = 0; i < hp.size(); ++i) {
            const double x = prev[i];  // follow the float trajectory so errors do not compound
            hm[i] = o.beta1 * hm[i] + (1 - o.beta1) * hg[i];
            hv[i] = o.beta2 * hv[i] + (1 - o.beta2) * hg[i] * hg[i];
            const double mhat = hm[i] / (1 - std::pow(double(o.beta1), t)), vhat = hv[i] / (1 - std::pow(double(o.beta2), t));
            const double want = x - o.lr * o.weight_decay * x - o.lr * mhat / (std::sqrt(vhat) + o.eps);
            worst = std::max(worst, std::abs(want - got[i]) / (1e-3 + std::abs(want - x)));
        }
        EXPECT_LT(worst, 1e-3) << "step " << t;  // relative to the size of the update
        EXPECT_EQ(opt.steps(), std::uint64_t(t));
        if (t == 1) {
            // Bias correction makes the first step lr·sign(g) (plus decay) whatever |g| is.
            for (std::size_t i = 0; i < hp.size(); i += 97) {
                if (std::abs(hg[i]) <= 1e-3) continue;
                EXPECT_NEAR(got[i] - prev[i] * (1 - o.lr * o.weight_decay), -o.lr * (hg[i] > 0 ? 1 : -1), 1e-4) << i;
            }
        }
    }
    EXPECT_TRUE(p.layers[4].pairs[lora_slot::down].empty());
}

TEST(AdamW, MinimisesAQuadratic) {
    LoraAdapter p = small_adapter(11);
    LoraAdapter target = small_adapter(12);
    target.layers[4].pairs[lora_slot::down] = LoraPair{};
    auto loss = [&] {
        double s = 0;
        LoraAdapter pp = p, tt = target;
        each_tensor(
            [&](std::vector<float>& x, std::vector<float>& t) {
                for (std::size_t i = 0; i < x.size(); ++i) s += 0.5 * double(x[i] - t[i]) * double(x[i] - t[i]);
            },
            pp, tt);
        return s;
    };
    AdamW opt(p, {0.02f, 0.9f, 0.999f, 1e-8f, 0.0f});
    const double start = loss();
    for (int t = 0; t < 400; ++t) {
        LoraAdapter g = zeros_like(p);
        LoraAdapter tt = target;
        each_tensor(
            [](const std::vector<float>& x, const std::vector<float>& tv, std::vector<float>& out) {
                for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] - tv[i];
            },
            p, tt, g);
        opt.step(p, g);
    }
    EXPECT_GT(start, 1.0);
    EXPECT_LT(loss(), start * 1e-3) << "start " << start;
}

TEST(AdamW, CheckpointResumesTheIdenticalTrajectory) {
    const AdamWOptions o{0.005f, 0.9f, 0.999f, 1e-8f, 0.01f};
    const auto id = lora_identity<Stories260K>({});
    LoraAdapter straight = small_adapter();
    AdamW straight_opt(straight, o);
    for (int t = 1; t <= 10; ++t) straight_opt.step(straight, gradient(straight, t));

    LoraAdapter first = small_adapter();
    AdamW first_opt(first, o);
    for (int t = 1; t <= 4; ++t) first_opt.step(first, gradient(first, t));
    const auto path = temp_path("ckpt.gguf");
    save_checkpoint(first, first_opt, path, id);
    EXPECT_TRUE(fs::exists(temp_path("ckpt.adamw.gguf")));
    auto [resumed, resumed_opt] = load_checkpoint<Stories260K>(path, {}, 100);
    EXPECT_EQ(resumed_opt.steps(), 4u);
    EXPECT_EQ(resumed_opt.options().lr, o.lr);
    EXPECT_EQ(resumed_opt.options().weight_decay, o.weight_decay);
    EXPECT_TRUE(same_bits(resumed, first));
    EXPECT_TRUE(same_bits(resumed_opt.first_moment(), first_opt.first_moment()));
    EXPECT_TRUE(same_bits(resumed_opt.second_moment(), first_opt.second_moment()));
    for (int t = 5; t <= 10; ++t) resumed_opt.step(resumed, gradient(resumed, t));
    EXPECT_TRUE(same_bits(resumed, straight));
    EXPECT_TRUE(same_bits(resumed_opt.second_moment(), straight_opt.second_moment()));
    EXPECT_EQ(resumed_opt.steps(), 10u);

    // The test can fail: resuming with fresh optimizer state leaves the trajectory.
    LoraAdapter fresh = load_adapter_gguf<Stories260K>(path, {});
    AdamW fresh_opt(fresh, o);
    for (int t = 5; t <= 10; ++t) fresh_opt.step(fresh, gradient(fresh, t));
    EXPECT_FALSE(same_bits(fresh, straight));

    // The state of another adapter (another rank) is refused, naming the tensor.
    const LoraAdapter other = make_lora<Stories260K>(100, {}, 3, 4.0f);
    try {
        load_adamw(adamw_state_path(path), other);
        ADD_FAILURE() << "loaded state for a rank-3 adapter";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight.lora_a.adam_m has rank 2, the adapter declares rank 3"), std::string::npos)
            << e.what();
    }
    // A pair from different steps (a run killed between the two writes) is refused, naming both steps.
    const auto state = adamw_state_path(path);
    save_adamw(resumed_opt, state);
    try {
        load_checkpoint<Stories260K>(path, {});
        ADD_FAILURE() << "resumed from a step-4 adapter with step-10 optimizer state";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("is at step 4 but its optimizer state " + state.filename().string() + " is at step 10"), std::string::npos)
            << e.what();
    }
    save_adamw(first_opt, state);
    EXPECT_NO_THROW(load_checkpoint<Stories260K>(path, {}));
    // An adapter written outside training has no step: not a checkpoint.
    write_adapter_gguf(first, path, id);
    EXPECT_THROW(load_checkpoint<Stories260K>(path, {}), Error);
    save_checkpoint(first, first_opt, path, id);

    // A truncated state file is an Error.
    const auto size = fs::file_size(state);
    for (auto cut : {size / 3, size - 5}) {
        fs::resize_file(state, cut);
        EXPECT_THROW(load_checkpoint<Stories260K>(path, {}), Error) << cut;
    }
    fs::remove(path);
    fs::remove(state);
}

TEST(AdamW, BadGradientsAreRefusedAndLeaveEverythingUntouched) {
    LoraAdapter p = small_adapter();
    AdamW opt(p);
    LoraAdapter g = gradient(p, 1);
    g.layers[3].pairs[lora_slot::v].b[2] = std::numeric_limits<float>::quiet_NaN();
    const LoraAdapter before = p;
    try {
        opt.step(p, g);
        ADD_FAILURE() << "NaN gradient accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("gradient of blk.3.attn_v.weight.lora_b is not finite"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(same_bits(p, before));
    EXPECT_EQ(opt.steps(), 0u);
    LoraAdapter wrong = gradient(p, 1);
    wrong.layers[2].pairs[lora_slot::q] = LoraPair{};
    EXPECT_THROW(opt.step(p, wrong), Error);
    EXPECT_EQ(opt.steps(), 0u);
}

}  // namespace
}  // namespace elastilm
