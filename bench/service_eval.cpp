// service_eval: the end-to-end evaluation of the elastic service (ElastiLM §5's comparison), on this
// machine. A trace of requests — prompts cut from held-out text, each followed by its true continuation —
// with mixed SLOs (TTFT and TPOT levels drawn from 20%…100% of the full model's latency) is served by
// four strategies:
//   ours          prompt × model elasticity (TLM + decision head + orchestrator)
//   model only    width elasticity alone (no TLM, whole prompt)
//   prompt only   prompt compression alone (full-width model)
//   full model    always 100% / 100%
// For each request it measures TTFT (planning + TLM + prefill + first-token choice) and TPOT (decode steps,
// teacher-forced on the true continuation), checks them against the SLO, and scores the continuation's
// mean log-likelihood under the chosen plan — the quality the plan kept. "On feasible SLOs" counts only
// the requests for which the latency model knows some (prompt, model) plan that meets both objectives:
// on a small model whose unsliced 32000-token LM head dominates decode, low TPOT levels are out of reach
// for every plan.
//
//   elastilm_bench_service_eval [-m ELASTIC.gguf] [--heads HEADS.gguf] [--adapters DIR] [--requests 40]
//                               [--prompt-len 160] [--question-len 8] [--cont-len 16] [-t 2] [--seed 1] [--verbose]
//                               [--ttft-levels 20,…,100] [--tpot-levels 20,…,100]
//   elastilm_bench_service_eval --smoke      (synthetic stories260K shape, no tokenizer: CI)
// Without -m it uses ../shared/models/tiny-gqa-15M elasticized in memory; prompts come from the first
// 16,128 tokens of its valid.txt, which no calibration step (elasticize, train_tlm, recover) reads.
#include <chrono>
#include <cstdio>
#include <random>

#include "cli/model_file.hpp"
#include "cli/shared_model.hpp"
#include "elastilm/lora/adapter_folder.hpp"
#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/latency_model.hpp"
#include "elastilm/service/service.hpp"
#include "elastilm/service/tlm_scorer.hpp"

namespace {

using namespace elastilm;
using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point t) { return std::chrono::duration<double, std::milli>(clock_type::now() - t).count(); }

struct TraceRequest {
    TokenizedPrompt prompt;
    std::vector<int> continuation;
    RelativeSlo slo;
};

// Non-overlapping windows of the held-out stream: BOS + prompt_len tokens (the last question_len of them
// protected), then cont_len tokens of true continuation. SLO levels drawn from the nine demo levels.
std::vector<TraceRequest> make_trace(std::span<const int> stream, int requests, int prompt_len, int question_len, int cont_len,
                                     const std::vector<int>& ttft_levels, const std::vector<int>& tpot_levels, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<std::size_t> ttft_level(0, ttft_levels.size() - 1), tpot_level(0, tpot_levels.size() - 1);
    std::vector<TraceRequest> trace;
    const std::size_t stride = std::size_t(prompt_len + cont_len);
    for (int i = 0; i < requests && (std::size_t(i) + 1) * stride <= stream.size(); ++i) {
        TraceRequest r;
        const auto window = stream.subspan(std::size_t(i) * stride, stride);
        r.prompt.ids.push_back(1);
        r.prompt.keep.push_back(1);
        for (int t = 0; t < prompt_len; ++t) {
            r.prompt.ids.push_back(window[t]);
            r.prompt.keep.push_back(t >= prompt_len - question_len || window[t] <= 2 ? 1 : 0);
        }
        r.continuation.assign(window.begin() + prompt_len, window.end());
        r.slo.ttft_percent = ttft_levels[ttft_level(rng)];
        r.slo.tpot_percent = tpot_levels[tpot_level(rng)];
        trace.push_back(std::move(r));
    }
    require(!trace.empty(), "service_eval", "held-out text too short for one request");
    return trace;
}

double log_prob(std::span<const float> logits, int id) {
    float mx = logits[0];
    for (float v : logits) mx = std::max(mx, v);
    double sum = 0;
    for (float v : logits) sum += std::exp(double(v - mx));
    return double(logits[id] - mx) - std::log(sum);
}

struct Tally {
    int n = 0, met = 0, ttft_met = 0, tpot_met = 0, feasible = 0, feasible_met = 0;
    double loglik = 0, kept = 0, prefill = 0, decode = 0, ttft_err = 0;
};

// The evaluation's flags, read at start-up (before Args::finish) and used by evaluate().
struct EvalFlags {
    int threads, requests, prompt_len, question_len, cont_len;
    bool verbose;
    std::string adapters, heads;
    std::vector<int> ttft_levels, tpot_levels;
    std::uint64_t seed;
    EvalFlags(const cli::Args& args, bool smoke)
        : threads(args.threads()),
          requests(args.get_int("--requests", "", smoke ? 6 : 40, "requests in the trace")),
          prompt_len(args.get_int("--prompt-len", "", smoke ? 48 : 160, "prompt tokens per request")),
          question_len(args.get_int("--question-len", "", 8, "protected question tokens per prompt")),
          cont_len(args.get_int("--cont-len", "", smoke ? 4 : 16, "continuation tokens per request")),
          verbose(args.has("--verbose", "", "one line per request")),
          adapters(args.get("--adapters", "", "", "folder of LoRA adapters (recover's output)")),
          heads(args.get("--heads", "", "", "TLM heads GGUF")),
          ttft_levels(cli::ratio_list(args, {kRatios.begin(), kRatios.end()}, "--ttft-levels", "TTFT SLO levels drawn from")),
          tpot_levels(cli::ratio_list(args, {kRatios.begin(), kRatios.end()}, "--tpot-levels", "TPOT SLO levels drawn from")),
          seed(std::uint64_t(args.get_int("--seed", "", 1, "trace seed"))) {}
};

template <ModelConfig Cfg>
int evaluate(ModelWeights weights, const std::vector<int>& stream, const EvalFlags& f, bool smoke) {
    const int threads = f.threads, requests = f.requests, prompt_len = f.prompt_len, question_len = f.question_len, cont_len = f.cont_len;
    const bool verbose = f.verbose;
    require(prompt_len + 1 + cont_len <= Cfg::context, "service_eval", "--prompt-len + --cont-len exceed the context");
    Model<Cfg> model(std::move(weights));
    if (!f.adapters.empty()) attach_adapters(model, f.adapters);
    ThreadPool pool(threads);

    ProfileOptions popt;
    popt.repetitions = smoke ? 1 : 3;
    const LatencyModel latency = load_or_profile(model, pool, popt, [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); });
    TlmScorer<Cfg> scorer(model, pool, f.heads);
    const PromptScorer score = scorer.as_prompt_scorer();
    const auto& ttft_levels = f.ttft_levels;
    const auto& tpot_levels = f.tpot_levels;
    const auto trace = make_trace(stream, requests, prompt_len, question_len, cont_len, ttft_levels, tpot_levels,
                                  f.seed);

    Session<Cfg> session(model, pool);
    session.append(trace[0].prompt.ids, 100);  // warm-up: page the weights in
    const Elasticity strategies[] = {Elasticity::prompt_and_model, Elasticity::model_only, Elasticity::prompt_only, Elasticity::none};
    std::printf("# %s, %zu requests (prompt %d tokens incl. a protected %d-token question, continuation %d), %d threads\n",
                std::string(Cfg::name).c_str(), trace.size(), prompt_len + 1, question_len, cont_len, threads);
    auto levels = [](const std::vector<int>& v) {
        std::string s;
        for (int l : v) {
            if (!s.empty()) s += ',';
            s += std::to_string(l);
        }
        return s;
    };
    std::printf("# TLM: %s\n# SLO levels (%% of the full model's predicted latency): TTFT {%s}, TPOT {%s}\n\n", scorer.description().c_str(),
                levels(ttft_levels).c_str(), levels(tpot_levels).c_str());
    std::printf("| strategy | SLO attainment | on feasible SLOs | TTFT met | TPOT met | mean log-lik of continuation | prompt kept | prefill width | decode width |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (Elasticity e : strategies) {
        Tally t;
        for (const TraceRequest& req : trace) {
            const auto start = clock_type::now();
            const int n = int(req.prompt.ids.size());
            PlanRequest pr;
            pr.new_tokens = cont_len;
            pr.slo = absolute(req.slo, latency, n, cont_len);
            pr.elasticity = e;
            pr.max_kept = session.context() - cont_len;
            const PreparedPrompt p = prepare_prompt(req.prompt, pr, latency, score, [&] { return ms_since(start); });
            session.reset();
            auto logits = session.append(p.kept, p.plan.prefill_percent);
            (void)Sampler::argmax(logits);  // the first token's choice is part of TTFT
            const double ttft = ms_since(start);
            double ll = log_prob(logits, req.continuation[0]);  // scoring is not part of the timed path
            double decode_ms = 0;
            for (int j = 1; j < cont_len; ++j) {
                const auto t0 = clock_type::now();
                logits = session.append(req.continuation[j - 1], p.plan.decode_percent);
                (void)Sampler::argmax(logits);
                decode_ms += ms_since(t0);
                ll += log_prob(logits, req.continuation[j]);
            }
            const double tpot = cont_len > 1 ? decode_ms / (cont_len - 1) : 0.0;
            if (verbose)
                std::fprintf(stderr, "%-14s slo %3.0f/%3.0f%% = %6.2f/%5.2f ms | plan p%3d m%3d d%3d kept %3zu | ttft %6.2f (pred %6.2f, tlm %5.2f) tpot %5.2f (pred %5.2f)\n",
                             std::string(to_string(e)).c_str(), req.slo.ttft_percent, req.slo.tpot_percent, pr.slo.ttft_ms, pr.slo.tpot_ms,
                             p.plan.prompt_percent, p.plan.prefill_percent, p.plan.decode_percent, p.kept.size(), ttft,
                             p.plan.predicted_ttft_ms, p.tlm_ms, tpot, p.plan.predicted_tpot_ms);
            const bool ttft_ok = ttft <= pr.slo.ttft_ms, tpot_ok = tpot <= pr.slo.tpot_ms;
            // Could any plan meet this SLO? The latency model's answer over the whole prompt × model space.
            PlanRequest any = pr;
            any.prompt_tokens = n;
            any.protected_tokens = req.prompt.protected_count();
            any.elasticity = Elasticity::prompt_and_model;
            any.tlm_ms = score.predicted_ms(n);
            any.headroom = 1.0;  // feasible as predicted, without the planner's safety margin
            const bool feasible = choose_plan(any, latency, std::nullopt).feasible();
            t.feasible += feasible;
            t.feasible_met += feasible && ttft_ok && tpot_ok;
            ++t.n;
            t.ttft_met += ttft_ok;
            t.tpot_met += tpot_ok;
            t.met += ttft_ok && tpot_ok;
            t.loglik += ll / cont_len;
            t.kept += double(p.kept.size()) / n;
            t.prefill += p.plan.prefill_percent;
            t.decode += p.plan.decode_percent;
        }
        std::printf("| %s | %.1f%% | %.1f%% (%d) | %.1f%% | %.1f%% | %.3f | %.0f%% | %.0f%% | %.0f%% |\n", std::string(to_string(e)).c_str(),
                    100.0 * t.met / t.n, t.feasible ? 100.0 * t.feasible_met / t.feasible : 0.0, t.feasible, 100.0 * t.ttft_met / t.n,
                    100.0 * t.tpot_met / t.n, t.loglik / t.n, 100.0 * t.kept / t.n, t.prefill / t.n, t.decode / t.n);
        std::fflush(stdout);
    }
    return 0;
}

int run(const cli::Args& args) {
    const bool smoke = args.has("--smoke", "", "synthetic stories260K shape, no tokenizer: CI");
    const EvalFlags flags(args, smoke);
    const int threads = flags.threads;
    const std::string model_path = args.get("-m", "--model", "", "elastic GGUF (default: tiny-gqa-15M elasticized in memory)");
    const std::string tokenizer = cli::tokenizer_flag(args);
    const std::string text = args.get("-f", "--file", (cli::shared_tiny_gqa() / "valid.txt").string(), "held-out text for prompts");
    args.finish("elastilm_bench_service_eval [-m ELASTIC.gguf] [flags]\n"
                "Serves a trace of requests with mixed SLOs by four strategies and scores them.");
    if (smoke) {
        // No tokenizer for stories260K's 512-token vocabulary: a deterministic id stream stands in for text.
        std::vector<int> stream(4096);
        for (std::size_t i = 0; i < stream.size(); ++i) stream[i] = 3 + int((i * 7919 + i / 13) % 509);
        return evaluate<Stories260K>(synthetic_weights<Stories260K>({DType::f32, 3, Layout::in_major}), stream, flags, true);
    }
    const auto tok_path = cli::find_tokenizer(model_path.empty() ? cli::shared_tiny_gqa() : std::filesystem::path(model_path), tokenizer);
    require(!tok_path.empty(), "service_eval", "no tokenizer.model found (../shared/models or --tokenizer)");
    const Tokenizer tok = Tokenizer::from_model_file(tok_path);
    auto stream = paragraph_stream(tok, cli::read_text(text));
    stream.resize(std::min<std::size_t>(stream.size(), 16128));  // held out: never used for calibration
    std::optional<ModelWeights> weights;
    if (model_path.empty()) weights = cli::elastic_tiny_gqa(tok, threads);
    else weights = load_weights(model_path);
    require(weights.has_value(), "service_eval", "no model: pass -m ELASTIC.gguf or provide ../shared/models/tiny-gqa-15M");
    return with_config(weights->hparams, weights->source, [&]<ModelConfig Cfg>() -> int {
        check_against<Cfg>(*weights);
        cli::require_same_vocabulary(tok.vocab_size(), Cfg::vocab_size, tok_path.string());
        return evaluate<Cfg>(std::move(*weights), stream, flags, false);
    });
}

}  // namespace

int main(int argc, char** argv) { return elastilm::cli::run_main(argc, argv, {"--smoke", "--verbose"}, run); }
