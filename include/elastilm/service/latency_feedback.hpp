// The latency model corrected by what the service measures.
//
// The profile (latency_model.hpp) is taken once, on a machine whose speed then moves: other apps, the
// page cache, the clock under heat. Measured on the same day, docs-95M's prefill ran 10–30 % slower than
// its profile said, and plans the model called feasible missed their SLO. So the service corrects each
// part of a request's time by what it measured, in log space (an exponential moving average, weight w
// per request):
//
//   prefill(p, n) = e^(m_prefill + r_prefill[p]) · profile.ttft(p, n)     (the TLM's time excluded)
//   decode(p, c)  = e^(m_decode  + r_decode[p])  · profile.tpot(p, c)
//   TLM(n)        = e^(m_tlm)                    · TLM's own profile(n)
//
// m is the machine-wide term, learnt from every request; r[p] the ratio's own, learnt from the requests
// that ran at ratio p: the errors differ by width (one trace: the full-width decode 3 % slower than
// profiled, the 20 % one 25 % faster, so one factor made both wrong). Each observation moves m and r[p]
// by w · log(measured / predicted): the two terms absorb a steady error within a few requests, m carries
// it to ratios not seen yet, and r[p] settles at the ratio's difference from the rest. The TLM is a
// separate model with its own profile and its own error (measured 15–40 % above its prediction, more than
// the prefill), so it has its own term. One request's ratio is clamped to [1/4, 4] (a
// page-fault storm, a request cut short) and every term to [-ln 4, ln 4].
//
// What a correction cannot remove is the noise around it: on docs-95M's traces the log errors of the
// corrected predictions had a spread (RMS) of 0.08–0.12 for the prefill and a decode step, 0.08–0.16 for the
// TLM, on a 2-core machine shared with the rest of the system. A plan predicted to land just under its
// objective then misses it about half the time. So each part also keeps the mean square of its recent log
// overruns, max(0, error)² (weight w/2 per request: a steadier estimate than the correction's, which must
// follow a change), starting from a prior spread of 0.1, and `margin(z)` gives e^(z·spread) per part, the
// spread being √(2 · that mean square): only a part that runs over its prediction can miss an objective, so
// errors on the fast side do not widen the margin (a profile slower than the machine, still being
// corrected, made the symmetric RMS grow to margins of 1.43–1.46 on decode steps that all ran at 0.63–0.67×
// their prediction), and half of a zero-mean normal's errors are overruns, so for those the spread is their
// standard deviation and z keeps its meaning. The orchestrator
// takes each part's predicted time that many times over before it compares the plan with the objective
// (z = 1.65: a part runs over its margin about one request in twenty, if its errors are normal). A quiet
// machine earns a small margin and wider plans; a noisy one, a larger margin. Not thread-safe: the
// service's worker owns it.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/service/slo.hpp"

namespace elastilm {

// One part's correction in log space: the machine-wide term and one per width ratio, and the spread of
// the overruns left after it.
struct LogCorrection {
    static constexpr double kMaxLog = 1.3862943611198906;  // ln 4: a term's bound, and one request's
    static constexpr double kPriorSpread = 0.1;            // before any request: the traces' typical spread
    double machine = 0;
    std::array<double, kRatios.size()> ratio{};
    // Mean of max(0, log(measured / predicted))² over recent requests: the overruns only.
    double mean_square_overrun = kPriorSpread * kPriorSpread / 2;

    // How far one prediction of this part typically runs over: √(2 · mean_square_overrun), a zero-mean
    // normal error's standard deviation (half of its errors are overruns).
    double spread() const { return std::sqrt(2 * mean_square_overrun); }

    // The factor at `percent` (a width outside kRatios: the machine-wide one).
    double factor(int percent) const {
        const int i = ratio_index(percent);
        return std::exp(machine + (i >= 0 ? ratio[std::size_t(i)] : 0.0));
    }

    // log(measured / predicted), clamped, moves both terms by `weight` of it.
    void observe(int percent, double predicted_ms, double measured_ms, double weight) {
        if (!(std::isfinite(predicted_ms) && std::isfinite(measured_ms) && predicted_ms > 0 && measured_ms > 0)) return;
        const double error = std::clamp(std::log(measured_ms / predicted_ms), -kMaxLog, kMaxLog);
        const double overrun = std::max(error, 0.0);
        mean_square_overrun += 0.5 * weight * (overrun * overrun - mean_square_overrun);
        const double step = weight * error;
        machine = std::clamp(machine + step, -kMaxLog, kMaxLog);
        if (const int i = ratio_index(percent); i >= 0) ratio[std::size_t(i)] = std::clamp(ratio[std::size_t(i)] + step, -kMaxLog, kMaxLog);
    }
};

template <LatencyPredictor L>
class LatencyFeedback {
public:
    // `weight`: how much one request moves each term, in (0, 1]; 0.25 follows a change within a few requests.
    explicit LatencyFeedback(const L& profile, double weight = 0.25) : profile_(profile), weight_(weight) {
        require(weight > 0 && weight <= 1, "LatencyFeedback", "weight must be in (0, 1], got " + std::to_string(weight));
    }

    // The profile's predictions, corrected by what the machine has been doing lately.
    double ttft_ms(int percent, int tokens) const { return prefill_.factor(percent) * profile_.ttft_ms(percent, tokens); }
    double tpot_ms(int percent, int tokens) const { return decode_.factor(percent) * profile_.tpot_ms(percent, tokens); }
    // The TLM's time, from what its own profile predicts for the prompt.
    double tlm_ms(double profiled_ms) const { return tlm_.factor(0) * profiled_ms; }

    // One request's outcome: the width it ran at, what *this* predicted and what was measured for the same
    // span — the prefill (planning start to first token, the TLM's time taken out), the mean time per
    // decoded token, the TLM's scoring. Non-positive or non-finite values carry no information (no token
    // decoded, a cancelled request) and are ignored.
    void observe_ttft(int percent, double predicted_ms, double measured_ms) { prefill_.observe(percent, predicted_ms, measured_ms, weight_); }
    void observe_tpot(int percent, double predicted_ms, double measured_ms) { decode_.observe(percent, predicted_ms, measured_ms, weight_); }
    void observe_tlm(double predicted_ms, double measured_ms) { tlm_.observe(0, predicted_ms, measured_ms, weight_); }

    LatencyScale scale(int prefill_percent, int decode_percent) const {
        return {prefill_.factor(prefill_percent), decode_.factor(decode_percent), tlm_.factor(0)};
    }
    // How many times its prediction each part may take and a plan still meet its objective:
    // e^(z · spread of that part's recent errors). `z` >= 0; 0 plans to the predictions themselves.
    LatencyScale margin(double z) const {
        require(std::isfinite(z) && z >= 0, "LatencyFeedback::margin", "z must be a finite number >= 0, got " + std::to_string(z));
        return {std::exp(z * prefill_.spread()), std::exp(z * decode_.spread()), std::exp(z * tlm_.spread())};
    }
    const L& profile() const { return profile_; }

private:
    const L& profile_;
    double weight_;
    LogCorrection prefill_, decode_, tlm_;
};

}  // namespace elastilm
