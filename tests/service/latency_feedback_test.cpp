// LatencyFeedback: the profile's predictions corrected by measured times — converges to a steady
// slowdown, bounded against outliers, ignores what carries no information; and the Service plans with it.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/latency_feedback.hpp"
#include "elastilm/service/service.hpp"

namespace elastilm {
namespace {

// A profile: TTFT 0.01 ms per token at full width, TPOT 1 ms at full width, both proportional to width.
struct Profile {
    double ttft_ms(int percent, int tokens) const { return 0.01 * tokens * percent / 100.0; }
    double tpot_ms(int percent, int) const { return percent / 100.0; }
};

TEST(LatencyFeedback, FollowsASteadySlowdownOfEachObjectiveApart) {
    const Profile profile;
    LatencyFeedback<Profile> f(profile, 0.25);
    EXPECT_DOUBLE_EQ(f.ttft_ms(50, 200), profile.ttft_ms(50, 200));  // no request yet: the profile itself
    // The machine runs prefill 1.5x and decode 0.8x the profile's times, whatever the plan.
    for (int i = 0; i < 40; ++i) {
        const int percent = 20 + 10 * (i % 9), tokens = 64 + 16 * i;
        f.observe_ttft(f.ttft_ms(percent, tokens), 1.5 * profile.ttft_ms(percent, tokens));
        f.observe_tpot(f.tpot_ms(percent, tokens), 0.8 * profile.tpot_ms(percent, tokens));
    }
    EXPECT_NEAR(f.ttft_scale(), 1.5, 1.5e-3);
    EXPECT_NEAR(f.tpot_scale(), 0.8, 0.8e-3);
    EXPECT_NEAR(f.ttft_ms(70, 300), 1.5 * profile.ttft_ms(70, 300), 1e-3);
    EXPECT_NEAR(f.tpot_ms(30, 300), 0.8 * profile.tpot_ms(30, 300), 1e-3);
    // Back to the profile's speed: the factor returns, a quarter of the (log) way per request.
    const double before = f.ttft_scale();
    f.observe_ttft(f.ttft_ms(100, 100), profile.ttft_ms(100, 100));
    EXPECT_NEAR(std::log(f.ttft_scale()), 0.75 * std::log(before), 1e-12);
}

TEST(LatencyFeedback, OneOutlierMovesItABoundedStepAndNoiseIsIgnored) {
    const Profile profile;
    LatencyFeedback<Profile> f(profile, 0.25);
    f.observe_ttft(f.ttft_ms(100, 100), 1000 * profile.ttft_ms(100, 100));  // a page-fault storm
    EXPECT_NEAR(f.ttft_scale(), std::pow(4.0, 0.25), 1e-12);                // the ratio was clamped to 4
    for (int i = 0; i < 200; ++i) f.observe_ttft(1.0, 1e9);
    EXPECT_LE(f.ttft_scale(), 4.0);  // and so is the factor
    const double s = f.ttft_scale(), t = f.tpot_scale();
    for (double bad : {0.0, -1.0, std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
        f.observe_ttft(bad, 1.0);
        f.observe_ttft(1.0, bad);
        f.observe_tpot(1.0, bad);
    }
    EXPECT_EQ(f.ttft_scale(), s);
    EXPECT_EQ(f.tpot_scale(), t);
    EXPECT_THROW(LatencyFeedback<Profile>(profile, 0.0), Error);
    EXPECT_THROW(LatencyFeedback<Profile>(profile, 1.5), Error);
}

// The Service against a profile that promises 100x less time than a synthetic model takes here: it learns
// the machine's speed from its own requests (unless told not to), and refuses a weight outside [0, 1].
TEST(LatencyFeedback, TheServiceLearnsTheMachineFromItsRequests) {
    using Cfg = Stories260K;
    const Model<Cfg> model(synthetic_weights<Cfg>({DType::f32, 5}));
    ThreadPool pool(1);
    struct Optimistic {
        double ttft_ms(int percent, int tokens) const { return 1e-5 * tokens * percent / 100.0; }
        double tpot_ms(int percent, int) const { return 1e-5 * percent / 100.0; }
    } latency;
    auto serve = [&](double feedback) {
        ServiceOptions o;
        o.latency_feedback = feedback;
        Service<Cfg, Optimistic> service(model, nullptr, pool, latency, {}, o);
        ServiceResult last;
        for (int i = 0; i < 6; ++i) {
            ServiceRequest r;
            std::vector<int> ids;
            for (int t = 0; t < 40; ++t) ids.push_back(3 + (t * 17 + i) % (Cfg::vocab_size - 3));
            r.prompt = {PromptPart{{}, ids, false}};
            r.slo = Slo{1e6, 1e6};
            r.max_new_tokens = 4;
            last = service.submit(std::move(r)).wait();
            EXPECT_EQ(last.status, RequestStatus::done) << last.error;
        }
        return last.latency_scale;
    };
    const auto learned = serve(0.25);
    EXPECT_GT(learned.first, 1.5) << "TTFT factor after 6 requests each ~100x slower than the profile";
    EXPECT_GT(learned.second, 1.5) << "TPOT factor";
    const auto off = serve(0.0);
    EXPECT_EQ(off.first, 1.0);
    EXPECT_EQ(off.second, 1.0);
    ServiceOptions bad;
    bad.latency_feedback = -0.1;
    EXPECT_THROW((Service<Cfg, Optimistic>(model, nullptr, pool, latency, {}, bad)), Error);
}

}  // namespace
}  // namespace elastilm
