// train_tlm: train the TLM's score and decision heads on self-induced labels (ElastiLM §4.2).
//
//   train_tlm -m MODEL [--tokenizer T] [--calib TEXT] [--calib-skip 16384] [--prompts 32] [--prompt-len 32]
//             [--cont-len 8] [--span 2] [--trunk SMALL_MODEL] [--trunk-percent 20] [--train-split 75] [-t 2]
//             [--features hidden|hidden+surprisal] -o HEADS.gguf
// --features hidden (default) trains heads that read no surprisal, so the TLM computes no logits over
// the prompt (tlm.hpp explains why that matters); the surprisal baseline is reported either way.
//
// Calibration prompts come from the text as paragraphs (BOS + ids): each prompt starts at a BOS and is
// followed by the text's own continuation. The LLM labels them (tlm_labels.hpp), the heads are fitted by
// ridge regression on the first --train-split % of the prompts (score-head penalty chosen on the train
// split's last fifth, decision-head penalty by 4-fold cross-validation), and the rest is held out for the report:
//   score head     Spearman ρ of predicted vs label; continuation NLL at 100% width after keeping 50% of
//                  the prompt with the trained head vs the surprisal baseline vs random dropping.
//   decision head  for several latency budgets (a pair is feasible when p·m ≤ budget, the prefill cost
//                  in units of the full model on the full prompt), how often the head's best feasible
//                  pair is the measured best one, and its regret in mean log-likelihood — next to a
//                  prompt-agnostic prior (the train split's mean rating per pair).
// The calibration text must not overlap evaluation text: the default skips the first 16384 tokens.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <random>

#include "cli/model_file.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/service/tlm.hpp"
#include "elastilm/service/tlm_labels.hpp"

namespace {

using namespace elastilm;

// The training flags, read at start-up (before Args::finish) and used by train().
struct TrainFlags {
    std::string calib_path, out_path, feature_flag;
    int skip, n_prompts, prompt_len, cont_len, span, trunk_percent, split;
    explicit TrainFlags(const cli::Args& args)
        : calib_path(args.get("--calib", "--calibration", (cli::shared_dir() / "models" / "tiny-gqa-15M" / "valid.txt").string(),
                              "calibration text")),
          out_path(args.get("-o", "--output", "", "the TLM heads GGUF to write")),
          feature_flag(args.get("--features", "", "hidden", "hidden or hidden+surprisal")),
          skip(args.get_int("--calib-skip", "", 16384, "calibration tokens skipped first")),
          n_prompts(args.get_int("--prompts", "", 32, "calibration prompts")),
          prompt_len(args.get_int("--prompt-len", "", 32, "tokens per prompt")),
          cont_len(args.get_int("--cont-len", "", 8, "continuation tokens per prompt")),
          span(args.get_int("--span", "", 2, "label span")),
          trunk_percent(args.get_int("--trunk-percent", "", 20, "trunk model width ratio")),
          split(args.get_int("--train-split", "", 75, "percent of prompts trained on")) {}
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

template <ModelConfig Cfg, ModelConfig TrunkCfg>
int train(const TrainFlags& f, const Model<Cfg>& llm, const Model<TrunkCfg>& trunk_model, const Tokenizer& tok, ThreadPool& pool) {
    const auto t_start = std::chrono::steady_clock::now();
    const std::string& calib_path = f.calib_path;
    const int skip = f.skip, n_prompts = f.n_prompts, prompt_len = f.prompt_len, cont_len = f.cont_len, span = f.span;
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
    const auto examples = calibration_examples(std::span<const int>(stream).subspan(skip), n_prompts, prompt_len, cont_len, special.bos);
    require(examples.size() >= 8, calib_path, "yields only " + std::to_string(examples.size()) + " calibration prompts after --calib-skip");
    const int n = int(examples.size()), n_train = std::max(4, n * split / 100), n_held = n - n_train;
    require(n_held >= 2, "--train-split", "leaves fewer than 2 held-out prompts");
    std::fprintf(stderr, "train_tlm: LLM %s, trunk %s at %d%%, %d prompts (%d train, %d held out) of %d + %d tokens from %s (token %d on), span %d\n",
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
    std::printf("# TLM heads for %s (trunk %s at %d%%), %d train / %d held-out prompts of %d tokens + %d continuation, span %d\n\n",
                std::string(Cfg::name).c_str(), std::string(TrunkCfg::name).c_str(), trunk_percent, n_train, n_held, prompt_len, cont_len, span);
    std::printf("## Score head (held out, %zu labelled tokens)\n\n", label_all.size());
    std::printf("| importance | Spearman vs label | continuation NLL, prompt kept 50%% |\n|---|---|---|\n");
    std::printf("| (no compression) | | %.4f |\n", nll_full / n_held);
    std::printf("| trained score head | %.3f | %.4f |\n", spearman(pred_all, label_all), nll_head / n_held);
    std::printf("| surprisal baseline | %.3f | %.4f |\n", spearman(surprisal_all, label_all), nll_surprisal / n_held);
    std::printf("| random dropping (%d draws) | | %.4f |\n\n", kRandomDraws, nll_random / n_held);
    std::fflush(stdout);

    // ---- Decision head -------------------------------------------------------------------------------
    t0 = std::chrono::steady_clock::now();
    std::vector<float> pair_y;  // n × kPairs
    for (int i = 0; i < n; ++i) {
        const auto l = pair_labels(llm, pool, examples[i], score.scores(head_feats[i]), special);
        pair_y.insert(pair_y.end(), l.begin(), l.end());
        std::fprintf(stderr, "\r  pair labels: prompt %d/%d (%.1f s)", i + 1, n, seconds_since(t0));
    }
    std::fprintf(stderr, "\n");
    const int pw = width + 1;
    std::vector<float> pooled;
    for (const auto& f : head_feats) {
        const auto p = DecisionHead::pooled(f);
        pooled.insert(pooled.end(), p.begin(), p.end());
    }
    auto rows_of = [&](const std::vector<float>& v, int w, int from, int to) {
        return std::vector<float>(v.begin() + std::size_t(from) * w, v.begin() + std::size_t(to) * w);
    };
    // Penalty by 4-fold cross-validation over the train prompts (a handful of prompts per fold is too
    // noisy for a single split); the largest penalties reduce the head to the prompt-agnostic prior.
    best_err = INFINITY;
    for (double lambda : {1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6}) {
        double e = 0;
        for (int fold = 0; fold < 4; ++fold) {
            std::vector<float> fr, fy;
            for (int i = 0; i < n_train; ++i)
                if (i % 4 != fold) {
                    fr.insert(fr.end(), pooled.begin() + std::size_t(i) * pw, pooled.begin() + std::size_t(i + 1) * pw);
                    fy.insert(fy.end(), pair_y.begin() + std::size_t(i) * kPairs, pair_y.begin() + std::size_t(i + 1) * kPairs);
                }
            const DecisionHead h = DecisionHead::fit(fr, fy, pw, lambda);
            for (int i = fold; i < n_train; i += 4) {
                const auto r = h.rate(head_feats[i]);
                for (int k = 0; k < kPairs; ++k) e += std::pow(r.value[k] - pair_y[std::size_t(i) * kPairs + k], 2);
            }
        }
        if (e < best_err) { best_err = e; best_lambda = lambda; }
    }
    const DecisionHead decision = DecisionHead::fit(rows_of(pooled, pw, 0, n_train), rows_of(pair_y, kPairs, 0, n_train), pw, best_lambda);
    std::fprintf(stderr, "  decision head: ridge on %d prompts x %d pairs, lambda %g\n", n_train, kPairs, best_lambda);
    PairRatings prior;
    for (int k = 0; k < kPairs; ++k) {
        double s = 0;
        for (int i = 0; i < n_train; ++i) s += pair_y[std::size_t(i) * kPairs + k];
        prior.value[k] = float(s / n_train);
    }
    std::printf("## Decision head (held out; budget = feasible pairs with p·m ≤ budget)\n\n");
    std::printf("| budget | feasible pairs | head: top pair = best | head: regret | prior: top pair = best | prior: regret |\n|---|---|---|---|---|---|\n");
    for (double budget : {0.1, 0.2, 0.3, 0.5, 0.7, 1.0}) {
        std::vector<std::uint8_t> feasible(kPairs);
        int n_feasible = 0;
        for (int k = 0; k < kPairs; ++k) n_feasible += feasible[k] = pair_prompt_percent(k) * pair_model_percent(k) <= budget * 10000 + 1e-6;
        int hits_head = 0, hits_prior = 0;
        double regret_head = 0, regret_prior = 0;
        for (int i = n_train; i < n; ++i) {
            PairRatings truth;
            std::copy_n(pair_y.begin() + std::size_t(i) * kPairs, kPairs, truth.value.begin());
            const int best = truth.best(feasible), h = decision.rate(head_feats[i]).best(feasible), p = prior.best(feasible);
            hits_head += h == best;
            hits_prior += p == best;
            regret_head += truth.value[best] - truth.value[h];
            regret_prior += truth.value[best] - truth.value[p];
        }
        std::printf("| %.1f | %d | %d/%d | %.4f | %d/%d | %.4f |\n", budget, n_feasible, hits_head, n_held, regret_head / n_held, hits_prior,
                    n_held, regret_prior / n_held);
    }
    std::printf("\nregret: mean log-likelihood (nats/token) lost against the measured best feasible pair.\n");
    std::fflush(stdout);

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

int run(const cli::Args& args) {
    const std::string model_path = args.get("-m", "--model", "", "the elastic model the heads serve");
    const TrainFlags flags(args);
    const std::string trunk_path = args.get("--trunk", "", "", "a smaller model as the TLM trunk (default: the model itself)");
    const int threads = args.threads();
    const std::string tokenizer = cli::tokenizer_flag(args);
    args.finish("train_tlm -m MODEL -o HEADS.gguf [flags]\n"
                "Trains the TLM's token-importance heads for prompt compression.");
    if (model_path.empty() || flags.out_path.empty()) return cli::usage_error(args, "-m/--model and -o/--output");
    const cli::ModelFile file = cli::open_model(model_path, tokenizer);
    const Tokenizer& tok = *file.tokenizer;
    const ModelWeights& weights = file.weights;
    ThreadPool pool(threads);
    if (!weights.is_elastic)
        std::fprintf(stderr, "warning: %s is not elastic (run elasticize first): its sub-models keep units in file order\n", model_path.c_str());
    return cli::with_model(file, [&]<ModelConfig Cfg>() -> int {
        const Model<Cfg> llm(weights);
        if (trunk_path.empty()) return train<Cfg, Cfg>(flags, llm, llm, tok, pool);
        ModelWeights trunk_weights = load_weights(trunk_path);
        return with_config(trunk_weights.hparams, trunk_weights.source, [&]<ModelConfig TrunkCfg>() -> int {
            check_against<TrunkCfg>(trunk_weights);
            Tlm<TrunkCfg>::template require_same_vocabulary<Cfg>();
            const Model<TrunkCfg> trunk(trunk_weights);
            return train<Cfg, TrunkCfg>(flags, llm, trunk, tok, pool);
        });
    });
}

}  // namespace

int main(int argc, char** argv) { return elastilm::cli::run_main(argc, argv, {}, run); }
