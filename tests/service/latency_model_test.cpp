// The latency model: the non-negative fit on synthetic timings, the JSON table, the on-disk cache
// (hit, key mismatch, corrupt file) and real profiles of synthetic models. No assertion here compares
// two timings: ctest runs tests side by side on shared cores, where one stalled sample can invert any
// ordering. The model's accuracy is measured in bench/latency_model.cpp, and that a narrower ratio is
// faster in proportion to its bytes in bench/model_speed.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/latency_model.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

namespace fs = std::filesystem;

// A fresh, empty folder under the system temp dir, removed afterwards.
struct TempDir {
    fs::path path;
    TempDir() {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        path = fs::temp_directory_path() / ("elastilm-latency-" + std::string(info->name()) + "-" + std::to_string(::getpid()));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::vector<double> quadratic(const std::vector<double>& x, double a, double b, double c, double noise = 0) {
    std::vector<double> y;
    for (std::size_t i = 0; i < x.size(); ++i)
        y.push_back((a + b * x[i] + c * x[i] * x[i]) * (1 + noise * ((i % 3) - 1.0)));  // deterministic ±noise
    return y;
}

// ---- The fit -----------------------------------------------------------------------------------------

TEST(NonnegativeFit, RecoversExactQuadraticAndLine) {
    const std::vector<double> L = {8, 14, 25, 45, 80, 143, 256};
    const auto q = fit_nonnegative_polynomial(L, quadratic(L, 2.5, 0.04, 3e-4), 2);
    ASSERT_EQ(q.size(), 3u);
    EXPECT_NEAR(q[0], 2.5, 1e-9);
    EXPECT_NEAR(q[1], 0.04, 1e-11);
    EXPECT_NEAR(q[2], 3e-4, 1e-13);
    const auto l = fit_nonnegative_polynomial(L, quadratic(L, 0.7, 0.002, 0), 1);
    ASSERT_EQ(l.size(), 2u);
    EXPECT_NEAR(l[0], 0.7, 1e-12);
    EXPECT_NEAR(l[1], 0.002, 1e-14);
}

TEST(NonnegativeFit, NoisyTimingsPredictWithinTheNoise) {
    const std::vector<double> L = {8, 14, 25, 45, 80, 143, 256, 512, 1024, 2048};
    const auto y = quadratic(L, 5.0, 0.3, 2e-5, 0.02);  // ±2% measurement noise, long contexts
    const auto q = fit_nonnegative_polynomial(L, y, 2);
    for (double x : {10.0, 100.0, 700.0, 1500.0}) {
        const double truth = 5.0 + 0.3 * x + 2e-5 * x * x;
        EXPECT_NEAR(eval_polynomial(q, x) / truth, 1.0, 0.03) << "at L = " << x;
    }
}

TEST(NonnegativeFit, ConcaveDataPinsTheQuadraticAtZeroAndStaysOptimal) {
    // Unconstrained least squares would give a negative L² term here.
    const std::vector<double> L = {8, 16, 32, 64, 128, 256};
    const auto y = quadratic(L, 1.0, 0.1, -1.5e-4);
    const auto q = fit_nonnegative_polynomial(L, y, 2);
    for (double c : q) EXPECT_GE(c, 0.0);
    EXPECT_EQ(q[2], 0.0);
    // KKT in practice: no feasible small step on any coefficient lowers the objective.
    const double best = relative_sse(q, L, y);
    for (int i = 0; i < 3; ++i)
        for (double step : {-1e-3, 1e-3}) {
            auto p = q;
            p[i] = std::max(0.0, p[i] + step * (i == 0 ? 1 : i == 1 ? 1e-2 : 1e-4));
            EXPECT_GE(relative_sse(p, L, y), best - 1e-12) << "coefficient " << i << " step " << step;
        }
}

TEST(NonnegativeFit, RejectsBadInput) {
    const std::vector<double> x = {1, 2}, y = {1, 0}, y3 = {1, 2, 3};
    EXPECT_THROW(fit_nonnegative_polynomial(x, y, 1), Error);   // y must be > 0
    EXPECT_THROW(fit_nonnegative_polynomial(x, y3, 1), Error);  // sizes differ
    EXPECT_THROW(fit_nonnegative_polynomial({}, {}, 1), Error);
    EXPECT_THROW(fit_nonnegative_polynomial(x, x, 9), Error);
}

TEST(ProfileGrid, GeometricDistinctEndsIncluded) {
    const auto g = profile_grid(8, 256, 6);
    ASSERT_EQ(g.front(), 8);
    ASSERT_EQ(g.back(), 256);
    EXPECT_EQ(g.size(), 6u);
    for (std::size_t i = 1; i < g.size(); ++i) EXPECT_GT(g[i], g[i - 1]);
    EXPECT_EQ(profile_grid(2, 4, 10), (std::vector<int>{2, 3, 4}));  // duplicates dropped
    EXPECT_THROW(profile_grid(0, 4, 3), Error);
}

// ---- The table ---------------------------------------------------------------------------------------

LatencyModel handmade_table() {
    LatencyKey key{"stories260K", "0123456789abcdef", 2, "Some CPU @ 3GHz", "avx2", "reps=3"};
    RatioLatency a{20, {1.0, 0.01, 1e-5}, {0.2, 1e-4}, {{8, 1.08}, {64, 1.68}}, {{9.5, 0.201}}};
    RatioLatency b{100, {2.0, 0.05, 4e-5}, {0.9, 3e-4}, {{8, 2.4}}, {{9.5, 0.903}, {65.5, 0.92}}};
    return LatencyModel(key, {b, a}, "/models/x.gguf");  // out of order on purpose
}

TEST(LatencyModel, PredictsFromTheCurves) {
    const LatencyModel m = handmade_table();
    EXPECT_DOUBLE_EQ(m.ttft_ms(20, 100), 1.0 + 0.01 * 100 + 1e-5 * 100 * 100);
    EXPECT_DOUBLE_EQ(m.tpot_ms(100, 200), 0.9 + 3e-4 * 200);
    EXPECT_DOUBLE_EQ(m.ttft_ms(100, 0), 2.0);
    ASSERT_EQ(m.ratios().size(), 2u);
    EXPECT_EQ(m.ratios()[0].percent, 20);  // sorted
    EXPECT_TRUE(m.has_ratio(100));
    EXPECT_FALSE(m.has_ratio(50));
}

TEST(LatencyModel, UnknownRatioAndNegativeLengthAreErrors) {
    const LatencyModel m = handmade_table();
    auto message = [](auto&& f) {
        try {
            f();
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(message([&] { m.ttft_ms(25, 10); }).find("25% has no latency profile (profiled: 20, 100)"), std::string::npos);
    EXPECT_NE(message([&] { m.tpot_ms(50, 10); }).find("50%"), std::string::npos);
    EXPECT_NE(message([&] { m.ttft_ms(20, -1); }).find("prompt length must be >= 0, got -1"), std::string::npos);
    EXPECT_NE(message([&] { m.tpot_ms(20, -5); }).find("context length must be >= 0, got -5"), std::string::npos);
    EXPECT_THROW(LatencyModel({}, {RatioLatency{25, {}, {}, {}, {}}}), Error);               // not a compiled ratio
    EXPECT_THROW(LatencyModel({}, {RatioLatency{20, {1, -1, 0}, {}, {}, {}}}), Error);       // negative coefficient
    EXPECT_THROW(LatencyModel({}, {RatioLatency{20, {}, {}, {}, {}}, RatioLatency{20, {}, {}, {}, {}}}), Error);
}

TEST(LatencyModel, JsonRoundTrip) {
    const LatencyModel m = handmade_table();
    const LatencyModel back = LatencyModel::from_json(nlohmann::json::parse(m.to_json().dump()), "test");
    EXPECT_EQ(back.key(), m.key());
    EXPECT_EQ(back.ratios(), m.ratios());
    EXPECT_EQ(back.source(), "/models/x.gguf");

    TempDir dir;
    const fs::path file = dir.path / "sub" / "t.json";
    m.save(file);
    const LatencyModel loaded = LatencyModel::load(file);
    EXPECT_EQ(loaded.key(), m.key());
    EXPECT_EQ(loaded.ratios(), m.ratios());
    EXPECT_DOUBLE_EQ(loaded.ttft_ms(20, 77), m.ttft_ms(20, 77));
}

TEST(LatencyModel, MalformedJsonNamesTheProblem) {
    nlohmann::json j = handmade_table().to_json();
    j["ratios"][0]["ttft_ms"][1] = -0.5;
    EXPECT_THROW(LatencyModel::from_json(j, "f.json"), Error);
    j = handmade_table().to_json();
    j["ratios"][1].erase("tpot_ms");
    try {
        LatencyModel::from_json(j, "f.json");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("f.json"), std::string::npos) << e.what();
    }
    j = handmade_table().to_json();
    j["format"] = "something-else/9";
    EXPECT_THROW(LatencyModel::from_json(j, "f.json"), Error);
    EXPECT_THROW(LatencyModel::from_json(nlohmann::json::array({1, 2}), "f.json"), Error);
}

// ---- Profiling and the cache ---------------------------------------------------------------------------

ProfileOptions quick_options() {
    ProfileOptions o;
    o.repetitions = 1;
    o.grid_points = 3;
    o.max_tokens = 32;
    o.decode_steps = 2;
    o.ratios = {20, 100};
    return o;
}

struct Log {
    std::vector<std::string> lines;
    LatencyLog fn() {
        return [this](const std::string& l) { lines.push_back(l); };
    }
    int count(const std::string& what) const {
        return int(std::count_if(lines.begin(), lines.end(), [&](const auto& l) { return l.find(what) != std::string::npos; }));
    }
};

TEST(LatencyCache, KeyNamesModelMachineThreadsAndOptions) {
    Model<Stories260K> a(synthetic_weights<Stories260K>({DType::f32, 1}));
    Model<Stories260K> a_again(synthetic_weights<Stories260K>({DType::f32, 1}));
    Model<Stories260K> b(synthetic_weights<Stories260K>({DType::f32, 2}));
    Model<Stories260K> a_anchored(synthetic_weights<Stories260K>({DType::f32, 1}), std::vector<int>{0});
    EXPECT_EQ(latency_fingerprint(a), latency_fingerprint(a_again));
    EXPECT_NE(latency_fingerprint(a), latency_fingerprint(b));
    EXPECT_NE(latency_fingerprint(a), latency_fingerprint(a_anchored));
    ThreadPool one(1), two(2);
    const LatencyKey k1 = latency_key(a, one, quick_options());
    EXPECT_EQ(k1.config, "stories260K");
    EXPECT_EQ(k1.threads, 1);
    EXPECT_FALSE(k1.cpu.empty());
    EXPECT_EQ(k1.simd, std::string(xsimd::default_arch::name()));
    EXPECT_NE(k1, latency_key(a, two, quick_options()));
    ProfileOptions more = quick_options();
    more.repetitions = 5;
    EXPECT_NE(k1, latency_key(a, one, more));
    // One file per model and profile options: another thread count rewrites it, other options do not.
    EXPECT_EQ(latency_cache_file("/c", k1), latency_cache_file("/c", latency_key(a, two, quick_options())));
    EXPECT_NE(latency_cache_file("/c", k1), latency_cache_file("/c", latency_key(a, one, more)));
}

TEST(LatencyCache, HitMismatchAndCorruptFile) {
    Model<Stories260K> model(synthetic_weights<Stories260K>({DType::f32, 3}));
    ThreadPool pool(1);
    const ProfileOptions o = quick_options();
    TempDir dir;
    const fs::path file = latency_cache_file(dir.path, latency_key(model, pool, o));

    Log first;
    const LatencyModel profiled = load_or_profile(model, pool, o, first.fn(), dir.path);
    EXPECT_EQ(first.count("latency: ratio"), 2) << "one progress line per ratio";
    ASSERT_TRUE(fs::exists(file));

    Log hit;
    const LatencyModel cached = load_or_profile(model, pool, o, hit.fn(), dir.path);
    EXPECT_EQ(hit.count("latency: ratio"), 0) << "a matching cache is not re-profiled";
    EXPECT_EQ(hit.count("using"), 1);
    EXPECT_EQ(cached.ratios(), profiled.ratios());

    // Key mismatch (as if written on another machine): re-profiled and rewritten with this key.
    nlohmann::json j = nlohmann::json::parse(std::ifstream(file));
    j["key"]["cpu"] = "another CPU";
    std::ofstream(file) << j.dump();
    Log mismatch;
    load_or_profile(model, pool, o, mismatch.fn(), dir.path);
    EXPECT_EQ(mismatch.count("another setup"), 1);
    EXPECT_EQ(mismatch.count("latency: ratio"), 2);
    EXPECT_EQ(LatencyModel::load(file).key(), latency_key(model, pool, o));

    // Corrupt files: a truncated one, garbage, an empty one. One warning, a new profile, a good file.
    const std::string good = nlohmann::json::parse(std::ifstream(file)).dump();
    for (const std::string& bad : {good.substr(0, good.size() / 2), std::string("\x01\x02garbage"), std::string()}) {
        std::ofstream(file, std::ios::binary | std::ios::trunc) << bad;
        Log corrupt;
        const LatencyModel m = load_or_profile(model, pool, o, corrupt.fn(), dir.path);
        EXPECT_EQ(corrupt.count("warning:"), 1) << "content: " << bad.substr(0, 20);
        EXPECT_EQ(corrupt.count("latency: ratio"), 2);
        EXPECT_TRUE(m.has_ratio(20) && m.has_ratio(100));
        EXPECT_NO_THROW(LatencyModel::load(file));
    }
    EXPECT_FALSE(load_cached_latency(dir.path / "absent.json", latency_key(model, pool, o)));
}

template <ModelConfig Cfg>
void expect_monotone_and_positive(const LatencyModel& m) {
    for (const RatioLatency& r : m.ratios()) {
        double prev_ttft = 0, prev_tpot = 0;
        for (int L = 0; L <= Cfg::context; L += 8) {
            const double t = m.ttft_ms(r.percent, L), p = m.tpot_ms(r.percent, L);
            EXPECT_GE(t, prev_ttft) << r.percent << "% at " << L;
            EXPECT_GE(p, prev_tpot) << r.percent << "% at " << L;
            prev_ttft = t, prev_tpot = p;
        }
        EXPECT_GT(m.ttft_ms(r.percent, 1), 0.0);
        EXPECT_GT(m.tpot_ms(r.percent, 1), 0.0);
        // The curves are the non-negative fit of the medians kept beside them (no timing tolerance:
        // the machine may be shared).
        std::vector<double> x, y;
        for (const LatencySample& s : r.ttft_samples) {
            EXPECT_GT(s.ms, 0.0);
            x.push_back(s.tokens), y.push_back(s.ms);
        }
        ASSERT_GE(x.size(), 2u);
        const auto ttft = fit_nonnegative_polynomial(x, y, 2);
        for (int i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(r.ttft[i], ttft[i]) << r.percent << "% coefficient " << i;
        x.clear(), y.clear();
        for (const LatencySample& s : r.tpot_samples) x.push_back(s.tokens), y.push_back(s.ms);
        ASSERT_GE(x.size(), 2u);
        const auto tpot = fit_nonnegative_polynomial(x, y, 1);
        for (int i = 0; i < 2; ++i) EXPECT_DOUBLE_EQ(r.tpot[i], tpot[i]) << r.percent << "% coefficient " << i;
    }
}

TEST(ProfileLatency, Stories260KShapeIsMonotoneInLength) {
    Model<Stories260K> model(synthetic_weights<Stories260K>({DType::f16, 5, Layout::in_major}));
    ThreadPool pool(2);
    ProfileOptions o;  // defaults but half the context and two sweeps: every ratio, a second at most
    o.max_tokens = 256;
    o.repetitions = 2;
    if (test::emulated()) o = quick_options();
    Log log;
    const LatencyModel m = profile_latency(model, pool, o, log.fn());
    EXPECT_EQ(m.ratios().size(), o.ratios.size());
    EXPECT_EQ(log.count("latency: ratio"), int(o.ratios.size()));
    EXPECT_EQ(log.count("latency: sweep"), o.repetitions);
    const auto grid = profile_grid(o.min_tokens, o.max_tokens > 0 ? o.max_tokens : Stories260K::context, o.grid_points);
    for (const RatioLatency& r : m.ratios()) {
        ASSERT_EQ(r.ttft_samples.size(), grid.size());
        for (std::size_t i = 0; i < grid.size(); ++i) EXPECT_EQ(r.ttft_samples[i].tokens, grid[i]);
        // Decode samples sit after each prompt that leaves room: at L + (steps - 1) / 2 on average.
        EXPECT_EQ(r.tpot_samples.size(), grid.size() - (grid.back() == Stories260K::context));
        EXPECT_DOUBLE_EQ(r.tpot_samples[0].tokens, grid[0] + (o.decode_steps - 1) / 2.0);
    }
    EXPECT_EQ(m.key(), latency_key(model, pool, o));
    expect_monotone_and_positive<Stories260K>(m);
}

TEST(ProfileLatency, RejectsBadOptions) {
    Model<Stories260K> model(synthetic_weights<Stories260K>({DType::f32, 1}));
    ThreadPool pool(1);
    ProfileOptions o = quick_options();
    o.ratios = {20, 25};
    EXPECT_THROW(profile_latency(model, pool, o), Error);
    o = quick_options();
    o.max_tokens = Stories260K::context + 1;
    EXPECT_THROW(profile_latency(model, pool, o), Error);
    o = quick_options();
    o.repetitions = 0;
    EXPECT_THROW(profile_latency(model, pool, o), Error);
    o = quick_options();
    o.min_tokens = o.max_tokens = 16;
    EXPECT_THROW(profile_latency(model, pool, o), Error);  // one length cannot fit a curve
}

}  // namespace
}  // namespace elastilm
