// The orchestrator's measured prior: how much answer quality each model ratio and each prompt ratio
// keeps, read off multiple-choice items of the served domain (service/choice_benchmark.hpp).
//
// Before the TLM has read a prompt the orchestrator must rank (prompt ratio, model ratio) pairs without
// looking at it; it does so with these ratings. They are measured the way the evaluation reads answers,
// four curves over the compiled ratios r:
//   model[r]   the model at r % on whole prompts (prefill and decode),
//   prompt[r]  the full model on prompts the TLM's scores compressed to r %,
//   decode[r]  the full model's prefill on whole prompts, the answer decoded at r %,
//   recency[r] the full model on prompts cut to their most recent r % (PromptCut::recency: no TLM),
// each the answer's mean margin over the best distractor (what accuracy counts, without its coarse steps:
// a narrow model lowers every candidate's likelihood yet may still rank the true one first). They combine
// additively: rating(p, m, d) = model[m] + prompt[p] − full + decode[d] − decode[m] (PairRatings::additive
// and PairRatings::decode; a recency cut's rating moves by recency[p] − prompt[p], PairRatings::recency).
// The decode curve matters because TPOT objectives narrow decode below the
// prefill's width, and the answer is read from the narrow sub-model: without it a plan that compresses
// the prompt to keep a wide prefill looks better than it answers. The recency curve lets the planner
// weigh a cut that costs nothing against the TLM's, whose time must come out of the TTFT: on docs-95M's
// continuation items the latest tokens answered at least as well as the TLM's choice at every ratio (README).
//
// Why a measured prior and not the decision head's per-prompt ratings by default: a head trained on the
// continuation log-likelihood of short prompts, which barely depends on context far back, rates
// compressed prompts too well on the long contexts a service answers questions about (measured on
// docs-95M: the trace's accuracy fell from 80 % to 57.5 % when its ratings planned; README, run D). A head
// trained on these curves per item (item_curves; train_tlm --decision-labels choice) beats this prior at
// some budgets and not at others (README), so it too is off by default.
//
// A measured prior is cached as JSON (save_prior / load_prior) next to the latency table: measuring it
// reads 33 configurations per item, a few minutes for docs-95M.
#pragma once

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastilm/io/atomic_write.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/service/choice_benchmark.hpp"
#include "elastilm/service/fingerprint.hpp"
#include "elastilm/service/orchestrator.hpp"
#include "elastilm/service/prompt_compression.hpp"
#include "elastilm/service/service.hpp"

namespace elastilm {

// An item as the service sees it: BOS, the context (compressible; its paragraph BOS tokens are kept),
// then the question (protected).
inline TokenizedPrompt choice_prompt(const ChoiceItem& it, int bos = 1) {
    TokenizedPrompt p;
    p.ids.push_back(bos);
    p.keep.push_back(1);
    for (int id : it.context) {
        p.ids.push_back(id);
        p.keep.push_back(id <= 2 ? 1 : 0);
    }
    for (int id : it.question) {
        p.ids.push_back(id);
        p.keep.push_back(1);
    }
    return p;
}

// Mean log-likelihood per token of each candidate after the prompt already in `s` (whose last logits
// are `prompt_logits`), read at `percent`; `true_ll`, when given, is the answer's already computed value.
// The session is left at the prompt's end.
template <ModelConfig Cfg>
std::array<double, 4> score_choices(Session<Cfg>& s, std::span<const float> prompt_logits, const ChoiceItem& it, int percent,
                                    std::optional<double> true_ll = std::nullopt) {
    const int pos = s.position();
    std::array<double, 4> ll{};
    for (int c = 0; c < 4; ++c) {
        if (c == it.answer && true_ll) {
            ll[c] = *true_ll;
            continue;
        }
        const auto& cand = it.choices[c];
        double sum = log_softmax_at(prompt_logits, cand[0]);
        if (cand.size() > 1) {
            s.truncate(pos);
            const auto all = s.append_all_logits(std::span<const int>(cand).first(cand.size() - 1), percent);
            for (std::size_t j = 1; j < cand.size(); ++j)
                sum += log_softmax_at(std::span<const float>(all).subspan((j - 1) * Cfg::vocab_size, Cfg::vocab_size), cand[j]);
        }
        ll[c] = sum / double(cand.size());
    }
    s.truncate(pos);
    return ll;
}

// The answer's log-likelihood minus the best distractor's: positive when the item is answered right.
inline double answer_margin(const std::array<double, 4>& ll, int answer) {
    double rival = -std::numeric_limits<double>::infinity();
    for (int c = 0; c < 4; ++c)
        if (c != answer) rival = std::max(rival, ll[c]);
    return ll[answer] - rival;
}

// The four curves of the file comment, as used below: which width prefills, which decodes, and
// whether and how the prompt is compressed.
enum class QualityCurve { model, prompt, decode, recency };

// One item read at one configuration of `curve` at ratio kRatios[r]: the candidates' log-likelihoods.
// `token_scores`: the TLM's importances for choice_prompt(it) (used by the prompt curve).
template <ModelConfig Cfg>
std::array<double, 4> read_item(Session<Cfg>& session, const ChoiceItem& it, std::span<const float> token_scores, QualityCurve curve,
                                std::size_t r) {
    const TokenizedPrompt p = choice_prompt(it);
    const int prefill_percent = curve == QualityCurve::model ? kRatios[r] : 100;
    const int decode_percent = curve == QualityCurve::prompt || curve == QualityCurve::recency ? 100 : kRatios[r];
    const bool cut = curve == QualityCurve::prompt || curve == QualityCurve::recency;
    const std::vector<int> kept =
        cut_prompt(p.ids, cut ? kRatios[r] : 100, curve == QualityCurve::recency ? PromptCut::recency : PromptCut::scores, token_scores, p.keep);
    session.reset();
    const auto l = session.append(kept, prefill_percent);
    const std::vector<float> logits(l.begin(), l.end());
    return score_choices(session, std::span<const float>(logits), it, decode_percent);
}

// Accuracy, the answer's mean log-likelihood and its mean margin per compiled ratio for the four curves
// of the file comment ("model", "prompt" compressed by `score`'s token scores, "decode", "recency").
// `progress`, when given, is told each ratio as it finishes.
struct RatioQuality {
    std::array<double, kRatios.size()> model_acc{}, prompt_acc{}, decode_acc{}, recency_acc{}, model_ll{}, prompt_ll{}, decode_ll{},
        recency_ll{}, model_margin{}, prompt_margin{}, decode_margin{}, recency_margin{};
};
template <ModelConfig Cfg>
RatioQuality ratio_quality(Session<Cfg>& session, const PromptScorer& score, std::span<const ChoiceItem> items,
                           const std::function<void(int percent, const RatioQuality&)>& progress = {}) {
    require(!items.empty(), "ratio_quality", "needs at least one multiple-choice item");
    require(bool(score), "ratio_quality", "needs a prompt scorer (the TLM) to compress prompts");
    RatioQuality q;
    std::vector<std::vector<float>> token_scores;
    for (const auto& it : items) {
        const TokenizedPrompt p = choice_prompt(it);
        token_scores.push_back(score.analyze(p.ids, p.keep).scores);
    }
    for (std::size_t r = 0; r < kRatios.size(); ++r) {
        const bool full = r + 1 == kRatios.size();  // at 100 % every curve is the model curve's run: read once
        for (std::size_t i = 0; i < items.size(); ++i) {
            std::array<double, 4> ll{};
            for (const QualityCurve curve : {QualityCurve::model, QualityCurve::prompt, QualityCurve::decode, QualityCurve::recency}) {
                if (!full || curve == QualityCurve::model) ll = read_item(session, items[i], std::span<const float>(token_scores[i]), curve, r);
                auto [acc, lik, margin] = curve == QualityCurve::model    ? std::tie(q.model_acc, q.model_ll, q.model_margin)
                                           : curve == QualityCurve::prompt ? std::tie(q.prompt_acc, q.prompt_ll, q.prompt_margin)
                                           : curve == QualityCurve::decode ? std::tie(q.decode_acc, q.decode_ll, q.decode_margin)
                                                                           : std::tie(q.recency_acc, q.recency_ll, q.recency_margin);
                acc[r] += choose_answer(ll) == items[i].answer;
                lik[r] += ll[items[i].answer];
                margin[r] += answer_margin(ll, items[i].answer);
            }
        }
        for (auto* a : {&q.model_acc, &q.prompt_acc, &q.decode_acc, &q.recency_acc, &q.model_ll, &q.prompt_ll, &q.decode_ll, &q.recency_ll,
                        &q.model_margin, &q.prompt_margin, &q.decode_margin, &q.recency_margin})
            (*a)[r] /= double(items.size());
        if (progress) progress(kRatios[r], q);
    }
    session.reset();
    return q;
}

// One item's own margin curves (25 runs: at 100 % the three curves are one configuration) in PairRatings::from_curves' order — model[r], then
// prompt[r], then decode[r]: the labels a decision head learns per prompt (train_tlm --decision-labels
// choice); their mean over items is the measured prior's curves.
template <ModelConfig Cfg>
std::array<double, PairRatings::kCurveValues> item_curves(Session<Cfg>& session, const ChoiceItem& it, std::span<const float> token_scores) {
    std::array<double, PairRatings::kCurveValues> out{};
    const std::size_t n = kRatios.size();
    for (std::size_t r = 0; r < n; ++r)
        for (const QualityCurve curve : {QualityCurve::model, QualityCurve::prompt, QualityCurve::decode}) {
            if (r == n - 1 && curve != QualityCurve::model) {  // at 100 % all three are the model curve's run
                out[std::size_t(curve) * n + r] = out[r];
                continue;
            }
            out[std::size_t(curve) * n + r] = answer_margin(read_item(session, it, token_scores, curve, r), it.answer);
        }
    session.reset();
    return out;
}

// ---- A decision head's labels, cached ---------------------------------------------------------------
// train_tlm --decision-labels choice labels every item with item_curves: 25 runs, ~10 s per item for
// docs-95M, so hundreds of items are most of an hour. The cache keeps each item's labels with what they
// were measured with, so that fitting a head again costs seconds and a run on more items labels only the
// new ones (prior_items draws items in sequence from one seed: the first N are the same for any count
// >= N). Besides the key, each item records its identity (item_id), its pooled features and its token
// importances: a reader compares them with its own, so labels made under another trunk or score head are
// refused, not silently reused.
inline constexpr std::string_view kChoiceLabelsFormat = "elastilm-choice-labels/1";

// An item's tokens and answer, hashed: the same text and seed give the same ids.
inline std::string item_id(const ChoiceItem& it) {
    Fnv1a h;
    auto ids = [&](const std::vector<int>& v) {
        h.value(std::uint64_t(v.size()));
        for (int id : v) h.value(std::int32_t(id));
    };
    ids(it.context);
    ids(it.question);
    for (const auto& c : it.choices) ids(c);
    h.value(std::int32_t(it.answer));
    return h.hex();
}

struct ChoiceLabels {
    // What the labels depend on, by name (model, adapters, trunk, items, features, ...): a cache whose
    // key differs in any of them is refused with that name.
    std::map<std::string, std::string> key;
    struct Item {
        std::string id;              // item_id
        std::vector<float> pooled;   // the decision head's pooled statistics of the item's prompt
        std::vector<float> scores;   // the score head's importance per prompt token
        std::array<double, PairRatings::kCurveValues> curves{};  // item_curves: the labels
    };
    std::vector<Item> items;

    void require_key(const std::map<std::string, std::string>& now, const std::string& where) const {
        for (const auto& [name, value] : now) {
            const auto it = key.find(name);
            require(it != key.end(), where, "records no '" + name + "' in its key: labels cached by another train_tlm; delete the file to label again");
            require(it->second == value, where,
                    "was labelled with another " + name + " ('" + it->second + "', now '" + value + "'): delete it or pass another --labels file");
        }
        for (const auto& [name, value] : key)
            require(now.contains(name), where, "has a key field '" + name + "' this train_tlm does not know: labels cached by another version");
    }
};

inline void save_choice_labels(const ChoiceLabels& c, const std::filesystem::path& path) {
    nlohmann::json j;
    j["format"] = kChoiceLabelsFormat;
    j["key"] = c.key;
    j["items"] = nlohmann::json::array();
    for (const auto& it : c.items)
        j["items"].push_back({{"id", it.id}, {"pooled", it.pooled}, {"scores", it.scores}, {"curves", it.curves}});
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
    io::write_text_atomically(path, j.dump() + "\n");
}

// Reads a label cache, checking every field; errors name the file, the item and what was expected.
inline ChoiceLabels load_choice_labels(const std::filesystem::path& path) {
    const std::string where = path.string();
    std::ifstream in(path, std::ios::binary);
    require(bool(in), where, "cannot open the label cache");
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    require(!j.is_discarded(), where, "is not JSON (a truncated or damaged label cache?): delete it to label again");
    require(j.is_object() && j.contains("format") && j["format"].is_string() && j["format"].get<std::string>() == kChoiceLabelsFormat, where,
            "has no \"format\": \"" + std::string(kChoiceLabelsFormat) + "\" (not a label cache written by train_tlm --labels)");
    ChoiceLabels c;
    require(j.contains("key") && j["key"].is_object(), where, "has no \"key\" object");
    for (const auto& [name, value] : j["key"].items()) {
        require(value.is_string(), where, "key field '" + name + "' is not a string");
        c.key[name] = value.get<std::string>();
    }
    require(j.contains("items") && j["items"].is_array(), where, "has no \"items\" array");
    auto numbers = [&](const nlohmann::json& a, const std::string& what, std::size_t min_size, std::size_t max_size, auto& out) {
        require(a.is_array() && a.size() >= min_size && a.size() <= max_size, where,
                what + " must be an array of " + (min_size == max_size ? std::to_string(min_size) : "1.." + std::to_string(max_size)) + " numbers");
        for (std::size_t k = 0; k < a.size(); ++k) {
            require(a[k].is_number() && std::isfinite(a[k].get<double>()), where, what + "[" + std::to_string(k) + "] is not a finite number");
            if constexpr (requires { out.push_back(0.0f); }) out.push_back(a[k].get<float>());
            else out[k] = a[k].get<double>();
        }
    };
    std::size_t pooled_width = 0;
    for (std::size_t i = 0; i < j["items"].size(); ++i) {
        const auto& e = j["items"][i];
        const std::string what = "item " + std::to_string(i);
        require(e.is_object() && e.contains("id") && e["id"].is_string(), where, what + " has no \"id\" string");
        require(e.contains("pooled") && e.contains("scores") && e.contains("curves"), where, what + " needs \"pooled\", \"scores\" and \"curves\"");
        ChoiceLabels::Item it;
        it.id = e["id"].get<std::string>();
        numbers(e["pooled"], what + " pooled", 1, 64, it.pooled);
        numbers(e["scores"], what + " scores", 1, 1 << 20, it.scores);
        numbers(e["curves"], what + " curves", std::size_t(PairRatings::kCurveValues), std::size_t(PairRatings::kCurveValues), it.curves);
        if (i == 0) pooled_width = it.pooled.size();
        require(it.pooled.size() == pooled_width, where, what + " has " + std::to_string(it.pooled.size()) + " pooled features, item 0 has " +
                                                             std::to_string(pooled_width));
        c.items.push_back(std::move(it));
    }
    return c;
}

// The prior the orchestrator plans with: answer margins, combined additively, recency cuts rated by how
// far their curve lies from the TLM's.
inline PairRatings prior_ratings(const RatioQuality& q) {
    std::array<double, PairRatings::kCurveValues> curves{};
    std::copy(q.model_margin.begin(), q.model_margin.end(), curves.begin());
    std::copy(q.prompt_margin.begin(), q.prompt_margin.end(), curves.begin() + kRatios.size());
    std::copy(q.decode_margin.begin(), q.decode_margin.end(), curves.begin() + 2 * kRatios.size());
    PairRatings r = PairRatings::from_curves(curves);
    r.recency.emplace();
    for (std::size_t k = 0; k < kRatios.size(); ++k) {
        require(std::isfinite(q.recency_margin[k]), "prior_ratings", "the recency curve must be finite");
        (*r.recency)[k] = float(q.recency_margin[k] - q.prompt_margin[k]);
    }
    return r;
}

// A measured prior on disk: the two margin curves and what they were measured on (`key`: the model,
// adapters and TLM they belong to — a prior measured for other weights is not this model's).
inline constexpr std::string_view kPriorFormat = "elastilm-pair-prior/3";  // /3: the recency curve

inline void save_prior(const RatioQuality& q, const std::string& key, int items, const std::filesystem::path& path) {
    nlohmann::json j;
    j["format"] = kPriorFormat;
    j["key"] = key;
    j["items"] = items;
    j["model_margin"] = q.model_margin;
    j["prompt_margin"] = q.prompt_margin;
    j["decode_margin"] = q.decode_margin;
    j["recency_margin"] = q.recency_margin;
    j["model_accuracy"] = q.model_acc;
    j["prompt_accuracy"] = q.prompt_acc;
    j["decode_accuracy"] = q.decode_acc;
    j["recency_accuracy"] = q.recency_acc;
    const std::string text = j.dump(1) + "\n";
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
    io::write_atomically(path, [&](std::FILE* f) { require(std::fwrite(text.data(), 1, text.size(), f) == text.size(), path.string(), "write failed"); });
}

// The cached prior for `key`, or nothing when the file is absent, belongs to another key, or does not
// parse (a stale or damaged cache is re-measured, not trusted; `why` says which).
inline std::optional<RatioQuality> load_prior(const std::filesystem::path& path, const std::string& key, std::string* why = nullptr) {
    auto fail = [&](const std::string& w) -> std::optional<RatioQuality> {
        if (why) *why = path.string() + ": " + w;
        return std::nullopt;
    };
    std::ifstream in(path);
    if (!in) return fail("not found");
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return fail("not JSON");
    if (j.value("format", std::string()) != kPriorFormat) return fail("not a pair prior (format " + std::string(kPriorFormat) + ")");
    if (j.value("key", std::string()) != key) return fail("measured for other weights");
    RatioQuality q;
    auto curve = [&](const char* name, std::array<double, kRatios.size()>& out) {
        const auto it = j.find(name);
        if (it == j.end() || !it->is_array() || it->size() != kRatios.size()) return false;
        for (std::size_t r = 0; r < kRatios.size(); ++r) {
            if (!(*it)[r].is_number() || !std::isfinite((*it)[r].get<double>())) return false;
            out[r] = (*it)[r].get<double>();
        }
        return true;
    };
    if (!curve("model_margin", q.model_margin) || !curve("prompt_margin", q.prompt_margin) || !curve("decode_margin", q.decode_margin) ||
        !curve("recency_margin", q.recency_margin))
        return fail("needs model_margin, prompt_margin, decode_margin and recency_margin, " + std::to_string(kRatios.size()) +
                    " finite numbers each");
    curve("model_accuracy", q.model_acc), curve("prompt_accuracy", q.prompt_acc), curve("decode_accuracy", q.decode_acc),
        curve("recency_accuracy", q.recency_acc);
    return q;
}

// Calibration items for a prior: `count` items from the documents of `text` that start after its first
// `skip_tokens` tokens (an evaluation built with the default ChoiceBenchmarkOptions reads only the
// documents before them, so the two never share a document).
template <class Tok>
ChoiceBenchmark prior_items(const Tok& tok, std::string_view text, const std::string& source, int count,
                            std::size_t skip_tokens = ChoiceBenchmarkOptions{}.max_stream_tokens, std::uint64_t seed = 1001) {
    require(count > 0, "prior_items", "needs at least one item, got " + std::to_string(count));
    ChoiceBenchmarkOptions o;
    o.items = count;
    o.seed = seed;
    o.skip_stream_tokens = skip_tokens;
    o.max_stream_tokens = std::size_t(-1);
    return build_choice_benchmark(tok, text, source, o);
}

// The prior for `key` from `cache` when it was measured before, else measured on `items` now and
// cached (a cache that cannot be written costs a warning, not the answer). `log` hears progress.
template <ModelConfig Cfg>
RatioQuality measured_prior(Session<Cfg>& session, const PromptScorer& score, std::span<const ChoiceItem> items, const std::string& key,
                            const std::filesystem::path& cache, const std::function<void(const std::string&)>& log = {}) {
    std::string why;
    if (auto q = load_prior(cache, key, &why)) {
        if (log) log("prior: using " + cache.string());
        return *q;
    }
    if (log) log("prior: measuring on " + std::to_string(items.size()) + " multiple-choice items (" + why + ")");
    const RatioQuality q = ratio_quality(session, score, items, [&](int percent, const RatioQuality&) {
        if (log) log("prior: ratio " + std::to_string(percent) + "% done");
    });
    try {
        save_prior(q, key, int(items.size()), cache);
        if (log) log("prior: wrote " + cache.string());
    } catch (const std::exception& e) {
        if (log) log(std::string("warning: prior not cached: ") + e.what());
    }
    return q;
}

}  // namespace elastilm
