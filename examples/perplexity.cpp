// perplexity: quality of every width ratio on held-out text, llama-perplexity style.
//
//   perplexity -m MODEL [-f TEXT] [--window 256] [--max-tokens 16384] [--ratios 20,30,...,100] [-t 2]
//              [--adapters DIR]
//              [--compare-orderings [--calib TEXT] [--calib-skip 16384] [--calib-tokens 8192] [--anchors 1]]
//
// Text is tokenized as paragraphs (BOS + ids) and scored in non-overlapping windows. With
// --compare-orderings the model (a plain one) is scored in four unit orderings built in memory:
//   ours       importance-ordered units + anchor layers (what `elasticize` writes)
//   no-anchor  importance-ordered units, no anchors (ablation)
//   original   the units in the file's order
//   random     a random permutation of every layer's units (seed 1)
// Calibration text must not overlap the scored text: by default it is taken from token 16384 on.
// With --adapters DIR (recover's output) a second column scores each ratio with its LoRA adapter.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/model_file.hpp"
#include "elastilm/elastic/elasticize.hpp"
#include "elastilm/lora/adapter_folder.hpp"
#include "elastilm/model/perplexity.hpp"

namespace {

using namespace elastilm;

int run(const cli::Args& args) {
    const std::string model_path = args.get("-m", "--model", "", "model: .gguf, Hugging Face folder or llama2.c .bin");
    const std::string default_text = (cli::shared_dir() / "models" / "tiny-gqa-15M" / "valid.txt").string();
    const std::string text_path = args.get("-f", "--file", default_text, "text to score");
    const int window = args.get_int("--window", "--ctx-size", 256, "scoring window in tokens");
    const int max_tokens = args.get_int("--max-tokens", "", 16384, "tokens scored");
    const int threads = args.threads();
    const std::vector<int> ratios = cli::ratio_list(args, {kRatios.begin(), kRatios.end()});
    const bool compare = args.has("--compare-orderings", "", "score a plain model in four unit orderings built in memory");
    const int calib_skip = args.get_int("--calib-skip", "", 16384, "with --compare-orderings: calibration tokens skipped");
    const int calib_tokens = args.get_int("--calib-tokens", "", 8192, "with --compare-orderings: calibration tokens");
    const std::string calib_flag = args.get("--calib", "", "", "with --compare-orderings: calibration text (default -f)");
    const int anchors = args.get_int("--anchors", "", 1, "with --compare-orderings: anchor layers");
    const std::string adapters = args.get("--adapters", "", "", "folder of LoRA adapters: a second column with them");
    const std::string tokenizer = cli::tokenizer_flag(args);
    args.finish("perplexity -m MODEL [-f TEXT] [flags]\n"
                "Perplexity of every width ratio on held-out text, in non-overlapping windows.");
    if (model_path.empty()) return cli::usage_error(args, "-m/--model");

    const cli::ModelFile file = cli::open_model(model_path, tokenizer);
    const Tokenizer& tok = *file.tokenizer;
    const ModelWeights& weights = file.weights;
    return cli::with_model(file, [&]<ModelConfig Cfg>() -> int {
        const auto stream = paragraph_stream(tok, cli::read_text(text_path));
        ThreadPool pool(threads);
        std::vector<std::pair<std::string, ModelWeights>> variants;
        if (compare) {
            const int skip = calib_skip, n = calib_tokens;
            const auto calib_text = paragraph_stream(tok, cli::read_text(calib_flag.empty() ? text_path : calib_flag));
            require(calib_text.size() > std::size_t(skip) + std::size_t(window), "perplexity",
                    "calibration text has " + std::to_string(calib_text.size()) + " tokens, not enough after --calib-skip");
            const auto calib = std::span<const int>(calib_text).subspan(skip, std::min<std::size_t>(n, calib_text.size() - skip));
            require(!calib_flag.empty() || skip >= max_tokens, "perplexity",
                    "calibration tokens would overlap the scored tokens: use --calib-skip >= --max-tokens");
            std::fprintf(stderr, "calibrating on %zu tokens...\n", calib.size());
            const UnitImportance imp = measure_importance<Cfg>(weights, calib, window, pool);
            ElasticizeOptions ours;
            ours.anchors = anchors;
            ElasticizeOptions no_anchor = ours;
            no_anchor.anchors = 0;
            variants.emplace_back("ours", make_elastic<Cfg>(weights, imp, ours));
            variants.emplace_back("no-anchor", make_elastic<Cfg>(weights, imp, no_anchor));
            variants.emplace_back("original", weights);
            ModelWeights shuffled = reorder_units<Cfg>(weights, UnitOrder::random<Cfg>(1));
            shuffled.is_elastic = false;
            variants.emplace_back("random", std::move(shuffled));
        } else {
            variants.emplace_back(weights.is_elastic ? "elastic" : "plain", weights);
        }
        std::vector<Model<Cfg>> models;
        for (auto& [name, w] : variants) models.emplace_back(w);
        if (!adapters.empty()) {
            require(!compare, "perplexity", "--adapters and --compare-orderings are separate tables");
            variants.emplace_back("with LoRA", weights);
            models.emplace_back(weights);
            const auto attached = attach_adapters(models.back(), adapters);
            std::size_t bytes = 0;
            for (int r : attached) bytes += models.back().adapter(r)->bytes();
            std::fprintf(stderr, "adapters for %zu ratios, %.1f KB in all\n", attached.size(), bytes / 1024.0);
        }

        std::printf("# %s, %s, window %d, first %d tokens, %d threads\n\n| ratio |", std::string(Cfg::name).c_str(),
                    text_path.c_str(), window, max_tokens, threads);
        for (auto& [name, w] : variants) std::printf(" %s |", name.c_str());
        std::printf("\n|---|");
        for (std::size_t i = 0; i < variants.size(); ++i) std::printf("---|");
        std::printf("\n");
        std::fflush(stdout);
        for (int r : ratios) {
            std::printf("| %d%% |", r);
            for (std::size_t i = 0; i < models.size(); ++i) {
                const auto res = perplexity(models[i], pool, stream, window, r, max_tokens, [&](int done, int total) {
                    std::fprintf(stderr, "\r  %s at %d%%: window %d/%d   ", variants[i].first.c_str(), r, done, total);
                });
                std::printf(" %.2f |", res.perplexity);
                std::fflush(stdout);
            }
            std::printf("\n");
        }
        std::fprintf(stderr, "\n");
        return 0;
    });
}

}  // namespace

int main(int argc, char** argv) { return elastilm::cli::run_main(argc, argv, {"--compare-orderings"}, run); }
