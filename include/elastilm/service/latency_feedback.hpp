// The latency model corrected by what the service measures.
//
// The profile (latency_model.hpp) is taken once, on a machine whose speed then moves: other apps, the
// page cache, the clock under heat. Measured on the same day, docs-95M's prefill ran 10–30 % slower than
// its profile said, and plans the model called feasible missed their SLO. So the service keeps one
// factor per objective, measured ÷ predicted, and plans with the profile's predictions times that factor:
//
//   s ← s · (measured / predicted)^w      (an exponential moving average of log s, weight w per request)
//
// The ratio of one request is clamped to [1/4, 4] (a page-fault storm, a request cut short) and the factor
// to [1/4, 4], so one outlier moves the model by at most 4^w. Not thread-safe: the service's worker owns it.
#pragma once

#include <algorithm>
#include <cmath>

#include "elastilm/error.hpp"
#include "elastilm/service/slo.hpp"

namespace elastilm {

template <LatencyPredictor L>
class LatencyFeedback {
public:
    // `weight`: how much one request moves the factor, in (0, 1]; 0.25 follows a change within ~8 requests.
    explicit LatencyFeedback(const L& profile, double weight = 0.25) : profile_(profile), weight_(weight) {
        require(weight > 0 && weight <= 1, "LatencyFeedback", "weight must be in (0, 1], got " + std::to_string(weight));
    }

    // The profile's predictions, scaled by what the machine has been doing lately.
    double ttft_ms(int percent, int tokens) const { return ttft_scale_ * profile_.ttft_ms(percent, tokens); }
    double tpot_ms(int percent, int tokens) const { return tpot_scale_ * profile_.tpot_ms(percent, tokens); }

    // One request's outcome: what *this* predicted for the plan it ran, and what was measured for the same
    // span (planning start to first token; mean time per decoded token). Non-positive or non-finite
    // values carry no information (no token decoded, a cancelled request) and are ignored.
    void observe_ttft(double predicted_ms, double measured_ms) { update(ttft_scale_, predicted_ms, measured_ms); }
    void observe_tpot(double predicted_ms, double measured_ms) { update(tpot_scale_, predicted_ms, measured_ms); }

    double ttft_scale() const { return ttft_scale_; }
    double tpot_scale() const { return tpot_scale_; }
    const L& profile() const { return profile_; }

private:
    static constexpr double kMaxRatio = 4.0;

    void update(double& scale, double predicted_ms, double measured_ms) const {
        if (!(std::isfinite(predicted_ms) && std::isfinite(measured_ms) && predicted_ms > 0 && measured_ms > 0)) return;
        // predicted_ms came from this object, so predicted / scale is the profile's own prediction.
        const double ratio = std::clamp(scale * measured_ms / predicted_ms, 1 / kMaxRatio, kMaxRatio);
        scale = std::clamp(scale * std::pow(ratio / scale, weight_), 1 / kMaxRatio, kMaxRatio);
    }

    const L& profile_;
    double weight_;
    double ttft_scale_ = 1.0, tpot_scale_ = 1.0;
};

}  // namespace elastilm
