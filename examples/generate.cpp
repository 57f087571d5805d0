// generate: run a model on a prompt and stream the answer, llama.cpp style.
//
//   generate -m MODEL [-p PROMPT] [-n TOKENS] [-t THREADS] [--temp T] [--top-p P] [--seed S]
//            [--ratio PERCENT | --prefill-ratio P --decode-ratio D] [--tokenizer tokenizer.model] [--adapters DIR]
//            [--no-mmap]   (weights copied into memory on transparent huge pages instead of mapped)
//
// MODEL is a .gguf, a Hugging Face folder (config.json + model.safetensors) or a llama2.c .bin; its
// shape picks the compiled config. Prints prefill tok/s, TTFT and TPOT at the end.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/model_file.hpp"
#include "elastilm/generate/generate.hpp"
#include "elastilm/lora/adapter_folder.hpp"

namespace {

using namespace elastilm;

std::vector<int> parse_ids(const std::string& s) {
    std::vector<int> ids;
    std::size_t pos = 0;
    while (pos < s.size()) {
        const std::size_t end = std::min(s.find(',', pos), s.size());
        const std::string item = s.substr(pos, end - pos);
        char* stop = nullptr;
        const long id = std::strtol(item.c_str(), &stop, 10);
        require(!item.empty() && *stop == '\0' && id >= 0 && id <= 1 << 30, "--ids", "'" + item + "' is not a token id");
        ids.push_back(int(id));
        pos = end + 1;
    }
    return ids;
}

int run(const cli::Args& args) {
    const std::string model_path = args.get("-m", "--model", "", "model: .gguf, Hugging Face folder or llama2.c .bin");
    const std::string prompt = args.get("-p", "--prompt", "Once upon a time", "prompt text");
    GenerateOptions opt;
    opt.max_new_tokens = args.get_int("-n", "--n-predict", 64, "tokens to generate");
    const int ratio = args.get_int("-r", "--ratio", 100, "width ratio for prefill and decode (20..100)");
    opt.prefill_percent = args.get_int("--prefill-ratio", "", ratio, "width ratio for the prompt (default --ratio)");
    opt.decode_percent = args.get_int("--decode-ratio", "", ratio, "width ratio for decoding (default --ratio)");
    opt.sampling.temperature = float(args.get_double("--temp", "--temperature", 0.0, "sampling temperature (0: greedy)"));
    opt.sampling.top_p = float(args.get_double("--top-p", "", 0.9, "nucleus sampling mass"));
    opt.sampling.seed = std::uint64_t(args.get_int("-s", "--seed", 42, "sampling seed"));
    const int threads = args.threads();
    const std::string tokenizer = cli::tokenizer_flag(args);
    const std::string ids_flag = args.get("--ids", "", "", "prompt as token ids 1,2,3 instead of text (no tokenizer)");
    const std::string adapters = args.get("--adapters", "", "", "folder of LoRA adapters (recover's output)");
    const bool no_mmap = args.has("--no-mmap", "", "copy the weights into memory on transparent huge pages instead of mapping the file");
    args.finish("generate -m MODEL [-p PROMPT] [-n TOKENS] [-t THREADS] [flags]\n"
                "Runs MODEL on a prompt and streams the answer; prints prefill tok/s, TTFT and TPOT at the end.");
    if (model_path.empty()) return cli::usage_error(args, "-m/--model");

    std::fprintf(stderr, "loading %s\n", model_path.c_str());
    // A GGUF's own vocabulary first; else tokenizer.model (--tokenizer, beside the model, ../shared).
    const auto t_load = std::chrono::steady_clock::now();
    cli::ModelFile file = cli::open_model(model_path, tokenizer,
                                          {.gguf_vocabulary = true,
                                           .tokenizer_required = ids_flag.empty(),
                                           .residency = no_mmap ? io::Residency::huge_page_copy : io::Residency::mapped});
    std::fprintf(stderr, "loaded in %.2f s (%s)\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count(),
                 no_mmap ? "weights copied into memory, --no-mmap" : "weights mapped");
    return cli::with_model(file, [&]<ModelConfig Cfg>() -> int {
        ModelWeights& weights = file.weights;
        std::fprintf(stderr, "model: %s (%s, %s weights, %d layers)%s\n", std::string(Cfg::name).c_str(), weights.format.c_str(),
                     std::string(to_string(weights.embedding.dtype)).c_str(), Cfg::n_layers,
                     weights.is_elastic ? ", elastic" : "");
        if (!weights.is_elastic && (opt.prefill_percent < 100 || opt.decode_percent < 100))
            std::fprintf(stderr, "warning: %s is not elasticized: ratios below 100%% keep units in their original order "
                                 "(run elasticize for importance-ordered sub-models)\n", model_path.c_str());
        Model<Cfg> model(std::move(weights));
        if (!adapters.empty()) {
            const auto attached = attach_adapters(model, adapters);
            std::fprintf(stderr, "LoRA adapters attached for %zu ratios\n", attached.size());
        }
        std::vector<int> ids;
        const Tokenizer* tok = ids_flag.empty() ? &*file.tokenizer : nullptr;
        if (!ids_flag.empty()) ids = parse_ids(ids_flag);
        else ids = tok->encode(prompt, true);
        // Refused before the prompt is echoed: a prompt that does not fit would only fail after it.
        require(opt.max_new_tokens >= 0, "generate", "-n must be >= 0, got " + std::to_string(opt.max_new_tokens));
        require(int(ids.size()) + opt.max_new_tokens <= Cfg::context, "generate",
                "the prompt (" + std::to_string(ids.size()) + " tokens) plus -n " + std::to_string(opt.max_new_tokens) +
                    " exceeds the context of " + std::to_string(Cfg::context) + " tokens");
        if (tok) {
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

int main(int argc, char** argv) { return elastilm::cli::run_main(argc, argv, {"--no-mmap"}, run); }
