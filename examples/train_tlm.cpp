// train_tlm: train the TLM's score and decision heads on self-induced labels (ElastiLM §4.2).
//
//   train_tlm -m MODEL [--tokenizer T] [--calib TEXT] [--calib-skip 16384] [--prompts 32] [--prompt-len 32|16,32,48]
//             [--cont-len 8] [--span 2] [--trunk SMALL_MODEL] [--trunk-percent 20] [--train-split 75] [--folds 5]
//             [--adapters DIR] [-t 2] [--features hidden|hidden+surprisal] [--no-decision-head]
//             [--decision-labels continuation|choice] [--choice-items 160] [--labels CACHE.json]
//             [--decision-head scales|curves] [--decision-cv worst|total] [--folds-by document|item]
//             [--decision-features stats|stats+context] [--score-head EARLIER_HEADS.gguf] -o HEADS.gguf
//   train_tlm -m MODEL --trunk SMALL_MODEL --time-share        (the TLM's time against the LLM's prefill)
// --adapters DIR attaches recover's LoRA adapters to the LLM before it labels: the decision head must rate
// the sub-models serving runs, and serving attaches them. --prompt-len with a list cycles the prompts
// through those lengths, so the decision head sees prompts of several lengths, as the service does.
// --features hidden (default) trains heads that read no surprisal, so the TLM computes no logits over
// the prompt (tlm.hpp explains why that matters); the surprisal baseline is reported either way.
//
// Calibration prompts come from the text as paragraphs (BOS + ids): each prompt starts at a BOS and is
// followed by the text's own continuation. The LLM labels them (tlm_labels.hpp), the heads are fitted by
// ridge regression on the first --train-split % of the prompts (score-head penalty chosen on the train
// split's last fifth, decision-head penalty by 4-fold cross-validation), and the rest is held out for the report:
//   score head     Spearman ρ of predicted vs label; continuation NLL at 100% width after keeping 50% of
//                  the prompt with the trained head vs the surprisal baseline vs random dropping.
//   decision head  --folds-fold cross-validation over all prompts: for several latency budgets (a pair is
//                  feasible when p·m ≤ budget, the prefill cost in units of the full model on the full
//                  prompt), how often the head's best feasible pair is the measured best one, and its
//                  regret in mean log-likelihood — next to a prompt-agnostic prior (the training folds'
//                  mean rating per pair). Its penalty and its shrinkage toward that prior are chosen by
//                  an inner cross-validation on the training folds alone (--decision-cv: `worst`, the
//                  default, minimises the worst budget's regret above the prior's; `total` the sum).
//                  Labels (--decision-labels): `continuation` (default) — the continuation's mean
//                  log-likelihood for all 81 (p, m) pairs of each calibration prompt (81 runs each);
//                  `choice` — the service's own task: --choice-items multiple-choice items built from
//                  the calibration text's documents after token 131072 (the evaluation's come from
//                  before it), each labelled with its answer margin along the measured prior's three
//                  curves (27 runs each, service/pair_prior.hpp); the head then predicts those curves
//                  per prompt and its prior is exactly the measured prior. Its table adds budgets whose
//                  answer is decoded at ≤ 30 % (the decode curve's part), and compares two heads: 27 free
//                  curve values and 3 curve scales against the prior (--decision-head picks the saved
//                  one, scales by default; tlm.hpp). With choice labels the head reads by default
//                  (--decision-features stats+context) the trunk's context dependence besides the pooled
//                  statistics: how far its next-token distribution moves when the prompt is cut
//                  (service/context_dependence.hpp). Items share the ~90 documents after token 131072, so folds hold out
//                  whole documents (--folds-by item: single items). --labels CACHE.json keeps the labels
//                  (service/pair_prior.hpp ChoiceLabels): a later run reads them back and labels only
//                  items the cache lacks; with --score-head (the score head of earlier heads for the same
//                  model and trunk) such a run takes seconds.
// The calibration text must not overlap evaluation text: the default skips the first 16384 tokens.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <cstdio>
#include <numeric>
#include <random>
#include <sstream>

#include "cli/model_file.hpp"
#include "elastilm/lora/adapter_folder.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/service/context_dependence.hpp"
#include "elastilm/service/pair_prior.hpp"
#include "elastilm/service/tlm.hpp"
#include "elastilm/service/tlm_labels.hpp"

namespace {

using namespace elastilm;

// The training flags, read at start-up (before Args::finish) and used by train() and time_share().
struct TrainFlags {
    std::string calib_path, out_path, feature_flag, adapters;
    std::vector<int> prompt_lens;
    std::string decision_labels, labels_path, decision_head_kind, decision_cv, score_head_path, folds_by, decision_features;
    int skip, n_prompts, folds, cont_len, span, trunk_percent, split, reps, choice_items;
    bool timing, decision_head;
    explicit TrainFlags(const cli::Args& args)
        : calib_path(args.get("--calib", "--calibration", (cli::shared_dir() / "models" / "tiny-gqa-15M" / "valid.txt").string(),
                              "calibration text")),
          out_path(args.get("-o", "--output", "", "the TLM heads GGUF to write")),
          feature_flag(args.get("--features", "", "hidden", "hidden or hidden+surprisal")),
          adapters(args.get("--adapters", "", "", "recover's LoRA adapters: the labelling model serves with them")),
          prompt_lens(length_list(args.get("--prompt-len", "", "32", "tokens per prompt, or a list (16,24,32) cycled through"))),
          skip(args.get_int("--calib-skip", "", 16384, "calibration tokens skipped first")),
          n_prompts(args.get_int("--prompts", "", 32, "calibration prompts")),
          folds(args.get_int("--folds", "", 5, "cross-validation folds of the report")),
          cont_len(args.get_int("--cont-len", "", 8, "continuation tokens per prompt")),
          span(args.get_int("--span", "", 2, "label span")),
          trunk_percent(args.get_int("--trunk-percent", "", 20, "trunk model width ratio")),
          split(args.get_int("--train-split", "", 75, "percent of prompts trained on")),
          reps(args.get_int("--reps", "", 3, "with --time-share: repetitions (fastest kept)")),
          timing(args.has("--time-share", "", "measure the TLM's time against the model's prefill at 128..1024 tokens")),
          decision_head(!args.has("--no-decision-head", "", "train the score head only: no pair labels (most of the time)")) {
        decision_labels = args.get("--decision-labels", "", "continuation",
                                   "the decision head's labels: continuation (81 pairs per prompt) or choice (multiple-choice margin curves)");
        require(decision_labels == "continuation" || decision_labels == "choice", "--decision-labels",
                "must be 'continuation' or 'choice', got '" + decision_labels + "'");
        choice_items = args.get_int("--choice-items", "", 160, "with --decision-labels choice: labelled multiple-choice items");
        require(choice_items >= 10, "--choice-items", "needs at least 10 items, got " + std::to_string(choice_items));
        decision_head_kind = args.get("--decision-head", "", "scales",
                                      "with choice labels, the saved head: scales (3 curve scales) or curves (27 free curve values)");
        require(decision_head_kind == "scales" || decision_head_kind == "curves", "--decision-head",
                "must be 'scales' or 'curves', got '" + decision_head_kind + "'");
        decision_cv = args.get("--decision-cv", "", "worst", "inner cross-validation criterion: worst (budget against the prior) or total (regret)");
        require(decision_cv == "worst" || decision_cv == "total", "--decision-cv", "must be 'worst' or 'total', got '" + decision_cv + "'");
        folds_by = args.get("--folds-by", "", "document", "with choice labels, cross-validation folds by document (its items together) or item");
        require(folds_by == "document" || folds_by == "item", "--folds-by", "must be 'document' or 'item', got '" + folds_by + "'");
        score_head_path = args.get("--score-head", "", "", "take the score head from these heads (same model and trunk) instead of training it");
        labels_path = args.get("--labels", "", "", "with --decision-labels choice: a label cache, read when it exists, written as items are labelled");
        decision_features = args.get("--decision-features", "", decision_labels == "choice" ? "stats+context" : "stats",
                                     "the decision head's features: stats (pooled statistics) or stats+context (and the trunk's context "
                                     "dependence; the default with choice labels)");
        require(decision_features == "stats" || decision_features == "stats+context", "--decision-features",
                "must be 'stats' or 'stats+context', got '" + decision_features + "'");
        require(decision_features == "stats" || decision_labels == "choice", "--decision-features",
                "stats+context needs --decision-labels choice (its prompts mark the question no cut may remove)");
    }

    static std::vector<int> length_list(const std::string& list) {
        std::vector<int> v;
        std::stringstream ss(list);
        for (std::string item; std::getline(ss, item, ',');) {
            char* end = nullptr;
            const long l = std::strtol(item.c_str(), &end, 10);
            require(!item.empty() && end && *end == '\0' && l >= 2, "--prompt-len", "'" + item + "' is not a prompt length >= 2");
            v.push_back(int(l));
        }
        require(!v.empty(), "--prompt-len", "is empty");
        return v;
    }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<double> ranks(const std::vector<double>& v) {
    std::vector<int> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < idx.size();) {
        std::size_t j = i;
        while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
        for (std::size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * double(i + j);
        i = j + 1;
    }
    return r;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
    const auto ra = ranks(a), rb = ranks(b);
    const double n = double(a.size()), ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n,
                 mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
    double sab = 0, saa = 0, sbb = 0;
    for (std::size_t i = 0; i < ra.size(); ++i) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0;
}

constexpr double kLambdas[] = {0.1, 1, 10, 100, 1000, 10000};

// A latency budget of the regret table: plans whose prefill costs p·m ≤ `prefill` (in units of the full
// model on the whole prompt) and whose answer is decoded at d = min(m, `decode_cap`) %.
struct Budget {
    double prefill;
    int decode_cap;
};

// rating(p, m, d) of PairRatings (orchestrator.hpp) for pair k decoded under `cap`.
float plan_rating(const PairRatings& r, int k, int cap) {
    const int m = pair_model_percent(k), d = std::min(m, cap);
    return r.value[k] + r.decode[ratio_index(d)] - r.decode[ratio_index(m)];
}

// What choice labels depend on, by name (ChoiceLabels, service/pair_prior.hpp): the labelling model and
// its adapters (each lora-P.gguf's name and bytes), the trunk, the items' text and draw, the feature
// mode. The score head is checked per item instead (its importances are cached with the labels).
template <ModelConfig Cfg, ModelConfig TrunkCfg>
std::map<std::string, std::string> choice_label_key(const TrainFlags& f, const Model<Cfg>& llm, const Tlm<TrunkCfg>& tlm, std::string_view text,
                                                    std::uint64_t seed, std::size_t skip_tokens, TlmFeatures mode) {
    std::string adapters = "none";
    if (!f.adapters.empty()) {
        std::vector<std::filesystem::path> files;
        for (const auto& e : std::filesystem::directory_iterator(f.adapters)) {
            const std::string name = e.path().filename().string();
            if (e.is_regular_file() && name.starts_with("lora-") && name.ends_with(".gguf") && name.find(".ckpt") == std::string::npos)
                files.push_back(e.path());
        }
        std::sort(files.begin(), files.end());
        adapters.clear();
        for (const auto& p : files) {
            Fnv1a h;
            const std::string bytes = cli::read_text(p.string());
            h.bytes(bytes.data(), bytes.size());
            adapters += (adapters.empty() ? "" : " ") + p.filename().string() + ":" + h.hex();
        }
    }
    Fnv1a t;
    t.bytes(text.data(), text.size());
    return {{"model", identity_of(llm).describe()},
            {"adapters", adapters},
            {"trunk", identity_of(tlm.trunk()).describe() + " at " + std::to_string(f.trunk_percent) + "%"},
            {"items", std::filesystem::path(f.calib_path).filename().string() + " " + t.hex() + ", documents from token " +
                          std::to_string(skip_tokens) + ", seed " + std::to_string(seed)},
            {"features", std::string(to_string(mode))}};
}

DecisionHead cross_validate_decision_head(const TrainFlags& f, DecisionLabels kind, std::vector<float> y,
                                          const std::vector<PromptFeatures>& feats, const std::vector<std::vector<float>>& scores,
                                          const std::vector<std::vector<float>>& extra, std::vector<int> group, const std::string& what,
                                          std::chrono::steady_clock::time_point t0);

// Trains the decision head on one of its two label kinds (DecisionLabels, service/tlm.hpp) and prints its
// cross-validated regret against the prompt-agnostic prior (the training folds' mean labels, rated the
// same way — for choice curves, exactly the measured prior of service/pair_prior.hpp).
template <ModelConfig Cfg, ModelConfig TrunkCfg>
DecisionHead train_decision_head(const TrainFlags& f, const Model<Cfg>& llm, Tlm<TrunkCfg>& tlm, const Tokenizer& tok, ThreadPool& pool,
                                 const ScoreHead& score, const std::vector<CalibrationExample>& examples,
                                 const std::vector<PromptFeatures>& head_feats, const SpecialTokens& special, TlmFeatures mode) {
    const auto t0 = std::chrono::steady_clock::now();
    const DecisionLabels kind = f.decision_labels == "choice" ? DecisionLabels::choice_curves : DecisionLabels::continuation_pairs;
    std::vector<float> y;  // n × label_width(kind)
    std::vector<PromptFeatures> feats;
    std::vector<std::vector<float>> scores, extra;  // extra: --decision-features stats+context, per prompt
    std::string what;
    // Cross-validation groups: a document's items share their text, so with --folds-by document (the
    // default) they are held out together; a head must generalise to unseen documents, not recognise one.
    std::vector<int> group;
    if (kind == DecisionLabels::continuation_pairs) {
        feats = head_feats;
        for (std::size_t i = 0; i < examples.size(); ++i) {
            scores.push_back(score.scores(feats[i]));
            const auto l = pair_labels(llm, pool, examples[i], scores.back(), special);
            y.insert(y.end(), l.begin(), l.end());
            std::fprintf(stderr, "\r  pair labels: prompt %zu/%zu (%.1f s)", i + 1, examples.size(), seconds_since(t0));
        }
        what = std::to_string(examples.size()) + " continuation prompts x 81 pairs";
    } else {
        // Multiple-choice items of the served domain from the calibration text's documents after token
        // 131072 (the evaluation's items come from those before it), seeded apart from the demo's prior.
        const std::string text = cli::read_text(f.calib_path);
        constexpr std::uint64_t kSeed = 2002;
        const std::size_t skip_tokens = ChoiceBenchmarkOptions{}.max_stream_tokens;
        const ChoiceBenchmark items = prior_items(tok, text, f.calib_path, f.choice_items, skip_tokens, kSeed);
        {  // items are drawn with replacement from the documents after skip_tokens: how many are there?
            const ChoiceBenchmarkOptions o;
            const auto docs = document_streams(tok, text);
            std::size_t seen = 0, eligible = 0;
            for (const auto& d : docs) {
                eligible += seen >= skip_tokens && int(d.size()) >= o.context_tokens + o.question_tokens + o.choice_tokens;
                seen += d.size();
            }
            std::vector<int> used;
            for (const auto& it : items.items) used.push_back(it.document);
            std::sort(used.begin(), used.end());
            std::fprintf(stderr, "  choice items: %zu from %zu distinct documents of the %zu long enough after token %zu (%zu tokens in all)\n",
                         items.items.size(), std::size_t(std::unique(used.begin(), used.end()) - used.begin()), eligible, skip_tokens, seen);
        }
        // The label cache (--labels): what the labels depend on, by name; items already labelled are
        // read back, the rest labelled and appended (written every few items: an interrupted run keeps them).
        ChoiceLabels cache;
        cache.key = choice_label_key(f, llm, tlm, text, kSeed, skip_tokens, mode);
        if (!f.labels_path.empty() && std::filesystem::exists(f.labels_path)) {
            ChoiceLabels cached = load_choice_labels(f.labels_path);
            cached.require_key(cache.key, f.labels_path);
            cache.items = std::move(cached.items);
            std::fprintf(stderr, "  choice labels: %zu items cached in %s\n", cache.items.size(), f.labels_path.c_str());
        }
        const std::size_t had = cache.items.size();
        Session<Cfg> session(llm, pool, Cfg::context, 256);
        for (std::size_t i = 0; i < items.items.size(); ++i) {
            const TokenizedPrompt p = choice_prompt(items.items[i], special.bos);
            PromptFeatures pf = tlm.features(p.ids);
            if (mode == TlmFeatures::hidden)
                for (int t = 0; t < pf.tokens; ++t) pf.values[std::size_t(t) * pf.width + TrunkCfg::dim] = 0.0f;
            scores.push_back(score.scores(pf));
            feats.push_back(std::move(pf));
            if (f.decision_features == "stats+context") {
                const auto d = context_dependence(tlm, std::span<const int>(p.ids), std::span<const std::uint8_t>(p.keep),
                                                  std::span<const float>(scores.back()));
                extra.emplace_back(d.begin(), d.end());
            }
            const std::string id = item_id(items.items[i]);
            const auto pooled = DecisionHead::pooled(feats.back(), scores.back());
            if (i < cache.items.size()) {  // labelled before: the same item, read the same way?
                const ChoiceLabels::Item& c = cache.items[i];
                const std::string where = f.labels_path + ": item " + std::to_string(i);
                require(c.id == id, where, "is another item (id " + c.id + ", now " + id + ")");
                require(c.scores.size() == scores.back().size(), where,
                        "has " + std::to_string(c.scores.size()) + " token importances, the prompt has " + std::to_string(scores.back().size()) + " tokens");
                for (std::size_t t = 0; t < c.scores.size(); ++t)
                    require(std::abs(c.scores[t] - scores.back()[t]) <= 1e-3f * (1.0f + std::abs(c.scores[t])), where,
                            "token " + std::to_string(t) + "'s importance was " + std::to_string(c.scores[t]) + ", the score head now gives " +
                                std::to_string(scores.back()[t]) + ": labels of another trunk or score head (delete the cache to label again)");
                y.insert(y.end(), c.curves.begin(), c.curves.end());
            } else {
                ChoiceLabels::Item c{id, pooled, scores.back(), item_curves(session, items.items[i], std::span<const float>(scores.back()))};
                y.insert(y.end(), c.curves.begin(), c.curves.end());
                cache.items.push_back(std::move(c));
                if (!f.labels_path.empty() && (cache.items.size() % 8 == 0 || i + 1 == items.items.size()))
                    save_choice_labels(cache, f.labels_path);
            }
            std::fprintf(stderr, "\r  choice labels: item %zu/%zu (%zu cached) (%.1f s)", i + 1, items.items.size(), std::min(had, i + 1),
                         seconds_since(t0));
        }
        if (!f.labels_path.empty() && cache.items.size() > had)
            std::fprintf(stderr, "\n  choice labels: %zu items in %s", cache.items.size(), f.labels_path.c_str());
        what = std::to_string(items.items.size()) + " multiple-choice items x 3 margin curves";
        std::vector<int> docs;
        for (const auto& it : items.items) {
            auto at = std::find(docs.begin(), docs.end(), it.document);
            if (at == docs.end()) at = docs.insert(docs.end(), it.document);
            group.push_back(f.folds_by == "document" ? int(at - docs.begin()) : int(group.size()));
        }
        if (f.folds_by == "document") what += " from " + std::to_string(docs.size()) + " documents";
    }
    std::fprintf(stderr, "\n");
    return cross_validate_decision_head(f, kind, std::move(y), feats, scores, extra, std::move(group), what, t0);
}

// Cross-validates the decision head on labelled prompts and fits the one saved. Nothing here depends on the
// model's or the trunk's config, so it is compiled once instead of once per (model, trunk) pair of configs.
DecisionHead cross_validate_decision_head(const TrainFlags& f, DecisionLabels kind, std::vector<float> y,
                                          const std::vector<PromptFeatures>& feats, const std::vector<std::vector<float>>& scores,
                                          const std::vector<std::vector<float>>& extra, std::vector<int> group, const std::string& what,
                                          std::chrono::steady_clock::time_point t0) {
    const int n = int(feats.size());
    require(extra.empty() || extra.size() == feats.size(), "--decision-features", "needs extra features for every prompt or none");
    const int outputs = label_width(kind), pw = kDecisionFeatures + (extra.empty() ? 0 : int(extra[0].size()));
    std::vector<float> pooled;  // n × pw
    require(n >= 2 * f.folds, "--decision-labels", "needs at least " + std::to_string(2 * f.folds) + " labelled prompts for the cross-validation");
    for (int i = 0; i < n; ++i) {
        const auto p = DecisionHead::pooled(feats[i], scores[i]);
        pooled.insert(pooled.end(), p.begin(), p.end());
        if (!extra.empty()) pooled.insert(pooled.end(), extra[i].begin(), extra[i].end());
    }
    auto ratings_of = [&](std::span<const float> labels) {  // one prompt's labels as the ratings they mean
        if (kind == DecisionLabels::continuation_pairs) {
            PairRatings r;
            std::copy(labels.begin(), labels.end(), r.value.begin());
            return r;
        }
        const std::vector<double> curves(labels.begin(), labels.end());
        return PairRatings::from_curves(curves);
    };
    auto labels_of = [&](int i) { return std::span<const float>(y).subspan(std::size_t(i) * outputs, outputs); };
    // Ranking within a prompt is all the orchestrator uses: centre each prompt's continuation ratings on
    // their mean, so the head fits the differences between pairs and not how predictable the text is.
    // (Choice curves are margins, already comparable across items.)
    if (kind == DecisionLabels::continuation_pairs)
        for (int i = 0; i < n; ++i) {
            double m = 0;
            for (float v : labels_of(i)) m += v;
            for (int k = 0; k < outputs; ++k) y[std::size_t(i) * outputs + k] -= float(m / outputs);
        }

    std::vector<Budget> budgets;
    for (double b : {0.1, 0.2, 0.3, 0.5, 0.7, 1.0}) budgets.push_back({b, 100});
    if (kind == DecisionLabels::choice_curves)  // the decode curve matters only when TPOT narrows decode
        for (double b : {0.2, 0.5, 1.0}) budgets.push_back({b, 30});
    const int nb = int(budgets.size());
    std::vector<std::array<std::uint8_t, kPairs>> feasible(nb);
    std::vector<int> n_feasible(nb);
    for (int b = 0; b < nb; ++b)
        for (int k = 0; k < kPairs; ++k)
            n_feasible[b] += feasible[b][k] = pair_prompt_percent(k) * pair_model_percent(k) <= budgets[b].prefill * 10000 + 1e-6;
    auto pick = [&](const PairRatings& r, int b) {
        int best = -1;
        for (int k = 0; k < kPairs; ++k)
            if (feasible[b][k] && (best < 0 || plan_rating(r, k, budgets[b].decode_cap) > plan_rating(r, best, budgets[b].decode_cap))) best = k;
        return best;
    };
    // Regret and hits of a rating of prompt i at budget b, against the prompt's own measured labels.
    auto score_pick = [&](const PairRatings& r, int i, int b, double& regret, int& hits) {
        const PairRatings truth = ratings_of(labels_of(i));
        const int best = pick(truth, b), chosen = pick(r, b), cap = budgets[b].decode_cap;
        regret += plan_rating(truth, best, cap) - plan_rating(truth, chosen, cap);
        hits += chosen == best;
    };
    auto prior_of = [&](const std::vector<int>& prompts) {
        std::vector<float> mean(outputs, 0.0f);
        for (int i : prompts)
            for (int k = 0; k < outputs; ++k) mean[k] += labels_of(i)[k] / float(prompts.size());
        return ratings_of(mean);
    };
    // The heads compared: on continuation labels the 81 pair ratings; on choice labels the 27 free
    // curve values and the 3 curve scales (tlm.hpp). Each has a ridge penalty and a shrinkage toward the
    // training mean (0: the head is the prior), chosen by an inner cross-validation.
    struct Setting {
        double lambda, shrink;
    };
    std::vector<Setting> settings{{1.0, 0.0}};  // shrink 0: the prior, whatever the penalty
    for (double lambda : {0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4})
        for (double shrink : {0.25, 0.5, 0.75, 1.0}) settings.push_back({lambda, shrink});
    auto fit_on = [&](const std::vector<int>& prompts, Setting s, DecisionLabels head) {
        std::vector<float> fr, fy;
        for (int i : prompts) {
            fr.insert(fr.end(), pooled.begin() + std::size_t(i) * pw, pooled.begin() + std::size_t(i + 1) * pw);
            const auto l = labels_of(i);
            fy.insert(fy.end(), l.begin(), l.end());
        }
        return DecisionHead::fit(fr, fy, pw, s.lambda, head, s.shrink);
    };
    auto rate_with = [&](const DecisionHead& h, int i) { return h.rate_pooled(std::span<const float>(pooled).subspan(std::size_t(i) * pw, pw)); };
    if (group.empty())
        for (int i = 0; i < n; ++i) group.push_back(i);
    auto split = [&](const std::vector<int>& prompts, int k, int fold, std::vector<int>& tr, std::vector<int>& te) {
        tr.clear(), te.clear();
        for (int i : prompts) (group[std::size_t(i)] % k == fold ? te : tr).push_back(i);
    };
    // The setting chosen by `k`-fold cross-validation on `prompts` alone: by default (--decision-cv worst)
    // the one whose worst budget loses least against the prior on the same folds (ties: the lowest total
    // regret) — shrink 0 loses nothing, so a head that cannot beat the prior inside the training folds
    // falls back to it; --decision-cv total takes the lowest regret summed over the budgets.
    auto choose = [&](const std::vector<int>& prompts, int k, DecisionLabels head) {
        std::vector<double> prior_regret(nb, 0.0);
        std::vector<int> tr, te;
        int hits = 0;
        for (int fold = 0; fold < k; ++fold) {
            split(prompts, k, fold, tr, te);
            const PairRatings prior = prior_of(tr);
            for (int i : te)
                for (int b = 0; b < nb; ++b) score_pick(prior, i, b, prior_regret[b], hits);
        }
        Setting best = settings[0];
        double best_worst = INFINITY, best_total = INFINITY;
        for (const Setting& s : settings) {
            std::vector<double> regret(nb, 0.0);
            for (int fold = 0; fold < k; ++fold) {
                split(prompts, k, fold, tr, te);
                const DecisionHead h = fit_on(tr, s, head);
                for (int i : te) {
                    const PairRatings r = rate_with(h, i);
                    for (int b = 0; b < nb; ++b) score_pick(r, i, b, regret[b], hits);
                }
            }
            double worst = -INFINITY, total = 0;
            for (int b = 0; b < nb; ++b) {
                worst = std::max(worst, regret[b] - prior_regret[b]);
                total += regret[b];
            }
            if (f.decision_cv == "total") worst = 0;
            if (worst < best_worst - 1e-9 || (worst < best_worst + 1e-9 && total < best_total - 1e-9)) {
                best = s;
                best_worst = worst;
                best_total = total;
            }
        }
        return best;
    };
    std::vector<DecisionLabels> heads{kind};
    if (kind == DecisionLabels::choice_curves) heads = {DecisionLabels::choice_curves, DecisionLabels::choice_scales};
    const DecisionLabels saved = kind == DecisionLabels::continuation_pairs ? kind
                                 : f.decision_head_kind == "curves"        ? DecisionLabels::choice_curves
                                                                           : DecisionLabels::choice_scales;
    // Outer cross-validation: every prompt is rated once by heads (and a prior) that never saw it, with
    // settings chosen on the training folds alone.
    const int nh = int(heads.size());
    std::vector<std::vector<double>> regret_head(nh, std::vector<double>(nb));
    std::vector<std::vector<int>> hits_head(nh, std::vector<int>(nb));
    std::vector<double> regret_prior(nb);
    std::vector<int> hits_prior(nb);
    std::vector<std::string> fold_settings(nh);
    std::array<double, 3> scale_sse{}, scale_sst{};
    auto setting_text = [](Setting s) {
        char buf[48];
        std::snprintf(buf, sizeof buf, s.shrink == 0 ? "prior" : "%g/%g", s.lambda, s.shrink);
        return std::string(buf);
    };
    for (int fold = 0; fold < f.folds; ++fold) {
        std::vector<int> all(n), tr, te;
        std::iota(all.begin(), all.end(), 0);
        split(all, f.folds, fold, tr, te);
        const PairRatings prior = prior_of(tr);
        for (int i : te)
            for (int b = 0; b < nb; ++b) score_pick(prior, i, b, regret_prior[b], hits_prior[b]);
        for (int h = 0; h < nh; ++h) {
            const Setting s = choose(tr, 4, heads[h]);
            fold_settings[h] += (fold ? ", " : "") + setting_text(s);
            const DecisionHead head = fit_on(tr, s, heads[h]);
            for (int i : te) {
                const PairRatings r = rate_with(head, i);
                for (int b = 0; b < nb; ++b) score_pick(r, i, b, regret_head[h][b], hits_head[h][b]);
            }
            if (heads[h] == DecisionLabels::choice_scales) {  // how much of the items' steepness the head explains
                const DecisionHead plain = fit_on(tr, {s.lambda, 1.0}, heads[h]);
                for (int i : te) {
                    const auto k = DecisionHead::curve_scales(labels_of(i), plain.prior);
                    std::vector<float> z(pw);
                    plain.norm.apply(pooled.data() + std::size_t(i) * pw, z.data());
                    for (int c = 0; c < 3; ++c) {
                        scale_sse[c] += std::pow(k[c] - plain.ridge.predict(z.data(), c), 2);
                        scale_sst[c] += std::pow(k[c] - 1.0, 2);  // the prior's scale is 1
                    }
                }
            }
        }
    }
    std::vector<int> all(n);
    std::iota(all.begin(), all.end(), 0);
    const Setting chosen = choose(all, f.folds, saved);
    const DecisionHead decision = fit_on(all, chosen, saved);
    std::fprintf(stderr, "  decision head: %s on %s, %d features, penalty %g, shrink %g (%.1f s)\n", std::string(to_string(saved)).c_str(),
                 what.c_str(), pw, chosen.lambda, chosen.shrink, seconds_since(t0));
    std::printf("## Decision head on %s labels (%d-fold cross-validation over %s, %d pooled features)\n\n", std::string(to_string(kind)).c_str(),
                f.folds, what.c_str(), pw);
    std::printf("| prefill budget p·m ≤ | decode at | feasible pairs | prior: top plan = best | prior: regret |");
    for (DecisionLabels h : heads) std::printf(" %s head: top plan = best | %s head: regret |", std::string(to_string(h)).c_str(), std::string(to_string(h)).c_str());
    std::printf("\n|---|---|---|---|---|");
    for (int h = 0; h < nh; ++h) std::printf("---|---|");
    std::printf("\n");
    for (int b = 0; b < nb; ++b) {
        std::printf("| %.1f | %s | %d | %d/%d | %.4f |", budgets[b].prefill,
                    budgets[b].decode_cap >= 100 ? "m" : ("min(m, " + std::to_string(budgets[b].decode_cap) + " %)").c_str(), n_feasible[b],
                    hits_prior[b], n, regret_prior[b] / n);
        for (int h = 0; h < nh; ++h) {
            const bool better = regret_head[h][b] < regret_prior[b] - 1e-9;
            std::printf(" %d/%d | %s%.4f%s |", hits_head[h][b], n, better ? "**" : "", regret_head[h][b] / n, better ? "**" : "");
        }
        std::printf("\n");
    }
    std::printf("\nregret: %s lost against the prompt's measured best feasible plan (bold: below the prior's). Settings per\n"
                "fold (penalty/shrink, inner 4-fold cross-validation, criterion '%s'):",
                kind == DecisionLabels::continuation_pairs ? "mean log-likelihood (nats/token)" : "answer margin (nats/token)", f.decision_cv.c_str());
    for (int h = 0; h < nh; ++h) std::printf(" %s: %s;", std::string(to_string(heads[h])).c_str(), fold_settings[h].c_str());
    std::printf("\nthe saved head (%s) is fitted on all of them with %s.\n", std::string(to_string(saved)).c_str(), setting_text(chosen).c_str());
    if (scale_sst[0] > 0)
        std::printf("Held-out share of the items' curve steepness (choice-scales, unshrunk) the pooled features explain, 1 − SSE/SST\n"
                    "around the prior's scale 1: model %.3f, prompt %.3f, decode %.3f.\n",
                    1 - scale_sse[0] / scale_sst[0], 1 - scale_sse[1] / scale_sst[1], 1 - scale_sse[2] / scale_sst[2]);
    std::fflush(stdout);
    return decision;
}

template <ModelConfig Cfg, ModelConfig TrunkCfg>
int train(const TrainFlags& f, const Model<Cfg>& llm, const Model<TrunkCfg>& trunk_model, const Tokenizer& tok, ThreadPool& pool,
          const std::string& adapters_note) {
    const auto t_start = std::chrono::steady_clock::now();
    const std::string& calib_path = f.calib_path;
    const int skip = f.skip, n_prompts = f.n_prompts, cont_len = f.cont_len, span = f.span;
    const std::vector<int>& prompt_lens = f.prompt_lens;
    const int prompt_len = *std::max_element(prompt_lens.begin(), prompt_lens.end());  // the longest
    const int folds = f.folds;
    require(folds >= 2, "--folds", "needs at least 2 folds");
    const int trunk_percent = f.trunk_percent, split = f.split;
    const std::string& out_path = f.out_path;
    const std::string& feature_flag = f.feature_flag;
    require(feature_flag == "hidden" || feature_flag == "hidden+surprisal", "--features",
            "must be 'hidden' (no trunk logits: a cheap TLM) or 'hidden+surprisal', got '" + feature_flag + "'");
    const TlmFeatures mode = feature_flag == "hidden" ? TlmFeatures::hidden : TlmFeatures::hidden_and_surprisal;
    require(n_prompts >= 8, "--prompts", "needs at least 8 prompts (train and held-out splits)");
    require(split > 0 && split < 100, "--train-split", "must be in 1..99");
    require(prompt_len + cont_len <= std::min(Cfg::context, TrunkCfg::context), "--prompt-len",
            "prompt + continuation must fit the context of " + std::to_string(std::min(Cfg::context, TrunkCfg::context)));
    const SpecialTokens special = SpecialTokens::from(tok);

    const auto stream = paragraph_stream(tok, cli::read_text(calib_path));
    require(stream.size() > std::size_t(skip), calib_path, "has " + std::to_string(stream.size()) + " tokens, not more than --calib-skip");
    const auto examples = calibration_examples(std::span<const int>(stream).subspan(skip), n_prompts, prompt_lens, cont_len, special.bos);
    require(examples.size() >= 8, calib_path, "yields only " + std::to_string(examples.size()) + " calibration prompts after --calib-skip");
    const int n = int(examples.size()), n_train = std::max(4, n * split / 100), n_held = n - n_train;
    require(n_held >= 2, "--train-split", "leaves fewer than 2 held-out prompts");
    std::fprintf(stderr, "train_tlm: LLM %s, trunk %s at %d%%, %d prompts (%d train, %d held out) of ≤ %d + %d tokens from %s (token %d on), span %d\n",
                 std::string(Cfg::name).c_str(), std::string(TrunkCfg::name).c_str(), trunk_percent, n, n_train, n_held, prompt_len, cont_len,
                 calib_path.c_str(), skip, span);

    Tlm<TrunkCfg> tlm(trunk_model, pool, trunk_percent);
    Tlm<TrunkCfg>::template require_same_vocabulary<Cfg>();
    std::vector<PromptFeatures> feats;
    for (const auto& ex : examples) feats.push_back(tlm.features(ex.prompt));
    std::fprintf(stderr, "  features: %.1f s\n", seconds_since(t_start));
    // What the heads read: without surprisal the column is 0, as Tlm computes it in TlmFeatures::hidden
    // mode. `feats` keeps surprisal for the baseline's report.
    std::vector<PromptFeatures> head_feats = feats;
    if (mode == TlmFeatures::hidden)
        for (auto& f : head_feats)
            for (int t = 0; t < f.tokens; ++t) f.values[std::size_t(t) * f.width + TrunkCfg::dim] = 0.0f;

    // ---- Score head: labels, fit, held-out report -------------------------------------------------------
    // --score-head: the score head of earlier heads for this model and trunk (the decision head's label
    // cache then makes a run seconds long); otherwise labelled, fitted and reported here.
    auto train_score_head = [&]() -> ScoreHead {
        auto t0 = std::chrono::steady_clock::now();
        std::vector<std::vector<float>> labels;
        for (int i = 0; i < n; ++i) {
            labels.push_back(drop_labels(llm, pool, examples[i], span, special));
            std::fprintf(stderr, "\r  token labels: prompt %d/%d (%.1f s)", i + 1, n, seconds_since(t0));
        }
        std::fprintf(stderr, "\n");
        const int width = Tlm<TrunkCfg>::feature_width;
        auto stack = [&](int from, int to, std::vector<float>& rows, std::vector<float>& y) {
            rows.clear();
            y.clear();
            for (int i = from; i < to; ++i)
                for (int t = 0; t < feats[i].tokens; ++t)
                    if (std::isfinite(labels[i][t])) {
                        rows.insert(rows.end(), head_feats[i].row(t), head_feats[i].row(t) + width);
                        y.push_back(labels[i][t]);
                    }
        };
        auto mse = [](const std::vector<float>& pred, const std::vector<float>& y) {
            double s = 0;
            for (std::size_t i = 0; i < y.size(); ++i) s += double(pred[i] - y[i]) * (pred[i] - y[i]);
            return s / double(y.size());
        };
        const int n_fit = n_train - std::max(1, n_train / 5);
        std::vector<float> rows, y, vrows, vy;
        stack(0, n_fit, rows, y);
        stack(n_fit, n_train, vrows, vy);
        double best_lambda = kLambdas[0], best_err = INFINITY;
        for (double lambda : kLambdas) {
            const ScoreHead h = ScoreHead::fit(rows, y, width, lambda);
            std::vector<float> pred;
            const Standardizer& s = h.norm;
            std::vector<float> z(width);
            for (std::size_t r = 0; r < vy.size(); ++r) {
                s.apply(vrows.data() + r * width, z.data());
                pred.push_back(h.ridge.predict(z.data()));
            }
            const double e = mse(pred, vy);
            if (e < best_err) { best_err = e; best_lambda = lambda; }
        }
        stack(0, n_train, rows, y);
        const ScoreHead score = ScoreHead::fit(rows, y, width, best_lambda);
        std::fprintf(stderr, "  score head: ridge on %zu tokens, lambda %g\n", y.size(), best_lambda);

        std::vector<double> pred_all, label_all, surprisal_all;
        double nll_full = 0, nll_head = 0, nll_surprisal = 0, nll_random = 0;
        std::mt19937 rng(1);
        Session<Cfg> eval(llm, pool, prompt_len + cont_len, prompt_len + cont_len);
        constexpr int kRandomDraws = 3;
        for (int i = n_train; i < n; ++i) {
            const auto head_scores = score.scores(head_feats[i]);
            const auto surprisal_scores = ScoreHead{}.scores(feats[i]);
            for (int t = 0; t < feats[i].tokens; ++t)
                if (std::isfinite(labels[i][t])) {
                    pred_all.push_back(head_scores[t]);
                    label_all.push_back(labels[i][t]);
                    surprisal_all.push_back(surprisal_scores[t]);
                }
            auto nll_at_50 = [&](const std::vector<float>& s) {
                return continuation_nll(eval, std::span<const int>(compress(examples[i].prompt, 50, s, {}, special).ids), examples[i].continuation, 100);
            };
            nll_full += continuation_nll(eval, std::span<const int>(examples[i].prompt), examples[i].continuation, 100);
            nll_head += nll_at_50(head_scores);
            nll_surprisal += nll_at_50(surprisal_scores);
            for (int d = 0; d < kRandomDraws; ++d) {
                std::vector<float> r(feats[i].tokens);
                for (float& v : r) v = std::uniform_real_distribution<float>(0, 1)(rng);
                nll_random += nll_at_50(r) / kRandomDraws;
            }
        }
        std::string lens_text;
        for (int l : prompt_lens) {
            if (!lens_text.empty()) lens_text += ',';
            lens_text += std::to_string(l);
        }
        std::printf("# TLM heads for %s%s (trunk %s at %d%%), %d train / %d held-out prompts of %s tokens + %d continuation, span %d\n\n",
                    std::string(Cfg::name).c_str(), adapters_note.c_str(), std::string(TrunkCfg::name).c_str(), trunk_percent, n_train, n_held,
                    lens_text.c_str(), cont_len, span);
        std::printf("## Score head (held out, %zu labelled tokens)\n\n", label_all.size());
        std::printf("| importance | Spearman vs label | continuation NLL, prompt kept 50%% |\n|---|---|---|\n");
        std::printf("| (no compression) | | %.4f |\n", nll_full / n_held);
        std::printf("| trained score head | %.3f | %.4f |\n", spearman(pred_all, label_all), nll_head / n_held);
        std::printf("| surprisal baseline | %.3f | %.4f |\n", spearman(surprisal_all, label_all), nll_surprisal / n_held);
        std::printf("| random dropping (%d draws) | | %.4f |\n\n", kRandomDraws, nll_random / n_held);
        std::fflush(stdout);

        return score;
    };
    ScoreHead score;
    if (!f.score_head_path.empty()) {
        const TlmHeads earlier = TlmHeads::load(f.score_head_path);
        earlier.require_for(identity_of(llm), identity_of(trunk_model), trunk_percent, f.score_head_path);
        require(earlier.features == mode, f.score_head_path,
                "holds a score head for features '" + std::string(to_string(earlier.features)) + "', not '" + feature_flag + "'");
        score = earlier.score;
        std::fprintf(stderr, "  score head: from %s\n", f.score_head_path.c_str());
        std::printf("# TLM heads for %s%s (trunk %s at %d%%), score head from %s\n\n", std::string(Cfg::name).c_str(), adapters_note.c_str(),
                    std::string(TrunkCfg::name).c_str(), trunk_percent, f.score_head_path.c_str());
    } else {
        score = train_score_head();
    }

    // ---- Decision head (optional) ------------------------------------------------------------------
    // Pair labels are 81 runs per prompt, most of this tool's time; a service planning with a measured
    // prior (service/pair_prior.hpp) does not use the head, so --no-decision-head skips it.
    DecisionHead decision;
    if (!f.decision_head) {
        std::fprintf(stderr, "  decision head: not trained (--no-decision-head)\n");
    } else {
        decision = train_decision_head<Cfg, TrunkCfg>(f, llm, tlm, tok, pool, score, examples, head_feats, special, mode);
    }

    TlmHeads heads;
    heads.llm = identity_of(llm);
    heads.trunk = identity_of(trunk_model);
    heads.trunk_percent = trunk_percent;
    heads.features = mode;
    heads.score = score;
    heads.decision = decision;
    heads.save(out_path);
    std::fprintf(stderr, "wrote %s in %.1f s total\n", out_path.c_str(), seconds_since(t_start));
    return 0;
}

// The TLM's time on a prompt of L tokens (features in the heads' `mode`, plus both heads' arithmetic)
// against the LLM's full-width prefill of the same L tokens, measured alternately in one run so that
// the other load on the machine falls on both alike. Fastest of `reps` each (the least disturbed), in
// wall time and in this process's CPU time (all threads): on a shared machine the CPU-time ratio is the
// steadier of the two, the wall-time one is what a request sees.
template <ModelConfig Cfg, ModelConfig TrunkCfg>
int time_share(const Model<Cfg>& llm, const Model<TrunkCfg>& trunk, int trunk_percent, ThreadPool& pool, int reps) {
    Tlm<TrunkCfg> tlm(trunk, pool, trunk_percent);
    tlm.set_feature_mode(TlmFeatures::hidden);
    std::printf("# TLM %s at %d%% (hidden features, no trunk logits) vs %s prefill at 100%%, %d threads, fastest of %d\n\n",
                std::string(TrunkCfg::name).c_str(), trunk_percent, std::string(Cfg::name).c_str(), pool.size(), reps);
    std::printf("| prompt tokens | TLM ms | %s prefill ms | TLM / prefill (wall) | TLM / prefill (CPU time) |\n|---|---|---|---|---|\n",
                std::string(Cfg::name).c_str());
    Session<Cfg> session(llm, pool, Cfg::context, std::min(Cfg::context, 256));
    using clock = std::chrono::steady_clock;
    auto ms_since = [](clock::time_point t) { return std::chrono::duration<double, std::milli>(clock::now() - t).count(); };
    auto cpu_ms = [] {
        timespec ts{};
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
    };
    for (int len : {128, 256, 512, 1024}) {
        if (len > std::min(Cfg::context, TrunkCfg::context)) continue;
        std::vector<int> ids(len);
        ids[0] = 1;
        for (int i = 1; i < len; ++i) ids[i] = 3 + (i * 7919) % (Cfg::vocab_size - 3);
        double t_tlm = INFINITY, t_llm = INFINITY, c_tlm = INFINITY, c_llm = INFINITY;
        for (int r = 0; r <= reps; ++r) {  // r == 0 warms up
            auto t0 = clock::now();
            double c0 = cpu_ms();
            const PromptFeatures f = tlm.features(ids);
            const double a = ms_since(t0), ca = cpu_ms() - c0;
            t0 = clock::now();
            c0 = cpu_ms();
            session.reset();
            session.append(ids, 100);
            const double b = ms_since(t0), cb = cpu_ms() - c0;
            if (r > 0) {
                t_tlm = std::min(t_tlm, a);
                t_llm = std::min(t_llm, b);
                c_tlm = std::min(c_tlm, ca);
                c_llm = std::min(c_llm, cb);
            }
            require(f.tokens == len, "time_share", "the TLM returned features for another length");
        }
        std::printf("| %d | %.1f | %.1f | %.1f %% | %.1f %% |\n", len, t_tlm, t_llm, 100.0 * t_tlm / t_llm, 100.0 * c_tlm / c_llm);
        std::fflush(stdout);
    }
    return 0;
}

int run(const cli::Args& args) {
    const std::string model_path = args.get("-m", "--model", "", "the elastic model the heads serve");
    const TrainFlags flags(args);
    const std::string trunk_path = args.get("--trunk", "", "", "a smaller model as the TLM trunk (default: the model itself)");
    const int threads = args.threads();
    const std::string tokenizer = cli::tokenizer_flag(args);
    args.finish("train_tlm -m MODEL -o HEADS.gguf [flags]\n"
                "       train_tlm -m MODEL --trunk SMALL_MODEL [--trunk-percent 100] --time-share\n"
                "Trains the TLM's token-importance and decision heads for prompt compression.");
    if (model_path.empty() || (flags.out_path.empty() && !flags.timing))
        return cli::usage_error(args, "-m/--model and -o/--output");
    const cli::ModelFile file = cli::open_model(model_path, tokenizer);
    const Tokenizer& tok = *file.tokenizer;
    const ModelWeights& weights = file.weights;
    ThreadPool pool(threads);
    if (!weights.is_elastic)
        std::fprintf(stderr, "warning: %s is not elastic (run elasticize first): its sub-models keep units in file order\n", model_path.c_str());
    return cli::with_model(file, [&]<ModelConfig Cfg>() -> int {
        Model<Cfg> llm(weights);
        std::string note;
        if (!flags.adapters.empty()) {
            const auto attached = attach_adapters(llm, flags.adapters);
            require(!attached.empty(), flags.adapters, "holds no lora-P.gguf adapters (recover writes them)");
            note = " with " + std::to_string(attached.size()) + " LoRA adapters";
            std::fprintf(stderr, "labels by %s%s from %s\n", std::string(Cfg::name).c_str(), note.c_str(), flags.adapters.c_str());
        }
        if (trunk_path.empty()) {
            if (flags.timing) return time_share<Cfg, Cfg>(llm, llm, flags.trunk_percent, pool, flags.reps);
            return train<Cfg, Cfg>(flags, llm, llm, tok, pool, note);
        }
        ModelWeights trunk_weights = load_weights(trunk_path);
        require(trunk_weights.hparams.vocab_size == Cfg::vocab_size, trunk_path,
                "is a TLM trunk with a vocabulary of " + std::to_string(trunk_weights.hparams.vocab_size) + " tokens, but " +
                    std::string(Cfg::name) + " has " + std::to_string(Cfg::vocab_size) + ": the TLM must read the LLM's token ids");
        // Only configs that can be this model's trunk are compiled in; name what the file is otherwise.
        const std::string trunk_shape = with_config(trunk_weights.hparams, trunk_weights.source,
                                                    []<ModelConfig T>() { return std::string(T::name); });
        require(has_config_among<TrunkConfigsFor<Cfg>>(trunk_weights.hparams), trunk_path,
                "is " + trunk_shape + ", which cannot be the TLM trunk of " + std::string(Cfg::name) +
                    ": a separate trunk must be a smaller model than the one it serves (leave --trunk out to use the model itself)");
        return with_config<TrunkConfigsFor<Cfg>>(trunk_weights.hparams, trunk_weights.source, [&]<ModelConfig TrunkCfg>() -> int {
            check_against<TrunkCfg>(trunk_weights);
            Tlm<TrunkCfg>::template require_same_vocabulary<Cfg>();
            const Model<TrunkCfg> trunk(trunk_weights);
            if (flags.timing) return time_share<Cfg, TrunkCfg>(llm, trunk, flags.trunk_percent, pool, flags.reps);
            return train<Cfg, TrunkCfg>(flags, llm, trunk, tok, pool, note);
        });
    });
}

}  // namespace

int main(int argc, char** argv) { return elastilm::cli::run_main(argc, argv, {"--time-share", "--no-decision-head"}, run); }
