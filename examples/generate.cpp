// generate: run a model on a prompt and stream the answer, llama.cpp style.
//
//   generate -m MODEL [-p PROMPT] [-n TOKENS] [-t THREADS] [--temp T] [--top-p P] [--seed S]
//            [--ratio PERCENT | --prefill-ratio P --decode-ratio D] [--tokenizer tokenizer.model] [--adapters DIR]
//
// MODEL is a .gguf, a Hugging Face folder (config.json + model.safetensors) or a llama2.c .bin; its
// shape picks the compiled config. Prints prefill tok/s, TTFT and TPOT at the end.
#include <cstdio>
#include <iostream>

#include "common.hpp"
#include "elastilm/generate/generate.hpp"
#include "elastilm/lora/adapter_folder.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/tokenizer/from_gguf.hpp"

namespace {

using namespace elastilm;

constexpr const char* kUsage =
    "usage: generate -m MODEL [-p PROMPT] [-n TOKENS=64] [-t THREADS=2] [--temp 0] [--top-p 0.9] [--seed 42]\n"
    "                [--ratio 100 | --prefill-ratio P --decode-ratio D] [--tokenizer PATH] [--ids 1,2,3] [--adapters DIR]\n"
    "MODEL: .gguf, Hugging Face folder (config.json + model.safetensors) or llama2.c .bin\n";

std::vector<int> parse_ids(const std::string& s) {
    std::vector<int> ids;
    std::size_t pos = 0;
    while (pos < s.size()) {
        const std::size_t end = std::min(s.find(',', pos), s.size());
        ids.push_back(std::stoi(s.substr(pos, end - pos)));
        pos = end + 1;
    }
    return ids;
}

int run(const cli::Args& args) {
    const std::string model_path = args.get("-m", "--model", "");
    if (model_path.empty() || args.has("-h") || args.has("--help")) {
        std::fputs(kUsage, model_path.empty() ? stderr : stdout);
        return model_path.empty() ? 2 : 0;
    }
    const std::string prompt = args.get("-p", "--prompt", "Once upon a time");
    GenerateOptions opt;
    opt.max_new_tokens = args.get_int("-n", "--n-predict", 64);
    const int ratio = args.get_int("-r", "--ratio", 100);
    opt.prefill_percent = args.get_int("--prefill-ratio", "--prefill-ratio", ratio);
    opt.decode_percent = args.get_int("--decode-ratio", "--decode-ratio", ratio);
    opt.sampling.temperature = float(args.get_double("--temp", "--temperature", 0.0));
    opt.sampling.top_p = float(args.get_double("--top-p", "--top-p", 0.9));
    opt.sampling.seed = std::uint64_t(args.get_int("-s", "--seed", 42));
    const int threads = args.get_int("-t", "--threads", 2);

    std::fprintf(stderr, "loading %s\n", model_path.c_str());
    ModelWeights weights = load_weights(model_path);
    return with_config(weights.hparams, weights.source, [&]<ModelConfig Cfg>() -> int {
        check_against<Cfg>(weights);
        std::fprintf(stderr, "model: %s (%s, %s weights, %d layers)%s\n", std::string(Cfg::name).c_str(), weights.format.c_str(),
                     std::string(to_string(weights.embedding.dtype)).c_str(), Cfg::n_layers,
                     weights.is_elastic ? ", elastic" : "");
        if (!weights.is_elastic && (opt.prefill_percent < 100 || opt.decode_percent < 100))
            std::fprintf(stderr, "warning: %s is not elasticized: ratios below 100%% keep units in their original order "
                                 "(run elasticize for importance-ordered sub-models)\n", model_path.c_str());
        Model<Cfg> model(std::move(weights));
        if (args.has("--adapters")) {
            const auto attached = attach_adapters(model, args.get("--adapters", "--adapters", ""));
            std::fprintf(stderr, "LoRA adapters attached for %zu ratios\n", attached.size());
        }
        std::vector<int> ids;
        std::optional<Tokenizer> tok;
        const auto tok_path = cli::find_tokenizer(model_path, args.get("--tokenizer", "--tokenizer", ""));
        if (args.has("--ids")) ids = parse_ids(args.get("--ids", "--ids", ""));
        else {
            // A GGUF's own vocabulary first; else tokenizer.model (--tokenizer, beside the model, ../shared).
            const bool gguf_vocab = model.weights().format == "gguf" && !args.has("--tokenizer") &&
                                    io::GgufFile::open(model_path).has("tokenizer.ggml.tokens");
            if (gguf_vocab) tok.emplace(tokenizer_from_gguf(io::GgufFile::open(model_path)));
            else {
                require(!tok_path.empty(), model_path, "no vocabulary in the file and no tokenizer.model found; pass --tokenizer or --ids");
                tok.emplace(Tokenizer::from_model_file(tok_path));
            }
            cli::require_same_vocabulary(tok->vocab_size(), Cfg::vocab_size, gguf_vocab ? model_path : tok_path.string());
            ids = tok->encode(prompt, true);
            opt.eos_id = tok->eos_id();
            std::printf("%s", prompt.c_str());
            std::fflush(stdout);
        }
        ThreadPool pool(threads);
        Session<Cfg> session(model, pool);
        int prev = ids.empty() ? -1 : ids.back();
        const GenerateResult r = generate(session, ids, opt, [&](int id) {
            if (tok) std::printf("%s", tok->decode_piece(prev, id).c_str());
            else std::printf(" %d", id);
            std::fflush(stdout);
            prev = id;
            return true;
        });
        std::printf("\n");
        std::fprintf(stderr,
                     "\nprompt %d tokens | prefill %.1f tok/s | TTFT %.1f ms | TPOT %.2f ms (%.1f tok/s) | %zu generated | "
                     "ratios prefill %d%% decode %d%% | %d threads\n",
                     r.prompt_tokens, r.prefill_tok_s, r.ttft_ms, r.tpot_ms, r.tpot_ms > 0 ? 1000.0 / r.tpot_ms : 0.0,
                     r.tokens.size(), opt.prefill_percent, opt.decode_percent, threads);
        return 0;
    });
}

}  // namespace

int main(int argc, char** argv) { return elastilm::cli::run_main(argc, argv, {}, run); }
