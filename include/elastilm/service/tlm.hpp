// The tiny language model (TLM) of ElastiLM's prompt elasticity (§4): a small trunk reads the prompt and
// two linear heads on its features decide (1) which tokens matter — the score head, used to compress the
// prompt — and (2) how good each (prompt ratio, model ratio) pair would be for this prompt — the decision
// head, which the SLO orchestrator ranks after masking the pairs too slow for the deadline.
//
// Trunk: by default the LLM's own 20% width variant (no second model to ship or page in); any compiled
// config with the LLM's vocabulary works (Tlm is templated on the trunk's config).
// Per-token features, width = trunk dim + 2:
//   [0, dim)   the trunk's final hidden state after the final RMSNorm (what its LM head reads),
//   dim        surprisal −log p(token | prefix) from the trunk's logits (the LLMLingua signal),
//   dim + 1    log(1 + tokens between this one and the prompt's end) — the labels show that tokens near
//              the continuation matter most, and the hidden state alone cannot know where the prompt ends.
// Surprisal needs the trunk's logits at every prompt position: with a 32000-token vocabulary that LM head
// costs more than the sliced layers (on tiny-gqa-15M, more than the full model's prefill). Heads can
// therefore be trained without it (TlmFeatures::hidden: the column is 0, the trunk computes no logits),
// which makes the TLM a fraction of a 20% prefill. The heads file records which features it reads.
// Heads are ridge regressions on standardised features (service/ridge.hpp), trained on self-induced
// labels (service/tlm_labels.hpp) and stored beside the model as a small GGUF naming the model they
// were trained for, so heads for another model are refused.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "elastilm/formats/registry.hpp"
#include "elastilm/io/gguf.hpp"
#include "elastilm/io/gguf_writer.hpp"
#include "elastilm/model/observer.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/ops/rmsnorm.hpp"
#include "elastilm/service/fingerprint.hpp"
#include "elastilm/service/orchestrator.hpp"
#include "elastilm/service/prompt_compression.hpp"
#include "elastilm/service/ridge.hpp"

namespace elastilm {

// ---- Model identity ----------------------------------------------------------------------------------

// What heads were trained for. The fingerprint hashes weight bytes, so the same config with other
// weights, or the plain model versus its elastic reordering, are told apart.
struct ModelIdentity {
    std::string config;
    int dim = 0, vocab = 0, n_layers = 0;
    std::uint64_t fingerprint = 0;

    bool operator==(const ModelIdentity&) const = default;
    std::string describe() const {
        char fp[17];
        std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(fingerprint));
        return config + " (dim " + std::to_string(dim) + ", vocab " + std::to_string(vocab) + ", " + std::to_string(n_layers) +
               " layers, fingerprint " + fp + ")";
    }
};

// Embedding ends (the brief's identity) plus the FFN gate of the first and last layer: elasticizing
// leaves embeddings alone but permutes FFN neurons, and the decision head's labels depend on that order.
// Each matrix adds its first and last KB. Heads files store this value: changing what it hashes means a
// new heads format version.
inline std::uint64_t tlm_fingerprint(const ModelWeights& w) {
    Fnv1a f;
    f.matrix_ends(w.embedding, 1024);
    if (!w.layers.empty()) {
        f.matrix_ends(w.layers.front().w_gate, 1024);
        f.matrix_ends(w.layers.back().w_gate, 1024);
    }
    return f.h;
}

template <ModelConfig Cfg>
ModelIdentity identity_of(const Model<Cfg>& m) {
    return {std::string(Cfg::name), Cfg::dim, Cfg::vocab_size, Cfg::n_layers, tlm_fingerprint(m.weights())};
}

// ---- Features ----------------------------------------------------------------------------------------

// One row of `width` features per prompt token (layout in the file comment).
struct PromptFeatures {
    int tokens = 0, width = 0;
    std::vector<float> values;  // tokens × width

    const float* row(int i) const { return values.data() + std::size_t(i) * width; }
    float surprisal(int i) const { return row(i)[width - 2]; }
};

// The extra columns after the trunk's hidden state.
inline constexpr int kExtraTokenFeatures = 2;

// Which token features the trunk computes (see the file comment).
enum class TlmFeatures : std::uint8_t { hidden_and_surprisal, hidden };

constexpr std::string_view to_string(TlmFeatures f) { return f == TlmFeatures::hidden ? "hidden" : "hidden+surprisal"; }

// ---- Heads -------------------------------------------------------------------------------------------

// Importance per token = w · standardise(features) + b; the target is the loss increase of the full LLM
// on the continuation when the token is dropped (tlm_labels.hpp).
struct ScoreHead {
    Standardizer norm;
    RidgeSolution ridge;

    bool trained() const { return ridge.cols > 0; }

    // `rows` stacks labelled tokens' feature rows (labels.size() × width).
    static ScoreHead fit(std::span<const float> rows, std::span<const float> labels, int width, double lambda) {
        const int n = int(labels.size());
        ScoreHead h;
        h.norm = Standardizer::fit(rows, n, width);
        h.ridge = ridge_fit(h.norm.apply_all(rows), labels, n, width, 1, lambda);
        return h;
    }

    // The trained head's importances, or the surprisal baseline when untrained.
    std::vector<float> scores(const PromptFeatures& f) const {
        std::vector<float> out(f.tokens);
        std::vector<float> z(f.width);
        for (int i = 0; i < f.tokens; ++i) {
            if (!trained()) { out[i] = f.surprisal(i); continue; }
            require(f.width == norm.width(), "ScoreHead", "features of width " + std::to_string(f.width) +
                                                              ", the head was trained on width " + std::to_string(norm.width()));
            norm.apply(f.row(i), z.data());
            out[i] = ridge.predict(z.data());
        }
        return out;
    }
};

// Rates pairs from a handful of pooled statistics of the prompt (kDecisionFeatures): its length, what the
// score head thinks of its tokens, and how coherent the trunk finds it. One ridge per output — a pair's
// rating, or a point of a margin curve (DecisionLabels) — sharing one factorisation: a shared regression
// with pair one-hots would let the prompt shift every pair's rating by the same amount, which never
// changes the ranking the orchestrator needs. A few statistics rather
// than the pooled hidden state (dim + 3 columns): with hundreds of labelled prompts, hundreds of
// features fit the labels' noise and rank pairs worse than a fixed prior (measured on docs-95M).
inline constexpr int kDecisionFeatures = 7;
inline constexpr const char* kDecisionFeatureSet = "pooled-stats-7";  // recorded in the heads file
// A head may also read how far the trunk's next-token distribution moves when the prompt is cut
// (service/context_dependence.hpp): with those 5 more columns the head beat the measured prior where
// the 7 statistics alone tied it (README, "Decision head on the service's own task").
inline constexpr int kContextDependenceFeatures = 5;
inline constexpr const char* kDecisionFeatureSetWithContext = "pooled-stats-7+context-5";

// What a decision head predicts per prompt (recorded in the heads file):
//   continuation_pairs  81 pair ratings: the continuation's mean log-likelihood with the prompt
//                       compressed to p % and the model at m % (tlm_labels.hpp pair_labels);
//   choice_curves       27 values: the answer's margin on a multiple-choice item along the measured
//                       prior's three curves (service/pair_prior.hpp item_curves), combined into
//                       ratings the way the prior is (PairRatings::from_curves) — the service's task,
//                       at a third of the runs per labelled prompt;
//   choice_scales       the same labels, but 3 values: how steeply this prompt's model, prompt and decode
//                       curves fall compared with the training items' mean curves (stored with the head),
//                       curve_c(r) = prior_c(100) + k_c · (prior_c(r) − prior_c(100)). Three outputs
//                       instead of 27 free ones: a hundred or two labelled items cannot pin down 27
//                       regressions (their noise outranks the prior at the extreme budgets), and k = 1
//                       is exactly the prior, so shrinking the head toward it is shrinking k toward 1.
enum class DecisionLabels { continuation_pairs, choice_curves, choice_scales };
constexpr std::string_view to_string(DecisionLabels l) {
    return l == DecisionLabels::choice_curves ? "choice-curves" : l == DecisionLabels::choice_scales ? "choice-scales" : "continuation-pairs";
}
// Values per labelled prompt (what train_tlm measures), and the head's outputs.
constexpr int label_width(DecisionLabels l) { return l == DecisionLabels::continuation_pairs ? kPairs : PairRatings::kCurveValues; }
constexpr int outputs_of(DecisionLabels l) {
    return l == DecisionLabels::choice_curves ? PairRatings::kCurveValues : l == DecisionLabels::choice_scales ? 3 : kPairs;
}

struct DecisionHead {
    Standardizer norm;
    RidgeSolution ridge;
    DecisionLabels labels = DecisionLabels::continuation_pairs;

    bool trained() const { return ridge.cols > 0; }
    int outputs() const { return outputs_of(labels); }
    // Whether the head reads the context-dependence columns after the pooled statistics: rate it with
    // rate_pooled on pooled(...) followed by context_dependence(...).
    bool reads_context() const { return norm.width() == kDecisionFeatures + kContextDependenceFeatures; }

    // `scores`: the score head's importance per token of this prompt.
    //   0 log(tokens)              longer prompts lose less when compressed
    //   1 mean importance          how much the prompt matters to its continuation
    //   2 importance spread        standard deviation over tokens
    //   3 top-quarter mean − bottom-half mean   how concentrated (compressible) it is
    //   4 last-quarter mean − first-quarter mean where the important tokens sit
    //   5 mean cosine of each token's hidden state with their mean   topic coherence
    //   6 mean surprisal           0 when the trunk computes no logits (TlmFeatures::hidden)
    static std::vector<float> pooled(const PromptFeatures& f, std::span<const float> scores) {
        require(f.tokens > 0, "DecisionHead", "no prompt features to pool");
        require(scores.size() == std::size_t(f.tokens), "DecisionHead", "needs one importance per prompt token");
        const int n = f.tokens, d = f.width - kExtraTokenFeatures;
        std::vector<float> out(kDecisionFeatures, 0);
        out[0] = std::log(float(n));
        double mean = 0, sq = 0, surprisal = 0;
        for (float v : scores) mean += v;
        mean /= n;
        for (float v : scores) sq += (v - mean) * (v - mean);
        out[1] = float(mean);
        out[2] = float(std::sqrt(sq / n));
        std::vector<float> sorted(scores.begin(), scores.end());
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        auto mean_of = [](auto first, auto last) {
            double s = 0;
            for (auto it = first; it != last; ++it) s += *it;
            return last > first ? s / double(last - first) : 0.0;
        };
        const int q = std::max(1, n / 4), h = std::max(1, n / 2);
        out[3] = float(mean_of(sorted.begin(), sorted.begin() + q) - mean_of(sorted.end() - h, sorted.end()));
        out[4] = float(mean_of(scores.end() - q, scores.end()) - mean_of(scores.begin(), scores.begin() + q));
        std::vector<double> centre(d, 0);
        for (int i = 0; i < n; ++i) {
            for (int j = 0; j < d; ++j) centre[j] += f.row(i)[j];
            surprisal += f.surprisal(i);
        }
        double cn = 0, cos = 0;
        for (double& c : centre) {
            c /= n;
            cn += c * c;
        }
        for (int i = 0; i < n; ++i) {
            double dot = 0, rn = 0;
            for (int j = 0; j < d; ++j) {
                dot += f.row(i)[j] * centre[j];
                rn += double(f.row(i)[j]) * f.row(i)[j];
            }
            cos += rn > 0 && cn > 0 ? dot / std::sqrt(rn * cn) : 0.0;
        }
        out[5] = float(cos / n);
        out[6] = float(surprisal / n);
        return out;
    }

    // choice_scales: the mean curves of the training items (27 values, model then prompt then decode).
    std::vector<float> prior;
    // choice_scales: the steepness a prompt is given lies in [kMinCurveScale, kMaxCurveScale], against
    // the mean item's 1. Not down to 0: a flat curve rates every narrower model or shorter prompt as good
    // as the whole, and the orchestrator breaks such ties toward the cheapest plan — with a 0 floor the
    // head chose a narrower plan than the full model even where the full model was allowed, and lost to
    // the prior there (README).
    static constexpr double kMinCurveScale = 0.25;
    static constexpr double kMaxCurveScale = 3.0;

    // How steeply one prompt's curves fall against the prior's (choice_scales): per curve c, the least-
    // squares k_c of (y_c(r) − y_c(100)) ≈ k_c · (prior_c(r) − prior_c(100)). Linear in y, so the mean
    // item's scales are exactly 1.
    static std::array<float, 3> curve_scales(std::span<const float> y, std::span<const float> prior) {
        const std::size_t n = kRatios.size();
        std::array<float, 3> k{};
        for (std::size_t c = 0; c < 3; ++c) {
            double num = 0, den = 0;
            for (std::size_t r = 0; r + 1 < n; ++r) {
                const double d = prior[c * n + r] - prior[c * n + n - 1];
                num += d * (y[c * n + r] - y[c * n + n - 1]);
                den += d * d;
            }
            require(den > 1e-12, "DecisionHead", "the training items' mean curve " + std::to_string(c) + " is flat: no scale to learn");
            k[c] = float(num / den);
        }
        return k;
    }

    // `rows`: n pooled vectors; `y`: n × label_width(kind) measured labels. `shrink` in [0, 1] scales the
    // learnt dependence on the prompt: 0 gives every prompt the training mean (for choice labels, the
    // measured prior), 1 the plain ridge fit.
    static DecisionHead fit(std::span<const float> rows, std::span<const float> y, int pooled_width, double lambda,
                            DecisionLabels kind = DecisionLabels::continuation_pairs, double shrink = 1.0) {
        const int w = label_width(kind), n = int(y.size() / std::size_t(w));
        require(pooled_width == kDecisionFeatures || pooled_width == kDecisionFeatures + kContextDependenceFeatures, "DecisionHead",
                "reads " + std::to_string(kDecisionFeatures) + " pooled statistics, or those and " +
                    std::to_string(kContextDependenceFeatures) + " context-dependence features; got " + std::to_string(pooled_width) +
                    " columns");
        require(y.size() == std::size_t(n) * std::size_t(w) && n > 0, "DecisionHead",
                "labels must be prompts × " + std::to_string(w) + " (" + std::string(to_string(kind)) + ")");
        require(shrink >= 0 && shrink <= 1, "DecisionHead", "shrink must be in [0, 1], got " + std::to_string(shrink));
        DecisionHead h;
        h.labels = kind;
        h.norm = Standardizer::fit(rows, n, pooled_width);
        std::vector<float> targets(y.begin(), y.end());
        if (kind == DecisionLabels::choice_scales) {
            h.prior.assign(w, 0.0f);
            for (int i = 0; i < n; ++i)
                for (int t = 0; t < w; ++t) h.prior[t] += y[std::size_t(i) * w + t] / float(n);
            targets.clear();
            for (int i = 0; i < n; ++i) {
                const auto k = curve_scales(y.subspan(std::size_t(i) * w, w), h.prior);
                targets.insert(targets.end(), k.begin(), k.end());
            }
        }
        h.ridge = ridge_fit(h.norm.apply_all(rows), targets, n, pooled_width, outputs_of(kind), lambda);
        // Standardised training features have mean 0, so the bias is the targets' mean: scaling the
        // weights alone moves every prediction toward it.
        for (float& v : h.ridge.weight) v *= float(shrink);
        return h;
    }

    PairRatings rate(const PromptFeatures& f, std::span<const float> scores) const {
        require(trained(), "DecisionHead", "the decision head is not trained (load heads written by train_tlm)");
        require(!reads_context(), "DecisionHead",
                "this head also reads the prompt's context dependence: rate it through TlmScorer, "
                "or rate_pooled on the pooled statistics followed by context_dependence()");
        return rate_pooled(pooled(f, scores));
    }

    // The ratings for a prompt's pooled statistics (what rate() computes first).
    PairRatings rate_pooled(std::span<const float> p) const {
        require(trained(), "DecisionHead", "the decision head is not trained (load heads written by train_tlm)");
        require(int(p.size()) == norm.width(), "DecisionHead", "pooled features of width " + std::to_string(p.size()) +
                                                                   ", the head was trained on width " + std::to_string(norm.width()));
        std::vector<float> z(p.size());
        norm.apply(p.data(), z.data());
        if (labels == DecisionLabels::choice_curves) {
            std::array<double, PairRatings::kCurveValues> curves{};
            for (int t = 0; t < PairRatings::kCurveValues; ++t) curves[t] = ridge.predict(z.data(), t);
            return PairRatings::from_curves(curves);
        }
        if (labels == DecisionLabels::choice_scales) {
            const std::size_t n = kRatios.size();
            std::array<double, PairRatings::kCurveValues> curves{};
            for (std::size_t c = 0; c < 3; ++c) {
                // Bounded: a negative k would turn the curve upside down (a narrower model rated above a
                // wider one), and a prompt far outside the training items' statistics is extrapolated.
                const double k = std::clamp(double(ridge.predict(z.data(), int(c))), kMinCurveScale, kMaxCurveScale),
                             full = prior[c * n + n - 1];
                for (std::size_t r = 0; r < n; ++r) curves[c * n + r] = full + k * (prior[c * n + r] - full);
            }
            return PairRatings::from_curves(curves);
        }
        PairRatings r;
        for (int t = 0; t < kPairs; ++t) r.value[t] = ridge.predict(z.data(), t);
        return r;
    }
};

// The heads and what they were trained for: the LLM whose losses labelled them and the trunk (and its
// width) whose features they read. The decision head is optional (train_tlm --no-decision-head): a
// service that plans with a measured prior (service/pair_prior.hpp) does not use it, and its labels are
// most of train_tlm's time. A file without one records elastilm.tlm.decision_features = "none".
struct TlmHeads {
    ModelIdentity llm, trunk;
    int trunk_percent = 20;
    TlmFeatures features = TlmFeatures::hidden_and_surprisal;
    ScoreHead score;
    DecisionHead decision;

    // Throws unless these heads were trained for exactly this LLM and trunk.
    void require_for(const ModelIdentity& llm_now, const ModelIdentity& trunk_now, int trunk_percent_now, const std::string& where) const {
        require(llm == llm_now, where, "TLM heads were trained for " + llm.describe() + ", not for this model " + llm_now.describe());
        require(trunk == trunk_now, where, "TLM heads read features of trunk " + trunk.describe() + ", not of " + trunk_now.describe());
        require(trunk_percent == trunk_percent_now, where,
                "TLM heads read the trunk at " + std::to_string(trunk_percent) + "% width, not " + std::to_string(trunk_percent_now) + "%");
    }

    void save(const std::filesystem::path& path) const {
        require(score.trained(), path.string(), "the score head must be trained before saving");
        io::GgufWriter w;
        w.set_string("general.architecture", kArchitecture);
        put_identity(w, "elastilm.tlm.llm", llm);
        put_identity(w, "elastilm.tlm.trunk", trunk);
        w.set_u32("elastilm.tlm.trunk_percent", std::uint32_t(trunk_percent));
        w.set_string("elastilm.tlm.features", std::string(to_string(features)));
        w.set_string("elastilm.tlm.decision_features", !decision.trained()        ? kNoDecisionHead
                                                       : decision.reads_context() ? kDecisionFeatureSetWithContext
                                                                                  : kDecisionFeatureSet);
        const auto sw = std::int64_t(score.norm.width()), dw = std::int64_t(decision.norm.width());
        w.add_tensor("score.mean", {sw}, DType::f32, score.norm.mean.data());
        w.add_tensor("score.scale", {sw}, DType::f32, score.norm.scale.data());
        w.add_tensor("score.weight", {sw}, DType::f32, score.ridge.weight.data());
        w.add_tensor("score.bias", {1}, DType::f32, score.ridge.bias.data());
        if (decision.trained()) {
            w.add_tensor("decision.mean", {dw}, DType::f32, decision.norm.mean.data());
            w.add_tensor("decision.scale", {dw}, DType::f32, decision.norm.scale.data());
            w.set_string("elastilm.tlm.decision_labels", std::string(to_string(decision.labels)));
            w.add_tensor("decision.weight", {decision.outputs(), dw}, DType::f32, decision.ridge.weight.data());
            w.add_tensor("decision.bias", {decision.outputs()}, DType::f32, decision.ridge.bias.data());
            if (decision.labels == DecisionLabels::choice_scales)
                w.add_tensor("decision.prior", {std::int64_t(decision.prior.size())}, DType::f32, decision.prior.data());
        }
        w.write(path);
    }

    static TlmHeads load(const std::filesystem::path& path) {
        const io::GgufFile g = io::GgufFile::open(path);
        const std::string& where = g.where();
        require(g.has("general.architecture") && g.value("general.architecture").type == io::GgufType::string &&
                    g.get_string("general.architecture") == kArchitecture,
                where, std::string("is not a TLM heads file (general.architecture is not ") + kArchitecture + ")");
        TlmHeads h;
        h.llm = get_identity(g, "elastilm.tlm.llm");
        h.trunk = get_identity(g, "elastilm.tlm.trunk");
        h.trunk_percent = int(g.get_uint("elastilm.tlm.trunk_percent"));
        require(ratio_index(h.trunk_percent) >= 0, where, "elastilm.tlm.trunk_percent " + std::to_string(h.trunk_percent) + " is not a compiled ratio");
        if (g.has("elastilm.tlm.features")) {
            const std::string f = g.get_string("elastilm.tlm.features");
            require(f == to_string(TlmFeatures::hidden) || f == to_string(TlmFeatures::hidden_and_surprisal), where,
                    "elastilm.tlm.features is '" + f + "', expected 'hidden' or 'hidden+surprisal'");
            h.features = f == to_string(TlmFeatures::hidden) ? TlmFeatures::hidden : TlmFeatures::hidden_and_surprisal;
        }
        require(g.has("elastilm.tlm.decision_features"), where, "has no elastilm.tlm.decision_features (written by an older train_tlm): "
                                                               "train the heads again with train_tlm");
        const std::string decision_features = g.get_string("elastilm.tlm.decision_features");
        require(decision_features == kDecisionFeatureSet || decision_features == kDecisionFeatureSetWithContext ||
                    decision_features == kNoDecisionHead,
                where,
                "has a decision head on other features ('" + decision_features + "') than " + kDecisionFeatureSet + " or " +
                    kDecisionFeatureSetWithContext + " (written by an older train_tlm): train the heads again with train_tlm");
        const int sw = h.trunk.dim + kExtraTokenFeatures,
                  dw = kDecisionFeatures + (decision_features == kDecisionFeatureSetWithContext ? kContextDependenceFeatures : 0);
        h.score.norm.mean = tensor(g, "score.mean", {sw});
        h.score.norm.scale = tensor(g, "score.scale", {sw});
        h.score.ridge = {sw, 1, tensor(g, "score.weight", {sw}), tensor(g, "score.bias", {1})};
        for (float s : h.score.norm.scale) require(s > 0, where, "score.scale holds a non-positive value");
        if (decision_features == kNoDecisionHead) {
            require(g.find("decision.weight") == nullptr, where, "says it has no decision head but holds decision.weight");
            return h;
        }
        // Files written before choice-curve labels existed hold pair ratings.
        if (g.has("elastilm.tlm.decision_labels")) {
            const std::string l = g.get_string("elastilm.tlm.decision_labels");
            bool known = false;
            for (DecisionLabels k : {DecisionLabels::continuation_pairs, DecisionLabels::choice_curves, DecisionLabels::choice_scales})
                if (l == to_string(k)) h.decision.labels = k, known = true;
            require(known, where,
                    "elastilm.tlm.decision_labels is '" + l + "', expected '" + std::string(to_string(DecisionLabels::continuation_pairs)) + "', '" +
                        std::string(to_string(DecisionLabels::choice_curves)) + "' or '" + std::string(to_string(DecisionLabels::choice_scales)) +
                        "' (a newer train_tlm's head?)");
        }
        if (h.decision.labels == DecisionLabels::choice_scales)
            h.decision.prior = tensor(g, "decision.prior", {PairRatings::kCurveValues});
        const std::int64_t k = h.decision.outputs();
        h.decision.norm.mean = tensor(g, "decision.mean", {dw});
        h.decision.norm.scale = tensor(g, "decision.scale", {dw});
        h.decision.ridge = {dw, int(k), tensor(g, "decision.weight", {k, dw}), tensor(g, "decision.bias", {k})};
        for (float s : h.decision.norm.scale) require(s > 0, where, "decision.scale holds a non-positive value");
        return h;
    }

    static constexpr const char* kArchitecture = "elastilm.tlm_heads";
    static constexpr const char* kNoDecisionHead = "none";

private:
    static void put_identity(io::GgufWriter& w, const std::string& prefix, const ModelIdentity& id) {
        char fp[17];
        std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(id.fingerprint));
        w.set_string(prefix + ".config", id.config);
        w.set_u32(prefix + ".dim", std::uint32_t(id.dim));
        w.set_u32(prefix + ".vocab", std::uint32_t(id.vocab));
        w.set_u32(prefix + ".n_layers", std::uint32_t(id.n_layers));
        w.set_string(prefix + ".fingerprint", fp);  // a string: the GGUF reader keeps integers signed-safe only
    }
    static ModelIdentity get_identity(const io::GgufFile& g, const std::string& prefix) {
        ModelIdentity id;
        id.config = g.get_string(prefix + ".config");
        id.dim = int(g.get_uint(prefix + ".dim"));
        id.vocab = int(g.get_uint(prefix + ".vocab"));
        id.n_layers = int(g.get_uint(prefix + ".n_layers"));
        require(id.dim > 0 && id.dim <= 65536 && id.vocab > 0 && id.n_layers > 0, g.where(), prefix + ": dim, vocab and n_layers must be positive");
        const std::string& fp = g.get_string(prefix + ".fingerprint");
        require(fp.size() == 16 && fp.find_first_not_of("0123456789abcdef") == std::string::npos, g.where(),
                prefix + ".fingerprint must be 16 hex digits");
        id.fingerprint = std::stoull(fp, nullptr, 16);
        return id;
    }
    static std::vector<float> tensor(const io::GgufFile& g, const std::string& name, std::vector<std::int64_t> shape) {
        const io::GgufTensor* t = g.find(name);
        require(t != nullptr, g.where(), "tensor " + name + " is missing");
        require(t->shape == shape && t->dtype == DType::f32, g.where(), "tensor " + name + " has the wrong shape or type (F32 expected)");
        std::vector<float> out(t->nbytes / 4);
        std::memcpy(out.data(), t->data, t->nbytes);
        for (float v : out) require(std::isfinite(v), g.where(), "tensor " + name + " holds a NaN or infinity");
        return out;
    }
};

// ---- The TLM -----------------------------------------------------------------------------------------

// Weights a prefill multiplies by in the transformer blocks (embedding and LM head aside): how a TLM
// trunk's cost compares with the LLM's.
template <ModelConfig C>
constexpr long long block_weights =
    (long long)C::n_layers * C::dim * (2LL * Shape<C>::q_dim + 2LL * Shape<C>::kv_dim + 3LL * C::hidden_dim);

// A separate trunk must read the LLM's token ids and cost less than the LLM's own prefill (else the
// LLM itself, the default trunk, is the better TLM).
template <ModelConfig Trunk, ModelConfig Llm>
constexpr bool can_be_trunk_of = Trunk::vocab_size == Llm::vocab_size && block_weights<Trunk> < block_weights<Llm>;

// The compiled configs that can be Llm's trunk: tools dispatch a trunk file among these only
// (with_config<TrunkConfigsFor<Llm>>), so nothing is compiled for pairs that could never run.
template <ModelConfig Llm, class... C>
auto trunk_configs_among(std::tuple<C...>*)
    -> decltype(std::tuple_cat(std::conditional_t<can_be_trunk_of<C, Llm>, std::tuple<C>, std::tuple<>>{}...));
template <ModelConfig Llm>
using TrunkConfigsFor = decltype(trunk_configs_among<Llm>((KnownConfigs*)nullptr));

// The trunk at `percent`% width of `trunk` plus (optionally) trained heads. Not thread-safe: one per
// thread, like a Session.
template <ModelConfig TrunkCfg>
class Tlm {
public:
    static constexpr int feature_width = TrunkCfg::dim + kExtraTokenFeatures;

    explicit Tlm(const Model<TrunkCfg>& trunk, ThreadPool& pool, int percent = 20)
        : trunk_(&trunk), percent_(percent), session_(trunk, pool, TrunkCfg::context, kChunk) {
        variant<TrunkCfg>(percent);  // an uncompiled width is an Error now, not at the first prompt
    }

    int percent() const { return percent_; }
    const Model<TrunkCfg>& trunk() const { return *trunk_; }
    const TlmHeads* heads() const { return has_heads_ ? &heads_ : nullptr; }

    // Attaches heads after checking they were trained for `llm` and for this trunk at this width.
    // The LLM is any compiled config; its vocabulary must be the trunk's (the TLM reads the LLM's ids).
    template <ModelConfig LlmCfg>
    void use_heads(TlmHeads heads, const Model<LlmCfg>& llm, const std::string& where = "TLM heads") {
        require_same_vocabulary<LlmCfg>();
        heads.require_for(identity_of(llm), identity_of(*trunk_), percent_, where);
        features_ = heads.features;
        heads_ = std::move(heads);
        has_heads_ = true;
    }

    // Which features features() computes; set by use_heads to what the heads read. Without heads the
    // surprisal baseline needs hidden_and_surprisal (the default).
    TlmFeatures feature_mode() const { return features_; }
    void set_feature_mode(TlmFeatures f) {
        require(!has_heads_ || f == heads_.features, "TLM", "the attached heads read " + std::string(to_string(heads_.features)) + " features");
        features_ = f;
    }
    template <ModelConfig LlmCfg>
    static void require_same_vocabulary() {
        require(LlmCfg::vocab_size == TrunkCfg::vocab_size, "TLM",
                "the trunk " + std::string(TrunkCfg::name) + " has a vocabulary of " + std::to_string(TrunkCfg::vocab_size) +
                    " tokens but the LLM " + std::string(LlmCfg::name) + " has " + std::to_string(LlmCfg::vocab_size));
    }

    PromptFeatures features(std::span<const int> prompt) {
        const int n = int(prompt.size());
        require(n > 0, "TLM", "the prompt is empty");
        require(n <= TrunkCfg::context, "TLM",
                "a prompt of " + std::to_string(n) + " tokens exceeds the trunk's context of " + std::to_string(TrunkCfg::context));
        PromptFeatures f;
        f.tokens = n;
        f.width = feature_width;
        f.values.assign(std::size_t(n) * feature_width, 0);
        FinalHidden capture(f);
        session_.reset();
        session_.set_observer(&capture);
        struct Detach {
            Session<TrunkCfg>& s;
            ~Detach() { s.set_observer(nullptr); }
        } detach{session_};
        // Chunks bound the logits buffer (chunk × vocab); the last row of a chunk predicts the next one's first token.
        std::vector<float> carry;
        double surprisal_sum = 0;
        for (int done = 0; done < n; done += kChunk) {
            const auto chunk = prompt.subspan(done, std::min(kChunk, n - done));
            if (features_ == TlmFeatures::hidden) {  // no logits but the last: the surprisal column stays 0
                const auto last = session_.append(chunk, percent_);
                if (done + kChunk >= n) carry.assign(last.begin(), last.end());  // kept for next_token_log_probs
                continue;
            }
            const auto logits = session_.append_all_logits(chunk, percent_);
            const float first = carry.empty() ? 0.0f : float(-log_softmax_at(carry, chunk[0]));
            const auto s = token_surprisal(logits, chunk, TrunkCfg::vocab_size, first);
            for (std::size_t i = 0; i < chunk.size(); ++i) f.values[(done + i) * feature_width + TrunkCfg::dim] = s[i];
            for (std::size_t i = (done == 0); i < s.size(); ++i) surprisal_sum += s[i];
            carry.assign(logits.end() - TrunkCfg::vocab_size, logits.end());
        }
        // Token 0 has no prefix: give it the prompt's mean surprisal, a neutral value for the heads.
        if (features_ == TlmFeatures::hidden_and_surprisal) f.values[TrunkCfg::dim] = n > 1 ? float(surprisal_sum / (n - 1)) : 0.0f;
        const float* norm = trunk_->weights().final_norm.data();
        std::vector<float> x(TrunkCfg::dim);
        for (int i = 0; i < n; ++i) {
            float* row = f.values.data() + std::size_t(i) * feature_width;
            std::copy_n(row, TrunkCfg::dim, x.data());
            rmsnorm(row, x.data(), norm, TrunkCfg::dim, TrunkCfg::norm_eps);
            row[TrunkCfg::dim + 1] = std::log1p(float(n - 1 - i));
        }
        last_prompt_.assign(prompt.begin(), prompt.end());  // next_token_log_probs of this prompt needs no second read
        last_logits_ = std::move(carry);
        return f;
    }

    // log p(next token | prompt) under the trunk: where the prompt's continuation starts
    // (service/context_dependence.hpp compares it across cuts of one prompt).
    std::vector<float> next_token_log_probs(std::span<const int> prompt) {
        const int n = int(prompt.size());
        require(n > 0, "TLM", "the prompt is empty");
        require(n <= TrunkCfg::context, "TLM",
                "a prompt of " + std::to_string(n) + " tokens exceeds the trunk's context of " + std::to_string(TrunkCfg::context));
        std::vector<float> out;
        if (std::equal(prompt.begin(), prompt.end(), last_prompt_.begin(), last_prompt_.end())) {
            out = last_logits_;  // features() just read this prompt
        } else {
            session_.reset();
            std::span<const float> last;
            for (int done = 0; done < n; done += kChunk) last = session_.append(prompt.subspan(done, std::min(kChunk, n - done)), percent_);
            out.assign(last.begin(), last.end());
        }
        const float log_z = log_sum_exp(out.data(), int(out.size()));
        for (float& v : out) v -= log_z;
        return out;
    }

    // Importance per token: the trained score head, or the surprisal baseline without heads.
    std::vector<float> scores(const PromptFeatures& f) const {
        require(has_heads_ || features_ == TlmFeatures::hidden_and_surprisal, "TLM",
                "the surprisal baseline needs hidden+surprisal features");
        return has_heads_ ? heads_.score.scores(f) : ScoreHead{}.scores(f);
    }

    PairRatings rate(const PromptFeatures& f) const { return rate(f, scores(f)); }
    // With the score head's importances already computed for `f`.
    PairRatings rate(const PromptFeatures& f, std::span<const float> token_scores) const {
        require(has_heads_ && heads_.decision.trained(), "TLM", "rating pairs needs a trained decision head (these heads have none)");
        return heads_.decision.rate(f, token_scores);
    }

private:
    static constexpr int kChunk = 64;

    // Copies the final residual stream into the first dim columns of each token's row.
    struct FinalHidden : ForwardObserver {
        PromptFeatures& f;
        explicit FinalHidden(PromptFeatures& f) : f(f) {}
        void final_hidden(int pos0, const float* x, int n) override {
            for (int t = 0; t < n; ++t)
                std::copy_n(x + std::size_t(t) * TrunkCfg::dim, TrunkCfg::dim, f.values.data() + std::size_t(pos0 + t) * f.width);
        }
    };

    const Model<TrunkCfg>* trunk_;
    int percent_;
    Session<TrunkCfg> session_;
    std::vector<int> last_prompt_;    // the prompt features() read last,
    std::vector<float> last_logits_;  // and the trunk's logits after it
    TlmHeads heads_;
    bool has_heads_ = false;
    TlmFeatures features_ = TlmFeatures::hidden_and_surprisal;
};

}  // namespace elastilm
