// End-to-end prefill and decode speed of every width ratio on a 1B-class config (TinyLlama-1.1B shape,
// synthetic fp16 weights), with the machine's read bandwidth and FMA peak measured in the same run.
//
//   decode:  tok/s, GB/s = weight bytes read per token / TPOT, and that as a fraction of the measured
//            streaming read bandwidth (decode is memory-bound).
//   prefill: tok/s for a 512-token prompt and GFLOP/s against the measured fp32 FMA peak.
//   switch:  the cost of choosing another ratio (a variant-table index) against a TTFT.
//   +lora8:  the same decode and prefill with a rank-8 LoRA recovery adapter attached to every ratio
//            (on all seven projections), to show what recovery costs per token.
//
// Flags besides Google Benchmark's: --threads=N (default 2), --smoke (stories260K shape, for a
// quick smoke run).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>

#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "roofline.hpp"

namespace {

using namespace elastilm;

int g_threads = 2;
double g_bandwidth_gbs = 0;
double g_fma_peak_gflops = 0;

template <ModelConfig Cfg>
struct Fixture {
    static Model<Cfg>& model() {
        static Model<Cfg> m(synthetic_weights<Cfg>({DType::f16, 1, Layout::in_major}));
        return m;
    }
    // The same weights (shared views) with a random rank-8 adapter on every ratio.
    static Model<Cfg>& model_with_lora() {
        static Model<Cfg> m = [] {
            Model<Cfg> with(model().weights());
            for (int r : kRatios) {
                LoraAdapter ad = make_lora<Cfg>(r, with.anchors(), 8, 16.0f, std::uint64_t(r));
                for (auto& l : ad.layers)
                    for (auto& p : l.pairs) std::fill(p.b.begin(), p.b.end(), 1e-3f);
                with.set_adapter(std::make_shared<const LoraAdapter>(std::move(ad)));
            }
            return with;
        }();
        return m;
    }
    static Model<Cfg>& model(bool lora) { return lora ? model_with_lora() : model(); }
    static ThreadPool& pool() {
        static ThreadPool p(g_threads);
        return p;
    }
    static std::vector<int> prompt(int n) {
        std::vector<int> ids(n);
        for (int i = 0; i < n; ++i) ids[i] = 1 + (i * 7919) % (Cfg::vocab_size - 1);
        return ids;
    }
};

template <ModelConfig Cfg, int Percent, bool Lora = false>
void BM_Decode(benchmark::State& state) {
    using F = Fixture<Cfg>;
    constexpr int prompt_len = 64;
    const int context = std::min(Cfg::context, 512);
    Session<Cfg> s(F::model(Lora), F::pool(), context, 64);
    const auto prompt = F::prompt(prompt_len);
    s.append(prompt, Percent);
    int token = 1;
    for (auto _ : state) {
        if (s.position() + 1 >= context) {
            state.PauseTiming();
            s.reset();
            s.append(prompt, Percent);
            state.ResumeTiming();
        }
        auto logits = s.append(token, Percent);
        token = 1 + int(logits[0] > 0);
        benchmark::DoNotOptimize(logits.data());
    }
    const double bytes = double(decode_weight_bytes<Cfg, Percent>(DType::f16));
    state.counters["tok/s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["GB/s"] = benchmark::Counter(bytes * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
    state.counters["weights_MB"] = bytes / 1e6;
    state.counters["bw_GB/s"] = g_bandwidth_gbs;
    state.SetLabel("ratio " + std::to_string(Percent) + "%");
}

template <ModelConfig Cfg, int Percent, bool Lora = false>
void BM_Prefill(benchmark::State& state) {
    using F = Fixture<Cfg>;
    const int n = int(state.range(0));
    Session<Cfg> s(F::model(Lora), F::pool(), std::min(Cfg::context, n), std::min(n, 512));
    const auto prompt = F::prompt(n);
    for (auto _ : state) {
        s.reset();
        auto logits = s.append(prompt, Percent);
        benchmark::DoNotOptimize(logits.data());
    }
    const double flops = flops_per_token<Cfg, Percent>() * n;
    state.counters["tok/s"] = benchmark::Counter(double(n) * double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["GFLOP/s"] = benchmark::Counter(flops * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
    state.counters["peak_GFLOP/s"] = g_fma_peak_gflops;
    state.SetLabel("ratio " + std::to_string(Percent) + "%");
}

// Choosing a sub-model is an index into the variant table.
template <ModelConfig Cfg>
void BM_SwitchRatio(benchmark::State& state) {
    int i = 0;
    for (auto _ : state) {
        ForwardFn<Cfg> fn = variant<Cfg>(kRatios[i]);
        benchmark::DoNotOptimize(fn);
        i = (i + 1) % int(kRatios.size());
    }
}

template <ModelConfig Cfg>
void register_all(int prompt_tokens, int min_time_decode_reps) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (benchmark::RegisterBenchmark(("decode/" + std::string(Cfg::name) + "/" + std::to_string(kRatios[I])).c_str(),
                                      BM_Decode<Cfg, kRatios[I]>)
             ->Unit(benchmark::kMillisecond)
             ->MinTime(0.5)
             ->Repetitions(min_time_decode_reps)
             ->ReportAggregatesOnly(min_time_decode_reps > 1),
         ...);
        (benchmark::RegisterBenchmark(("prefill" + std::to_string(prompt_tokens) + "/" + std::string(Cfg::name) + "/" +
                                       std::to_string(kRatios[I])).c_str(),
                                      BM_Prefill<Cfg, kRatios[I]>)
             ->Arg(prompt_tokens)
             ->Unit(benchmark::kMillisecond)
             ->Iterations(1)
             ->Repetitions(min_time_decode_reps)
             ->ReportAggregatesOnly(min_time_decode_reps > 1),
         ...);
    }(std::make_index_sequence<kRatios.size()>{});
    benchmark::RegisterBenchmark(("switch_ratio/" + std::string(Cfg::name)).c_str(), BM_SwitchRatio<Cfg>);
    // With recovery adapters: decode and prefill per ratio, rank 8.
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (benchmark::RegisterBenchmark(("decode+lora8/" + std::string(Cfg::name) + "/" + std::to_string(kRatios[I])).c_str(),
                                      BM_Decode<Cfg, kRatios[I], true>)
             ->Unit(benchmark::kMillisecond)
             ->MinTime(0.5)
             ->Repetitions(min_time_decode_reps)
             ->ReportAggregatesOnly(min_time_decode_reps > 1),
         ...);
        (benchmark::RegisterBenchmark(("prefill" + std::to_string(prompt_tokens) + "+lora8/" + std::string(Cfg::name) + "/" +
                                       std::to_string(kRatios[I])).c_str(),
                                      BM_Prefill<Cfg, kRatios[I], true>)
             ->Arg(prompt_tokens)
             ->Unit(benchmark::kMillisecond)
             ->Iterations(1)
             ->Repetitions(min_time_decode_reps)
             ->ReportAggregatesOnly(min_time_decode_reps > 1),
         ...);
    }(std::make_index_sequence<kRatios.size()>{});
}

// The adapter's decode cost, measured without the run-to-run drift of the machine's bandwidth: decode
// steps with and without a rank-8 adapter alternate, token by token, on the same weights.
template <ModelConfig Cfg>
void print_lora_overhead(int steps) {
    using F = Fixture<Cfg>;
    using clock = std::chrono::steady_clock;
    const auto prompt = F::prompt(64);
    std::printf("\nLoRA rank 8 on every projection, decode alternating with/without, %d steps per ratio:\n\n", steps);
    std::printf("| ratio | TPOT without | TPOT with adapter | adapter cost | adapter bytes read / weight bytes |\n|---|---|---|---|---|\n");
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        ([&] {
            constexpr int percent = kRatios[I];
            Session<Cfg> plain(F::model(false), F::pool(), 64 + steps + 1, 64), lora(F::model(true), F::pool(), 64 + steps + 1, 64);
            plain.append(prompt, percent);
            lora.append(prompt, percent);
            double t_plain = 0, t_lora = 0;
            int token = 1;
            for (int i = 0; i < steps; ++i) {
                auto t0 = clock::now();
                token = 1 + int(plain.append(token, percent)[0] > 0);
                t_plain += std::chrono::duration<double, std::milli>(clock::now() - t0).count();
                t0 = clock::now();
                token = 1 + int(lora.append(token, percent)[0] > 0);
                t_lora += std::chrono::duration<double, std::milli>(clock::now() - t0).count();
            }
            const double adapter_bytes = double(F::model(true).adapter_runtime(percent)->bytes());
            std::printf("| %d%% | %.2f ms | %.2f ms | %+.1f%% | %.2f%% |\n", percent, t_plain / steps, t_lora / steps,
                        100.0 * (t_lora - t_plain) / t_plain, 100.0 * adapter_bytes / double(decode_weight_bytes<Cfg, percent>(DType::f16)));
            std::fflush(stdout);
        }(), ...);
    }(std::make_index_sequence<kRatios.size()>{});
}

}  // namespace

int main(int argc, char** argv) {
    bool tiny = false;
    int reps = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--threads=", 10) == 0) g_threads = std::atoi(argv[i] + 10);
        else if (std::strcmp(argv[i], "--smoke") == 0) tiny = true;
        else if (std::strncmp(argv[i], "--reps=", 7) == 0) reps = std::atoi(argv[i] + 7);
    }
    benchmark::Initialize(&argc, argv);
    g_bandwidth_gbs = elastilm::bench::measure_read_bandwidth_gbs(g_threads);
    g_fma_peak_gflops = elastilm::bench::measure_fma_peak_gflops(g_threads);
    std::printf("threads %d | streaming read bandwidth %.1f GB/s | fp32 FMA peak %.1f GFLOP/s\n", g_threads,
                g_bandwidth_gbs, g_fma_peak_gflops);
    if (tiny) register_all<elastilm::Stories260K>(64, reps);
    else {
        std::printf("building synthetic fp16 TinyLlama-1.1B weights (2.2 GB)...\n");
        std::fflush(stdout);
        register_all<elastilm::TinyLlama1B>(512, reps);
    }
    benchmark::RunSpecifiedBenchmarks();
    if (tiny) print_lora_overhead<elastilm::Stories260K>(32);
    else print_lora_overhead<elastilm::TinyLlama1B>(96);
    benchmark::Shutdown();
}
