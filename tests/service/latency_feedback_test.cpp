// LatencyFeedback: the profile's predictions corrected by measured times — converges to a steady
// slowdown of each part, and to one that differs by width; bounded against outliers, ignores what carries no information; keeps
// margins as wide as the errors it leaves; and the Service plans with it.
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

TEST(LatencyFeedback, FollowsASteadySlowdownOfEachPartApart) {
    const Profile profile;
    LatencyFeedback<Profile> f(profile, 0.25);
    EXPECT_DOUBLE_EQ(f.ttft_ms(50, 200), profile.ttft_ms(50, 200));  // no request yet: the profile itself
    EXPECT_DOUBLE_EQ(f.tlm_ms(20.0), 20.0);
    // The machine runs prefill 1.5x, decode 0.8x and the TLM 1.25x their profiles' times, whatever the plan.
    for (int i = 0; i < 90; ++i) {  // ten requests at each ratio: within 0.5 % of the truth
        const int percent = 20 + 10 * (i % 9), tokens = 64 + 4 * i;
        f.observe_ttft(percent, f.ttft_ms(percent, tokens), 1.5 * profile.ttft_ms(percent, tokens));
        f.observe_tpot(percent, f.tpot_ms(percent, tokens), 0.8 * profile.tpot_ms(percent, tokens));
        f.observe_tlm(f.tlm_ms(10.0 + i), 1.25 * (10.0 + i));
    }
    for (int percent : kRatios) {
        EXPECT_NEAR(f.ttft_ms(percent, 300), 1.5 * profile.ttft_ms(percent, 300), 5e-3 * 1.5 * profile.ttft_ms(percent, 300)) << percent;
        EXPECT_NEAR(f.tpot_ms(percent, 300), 0.8 * profile.tpot_ms(percent, 300), 5e-3 * 0.8 * profile.tpot_ms(percent, 300)) << percent;
    }
    EXPECT_NEAR(f.tlm_ms(20.0), 25.0, 5e-3 * 25.0);
    EXPECT_NEAR(f.scale(70, 30).prefill, 1.5, 5e-3 * 1.5);
    EXPECT_NEAR(f.scale(70, 30).decode, 0.8, 5e-3 * 0.8);
    EXPECT_NEAR(f.scale(70, 30).tlm, 1.25, 5e-3 * 1.25);
    // Back to the profile's speed at one ratio: the machine-wide and that ratio's term each move a quarter
    // of the (log) error, so its factor moves half the way; another ratio's moves a quarter.
    const double at100 = f.scale(100, 100).prefill, at50 = f.scale(50, 50).prefill;
    f.observe_ttft(100, f.ttft_ms(100, 100), profile.ttft_ms(100, 100));
    EXPECT_NEAR(std::log(f.scale(100, 100).prefill), 0.5 * std::log(at100), 1e-12);
    EXPECT_NEAR(std::log(f.scale(50, 50).prefill), std::log(at50) - 0.25 * std::log(at100), 1e-12);
}

// Errors that differ by width (the full-width decode slower than profiled, the narrow ones faster): one
// machine-wide factor would leave both wrong; the per-ratio terms learn each.
TEST(LatencyFeedback, LearnsAnErrorThatDependsOnTheWidth) {
    const Profile profile;
    LatencyFeedback<Profile> f(profile, 0.25);
    auto truth = [&](int percent) { return (percent == 100 ? 1.05 : 0.75) * profile.tpot_ms(percent, 0); };
    for (int i = 0; i < 60; ++i) {
        const int percent = i % 3 == 0 ? 100 : 20;
        f.observe_tpot(percent, f.tpot_ms(percent, 0), truth(percent));
    }
    EXPECT_NEAR(f.tpot_ms(100, 0), truth(100), 0.01 * truth(100));
    EXPECT_NEAR(f.tpot_ms(20, 0), truth(20), 0.01 * truth(20));
    // A width never run takes the machine-wide term: between the two.
    EXPECT_GT(f.tpot_ms(60, 0), 0.75 * profile.tpot_ms(60, 0));
    EXPECT_LT(f.tpot_ms(60, 0), 1.05 * profile.tpot_ms(60, 0));
}

TEST(LatencyFeedback, OneOutlierMovesItABoundedStepAndNoiseIsIgnored) {
    const Profile profile;
    LatencyFeedback<Profile> f(profile, 0.25);
    f.observe_ttft(100, f.ttft_ms(100, 100), 1000 * profile.ttft_ms(100, 100));  // a page-fault storm
    EXPECT_NEAR(f.scale(100, 100).prefill, std::pow(4.0, 0.5), 1e-12);           // the ratio was clamped to 4
    EXPECT_NEAR(f.scale(50, 100).prefill, std::pow(4.0, 0.25), 1e-12);           // the machine-wide term alone
    for (int i = 0; i < 200; ++i) f.observe_ttft(100, 1.0, 1e9);
    EXPECT_NEAR(f.scale(100, 100).prefill, 16.0, 1e-9);  // each term is bounded by 4
    EXPECT_NEAR(f.scale(50, 100).prefill, 4.0, 1e-9);
    const LatencyScale before = f.scale(100, 100);
    for (double bad : {0.0, -1.0, std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
        f.observe_ttft(100, bad, 1.0);
        f.observe_ttft(100, 1.0, bad);
        f.observe_tpot(100, 1.0, bad);
        f.observe_tlm(bad, 1.0);
    }
    EXPECT_EQ(f.scale(100, 100).prefill, before.prefill);
    EXPECT_EQ(f.scale(100, 100).decode, before.decode);
    EXPECT_EQ(f.scale(100, 100).tlm, before.tlm);
    EXPECT_THROW(LatencyFeedback<Profile>(profile, 0.0), Error);
    EXPECT_THROW(LatencyFeedback<Profile>(profile, 1.5), Error);
}

// The margin follows the spread of the errors the correction leaves: the prior's before any request,
// towards 1 when predictions come true, wider when they scatter, bounded after an outlier.
TEST(LatencyFeedback, MarginFollowsTheSpreadOfTheErrorsLeft) {
    const Profile profile;
    LatencyFeedback<Profile> f(profile, 0.25);
    const double z = 1.65, prior = std::exp(z * LogCorrection::kPriorSpread);
    EXPECT_DOUBLE_EQ(f.margin(z).prefill, prior);
    EXPECT_DOUBLE_EQ(f.margin(z).decode, prior);
    EXPECT_DOUBLE_EQ(f.margin(z).tlm, prior);
    EXPECT_DOUBLE_EQ(f.margin(0).prefill, 1.0);
    // A steady slowdown (prefill 1.3x) is corrected and then predicted exactly: its margin shrinks to ~1.
    for (int i = 0; i < 80; ++i) f.observe_ttft(50, f.ttft_ms(50, 100), 1.3 * profile.ttft_ms(50, 100));
    EXPECT_LT(f.margin(z).prefill, 1.03);
    // Decode times scattered e^±0.25 around the profile: the margin covers at least that scatter.
    for (int i = 0; i < 80; ++i) f.observe_tpot(50, f.tpot_ms(50, 0), std::exp(i % 2 ? 0.25 : -0.25) * profile.tpot_ms(50, 0));
    EXPECT_GT(f.margin(z).decode, std::exp(z * 0.25));
    EXPECT_LT(f.margin(z).decode, std::exp(z * 0.5));
    EXPECT_DOUBLE_EQ(f.margin(z).tlm, prior);  // each part its own
    // One page-fault storm: the error is clamped at ln 4, so the spread stays below it...
    f.observe_ttft(50, f.ttft_ms(50, 100), 1000 * f.ttft_ms(50, 100));
    EXPECT_GT(f.margin(1).prefill, 1.3);
    EXPECT_LE(f.margin(1).prefill, 4.0);
    // ... and quiet requests bring it back down.
    for (int i = 0; i < 80; ++i) f.observe_ttft(50, f.ttft_ms(50, 100), f.ttft_ms(50, 100));
    EXPECT_LT(f.margin(z).prefill, 1.03);
    for (double bad : {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()})
        EXPECT_THROW(f.margin(bad), Error) << bad;
}

// Only overruns widen the margin: a machine faster than its profile (errors on the safe side while the
// correction catches up) narrows it below the prior's, one as much slower widens it past the prior's.
TEST(LatencyFeedback, OnlyOverrunsWidenTheMargin) {
    const Profile profile;
    const double z = 1.65, prior = std::exp(z * LogCorrection::kPriorSpread);
    LatencyFeedback<Profile> faster(profile, 0.25), slower(profile, 0.25);
    for (int i = 0; i < 4; ++i) {
        faster.observe_tpot(50, faster.tpot_ms(50, 0), 0.6 * profile.tpot_ms(50, 0));
        slower.observe_tpot(50, slower.tpot_ms(50, 0), profile.tpot_ms(50, 0) / 0.6);
    }
    EXPECT_LT(faster.tpot_ms(50, 0), 0.8 * profile.tpot_ms(50, 0)) << "the correction still learns the faster machine";
    EXPECT_LT(faster.margin(z).decode, prior);
    EXPECT_GT(slower.margin(z).decode, prior);
    EXPECT_DOUBLE_EQ(faster.margin(z).prefill, prior);
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
    ServiceResult last;
    auto serve = [&](double feedback, double confidence = ServiceOptions{}.confidence) {
        ServiceOptions o;
        o.latency_feedback = feedback;
        o.confidence = confidence;
        Service<Cfg, Optimistic> service(model, nullptr, pool, latency, {}, o);
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
    EXPECT_GT(learned.prefill, 1.5) << "prefill factor after 6 requests each ~100x slower than the profile";
    EXPECT_GT(learned.decode, 1.5) << "decode factor";
    // Errors that large (each clamped to 4x) widen the margins the next plans keep past the prior's.
    EXPECT_GT(last.latency_margin.prefill, std::exp(ServiceOptions{}.confidence * LogCorrection::kPriorSpread));
    EXPECT_GT(last.latency_margin.decode, std::exp(ServiceOptions{}.confidence * LogCorrection::kPriorSpread));
    (void)serve(0.25, 0.0);
    EXPECT_EQ(last.latency_margin.prefill, 1.0);  // confidence 0: plans to the predictions themselves
    const auto off = serve(0.0);
    EXPECT_EQ(off.prefill, 1.0);
    EXPECT_EQ(off.decode, 1.0);
    EXPECT_DOUBLE_EQ(last.latency_margin.prefill, std::exp(ServiceOptions{}.confidence * LogCorrection::kPriorSpread));  // never learnt
    ServiceOptions bad;
    bad.latency_feedback = -0.1;
    EXPECT_THROW((Service<Cfg, Optimistic>(model, nullptr, pool, latency, {}, bad)), Error);
    for (double c : {-1.0, std::numeric_limits<double>::quiet_NaN()}) {
        ServiceOptions o;
        o.confidence = c;
        EXPECT_THROW((Service<Cfg, Optimistic>(model, nullptr, pool, latency, {}, o)), Error) << c;
    }
    ServiceOptions no_room;
    no_room.headroom = 0;
    EXPECT_THROW((Service<Cfg, Optimistic>(model, nullptr, pool, latency, {}, no_room)), Error);
}

}  // namespace
}  // namespace elastilm
