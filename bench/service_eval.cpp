// service_eval: the end-to-end evaluation of the elastic service (ElastiLM §5), on this machine.
//
// 1. Accuracy, as the paper measures it: a multiple-choice benchmark built deterministically from
//    held-out text (service/choice_benchmark.hpp: a context, a protected question, four candidate
//    continuations, the answer = the candidate of highest mean per-token log-likelihood). Reported per
//    model ratio (whole prompt) and per prompt ratio (full model, the TLM's scores choosing the tokens).
// 2. A request trace — the benchmark's items, each with TTFT and TPOT objectives drawn from the SLO
//    levels (20 %…100 % of the full model's predicted latency) — served five ways (six with trained heads):
//      ours           prompt × model elasticity (orchestrator with true costs, TLM only when it compresses),
//                     pairs ranked by the measured prior (service/pair_prior.hpp); a compressing plan keeps
//                     either the tokens the TLM scores highest or (no TLM) the most recent ones, as rated
//      ours, TLM cuts only   the same without recency cuts: ElastiLM's planner as the paper has it
//      ours, decision head   the same, the trained decision head's per-prompt ratings re-ranking the
//                     pairs once the TLM has read the prompt
//      model only     width elasticity alone (no TLM, whole prompt)
//      prompt only    prompt compression alone (full-width model, TLM scores; LLMLingua-style when the
//                     TLM has no trained heads: surprisal)
//      layer dropping ShortGPT-style: skip the non-anchor layers of least block influence until the
//                     predicted TTFT and TPOT fit (the full-width model otherwise)
//      full model     always 100 % / 100 %
//    The orchestrator's prior ratings (what it plans with before the TLM has read the prompt) are
//    measured on --prior-items calibration items from documents the benchmark does not use: the answer's
//    mean margin over the best distractor per model ratio, per prompt ratio (TLM's cut and recency cut) and
//    per decode ratio, combined additively (PairRatings::from_curves, PairRatings::recency).
//    Every strategy plans as the Service does, with the latency profile corrected by the measured times of
//    its own earlier requests (service/latency_feedback.hpp; --latency-feedback W, 0 = off), and with the
//    Service's margins: each part's predicted time taken e^(z·spread) times, the spread that of the part's
//    recent overruns (--confidence z). Two more rows: "ours, profile only" plans with the profile as it was
//    taken (and the prior spread); "ours, fixed 10 % headroom" (unless --no-headroom-row) learns like ours
//    but plans as the Service did before the margins, every objective cut to 90 % and the predictions
//    taken as they are.
//    Requests run one after another (no queueing); each is served by every strategy back to back. TTFT = planning + TLM + prefill + first-token
//    choice; TPOT = decode steps of the true continuation at the decode ratio. Accuracy is read from the
//    same session (candidates scored after the compressed prompt at the plan's widths, outside the timed
//    path). "Feasible" requests are those for which the latency model (ours' corrected one, before the
//    request is served: the same requests for every row) knows some prompt × model plan meeting both
//    objectives (without any margin); "with 10 % headroom", a plan predicted to meet 90 % of each (a
//    prediction within 10 % of an objective is a coin toss). Both counts are of what the model predicts,
//    whatever margins the strategies plan with.
//
//   elastilm_bench_service_eval [-m ELASTIC.gguf] [--trunk TLM_MODEL|self] [--trunk-percent P] [--heads HEADS.gguf] [--adapters DIR]
//       [-f docs_valid.txt | --benchmark FILE] [--save-benchmark FILE] [--items 60] [--context-len 192]
//       [--question-len 8] [--choice-len 12] [--requests N] [--ttft-levels 20,…,100] [--tpot-levels 20,…,100]
//       [--prior-items 32] [--accuracy-only] [--no-accuracy-table] [--profile-max 512] [--reprofile] [-t 2] [--seed 1] [--verbose]
//       [--latency-feedback 0.25] [--confidence 1.65]
//   elastilm_bench_service_eval --smoke      (synthetic stories260K shape, no tokenizer: CI)
// Defaults are cmake/demo.sh's cache: build/demo/docs-95M-elastic.gguf, its heads beside it
// (docs-95M-elastic.tlm.gguf), build/demo/adapters/, and ../shared/models/docs-tlm-15M as the trunk.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>

#include <unistd.h>

#include "cli/tool.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/lora/adapter_folder.hpp"
#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/choice_benchmark.hpp"
#include "elastilm/service/latency_model.hpp"
#include "elastilm/service/pair_prior.hpp"
#include "elastilm/service/service.hpp"
#include "elastilm/service/tlm_scorer.hpp"

namespace {

using namespace elastilm;
using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point t) { return std::chrono::duration<double, std::milli>(clock_type::now() - t).count(); }

double log_prob(std::span<const float> logits, int id) { return log_softmax_at(logits, id); }

// "--ttft-levels 20,35,100": SLO levels, each in (0, 100] percent of the full model's latency.
std::vector<double> level_list(const cli::Args& args, const std::string& flag) {
    std::vector<double> v;
    if (!args.has(flag)) {
        for (int r : kRatios) v.push_back(r);
        return v;
    }
    std::stringstream ss(args.get(flag, flag, ""));
    for (std::string item; std::getline(ss, item, ',');) {
        char* end = nullptr;
        const double l = std::strtod(item.c_str(), &end);
        require(!item.empty() && end && *end == '\0', flag, "'" + item + "' is not a number");
        require(std::isfinite(l) && l > 0 && l <= 100, flag,
                "SLO level " + item + " is outside (0, 100] percent of the full model's latency");
        v.push_back(l);
    }
    require(!v.empty(), flag, "is empty");
    return v;
}

TokenizedPrompt prompt_of(const ChoiceItem& it) { return choice_prompt(it); }

// Layer dropping (ShortGPT): which layers to skip, least block influence first, anchors never.
template <ModelConfig Cfg>
std::vector<int> drop_order(const Model<Cfg>& model) {
    std::vector<int> order;
    for (int l = 0; l < Cfg::n_layers; ++l)
        if (!model.is_anchor(l)) order.push_back(l);
    const auto& bi = model.weights().elastic.layer_importance;
    if (bi.size() == std::size_t(Cfg::n_layers))
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return bi[a] < bi[b]; });
    else
        std::reverse(order.begin(), order.end());  // no measured influence (synthetic): later layers first
    return order;
}

// The share of the full model's prefill and decode time one dropped layer saves, measured once: the
// full stack against all droppable layers skipped, at the trace's prompt length (median of 3).
struct LayerCost {
    double ttft_share = 0, tpot_share = 0;
};
template <ModelConfig Cfg>
LayerCost measure_layer_cost(Session<Cfg>& s, const std::vector<int>& prompt, const std::vector<int>& order) {
    std::uint64_t all = 0;
    for (int l : order) all |= std::uint64_t(1) << l;
    auto time = [&](std::uint64_t mask) {
        std::vector<double> pre, dec;
        for (int r = 0; r < 3; ++r) {
            s.reset();
            s.set_skipped_layers(mask);
            auto t0 = clock_type::now();
            (void)Sampler::argmax(s.append(prompt, 100));
            pre.push_back(ms_since(t0));
            t0 = clock_type::now();
            for (int j = 0; j < 4; ++j) (void)Sampler::argmax(s.append(prompt[j], 100));
            dec.push_back(ms_since(t0) / 4);
        }
        std::sort(pre.begin(), pre.end());
        std::sort(dec.begin(), dec.end());
        return std::pair{pre[1], dec[1]};
    };
    const auto [p0, d0] = time(0);
    const auto [p1, d1] = time(all);
    s.reset();
    s.set_skipped_layers(0);
    const double k = std::max<std::size_t>(order.size(), 1);
    return {std::clamp((p0 - p1) / p0 / k, 0.0, 1.0 / k), std::clamp((d0 - d1) / d0 / k, 0.0, 1.0 / k)};
}

struct LayerDropPlan {
    std::uint64_t mask = 0;
    int dropped = 0;
    double predicted_ttft_ms = 0, predicted_tpot_ms = 0;
};

enum class Strategy { ours, ours_tlm_cuts, ours_profile, ours_headroom, ours_head, model_only, prompt_only, layer_dropping, full };
constexpr std::string_view name_of(Strategy s) {
    switch (s) {
        case Strategy::ours: return "ours (prompt x model)";
        case Strategy::ours_profile: return "ours, profile only";
        case Strategy::ours_tlm_cuts: return "ours, TLM cuts only";
        case Strategy::ours_headroom: return "ours, fixed 10 % headroom";
        case Strategy::ours_head: return "ours, decision head";
        case Strategy::model_only: return "model only";
        case Strategy::prompt_only: return "prompt only";
        case Strategy::layer_dropping: return "layer dropping";
        case Strategy::full: return "full model";
    }
    return "?";
}

struct Tally {
    int n = 0, met = 0, correct = 0, correct_met = 0, feasible = 0, feasible_met = 0, sure = 0, sure_met = 0, ttft_met = 0, tpot_met = 0, tlm_runs = 0,
        recency_cuts = 0;
    double ttft = 0, tpot = 0, kept = 0, prefill = 0, decode = 0, dropped = 0;
};

template <ModelConfig Cfg, ModelConfig TrunkCfg>
int evaluate(Model<Cfg>& model, const Model<TrunkCfg>* trunk, const ChoiceBenchmark& bench, const std::optional<ChoiceBenchmark>& calibration,
             const cli::Args& args, bool smoke) {
    const int threads = args.get_int("-t", "--threads", 2);
    const bool verbose = args.has("--verbose");
    ThreadPool pool(threads);
    const auto log = [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); };

    ProfileOptions popt;
    popt.repetitions = smoke ? 1 : 3;
    popt.max_tokens = std::min(Cfg::context, args.get_int("--profile-max", "--profile-max", 512));
    // --reprofile: measure now instead of reusing the cached table (on a shared machine the load when the
    // cache was written may not be today's).
    const std::filesystem::path fresh = std::filesystem::temp_directory_path() / ("elastilm-service-eval-" + std::to_string(::getpid()));
    const LatencyModel latency = args.has("--reprofile") ? load_or_profile(model, pool, popt, log, fresh) : load_or_profile(model, pool, popt, log);
    if (args.has("--reprofile")) std::filesystem::remove_all(fresh);
    const std::filesystem::path heads =
        args.get("--heads", "--heads", smoke ? "" : default_heads_path(args.get("-m", "--model", "build/demo/docs-95M-elastic.gguf")).string());
    // The heads file records the trunk width its features were read at; the default matches demo.sh's recipe.
    const int trunk_flag = args.get_int("--trunk-percent", "--trunk-percent", 0);
    const int trunk_percent = trunk_flag > 0 ? trunk_flag : trunk ? 100 : 20;
    require(ratio_index(trunk_percent) >= 0, "--trunk-percent", std::to_string(trunk_percent) + " is not a compiled ratio (20, 30, ..., 100)");
    std::optional<TlmScorer<Cfg, TrunkCfg>> scorer;
    if constexpr (std::same_as<Cfg, TrunkCfg>) {
        if (!trunk) scorer.emplace(model, pool, heads, trunk_percent);
    }
    if (!scorer) scorer.emplace(model, *trunk, pool, heads, trunk_percent);
    // "ours" ranks pairs by the prior (measured below) before and after the TLM reads the prompt; with
    // trained heads, "ours, decision head" lets the head's per-prompt ratings re-rank them once the TLM ran.
    PromptScorer score = scorer->as_prompt_scorer(false), score_head = scorer->as_prompt_scorer(true);

    const auto ttft_levels = level_list(args, "--ttft-levels"), tpot_levels = level_list(args, "--tpot-levels");
    const int cont = int(bench.items.front().choices[0].size());
    std::printf("# %s, %zu multiple-choice items from %s (prompt %zu tokens incl. BOS and a protected %zu-token question; "
                "4 candidates of %d tokens), %d threads\n",
                std::string(Cfg::name).c_str(), bench.items.size(), bench.source.c_str(), prompt_of(bench.items.front()).ids.size(),
                bench.items.front().question.size(), cont, threads);
    const int prompt_tokens = int(prompt_of(bench.items.front()).ids.size());
    std::printf("# TLM: %s; predicted TLM time on this prompt %.1f ms (%.1f ms with the decision head's ratings) vs full prefill %.1f ms\n",
                scorer->description().c_str(), score.predicted_ms(prompt_tokens), score_head.predicted_ms(prompt_tokens),
                latency.ttft_ms(100, prompt_tokens));
    std::fflush(stdout);

    Session<Cfg> session(model, pool);
    session.append(prompt_of(bench.items.front()).ids, 100);  // warm-up: page the weights in

    // ---- 1. accuracy per ratio -------------------------------------------------------------------------
    if (!args.has("--no-accuracy-table")) {
        const RatioQuality q = ratio_quality(session, score, std::span<const ChoiceItem>(bench.items), [](int percent, const RatioQuality& v) {
            const std::size_t r = std::size_t(ratio_index(percent));
            std::fprintf(stderr, "quality at %d%%: model %.3f, prompt %.3f, decode %.3f, recency %.3f\n", percent, v.model_acc[r], v.prompt_acc[r],
                         v.decode_acc[r], v.recency_acc[r]);
        });
        std::printf("\n| ratio | accuracy, model at ratio (whole prompt) | accuracy, prompt kept at ratio by the TLM (full model) | "
                    "accuracy, latest tokens kept at ratio (full model) | accuracy, decode at ratio (full prefill) | "
                    "log-lik of the answer, model at ratio | log-lik, prompt at ratio (TLM) | log-lik, latest tokens | "
                    "log-lik, decode at ratio |\n|---|---|---|---|---|---|---|---|---|\n");
        for (std::size_t r = 0; r < kRatios.size(); ++r)
            std::printf("| %d%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.3f | %.3f | %.3f | %.3f |\n", kRatios[r], 100 * q.model_acc[r],
                        100 * q.prompt_acc[r], 100 * q.recency_acc[r], 100 * q.decode_acc[r], q.model_ll[r], q.prompt_ll[r], q.recency_ll[r],
                        q.decode_ll[r]);
        std::printf("(chance: 25%%; log-lik: mean per token of the true continuation)\n");
        std::fflush(stdout);
    }
    if (args.has("--accuracy-only")) return 0;

    // ---- 2. the trace, served every way ----------------------------------------------------------------
    // The orchestrator's prior (its ratings before any TLM runs): measured on calibration items from
    // documents the benchmark does not use, or the fixed prior (widest model first) without them.
    if (calibration && !calibration->items.empty() && !score.prior) {
        const RatioQuality c = ratio_quality(session, score, std::span<const ChoiceItem>(calibration->items));
        // Rated by the answer's margin over the best distractor (what accuracy counts), not by its
        // log-likelihood alone: a narrow model lowers every candidate's likelihood yet still ranks them.
        score.prior = score_head.prior = prior_ratings(c);
        auto list = [](const auto& v) {
            std::string out;
            for (double x : v) {
                char number[32];
                std::snprintf(number, sizeof number, "%s%.2f", out.empty() ? "" : ",", x);
                out += number;
            }
            return out;
        };
        std::printf("\n# prior ratings from %zu calibration items (%s, documents after the benchmark's), per ratio 20..100 %%: "
                    "answer margin, model {%s}, prompt {%s}, recency {%s}, decode {%s}; log-lik, model {%s}, prompt {%s}, recency {%s}, decode {%s}; "
                    "accuracy, model {%s}, prompt {%s}, recency {%s}, decode {%s}\n",
                    calibration->items.size(), calibration->source.c_str(), list(c.model_margin).c_str(), list(c.prompt_margin).c_str(),
                    list(c.recency_margin).c_str(), list(c.decode_margin).c_str(), list(c.model_ll).c_str(), list(c.prompt_ll).c_str(),
                    list(c.recency_ll).c_str(), list(c.decode_ll).c_str(), list(c.model_acc).c_str(), list(c.prompt_acc).c_str(),
                    list(c.recency_acc).c_str(), list(c.decode_acc).c_str());
    } else if (!score.prior) {
        std::printf("\n# prior ratings: the orchestrator's fixed prior (widest model first, then most prompt kept)\n");
    }

    const int requests = args.get_int("--requests", "--requests", int(bench.items.size()));
    require(requests > 0, "--requests", "must be at least 1");
    std::mt19937_64 rng(std::uint64_t(args.get_int("--seed", "--seed", 1)) * 7919 + 17);
    std::vector<RelativeSlo> slos;
    for (int i = 0; i < requests; ++i)
        slos.push_back({ttft_levels[std::uniform_int_distribution<std::size_t>(0, ttft_levels.size() - 1)(rng)],
                        tpot_levels[std::uniform_int_distribution<std::size_t>(0, tpot_levels.size() - 1)(rng)]});

    const std::vector<int> order = drop_order(model);
    const LayerCost layer_cost = measure_layer_cost(session, prompt_of(bench.items.front()).ids, order);
    std::printf("\n# layer dropping: %zu droppable layers, least influential first {", order.size());
    for (std::size_t k = 0; k < order.size(); ++k) std::printf("%s%d", k ? "," : "", order[k]);
    std::printf("}; measured saving per layer: %.1f%% of prefill, %.1f%% of a decode step\n", 100 * layer_cost.ttft_share,
                100 * layer_cost.tpot_share);
    std::printf("# SLO levels (%% of the full model's predicted latency): TTFT {");
    for (std::size_t k = 0; k < ttft_levels.size(); ++k) std::printf("%s%g", k ? "," : "", ttft_levels[k]);
    std::printf("}, TPOT {");
    for (std::size_t k = 0; k < tpot_levels.size(); ++k) std::printf("%s%g", k ? "," : "", tpot_levels[k]);
    std::printf("}; %d requests, served one after another\n", requests);
    // Every strategy keeps the Service's margins: each part's predicted time taken e^(z·spread of its
    // recent errors) times (but "ours, fixed 10 % headroom", below).
    const double confidence = args.get_double("--confidence", "", ServiceOptions{}.confidence);
    std::printf("# plans keep a margin of e^(%.2f x the spread of each part's recent overruns of its prediction) on its predicted time\n\n", confidence);
    std::printf("| strategy | SLO attainment | on feasible SLOs | on feasible with 10 %% headroom | TTFT met | TPOT met | accuracy (all) | accuracy (SLO met) | mean TTFT ms | mean TPOT ms | "
                "prompt kept | prefill width | decode width | TLM runs | recency cuts |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);

    // Request-major: each request is served by every strategy back to back, so a change in the
    // machine's load (others compiling) hits every strategy alike instead of the one running at the time.
    std::vector<Strategy> strategies = {Strategy::ours, Strategy::model_only, Strategy::prompt_only, Strategy::layer_dropping, Strategy::full};
    if (scorer->has_decision_head()) strategies.insert(strategies.begin() + 1, Strategy::ours_head);
    // ElastiLM's planner as the paper has it: every cut by the TLM's scores (PlanRequest::recency_cuts off;
    // "prompt only" stays the LLMLingua-style baseline the same way).
    if (score.prior && score.prior->recency) strategies.insert(strategies.begin() + 1, Strategy::ours_tlm_cuts);
    // Every strategy plans as the Service does: with the latency profile corrected by its own requests'
    // measured times (LatencyFeedback); "ours, profile only" keeps the profile as it was taken.
    const double feedback_weight = args.get_double("--latency-feedback", "", 0.25);
    if (feedback_weight > 0) strategies.insert(strategies.begin() + 1, Strategy::ours_profile);
    // ... and "ours, fixed 10 % headroom" plans as the Service did before it kept margins from the errors'
    // spread: every objective cut to 90 %, the predictions taken as they are.
    if (!args.has("--no-headroom-row")) strategies.insert(strategies.begin() + 1, Strategy::ours_headroom);
    std::vector<LatencyFeedback<LatencyModel>> feedback(strategies.size(), LatencyFeedback<LatencyModel>(latency, feedback_weight > 0 ? feedback_weight : 1.0));
    std::vector<Tally> tallies(strategies.size());
    for (int i = 0; i < requests; ++i) {
        const ChoiceItem& it = bench.items[std::size_t(i) % bench.items.size()];
        const TokenizedPrompt prompt = prompt_of(it);
        const int n = int(prompt.ids.size());
        const Slo slo = absolute(slos[i], latency, n, cont);
        // Could any plan meet this SLO, as the latency model sees it before the request is served? One
        // answer for every strategy, from ours' corrected model (it learns the prefill, decode and TLM
        // alike), so each row's "on feasible" counts the same requests.
        PlanRequest any;
        any.prompt_tokens = n;
        any.protected_tokens = prompt.protected_count();
        any.new_tokens = cont;
        any.slo = slo;
        any.max_kept = session.context() - cont;
        any.tlm_ms = feedback.front().tlm_ms(score.predicted_ms(n));
        any.headroom = 1.0;
        // Ours' plans, recency cuts included when the prior rates them (a rated plan is returned feasible
        // whenever any plan is).
        const bool feasible = choose_plan(any, feedback.front(), score.prior).feasible();
        any.headroom = 0.9;  // ... and with 10 % to spare
        const bool sure = choose_plan(any, feedback.front(), score.prior).feasible();
        for (std::size_t si = 0; si < strategies.size(); ++si) {
            const Strategy st = strategies[si];
            Tally& t = tallies[si];
            LatencyFeedback<LatencyModel>& lat = feedback[si];
            const bool learns = feedback_weight > 0 && st != Strategy::ours_profile;
            auto scaled = [&](PromptScorer s) {  // the TLM's own profile, corrected like the model's (LatencyFeedback)
                if (s.predicted_ms) s.predicted_ms = [&lat, f = s.predicted_ms](int tokens) { return lat.tlm_ms(f(tokens)); };
                return s;
            };
            const bool fixed_headroom = st == Strategy::ours_headroom;
            const LatencyScale margin = fixed_headroom ? LatencyScale{} : lat.margin(confidence);
            const double headroom = fixed_headroom ? 0.9 : 1.0;

            session.reset();
            session.set_skipped_layers(0);
            const auto start = clock_type::now();
            PreparedPrompt p;
            LayerDropPlan drop;
            if (st == Strategy::layer_dropping) {
                // Drop least-influential layers until both predicted objectives fit (all droppable ones at most).
                const double t100 = lat.ttft_ms(100, n), d100 = lat.tpot_ms(100, n + cont / 2);
                for (std::size_t k = 0; k <= order.size(); ++k) {
                    drop.dropped = int(k);
                    drop.predicted_ttft_ms = t100 * (1 - double(k) * layer_cost.ttft_share);
                    drop.predicted_tpot_ms = d100 * (1 - double(k) * layer_cost.tpot_share);
                    if (k > 0) drop.mask |= std::uint64_t(1) << order[k - 1];
                    if (drop.predicted_ttft_ms * margin.prefill <= slo.ttft_ms * headroom &&
                        drop.predicted_tpot_ms * margin.decode <= slo.tpot_ms * headroom)
                        break;
                }
                session.set_skipped_layers(drop.mask);
                p.kept = prompt.ids;
                p.plan.kept_tokens = n;
            } else {
                PlanRequest pr;
                pr.new_tokens = cont;
                pr.slo = slo;
                pr.margin = margin;
                pr.headroom = headroom;
                pr.max_kept = session.context() - cont;
                pr.elasticity = st == Strategy::ours || st == Strategy::ours_tlm_cuts || st == Strategy::ours_profile ||
                                        st == Strategy::ours_headroom || st == Strategy::ours_head
                                    ? Elasticity::prompt_and_model
                                : st == Strategy::model_only  ? Elasticity::model_only
                                : st == Strategy::prompt_only ? Elasticity::prompt_only
                                                              : Elasticity::none;
                pr.recency_cuts = st != Strategy::ours_tlm_cuts && st != Strategy::prompt_only;
                p = prepare_prompt(prompt, pr, lat, scaled(st == Strategy::ours_head ? score_head : score), [&] { return ms_since(start); });
            }
            const auto l = session.append(p.kept, p.plan.prefill_percent);
            (void)Sampler::argmax(l);  // the first token's choice is part of TTFT
            const double ttft = ms_since(start);
            const std::vector<float> prompt_logits(l.begin(), l.end());
            // TPOT: decode the true continuation token by token (teacher-forced), timed.
            const auto& truth = it.choices[it.answer];
            double ll = log_prob(prompt_logits, truth[0]), decode_ms = 0;
            const int pos = session.position();
            for (std::size_t j = 1; j < truth.size(); ++j) {
                const auto t0 = clock_type::now();
                const auto lj = session.append(truth[j - 1], p.plan.decode_percent);
                (void)Sampler::argmax(lj);
                decode_ms += ms_since(t0);
                ll += log_prob(lj, truth[j]);
            }
            session.truncate(pos);
            const double tpot = truth.size() > 1 ? decode_ms / double(truth.size() - 1) : 0.0;
            const bool correct =
                choose_answer(score_choices(session, std::span<const float>(prompt_logits), it, p.plan.decode_percent, ll / double(truth.size()))) == it.answer;

            const bool ttft_ok = ttft <= slo.ttft_ms, tpot_ok = tpot <= slo.tpot_ms;
            // What this strategy predicted for the request it ran (layer dropping plans outside choose_plan).
            const bool dropping = st == Strategy::layer_dropping;
            const double predicted_ttft = dropping ? drop.predicted_ttft_ms : p.plan.predicted_ttft_ms;
            const double predicted_tpot = dropping ? drop.predicted_tpot_ms : p.plan.predicted_tpot_ms;
            if (learns) {
                // As the Service does: the TLM's time apart, the prefill and decode at the widths they ran at
                // (layer dropping runs every layer it keeps at full width).
                if (p.plan.uses_tlm) lat.observe_tlm(p.tlm_predicted_ms, p.tlm_ms);
                lat.observe_ttft(p.plan.prefill_percent, predicted_ttft - p.tlm_predicted_ms, ttft - p.tlm_ms);
                if (truth.size() > 1) lat.observe_tpot(p.plan.decode_percent, predicted_tpot, tpot);
            }
            if (verbose) {
                const LatencyScale f = lat.scale(p.plan.prefill_percent, p.plan.decode_percent);
                std::fprintf(stderr, "%-26s #%-3d slo %3.0f/%3.0f%% = %7.1f/%6.1f ms | p%3d%s m%3d d%3d drop %d kept %3zu | ttft %7.1f (pred %7.1f, tlm %5.1f pred %5.1f) tpot %6.1f (pred %6.1f) | x%.2f x%.2f x%.2f | margin %.2f %.2f %.2f | %s%s%s\n",
                             std::string(name_of(st)).c_str(), i, slos[i].ttft_percent, slos[i].tpot_percent, slo.ttft_ms, slo.tpot_ms,
                             p.plan.prompt_percent, p.plan.prompt_percent < 100 && p.plan.cut == PromptCut::recency ? "r" : "", p.plan.prefill_percent, p.plan.decode_percent, drop.dropped, p.kept.size(), ttft,
                             predicted_ttft, p.tlm_ms, p.tlm_predicted_ms, tpot, predicted_tpot, f.prefill, f.decode, f.tlm,
                             margin.prefill, margin.decode, margin.tlm, correct ? "right" : "wrong", ttft_ok && tpot_ok ? "" : " (SLO missed)",
                             feasible ? "" : " [no plan predicted to meet it]");
            }
            ++t.n;
            t.met += ttft_ok && tpot_ok;
            t.ttft_met += ttft_ok;
            t.tpot_met += tpot_ok;
            t.correct += correct;
            t.correct_met += correct && ttft_ok && tpot_ok;
            t.feasible += feasible;
            t.feasible_met += feasible && ttft_ok && tpot_ok;
            t.sure += sure;
            t.sure_met += sure && ttft_ok && tpot_ok;
            t.tlm_runs += p.plan.uses_tlm;
            t.recency_cuts += p.plan.prompt_percent < 100 && p.plan.cut == PromptCut::recency;
            t.ttft += ttft;
            t.tpot += tpot;
            t.kept += double(p.kept.size()) / n;
            t.prefill += p.plan.prefill_percent;
            t.decode += p.plan.decode_percent;
            t.dropped += drop.dropped;
        }
    }
    session.reset();
    session.set_skipped_layers(0);
    for (std::size_t si = 0; si < strategies.size(); ++si) {
        const Strategy st = strategies[si];
        const Tally& t = tallies[si];
        const std::string width = st == Strategy::layer_dropping
                                      ? std::to_string(int(std::lround(100.0 * (Cfg::n_layers - t.dropped / t.n) / Cfg::n_layers))) + "% of layers"
                                      : std::to_string(int(std::lround(t.prefill / t.n))) + "%";
        std::printf("| %s | %.1f%% | %.1f%% (%d) | %.1f%% (%d) | %.1f%% | %.1f%% | %.1f%% | %.1f%% (%d) | %.1f | %.1f | %.0f%% | %s | %.0f%% | %d | %d |\n",
                    std::string(name_of(st)).c_str(), 100.0 * t.met / t.n, t.feasible ? 100.0 * t.feasible_met / t.feasible : 0.0, t.feasible,
                    t.sure ? 100.0 * t.sure_met / t.sure : 0.0, t.sure,
                    100.0 * t.ttft_met / t.n, 100.0 * t.tpot_met / t.n, 100.0 * t.correct / t.n, t.met ? 100.0 * t.correct_met / t.met : 0.0,
                    t.met, t.ttft / t.n, t.tpot / t.n, 100.0 * t.kept / t.n, width.c_str(),
                    st == Strategy::layer_dropping ? 100.0 : t.decode / t.n, t.tlm_runs, t.recency_cuts);
        std::fflush(stdout);
    }
    return 0;
}

// A benchmark of random ids for the synthetic smoke run (no tokenizer, no text).
ChoiceBenchmark synthetic_benchmark(int vocab, int items) {
    std::mt19937_64 rng(5);
    auto ids = [&](int n) {
        std::vector<int> v(n);
        for (int& x : v) x = 3 + int(rng() % std::uint64_t(vocab - 3));
        return v;
    };
    ChoiceBenchmark b;
    b.source = "synthetic ids";
    b.vocab_size = vocab;
    for (int i = 0; i < items; ++i) {
        ChoiceItem it;
        it.context = ids(40);
        it.question = ids(4);
        for (auto& c : it.choices) c = ids(4);
        it.answer = i % 4;
        b.items.push_back(std::move(it));
    }
    return b;
}

// Every flag, declared with its help before Args::finish() (which refuses the unknown ones); the code
// below reads them where it uses them.
void declare_flags(const cli::Args& args) {
    (void)args.has("--smoke", "", "synthetic stories260K shape, no tokenizer: CI");
    (void)args.get("-m", "--model", "build/demo/docs-95M-elastic.gguf", "elastic docs-95M GGUF (elasticize's output)");
    (void)cli::tokenizer_flag(args);
    (void)args.get("--trunk", "", "../shared/models/docs-tlm-15M", "the TLM's trunk model, or 'self' (the served model at 20%)");
    (void)args.get_int("--trunk-percent", "", 0, "width the trunk runs at (default: 100 for a separate trunk, as demo.sh trains its heads; 20 for self)");
    (void)args.get("--heads", "", "", "TLM heads GGUF (default: beside the model, <model>.tlm.gguf, if present)");
    (void)args.get("--adapters", "", "build/demo/adapters", "folder of LoRA adapters (used if present)");
    (void)args.get("-f", "--file", "../shared/models/docs_valid.txt", "held-out text the benchmark is built from");
    (void)args.get("--benchmark", "", "", "a saved benchmark (JSON) instead of building one");
    (void)args.get("--save-benchmark", "", "", "write the built benchmark here");
    (void)args.get_int("--items", "", 60, "multiple-choice items");
    (void)args.get_int("--context-len", "", 192, "context tokens per item");
    (void)args.get_int("--question-len", "", 8, "protected question tokens per item");
    (void)args.get_int("--choice-len", "", 12, "tokens per candidate continuation");
    (void)args.get_int("--requests", "", 0, "requests in the trace (default: one per item)");
    (void)args.get_int("--prior-items", "", 32, "calibration items for the orchestrator's prior (0: fixed prior)");
    (void)args.get_int("--profile-max", "", 512, "longest prompt the latency profile measures");
    (void)args.get_int("--seed", "", 1, "benchmark and trace seed");
    (void)args.get("--ttft-levels", "", "", "TTFT SLO levels in (0, 100] % of the full model's, comma-separated (default 20,...,100)");
    (void)args.get("--tpot-levels", "", "", "TPOT SLO levels, likewise");
    (void)args.has("--accuracy-only", "", "the accuracy table only");
    (void)args.has("--no-accuracy-table", "", "the trace only");
    (void)args.has("--reprofile", "", "profile latency now instead of using the cached table");
    (void)args.has("--verbose", "", "one line per request and strategy on stderr");
    (void)args.has("--no-headroom-row", "", "leave out the row planned with a fixed 10 % headroom instead of the margins");
    (void)args.get_double("--latency-feedback", "", 0.25,
                          "weight of each request's measured times in the latency correction, as the Service's default (0: plan with the profile as taken)");
    (void)args.get_double("--confidence", "", ServiceOptions{}.confidence,
                          "margin on each part's predicted time, in spreads of its recent errors, as the Service's default (0: none)");
    (void)args.threads();
    args.finish("elastilm_bench_service_eval [-m ELASTIC.gguf] [flags]\n"
                "Multiple-choice accuracy per ratio, then a mixed-SLO trace served five ways.");
}

int run(const cli::Args& args) {
    declare_flags(args);
    const int threads = args.get_int("-t", "--threads", 2);
    require(threads >= 1, "-t", "needs at least 1 thread, got " + std::to_string(threads));
    (void)level_list(args, "--ttft-levels"), (void)level_list(args, "--tpot-levels");  // bad levels fail before any work
    const double feedback = args.get_double("--latency-feedback", "", 0.25);
    require(feedback >= 0 && feedback <= 1, "--latency-feedback", "must be in [0, 1], got " + std::to_string(feedback));
    const double confidence = args.get_double("--confidence", "", ServiceOptions{}.confidence);
    require(std::isfinite(confidence) && confidence >= 0, "--confidence", "must be a finite number >= 0, got " + std::to_string(confidence));
    if (const int tp = args.get_int("--trunk-percent", "--trunk-percent", 0); tp != 0)  // so does a bad trunk width
        require(ratio_index(tp) >= 0, "--trunk-percent", std::to_string(tp) + " is not a compiled ratio (20, 30, ..., 100)");
    if (args.has("--smoke")) {
        Model<Stories260K> model(synthetic_weights<Stories260K>({DType::f32, 3, Layout::in_major}));
        const ChoiceBenchmark b = synthetic_benchmark(Stories260K::vocab_size, args.get_int("--items", "--items", 6));
        return evaluate<Stories260K, Stories260K>(model, nullptr, b, synthetic_benchmark(Stories260K::vocab_size, 2), args, true);
    }
    const std::string model_path = args.get("-m", "--model", "build/demo/docs-95M-elastic.gguf");
    require(std::filesystem::exists(model_path), model_path,
            "not found: pass -m ELASTIC.gguf (elasticize -m ../shared/models/docs-95M -o …) or run cmake/demo.sh");
    const auto tok_path = cli::find_tokenizer(model_path, args.get("--tokenizer", "--tokenizer", ""));
    require(!tok_path.empty(), "service_eval", "no tokenizer.model found (../shared/models or --tokenizer)");
    const Tokenizer tok = Tokenizer::from_model_file(tok_path);
    ModelWeights weights = load_weights(model_path);

    // Calibration items for the orchestrator's prior: documents after the benchmark's (0 = fixed prior).
    auto load_calibration = [&]() -> std::optional<ChoiceBenchmark> {
        const int n = args.get_int("--prior-items", "--prior-items", 32);
        if (n <= 0) return std::nullopt;
        const std::string text = args.get("-f", "--file", (cli::shared_dir() / "models" / "docs_valid.txt").string());
        ChoiceBenchmarkOptions o;
        o.items = n;
        o.context_tokens = args.get_int("--context-len", "--context-len", 192);
        o.question_tokens = args.get_int("--question-len", "--question-len", 8);
        o.choice_tokens = args.get_int("--choice-len", "--choice-len", 12);
        o.seed = std::uint64_t(args.get_int("--seed", "--seed", 1)) + 1000;
        o.skip_stream_tokens = o.max_stream_tokens;
        o.max_stream_tokens = std::size_t(-1);
        return build_choice_benchmark(tok, cli::read_text(text), std::filesystem::path(text).filename().string(), o);
    };
    auto load_benchmark = [&](int vocab) {
        if (args.has("--benchmark")) return load_choice_benchmark(args.get("--benchmark", "--benchmark", ""), vocab);
        const std::string text = args.get("-f", "--file", (cli::shared_dir() / "models" / "docs_valid.txt").string());
        ChoiceBenchmarkOptions o;
        o.items = args.get_int("--items", "--items", 60);
        o.context_tokens = args.get_int("--context-len", "--context-len", 192);
        o.question_tokens = args.get_int("--question-len", "--question-len", 8);
        o.choice_tokens = args.get_int("--choice-len", "--choice-len", 12);
        o.seed = std::uint64_t(args.get_int("--seed", "--seed", 1));
        ChoiceBenchmark b = build_choice_benchmark(tok, cli::read_text(text), std::filesystem::path(text).filename().string(), o);
        if (args.has("--save-benchmark")) save(b, args.get("--save-benchmark", "--save-benchmark", ""));
        return b;
    };
    auto with_adapters = [&]<ModelConfig Cfg>(Model<Cfg>& m) {
        const std::string dir = args.get("--adapters", "--adapters", "build/demo/adapters");
        if (args.has("--adapters") || std::filesystem::is_directory(dir)) {
            const auto attached = attach_adapters(m, dir);
            std::fprintf(stderr, "service_eval: %zu LoRA adapters attached from %s\n", attached.size(), dir.c_str());
        }
    };
    const FileHyperParams h = weights.hparams;
    if (first_mismatch<Docs95M>(h).empty()) {
        check_against<Docs95M>(weights);
        cli::require_same_vocabulary(tok.vocab_size(), Docs95M::vocab_size, tok_path.string());
        Model<Docs95M> model(std::move(weights));
        with_adapters(model);
        const ChoiceBenchmark b = load_benchmark(Docs95M::vocab_size);
        const std::string trunk_path = args.get("--trunk", "--trunk", (cli::shared_dir() / "models" / "docs-tlm-15M").string());
        const auto calibration = load_calibration();
        if (trunk_path == "self") return evaluate<Docs95M, Docs95M>(model, nullptr, b, calibration, args, false);
        const Model<DocsTlm15M> trunk(load_model<DocsTlm15M>(trunk_path));
        return evaluate<Docs95M, DocsTlm15M>(model, &trunk, b, calibration, args, false);
    }
    if (first_mismatch<TinyGqa15M>(h).empty()) {
        check_against<TinyGqa15M>(weights);
        Model<TinyGqa15M> model(std::move(weights));
        with_adapters(model);
        return evaluate<TinyGqa15M, TinyGqa15M>(model, nullptr, load_benchmark(TinyGqa15M::vocab_size), load_calibration(), args, false);
    }
    require(false, model_path, "service_eval evaluates docs-95M (or tiny-gqa-15M); this file is neither: " + first_mismatch<Docs95M>(h));
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    return elastilm::cli::run_main(argc, argv, {"--smoke", "--verbose", "--accuracy-only", "--no-accuracy-table", "--reprofile"}, run);
}
