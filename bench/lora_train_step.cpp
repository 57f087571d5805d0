// Speed of one LoRA distillation step (forward with tape, KL loss, backward to the pairs) on
// tiny-gqa-15M (../shared/models/tiny-gqa-15M; synthetic fp32 weights of that shape when absent):
// 256-token sequence, rank 8, at 20% and 100% width. tok/s = sequence tokens per second of step.
//
// Flags besides Google Benchmark's: --threads=N (default 2).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "cli/tool.hpp"
#include "elastilm/lora/train_step.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"

namespace {

using namespace elastilm;
using Cfg = TinyGqa15M;

int g_threads = 2;
constexpr int kTokens = 256, kRank = 8;

const Model<Cfg>& model() {
    static const Model<Cfg> m = [] {
        const auto dir = std::filesystem::path(ELASTILM_SHARED_DIR) / "models" / "tiny-gqa-15M";
        if (std::filesystem::exists(dir)) return Model<Cfg>(load_model<Cfg>(dir));
        std::printf("(%s absent: synthetic fp32 weights of its shape)\n", dir.c_str());
        return Model<Cfg>(synthetic_weights<Cfg>({DType::f32, 1}));
    }();
    return m;
}
ThreadPool& pool() {
    static ThreadPool p(g_threads);
    return p;
}

template <int Percent>
void BM_DistillStep(benchmark::State& state) {
    std::vector<int> tokens(kTokens);
    for (int i = 0; i < kTokens; ++i) tokens[i] = 1 + (i * 7919) % (Cfg::vocab_size - 1);
    Session<Cfg> teacher(model(), pool(), kTokens, kTokens);
    const std::vector<float> teacher_logits = teacher.append_all_logits(tokens, 100);
    const LoraAdapter adapter = make_lora<Cfg>(Percent, model().anchors(), kRank, 2.0f * kRank);
    LoraAdapter grad = lora_zeros_like(adapter);
    DistillStep<Cfg> step(model(), kTokens);
    double loss = 0;
    for (auto _ : state) loss = step.step(adapter, tokens, teacher_logits, grad, pool());
    state.counters["tok/s"] = benchmark::Counter(double(state.iterations()) * kTokens, benchmark::Counter::kIsRate);
    state.counters["loss"] = loss;
    state.SetLabel(std::to_string(Percent) + "% width, " + std::to_string(kTokens) + " tokens, rank " + std::to_string(kRank) +
                   ", " + std::to_string(g_threads) + " threads");
}

BENCHMARK(BM_DistillStep<20>)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DistillStep<100>)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);  // takes its --benchmark_* flags out of argv
    if (const auto status = elastilm::cli::read_flags(argc, argv, {"--smoke"}, [&](const elastilm::cli::Args& args) {
            g_threads = args.threads();
            args.has("--smoke", "", "accepted for CI; this benchmark is small already");
            args.finish("elastilm_bench_lora_train_step [flags] [--benchmark_* flags]");
        }))
        return *status;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
