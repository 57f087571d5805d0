// A conversation with the model: the KV cache, the tokens seen so far, and scratch buffers.
//
// Each append runs at a width ratio of its own (ElastiLM lets prefill and decode use different
// sub-models). KV-cache rules across ratios:
//  * Appending at a ratio no wider than the cache's: attention reads the prefix of the cached heads.
//  * Appending at a wider ratio: the missing heads' K/V for past tokens do not exist, and the heads that
//    do exist were computed from a narrower model's residual stream. The session re-runs the past tokens
//    at the new ratio first, so the output is exactly what a fresh run at that ratio gives.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "elastilm/model/variant_table.hpp"

namespace elastilm {

template <ModelConfig Cfg>
class Session {
public:
    // `context` bounds the cache (≤ Cfg::context); `chunk` is the most tokens one prefill step batches;
    // `kv` is the cache's element type (fp16 by default, half the memory; fp32 for exact comparisons).
    Session(const Model<Cfg>& model, ThreadPool& pool, int context = Cfg::context, int chunk = 256, DType kv = DType::f16)
        : model_(&model), pool_(&pool), cache_(context, kv), acts_(chunk), logits_(Cfg::vocab_size) {}

    void reset() { tokens_.clear(); cache_percent_ = 100; }

    // Activation hooks for calibration and feature extraction (null to detach).
    void set_observer(ForwardObserver* o) { acts_.observer = o; }

    // Layers to skip (bit l = layer l), for layer dropping; 0 runs them all. Only on an empty session:
    // the cache's K/V of a layer skipped earlier would not exist. It stays set across reset().
    void set_skipped_layers(std::uint64_t mask) {
        static_assert(Cfg::n_layers <= 64, "the skip mask has one bit per layer");
        require(tokens_.empty(), "Session", "the set of skipped layers can change only on an empty session (reset() first)");
        require(Cfg::n_layers == 64 || mask >> Cfg::n_layers == 0, "Session",
                "skip mask names a layer beyond the model's " + std::to_string(Cfg::n_layers));
        acts_.skipped_layers = mask;
    }
    std::uint64_t skipped_layers() const { return acts_.skipped_layers; }

    // Forgets every token from `position` on (the cached K/V beyond it are overwritten by what comes
    // next): scoring several continuations of one prompt needs the prompt's prefill once.
    void truncate(int position) {
        require(position >= 0 && position <= this->position(), "Session",
                "cannot truncate to " + std::to_string(position) + " of " + std::to_string(this->position()) + " tokens");
        tokens_.resize(std::size_t(position));
    }

    int position() const { return int(tokens_.size()); }
    int context() const { return cache_.context(); }
    DType kv_dtype() const { return cache_.dtype(); }
    std::size_t kv_bytes() const { return cache_.bytes(); }
    const std::vector<int>& tokens() const { return tokens_; }
    // The width the cached K/V were computed at (its heads beyond that width are not valid).
    int cache_percent() const { return cache_percent_; }
    // Seconds spent in attention over the cache since the session was made (the rest is mostly GEMM).
    double attention_seconds() const { return acts_.attention_seconds; }
    // Tokens re-run because a wider ratio followed a narrower one (see the file comment).
    long long recomputed_tokens() const { return recomputed_; }

    // Appends tokens at `percent`% width; returns the logits after the last one.
    std::span<const float> append(std::span<const int> tokens, int percent = 100) {
        run(tokens, percent, logits_.data(), Logits::last);
        return logits_;
    }
    std::span<const float> append(int token, int percent = 100) { return append(std::span<const int>(&token, 1), percent); }

    // Appends tokens and returns logits for every one of them (tokens.size() × vocab), for scoring text.
    std::vector<float> append_all_logits(std::span<const int> tokens, int percent = 100) {
        std::vector<float> out(tokens.size() * std::size_t(Cfg::vocab_size));
        run(tokens, percent, out.data(), Logits::all);
        return out;
    }

private:
    void run(std::span<const int> tokens, int percent, float* logits, Logits which) {
        const ForwardFn<Cfg> fn = variant<Cfg>(percent);
        require(!tokens.empty(), "Session", "no tokens to append");
        for (int id : tokens)
            require(id >= 0 && id < Cfg::vocab_size, "Session",
                    "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(Cfg::vocab_size) + ")");
        require(position() + int(tokens.size()) <= cache_.context(), "Session",
                std::to_string(position()) + " cached + " + std::to_string(tokens.size()) + " new tokens exceed the context of " +
                    std::to_string(cache_.context()));
        if (tokens_.empty()) cache_percent_ = percent;
        if (percent > cache_percent_ && !tokens_.empty()) {
            fn(*model_, cache_, tokens_, 0, acts_, nullptr, Logits::none, *pool_);
            recomputed_ += tokens_.size();
            cache_percent_ = percent;
        }
        fn(*model_, cache_, tokens, position(), acts_, logits, which, *pool_);
        tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
        cache_percent_ = std::min(cache_percent_, percent);
    }

    const Model<Cfg>* model_;
    ThreadPool* pool_;
    KvCache<Cfg> cache_;
    Activations<Cfg> acts_;
    std::vector<float> logits_;
    std::vector<int> tokens_;
    int cache_percent_ = 100;
    long long recomputed_ = 0;
};

}  // namespace elastilm
