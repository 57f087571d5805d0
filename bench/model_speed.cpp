// model_speed: llama-bench's two numbers for one of our model files — prefill (pp) and decode (tg)
// tok/s — for every requested width ratio. Used by versus-llamacpp.sh; also handy on its own.
//
//   elastilm_bench_model_speed -m MODEL.gguf [-p 512] [-n 128] [-t 2] [-r 1] [--ratios 100,50,20]
//   elastilm_bench_model_speed --smoke   (in-memory stories260K shape, for CI)
//   elastilm_bench_model_speed --write-synthetic tinyllama|openllama3b|tinygqa OUT.gguf [--type f16|q8_0|q4_0]
//   elastilm_bench_model_speed --roofline [-t 2] [--tokenizer tokenizer.model]
//
// Output: one CSV line per (ratio, repetition): ratio,pp_tok_s,tg_tok_s
#include <chrono>
#include <cstdio>
#include <sstream>

#include "../examples/common.hpp"
#include "elastilm/formats/gguf_export.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "roofline.hpp"

namespace {

using namespace elastilm;
using clock_type = std::chrono::steady_clock;

// `type` q8_0 / q4_0: the same weights quantized (layer matrices in that format, embedding and LM head
// Q8_0; see formats/gguf_export.hpp). Block formats are output-major in every layout.
template <ModelConfig Cfg>
void write_synthetic(const std::string& out, const std::string& tokenizer, bool in_major, DType type) {
    std::fprintf(stderr, "writing synthetic %s %s weights to %s\n", std::string(to_string(type)).c_str(), std::string(Cfg::name).c_str(),
                 out.c_str());
    const ModelWeights w = synthetic_weights<Cfg>({DType::f16, 1, Layout::out_major});
    const Tokenizer tok = Tokenizer::from_model_file(tokenizer);
    io::GgufExportOptions opt{std::string(Cfg::name) + "-synthetic", in_major, type};
    io::set_ratio_slices<Cfg>(opt);
    io::export_gguf(w, &tok.vocabulary(), out, opt);
}

template <ModelConfig Cfg>
int measure(ModelWeights weights, int pp, int tg, int threads, int reps, const std::vector<int>& ratios) {
    Model<Cfg> model(std::move(weights));
    ThreadPool pool(threads);
    require(pp + tg <= Cfg::context, "model_speed", "-p + -n exceed the context");
    std::vector<int> prompt(pp);
    for (int i = 0; i < pp; ++i) prompt[i] = 1 + (i * 7919) % (Cfg::vocab_size - 1);
    Session<Cfg> s(model, pool, Cfg::context, std::min(pp, 512));
    // Warm-up, as llama-bench does: the first pass pages the mapped weights in.
    s.append(std::span<const int>(prompt).first(std::min(pp, 32)), 100);
    s.reset();
    for (int r = 0; r < reps; ++r)
        for (int ratio : ratios) {
            // llama-bench's pp: a fresh prompt of pp tokens; tg: tg single-token steps from an empty cache.
            s.reset();
            auto t0 = clock_type::now();
            s.append(prompt, ratio);
            const double pp_s = std::chrono::duration<double>(clock_type::now() - t0).count();
            s.reset();
            int token = 1;
            t0 = clock_type::now();
            for (int i = 0; i < tg; ++i) token = 1 + int(s.append(token, ratio)[0] > 0);
            const double tg_s = std::chrono::duration<double>(clock_type::now() - t0).count();
            std::printf("%d,%.3f,%.3f\n", ratio, pp / pp_s, tg / tg_s);
            std::fflush(stdout);
        }
    return 0;
}

int run(const cli::Args& args) {
    if (args.has("--write-synthetic")) {
        const std::string shape = args.get("--write-synthetic", "", "");
        require(args.positional().size() == 1, "model_speed", "--write-synthetic SHAPE OUT.gguf");
        const std::string tok = args.get("--tokenizer", "", (cli::shared_dir() / "models" / "tokenizer.model").string());
        const bool in_major = args.has("--in-major-outputs");  // elastilm-only layout (see formats/gguf_export.hpp)
        const std::string type_name = args.get("--type", "", "f16");
        require(type_name == "f16" || type_name == "q8_0" || type_name == "q4_0", "model_speed", "--type must be f16, q8_0 or q4_0");
        const DType type = type_name == "q8_0" ? DType::q8_0 : type_name == "q4_0" ? DType::q4_0 : DType::f16;
        if (shape == "tinyllama") write_synthetic<TinyLlama1B>(args.positional()[0], tok, in_major, type);
        else if (shape == "openllama3b") write_synthetic<OpenLlama3B>(args.positional()[0], tok, in_major, type);
        else if (shape == "tinygqa") write_synthetic<TinyGqa15M>(args.positional()[0], tok, in_major, type);
        else throw Error("model_speed", "unknown shape " + shape + " (tinyllama, openllama3b, tinygqa)");
        return 0;
    }
    if (args.has("--roofline")) {  // the machine's ceilings for this run, as CSV: read GB/s, FMA GFLOP/s
        const int t = args.get_int("-t", "", 2);
        std::printf("%.2f,%.2f\n", bench::measure_read_bandwidth_gbs(t), bench::measure_fma_peak_gflops(t));
        return 0;
    }
    if (args.has("--smoke"))  // CI: a synthetic stories260K-shaped model in memory, tiny work
        return measure<Stories260K>(synthetic_weights<Stories260K>(), 16, 8, 1, 1, {100, 20});
    const std::string path = args.get("-m", "--model", "");
    require(!path.empty(), "model_speed", "usage: -m MODEL [-p 512] [-n 128] [-t 2] [-r 1] [--ratios 100,50]");
    std::vector<int> ratios;
    std::stringstream list(args.get("--ratios", "", "100"));
    for (std::string item; std::getline(list, item, ',');) ratios.push_back(std::stoi(item));
    ModelWeights w = load_weights(path);
    return with_config(w.hparams, w.source, [&]<ModelConfig Cfg>() -> int {
        check_against<Cfg>(w);
        return measure<Cfg>(std::move(w), args.get_int("-p", "", 512), args.get_int("-n", "", 128), args.get_int("-t", "", 2),
                            args.get_int("-r", "", 1), ratios);
    });
}

}  // namespace

int main(int argc, char** argv) { return elastilm::cli::run_main(argc, argv, {"--in-major-outputs", "--smoke", "--roofline"}, run); }
