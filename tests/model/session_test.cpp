// The engine's forward pass at every width against the naive reference, on synthetic weights of the
// stories260K shape (fp32 and fp16, both output layouts), plus the session's input checks and its
// rules for switching ratio between prefill and decode, with either KV-cache type.
// Comparisons with the double-precision reference use the fp32 GEMM and an fp32 cache (exact up to fp32
// rounding); the reduced-precision GEMM and the fp16 cache are bounded against those below and in
// reduced_precision_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "model/reference_forward.hpp"

namespace elastilm {
namespace {

using Cfg = Stories260K;

std::vector<int> some_tokens(int n, int salt = 0) {
    std::vector<int> t(n);
    for (int i = 0; i < n; ++i) t[i] = (i * 37 + 11 + salt * 101) % Cfg::vocab_size;
    return t;
}

double max_abs_diff(std::span<const float> a, const std::vector<double>& b) {
    double m = 0;
    for (std::size_t i = 0; i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
    return m;
}

struct Case {
    DType dtype;
    Layout layout;
    int threads;
};

class ForwardVsReference : public ::testing::TestWithParam<Case> {};

template <int Percent>
void check_ratio(const Model<Cfg>& m, ThreadPool& pool, const std::vector<int>& anchors) {
    const auto tokens = some_tokens(13);
    ScopedGemmPrecision fp32(GemmPrecision::fp32);
    Session<Cfg> s(m, pool, 64, 5, DType::f32);  // chunk 5: prefill crosses chunk boundaries
    const auto logits = s.append(tokens, Percent);
    const auto ref = test::reference_logits<Cfg>(m.weights(), tokens, test::widths_of<Cfg, Percent>(anchors));
    EXPECT_LT(max_abs_diff(logits, ref), 1e-4) << "ratio " << Percent;
}

TEST_P(ForwardVsReference, EveryRatioMatchesNaiveSlicing) {
    const Case c = GetParam();
    const std::vector<int> anchors = {0, 3};
    Model<Cfg> m(synthetic_weights<Cfg>({c.dtype, 7, c.layout}), anchors);
    ThreadPool pool(c.threads);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (check_ratio<kRatios[I]>(m, pool, anchors), ...);
    }(std::make_index_sequence<kRatios.size()>{});
}

INSTANTIATE_TEST_SUITE_P(Layouts, ForwardVsReference,
                         ::testing::Values(Case{DType::f32, Layout::out_major, 1}, Case{DType::f16, Layout::out_major, 2},
                                           Case{DType::f32, Layout::in_major, 2}, Case{DType::f16, Layout::in_major, 1}),
                         [](const auto& info) {
                             return std::string(to_string(info.param.dtype)) +
                                    (info.param.layout == Layout::out_major ? "_out_major_" : "_in_major_") +
                                    std::to_string(info.param.threads) + "threads";
                         });

TEST(Session, PrefillEqualsTokenByTokenDecode) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 3}));
    ThreadPool pool(2);
    const auto tokens = some_tokens(20);
    Session<Cfg> batched(m, pool, 64, 8), stepwise(m, pool, 64, 8);
    const auto a = batched.append(tokens, 60);
    std::vector<float> b;
    for (int t : tokens) {
        auto l = stepwise.append(t, 60);
        b.assign(l.begin(), l.end());
    }
    for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_NEAR(a[i], b[i], 1e-4) << i;
}

TEST(Session, AllLogitsMatchLastLogits) {
    // All logits run the LM head as a GEMM, the last one as a matvec: equal when both are fp32.
    ScopedGemmPrecision fp32(GemmPrecision::fp32);
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f16, 5}));
    ThreadPool pool(1);
    const auto tokens = some_tokens(9);
    Session<Cfg> a(m, pool, 64, 4), b(m, pool, 64, 4);
    const auto all = a.append_all_logits(tokens, 40);
    const auto last = b.append(tokens, 40);
    for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_FLOAT_EQ(all[8 * Cfg::vocab_size + i], last[i]);
}

class KvType : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(Cache, KvType, ::testing::Values(DType::f32, DType::f16),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// Wider decode after a narrower prefill: the past is re-run, so the result is a fresh wide run's
// (a fresh run with the same cache type: the rule is about which K/V are used, not their rounding).
TEST_P(KvType, WiderDecodeAfterNarrowPrefillEqualsFreshRun) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 11}));
    ThreadPool pool(2);
    const auto prompt = some_tokens(10);
    Session<Cfg> switched(m, pool, 64, 16, GetParam()), fresh(m, pool, 64, 16, GetParam());
    switched.append(prompt, 30);
    EXPECT_EQ(switched.cache_percent(), 30);
    const auto a = switched.append(5, 90);
    EXPECT_EQ(switched.recomputed_tokens(), 10);
    EXPECT_EQ(switched.cache_percent(), 90);
    fresh.append(prompt, 90);
    const auto b = fresh.append(5, 90);
    for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_NEAR(a[i], b[i], 1e-4) << i;
}

// Narrower decode after a wider prefill reads a prefix of the cached heads: the past keeps the wide
// model's K/V (that is the point of caching) and only the new token runs narrow. Checked against the
// reference run the same way: past at the wide width, new token at the narrow width.
TEST_P(KvType, NarrowerDecodeReadsPrefixOfWideCache) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 13}));
    ThreadPool pool(2);
    const auto prompt = some_tokens(6);
    Session<Cfg> s(m, pool, 64, 16, GetParam());
    s.append(prompt, 100);
    const auto got = s.append(7, 20);
    EXPECT_EQ(s.recomputed_tokens(), 0);
    EXPECT_EQ(s.cache_percent(), 20);
    // Prefix reading means the narrow decode differs from a fresh narrow run but stays finite and close
    // to the wide model's view; and a fresh session doing the same steps gives the same logits.
    Session<Cfg> again(m, pool, 64, 3, GetParam());
    again.append(prompt, 100);
    const auto same = again.append(7, 20);
    for (int i = 0; i < Cfg::vocab_size; ++i) ASSERT_NEAR(got[i], same[i], 1e-4);
    Session<Cfg> narrow(m, pool, 64, 16, GetParam());
    narrow.append(prompt, 20);
    const auto fresh_narrow = narrow.append(7, 20);
    double diff = 0;
    for (int i = 0; i < Cfg::vocab_size; ++i) diff = std::max(diff, double(std::fabs(got[i] - fresh_narrow[i])));
    EXPECT_GT(diff, 1e-6) << "a narrow decode over a wide cache should see the wide model's past";
}

TEST(Session, SkippedLayersMatchTheReferenceWithoutThem) {
    ScopedGemmPrecision fp32(GemmPrecision::fp32);  // against the double reference: fp32 GEMM and cache
    const std::vector<int> anchors = {0};
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 17}), anchors);
    ThreadPool pool(2);
    const auto tokens = some_tokens(11, 4);
    Session<Cfg> s(m, pool, 64, 4, DType::f32);
    s.set_skipped_layers(0b01010);  // layers 1 and 3
    const auto l0 = s.append(tokens, 50);
    const std::vector<float> prefill(l0.begin(), l0.end());
    auto widths = test::widths_of<Cfg, 50>(anchors);
    widths[1].skip = widths[3].skip = true;
    EXPECT_LT(max_abs_diff(prefill, test::reference_logits<Cfg>(m.weights(), tokens, widths)), 1e-4);
    // Something was dropped: the full stack differs.
    EXPECT_GT(max_abs_diff(prefill, test::reference_logits<Cfg>(m.weights(), tokens, test::widths_of<Cfg, 50>(anchors))), 1e-3);
    // Token-by-token decode through the skipped layers gives the same (their K/V are never needed).
    s.reset();
    EXPECT_EQ(s.skipped_layers(), 0b01010u);
    std::span<const float> last;
    for (int t : tokens) last = s.append(t, 50);
    EXPECT_LT(max_abs_diff(last, std::vector<double>(prefill.begin(), prefill.end())), 1e-4);
    // The mask changes only on an empty session, and names real layers only.
    EXPECT_THROW(s.set_skipped_layers(0), Error);
    s.reset();
    EXPECT_THROW(s.set_skipped_layers(std::uint64_t(1) << Cfg::n_layers), Error);
    s.set_skipped_layers(0);
    const auto l1 = s.append(tokens, 50);
    const std::vector<float> full(l1.begin(), l1.end());
    EXPECT_LT(max_abs_diff(full, test::reference_logits<Cfg>(m.weights(), tokens, test::widths_of<Cfg, 50>(anchors))), 1e-4);
}

TEST(Session, TruncateThenAppendEqualsAFreshRun) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 19}));
    ThreadPool pool(1);
    const auto prompt = some_tokens(9, 1), a = some_tokens(4, 2), b = some_tokens(5, 3);
    Session<Cfg> s(m, pool, 64);
    s.append(prompt, 70);
    s.append(a, 70);
    s.truncate(int(prompt.size()));
    EXPECT_EQ(s.position(), int(prompt.size()));
    const auto l2 = s.append(b, 70);
    const std::vector<float> after(l2.begin(), l2.end());
    Session<Cfg> fresh(m, pool, 64);
    fresh.append(prompt, 70);
    const auto expect = fresh.append(b, 70);
    EXPECT_LT(max_abs_diff(after, std::vector<double>(expect.begin(), expect.end())), 1e-6);
    EXPECT_THROW(s.truncate(100), Error);
    EXPECT_THROW(s.truncate(-1), Error);
}

// The fp16 cache takes half the memory and stays close to the fp32 cache: K and V are rounded once to
// 11 significant bits (relative 2⁻¹¹ ≈ 4.9e-4), which moves the logits by a small multiple of that.
TEST(Session, Fp16CacheIsHalfTheMemoryAndCloseToFp32) {
    ScopedGemmPrecision fp32(GemmPrecision::fp32);
    for (DType weights : {DType::f32, DType::f16}) {
        Model<Cfg> m(synthetic_weights<Cfg>({weights, 17}));
        ThreadPool pool(2);
        const auto prompt = some_tokens(40, 3);
        for (int percent : {100, 50, 20}) {
            Session<Cfg> half(m, pool, 64, 16), full(m, pool, 64, 16, DType::f32);
            EXPECT_EQ(half.kv_dtype(), DType::f16) << "fp16 is the default";
            EXPECT_EQ(2 * half.kv_bytes(), full.kv_bytes());
            const auto as = half.append(prompt, percent);
            const std::vector<float> a(as.begin(), as.end());
            const auto bs = full.append(prompt, percent);
            const std::vector<float> b(bs.begin(), bs.end());
            // decode a few tokens on top: decode reads the cache too
            std::vector<float> ad, bd;
            for (int t : {5, 9, 300}) {
                const auto x = half.append(t, percent);
                ad.assign(x.begin(), x.end());
                const auto y = full.append(t, percent);
                bd.assign(y.begin(), y.end());
            }
            double diff = 0, scale = 0, diff_d = 0;
            for (int i = 0; i < Cfg::vocab_size; ++i) {
                diff = std::max(diff, double(std::fabs(a[i] - b[i])));
                diff_d = std::max(diff_d, double(std::fabs(ad[i] - bd[i])));
                scale = std::max(scale, double(std::fabs(b[i])));
            }
            EXPECT_LT(diff, 2e-3 * scale) << to_string(weights) << " " << percent << "%";
            EXPECT_LT(diff_d, 2e-3 * scale) << to_string(weights) << " " << percent << "% decode";
            EXPECT_GT(diff + diff_d, 0.0) << "the fp16 cache should round something";
        }
    }
}

TEST(Session, RejectsBadInput) {
    Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 1}));
    ThreadPool pool(1);
    Session<Cfg> s(m, pool, 16, 8);
    EXPECT_THROW(s.append(Cfg::vocab_size), Error);
    EXPECT_THROW(s.append(-1), Error);
    EXPECT_THROW(s.append(std::span<const int>{}), Error);
    EXPECT_THROW(s.append(1, 55), Error);
    try {
        s.append(some_tokens(17));
        FAIL() << "17 tokens fit a 16-token context";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("exceed the context of 16"), std::string::npos) << e.what();
    }
    EXPECT_EQ(s.position(), 0) << "a rejected append must leave the session unchanged";
    s.append(some_tokens(16));
    EXPECT_THROW(s.append(1), Error);
    EXPECT_THROW(KvCache<Cfg>(Cfg::context + 1), Error);
}

TEST(Model, RejectsAnchorsThatDoNotExist) {
    try {
        Model<Cfg> m(synthetic_weights<Cfg>({DType::f32, 1}), std::vector<int>{0, Cfg::n_layers});
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("anchor layer 5 does not exist"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace elastilm
