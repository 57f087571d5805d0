// Next-token choice from logits: greedy (temperature 0) or temperature + nucleus (top-p) sampling
// with a seeded generator, so a run is reproducible from its seed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "elastilm/error.hpp"

namespace elastilm {

struct SamplerOptions {
    float temperature = 0.0f;  // 0 = greedy
    float top_p = 0.9f;        // nucleus mass kept when sampling, in (0, 1]
    std::uint64_t seed = 42;
};

class Sampler {
public:
    explicit Sampler(SamplerOptions o = {}) : opts_(o), rng_(o.seed) {
        require(std::isfinite(o.temperature) && o.temperature >= 0, "Sampler",
                "temperature must be a finite number >= 0, got " + std::to_string(o.temperature));
        require(o.top_p > 0 && o.top_p <= 1, "Sampler", "top_p must be in (0, 1], got " + std::to_string(o.top_p));
    }

    int operator()(std::span<const float> logits) {
        if (opts_.temperature == 0.0f) return argmax(logits);
        // Softmax at the temperature, then sample within the smallest set of tokens holding top_p mass.
        const float max = *std::max_element(logits.begin(), logits.end());
        probs_.resize(logits.size());
        double sum = 0;
        for (std::size_t i = 0; i < logits.size(); ++i) sum += probs_[i] = std::exp((logits[i] - max) / opts_.temperature);
        order_.resize(logits.size());
        std::iota(order_.begin(), order_.end(), 0);
        std::sort(order_.begin(), order_.end(), [&](int a, int b) { return probs_[a] > probs_[b]; });
        double kept = 0;
        std::size_t n = 0;
        while (n < order_.size() && kept < opts_.top_p * sum) kept += probs_[order_[n++]];
        const double r = std::uniform_real_distribution<double>(0.0, kept)(rng_);
        double acc = 0;
        for (std::size_t i = 0; i < n; ++i)
            if ((acc += probs_[order_[i]]) > r) return order_[i];
        return order_[n - 1];
    }

    static int argmax(std::span<const float> logits) {
        return int(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }

private:
    SamplerOptions opts_;
    std::mt19937_64 rng_;
    std::vector<double> probs_;
    std::vector<int> order_;
};

}  // namespace elastilm
