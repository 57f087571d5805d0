// demo: the elastic on-device LLM service, as in the ElastiLM paper's demo.
//
//   demo [-m ELASTIC.gguf] [--trunk TLM_MODEL] [--trunk-percent P] [--heads HEADS.gguf] [--adapters DIR] [-t 2] [-n 32]
//        [--ttft-slo 50 --tpot-slo 50 | --ttft-ms X --tpot-ms Y] [-p CONTEXT --question Q] [--all-prompts]
//        [--prior-text HELD_OUT.txt [--prior-items 24]] [--decision-head]
//
// Shows a documentation passage as context and a question about it, asks for a prefill SLO and a decode SLO — each a level of the full
// model's own latency on this prompt, 20%, 30%, … 100% — and answers through elastilm::Service: the
// orchestrator picks the prompt compression ratio and the model ratios, the TLM compresses the context
// (the question is protected), and the answer streams. Then TTFT/TPOT are shown against the SLO.
// With --ttft-slo/--tpot-slo (or --ttft-ms/--tpot-ms) nothing is asked: for scripts.
//
// The TLM's trunk is --trunk, a separate small model of the same vocabulary (read at --trunk-percent,
// 100 by default); for docs-95M it defaults to ../shared/models/docs-tlm-15M. Without one, the served
// model's own 20% variant is the trunk.
//
// How the orchestrator ranks (prompt ratio, model ratio) pairs: with --prior-text, by a prior measured on
// multiple-choice items built from that text's later documents (service/pair_prior.hpp; measured once,
// a few minutes, then cached beside the latency table); the trained decision head's per-prompt ratings
// only with --decision-head. Without --prior-text: the head's ratings when heads are given, else the
// fixed prior (widest model first).
//
// With no -m it uses the trained tiny-gqa-15M from ../shared/models (elasticized in memory), or, when
// that is absent, a synthetic TinyLlama-1.1B-shaped elastic model (random weights: real latencies,
// meaningless answers), and says which on screen.
#include <cstdio>
#include <iostream>

#include "elastilm/lora/adapter_folder.hpp"
#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/latency_model.hpp"
#include "elastilm/service/pair_prior.hpp"
#include "elastilm/service/service.hpp"
#include "elastilm/service/tlm_scorer.hpp"
#include "cli/model_file.hpp"
#include "cli/shared_model.hpp"

namespace {

using namespace elastilm;
namespace fs = std::filesystem;

// The demo's flags, read at start-up (before Args::finish) and used by serve().
struct DemoFlags {
    int new_tokens;
    std::string adapters, heads, prompt, question;
    std::optional<double> ttft_ms, tpot_ms, ttft_slo, tpot_slo;  // given or not
    bool all_prompts;
    std::string trunk;
    int trunk_percent;
    std::string prior_text;
    int prior_items;
    bool decision_head;
    bool recency_cuts;
    explicit DemoFlags(const cli::Args& args)
        : new_tokens(args.get_int("-n", "--n-predict", 32, "tokens to answer")),
          adapters(args.get("--adapters", "", "", "folder of LoRA adapters (recover's output)")),
          heads(args.get("--heads", "", "", "TLM heads GGUF (default: beside the model)")),
          prompt(args.get("-p", "--prompt", "", "your own context instead of the built-in ones")),
          question(args.get("--question", "-q", "", "the question about -p's context")),
          ttft_ms(args.get_double_if("--ttft-ms", "", "prefill SLO in ms (scripted, with --tpot-ms)")),
          tpot_ms(args.get_double_if("--tpot-ms", "", "decode SLO in ms per token")),
          ttft_slo(args.get_double_if("--ttft-slo", "", "prefill SLO level 20..100 of the full model (scripted)")),
          tpot_slo(args.get_double_if("--tpot-slo", "", "decode SLO level 20..100")),
          all_prompts(args.has("--all-prompts", "", "scripted: answer every built-in prompt once")),
          trunk(args.get("--trunk", "", "", "TLM trunk: a small model of the same vocabulary (default for docs-95M: ../shared/models/docs-tlm-15M)")),
          trunk_percent(args.get_int("--trunk-percent", "", 100, "width ratio the trunk runs at")),
          prior_text(args.get("--prior-text", "", "", "held-out text of the served domain: the orchestrator's prior is measured on it (cached)")),
          prior_items(args.get_int("--prior-items", "", 24, "multiple-choice items the prior is measured on")),
          decision_head(args.has("--decision-head", "", "rank plans by the trained decision head once the TLM has read the prompt")),
          // Off by default, unlike ServiceOptions: the demo's questions may ask about any part of the passage,
          // while the prior's recency curve is measured on continuations of the prompt's last lines.
          recency_cuts(args.has("--recency-cuts", "", "let plans keep the prompt's most recent tokens, with no TLM run, where the prior rates that higher")) {
        require(prior_items > 0, "--prior-items", "needs at least 1 item, got " + std::to_string(prior_items));
        require(prior_text.empty() || fs::is_regular_file(prior_text), prior_text, "not found (--prior-text)");
    }
};

// Built-in prompts: documentation passages in the style of the served model's training text (docs-95M:
// manuals and reference documentation), written for this demo, each with a question about it.
struct DemoPrompt {
    const char* context;
    const char* question;
};
constexpr DemoPrompt kPrompts[] = {
    {"VACUUM reclaims storage occupied by dead tuples. In normal operation, tuples that are deleted or made obsolete "
     "by an update are not physically removed from their table; they remain present until a VACUUM is done. "
     "Therefore it is necessary to do VACUUM periodically, especially on frequently-updated tables. Plain VACUUM "
     "(without FULL) simply reclaims space and makes it available for re-use. This form of the command can operate "
     "in parallel with normal reading and writing of the table, as an exclusive lock is not obtained. However, extra "
     "space is not returned to the operating system; it is just kept available for re-use within the same table. "
     "VACUUM FULL rewrites the entire contents of the table into a new disk file with no extra space, allowing unused "
     "space to be returned to the operating system. This form is much slower and requires an exclusive lock on each "
     "table while it is being processed.",
     "Question: Which form of VACUUM returns unused space to the operating system?\nAnswer:"},
    {"A list comprehension consists of brackets containing an expression followed by a for clause, then zero or more "
     "for or if clauses. The result will be a new list resulting from evaluating the expression in the context of the "
     "for and if clauses which follow it. For example, a list of squares can be built by writing the expression "
     "x**2 followed by the clause for x in range(10). This is shorter than creating an empty list and appending to it "
     "in a loop, and it has no side effect: the loop variable does not remain defined after the comprehension has "
     "finished. A comprehension that is written with parentheses instead of brackets is a generator expression, which "
     "produces its items one at a time instead of building the whole list in memory.",
     "Question: What does a list comprehension consist of?\nAnswer:"},
    {"A kernel module is a piece of code that can be loaded into and unloaded from the kernel upon demand. Modules "
     "extend the functionality of the kernel without the need to reboot the system. For example, one type of module "
     "is the device driver, which allows the kernel to access hardware connected to the system. Without modules, we "
     "would have to build monolithic kernels and add new functionality directly into the kernel image. Besides having "
     "larger kernels, this has the disadvantage of requiring us to rebuild and reboot the kernel every time we want "
     "new functionality. The command lsmod lists the modules that are already loaded, modprobe loads a module together "
     "with the modules it depends on, and rmmod removes a module from the running kernel.",
     "Question: Which command loads a module together with the modules it depends on?\nAnswer:"},
};

constexpr std::array<int, 9> kLevels = kRatios;  // SLO levels offered: 20%, 30%, … 100% of the full model

// Reads a level (20…100) from the terminal; empty input keeps the default. Any other input asks again.
int ask_level(const char* what, int def) {
    for (;;) {
        std::printf("%s — %% of the full model's latency (20, 30, …, 100) [%d]: ", what, def);
        std::fflush(stdout);
        std::string line;
        if (!std::getline(std::cin, line)) return -1;
        if (line.empty()) return def;
        try {
            const int v = std::stoi(line);
            if (std::find(kLevels.begin(), kLevels.end(), v) != kLevels.end()) return v;
        } catch (const std::exception&) {
        }
        std::printf("  please enter one of 20, 30, 40, 50, 60, 70, 80, 90, 100\n");
    }
}

bool ask_yes(const char* question) {
    std::printf("%s [y/N]: ", question);
    std::fflush(stdout);
    std::string line;
    return std::getline(std::cin, line) && !line.empty() && (line[0] == 'y' || line[0] == 'Y');
}

struct LoadedModel {
    ModelWeights weights;
    std::string description;
    fs::path path;  // heads and adapters are looked for beside it
};

LoadedModel load_default_model(const std::optional<Tokenizer>& tok, int threads) {
    if (tok && fs::exists(cli::shared_tiny_gqa() / "model.safetensors")) {
        std::printf("model: %s (trained, ../shared/models) — elasticizing in memory…\n", cli::shared_tiny_gqa().c_str());
        if (auto w = cli::elastic_tiny_gqa(*tok, threads)) return {std::move(*w), "tiny-gqa-15M, elasticized in memory", {}};
    }
    std::printf("NOTE: ../shared/models/tiny-gqa-15M (or its tokenizer) is not here: using a SYNTHETIC elastic model of the\n"
                "      TinyLlama-1.1B shape (22 layers, 2.2 GB fp16, deterministic random weights). Its latencies are real;\n"
                "      its answers are noise.\n");
    SyntheticOptions o;
    o.output_layout = Layout::in_major;
    ModelWeights w = synthetic_weights<TinyLlama1B>(o);
    w.is_elastic = true;
    return {std::move(w), "synthetic TinyLlama-1.1B shape", {}};
}

// A separate TLM trunk: its file and the model loaded from it (none: the served model's own 20% variant).
struct LoadedTrunk {
    std::string path;
    std::optional<ModelWeights> weights;
    int percent = 20;
};

template <ModelConfig Cfg, ModelConfig TrunkCfg>
int serve_with(const DemoFlags& f, Model<Cfg>& model, const Model<TrunkCfg>& trunk, const LoadedTrunk& loaded_trunk,
               const LoadedModel& loaded, std::optional<Tokenizer>& tok, ThreadPool& pool);

template <ModelConfig Cfg>
int serve(const DemoFlags& f, LoadedModel loaded, LoadedTrunk trunk, std::optional<Tokenizer>& tok, int threads) {
    check_against<Cfg>(loaded.weights);
    if (tok) cli::require_same_vocabulary(tok->vocab_size(), Cfg::vocab_size, "tokenizer");
    Model<Cfg> model(std::move(loaded.weights));
    ThreadPool pool(threads);
    if (!trunk.weights) return serve_with<Cfg, Cfg>(f, model, model, trunk, loaded, tok, pool);
    // A trunk of another vocabulary reads other token ids: refused by name before anything is compiled in.
    require(trunk.weights->hparams.vocab_size == Cfg::vocab_size, trunk.path,
            "is a TLM trunk with a vocabulary of " + std::to_string(trunk.weights->hparams.vocab_size) + " tokens, but the served model " +
                std::string(Cfg::name) + " has " + std::to_string(Cfg::vocab_size) + ": the TLM must read the served model's token ids");
    // One separate trunk config is compiled in (a trunk per served config would multiply the demo's
    // build time): docs-tlm-15M, the trunk trained for docs-95M.
    if constexpr (Cfg::vocab_size == DocsTlm15M::vocab_size) {
        require(first_mismatch<DocsTlm15M>(trunk.weights->hparams).empty(), trunk.path,
                "is not docs-tlm-15M, the one separate TLM trunk the demo is built for (" +
                    first_mismatch<DocsTlm15M>(trunk.weights->hparams) + ")");
        const Model<DocsTlm15M> trunk_model(*trunk.weights);
        return serve_with<Cfg, DocsTlm15M>(f, model, trunk_model, trunk, loaded, tok, pool);
    } else {
        return 1;  // unreachable: the vocabulary check above refused it
    }
}

template <ModelConfig Cfg, ModelConfig TrunkCfg>
int serve_with(const DemoFlags& f, Model<Cfg>& model, const Model<TrunkCfg>& trunk, const LoadedTrunk& loaded_trunk,
               const LoadedModel& loaded, std::optional<Tokenizer>& tok, ThreadPool& pool) {
    const int new_tokens = f.new_tokens;

    if (!f.adapters.empty()) {
        const auto attached = attach_adapters(model, f.adapters);
        std::printf("LoRA adapters: %zu ratios attached from %s\n", attached.size(), f.adapters.c_str());
    }

    // The TLM first: heads trained for another model are refused before minutes of latency profiling.
    const std::string heads = !f.heads.empty() || loaded.path.empty() ? f.heads : default_heads_path(loaded.path).string();
    TlmScorer<Cfg, TrunkCfg> scorer(model, trunk, pool, heads, loaded_trunk.percent);
    std::printf("TLM: %s\n", scorer.description().c_str());

    ProfileOptions popt;
    popt.max_tokens = std::min(Cfg::context, 256);  // the demo's prompts are short; a 1B model profiles in ~a minute
    popt.repetitions = 2;
    std::printf("latency model: ");
    std::fflush(stdout);
    const LatencyModel latency = load_or_profile(model, pool, popt, [](const std::string& line) {
        std::printf("%s\n               ", line.c_str());
        std::fflush(stdout);
    });
    std::printf("full model here: TTFT %.1f ms for 100 tokens, TPOT %.2f ms; TLM %.1f ms for 100 tokens\n\n", latency.ttft_ms(100, 100),
                latency.tpot_ms(100, 100), scorer.predicted_ms(100));


    PromptScorer prompt_scorer = scorer.as_prompt_scorer(f.decision_head || f.prior_text.empty());
    if (!f.prior_text.empty() && tok) {
        const ChoiceBenchmark items =
            prior_items(*tok, cli::read_text(f.prior_text), fs::path(f.prior_text).filename().string(), f.prior_items);
        // What the prior depends on: the served weights, the adapters (each file's name, size and time, so
        // retrained adapters are measured again), the TLM (its scores choose the kept tokens), the items.
        Fnv1a key;
        key.text(latency_fingerprint(model));
        if (!f.adapters.empty() && fs::is_directory(f.adapters)) {
            std::vector<fs::directory_entry> files(fs::directory_iterator(f.adapters), fs::directory_iterator{});
            std::sort(files.begin(), files.end());
            for (const auto& e : files) {
                if (!e.is_regular_file()) continue;
                key.text(e.path().filename().string());
                key.value(std::uint64_t(e.file_size()));
                key.value(std::int64_t(e.last_write_time().time_since_epoch().count()));
            }
        }
        key.text(scorer.description());
        key.text(f.prior_text);
        key.value(f.prior_items);
        const fs::path cache = default_cache_dir() / ("prior-" + std::string(Cfg::name) + "-" + key.hex() + ".json");
        Session<Cfg> session(model, pool);
        std::printf("prior:         ");
        const RatioQuality q = measured_prior(session, prompt_scorer, std::span<const ChoiceItem>(items.items), key.hex(), cache,
                                              [](const std::string& line) {
                                                  std::printf("%s\n               ", line.c_str());
                                                  std::fflush(stdout);
                                              });
        prompt_scorer.prior = prior_ratings(q);
        const auto curve = [](const char* name, const auto& margins) {
            std::printf("%s {", name);
            for (std::size_t r = 0; r < kRatios.size(); ++r) std::printf("%s%.2f", r ? " " : "", margins[r]);
            std::printf("}");
        };
        std::printf("answer margin per ratio 20..100%%: ");
        curve("model", q.model_margin);
        curve(", prompt (TLM)", q.prompt_margin);
        curve(", prompt (latest tokens)", q.recency_margin);
        curve(", decode", q.decode_margin);
        std::printf("\n               plans ranked by this prior%s\n\n",
                    f.decision_head && scorer.has_decision_head() ? ", then by the decision head once the TLM has read the prompt" : "");
    }

    ServiceOptions options;
    options.recency_cuts = f.recency_cuts;
    Service<Cfg, LatencyModel> service(model, tok ? &*tok : nullptr, pool, latency, prompt_scorer, options);

    std::vector<DemoPrompt> prompts(std::begin(kPrompts), std::end(kPrompts));
    std::string user_context, user_question;
    if (!f.prompt.empty()) {
        user_context = f.prompt;
        user_question = f.question;
        prompts = {{user_context.c_str(), user_question.c_str()}};
    }
    const bool scripted = f.ttft_slo || f.ttft_ms;
    const bool all = f.all_prompts;
    for (std::size_t i = 0;; i = (i + 1) % prompts.size()) {
        const DemoPrompt& p = prompts[i];
        std::printf("──────────────────────────────────────────────────────────────────────────────\n");
        std::printf("context:  %s\nquestion: %s\n\n", p.context, p.question);
        ServiceRequest req;
        if (tok) req.prompt = {{p.context, {}, false}, {std::string("\n\n") + p.question, {}, true}};
        else {
            // No tokenizer: the words' lengths as stand-in ids, so the pipeline still runs end to end.
            std::vector<int> ctx, q;
            for (const char* c = p.context; *c; ++c) ctx.push_back(3 + (unsigned char)(*c) % (Cfg::vocab_size - 3));
            for (const char* c = p.question; *c; ++c) q.push_back(3 + (unsigned char)(*c) % (Cfg::vocab_size - 3));
            req.prompt = {{"", ctx, false}, {"", q, true}};
        }
        req.max_new_tokens = new_tokens;
        if (f.ttft_ms) req.slo = Slo{*f.ttft_ms, f.tpot_ms.value_or(0)};
        else {
            RelativeSlo r;
            r.ttft_percent = scripted ? f.ttft_slo.value_or(100) : ask_level("prefill SLO (TTFT)", 50);
            r.tpot_percent = scripted ? f.tpot_slo.value_or(100) : ask_level("decode SLO (TPOT) ", 50);
            if (r.ttft_percent < 0 || r.tpot_percent < 0) return 0;  // end of input
            req.slo = r;
        }
        std::printf("\nanswer:   ");
        std::fflush(stdout);
        req.on_token = [&](int id, const std::string& piece) {
            if (tok) std::printf("%s", piece.c_str());
            else std::printf(" %d", id);
            std::fflush(stdout);
            return true;
        };
        const ServiceResult& r = service.submit(std::move(req)).wait();
        std::printf("\n\n");
        if (r.status != RequestStatus::done) {
            std::printf("request %s: %s\n", std::string(to_string(r.status)).c_str(), r.error.c_str());
        } else {
            const Plan& pl = r.plan;
            const char* how = pl.prompt_percent == 100       ? "  (whole prompt kept: no TLM run)"
                              : pl.cut == PromptCut::recency ? "  (the most recent tokens kept: no TLM run)"
                                                             : "  (the tokens the TLM scored highest kept)";
            std::printf("plan:     prompt %d%% (%d → %d tokens), prefill model %d%%, decode model %d%%%s\n", pl.prompt_percent,
                        r.prompt_tokens, int(r.kept_ids.size()), pl.prefill_percent, pl.decode_percent, how);
            if (pl.prompt_percent < 100)
                std::printf("compressed prompt: %s\n", tok ? r.compressed_prompt.c_str() : "(token ids; no tokenizer)");
            std::printf("TTFT %7.1f ms  (SLO %7.1f ms: %s; TLM %.1f ms, queue %.1f ms, predicted %.1f ms)\n", r.ttft_ms, r.slo.ttft_ms,
                        r.ttft_met ? "met" : "MISSED", r.tlm_ms, r.queue_ms, pl.predicted_ttft_ms);
            std::printf("TPOT %7.2f ms  (SLO %7.2f ms: %s; predicted %.2f ms)%s\n", r.tpot_ms, r.slo.tpot_ms,
                        r.tpot_met ? "met" : "MISSED", pl.predicted_tpot_ms,
                        pl.feasible() ? "" : "\n          the latency model said this SLO cannot be met: fastest plan used");
            std::printf("latency profile corrected by what this request measured: next plans take x%.2f its prefill at %d%%, "
                        "x%.2f its decode at %d%%, x%.2f the TLM's time\n",
                        r.latency_scale.prefill, pl.prefill_percent, r.latency_scale.decode, pl.decode_percent, r.latency_scale.tlm);
            std::printf("margins the next plans keep for the latency errors seen so far: prefill x%.2f, decode x%.2f, TLM x%.2f\n",
                        r.latency_margin.prefill, r.latency_margin.decode, r.latency_margin.tlm);
        }
        if (scripted) {
            if (!all || i + 1 == prompts.size()) return 0;
            continue;
        }
        if (!ask_yes("\nanother question?")) return 0;
    }
}

int run(const cli::Args& args) {
    const std::string model_path = args.get("-m", "--model", "", "elastic GGUF (default: tiny-gqa-15M elasticized in memory)");
    const DemoFlags flags(args);
    const int threads = args.threads();
    const std::string tokenizer = cli::tokenizer_flag(args);
    args.finish("demo [-m ELASTIC.gguf] [flags]\n"
                "The elastic LLM service: asks for TTFT/TPOT SLOs and answers within them.\n"
                "With no -m: ../shared/models/tiny-gqa-15M elasticized in memory, else a synthetic 1B-class model.");
    std::optional<Tokenizer> tok;
    const auto tok_path = cli::find_tokenizer(model_path.empty() ? cli::shared_dir() / "models" : fs::path(model_path), tokenizer);
    if (!tok_path.empty() && fs::exists(tok_path)) tok.emplace(Tokenizer::from_model_file(tok_path));

    LoadedModel loaded;
    LoadedTrunk trunk;
    if (model_path.empty()) loaded = load_default_model(tok, threads);
    else {
        loaded = {load_weights(model_path), model_path, model_path};
        require(tok.has_value(), model_path, "no tokenizer.model found; pass --tokenizer");
        if (!loaded.weights.is_elastic)
            std::printf("warning: %s is not elasticized (run elasticize): small ratios will answer poorly\n", model_path.c_str());
    }
    // The TLM trunk: --trunk, else docs-tlm-15M for docs-95M when ../shared has it, else the model itself.
    trunk.path = flags.trunk;
    const fs::path shared_tlm = cli::shared_dir() / "models" / "docs-tlm-15M";
    if (trunk.path.empty() && first_mismatch<Docs95M>(loaded.weights.hparams).empty() && fs::exists(shared_tlm / "model.safetensors"))
        trunk.path = shared_tlm.string();
    if (!trunk.path.empty()) {
        trunk.weights = load_weights(trunk.path);
        trunk.percent = flags.trunk_percent;
    }
    std::printf("elastilm demo — %s, %d threads%s%s\n", loaded.description.c_str(), threads, trunk.path.empty() ? "" : ", TLM trunk ",
                trunk.path.c_str());
    return with_config(loaded.weights.hparams, loaded.weights.source,
                       [&]<ModelConfig Cfg>() -> int { return serve<Cfg>(flags, std::move(loaded), std::move(trunk), tok, threads); });
}

}  // namespace

int main(int argc, char** argv) { return elastilm::cli::run_main(argc, argv, {"--all-prompts", "--decision-head"}, run); }
