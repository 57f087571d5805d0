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

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "cli/tool.hpp"
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

template <ModelConfig Cfg, int Percent, bool Lora>
void register_decode(int reps) {
    benchmark::RegisterBenchmark(("decode" + std::string(Lora ? "+lora8" : "") + "/" + std::string(Cfg::name) + "/" +
                                  std::to_string(Percent)).c_str(),
                                 BM_Decode<Cfg, Percent, Lora>)
        ->Unit(benchmark::kMillisecond)
        ->MinTime(0.5)
        ->Repetitions(reps)
        ->ReportAggregatesOnly(reps > 1);
}

template <ModelConfig Cfg, int Percent, bool Lora>
void register_prefill(int prompt_tokens, int reps) {
    benchmark::RegisterBenchmark(("prefill" + std::to_string(prompt_tokens) + (Lora ? "+lora8" : "") + "/" + std::string(Cfg::name) +
                                  "/" + std::to_string(Percent)).c_str(),
                                 BM_Prefill<Cfg, Percent, Lora>)
        ->Arg(prompt_tokens)
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1)
        ->Repetitions(reps)
        ->ReportAggregatesOnly(reps > 1);
}

// Per ratio, without and then with a rank-8 adapter, back to back: the machine's bandwidth drifts over
// minutes, so the two rows of a ratio are taken as close together as possible.
template <ModelConfig Cfg>
void register_all(int prompt_tokens, int reps) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        ((register_decode<Cfg, kRatios[I], false>(reps), register_decode<Cfg, kRatios[I], true>(reps),
          register_prefill<Cfg, kRatios[I], false>(prompt_tokens, reps), register_prefill<Cfg, kRatios[I], true>(prompt_tokens, reps)),
         ...);
    }(std::make_index_sequence<kRatios.size()>{});
    benchmark::RegisterBenchmark(("switch_ratio/" + std::string(Cfg::name)).c_str(), BM_SwitchRatio<Cfg>);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The adapter's decode cost, measured without the run-to-run drift of the machine's bandwidth: one session
// on one model decodes token after token, with the rank-8 adapter attached for one step of each pair and
// detached for the other (which goes first alternates). Same session, same KV cache, same weights: two
// separate sessions differ by up to ~1 ms per token on their own (memory placement), which would be
// credited to the adapter. The cost is the median of the per-pair differences, so a burst of contention
// that hits one side of a pair does not count as the adapter's.
template <ModelConfig Cfg>
void print_lora_overhead(int steps) {
    using F = Fixture<Cfg>;
    using clock = std::chrono::steady_clock;
    const auto prompt = F::prompt(64);
    std::printf("\nLoRA rank 8 on every projection, decode alternating with/without, %d pairs per ratio (medians):\n\n", steps);
    std::printf("| ratio | TPOT without | TPOT with adapter | adapter cost | adapter bytes read / weight bytes |\n|---|---|---|---|---|\n");
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        ([&] {
            constexpr int percent = kRatios[I];
            Model<Cfg> model(F::model(false).weights());
            const auto adapter = std::make_shared<const LoraAdapter>(*F::model(true).adapter(percent));
            Session<Cfg> session(model, F::pool(), 64 + 2 * steps + 1, 64);
            session.append(prompt, percent);
            std::vector<double> t_plain, t_lora, diff;
            int token = 1;
            // Attaching converts the adapter, which leaves it in cache; in real decode the base weights
            // stream through in between. Both sides start after the same cache-clearing sweep.
            static std::vector<float> sweep(std::size_t(64) << 20 >> 2, 1.0f);
            auto timed_step = [&](bool with_adapter, std::vector<double>& times) {
                if (with_adapter) model.set_adapter(adapter);
                else model.clear_adapter(percent);
                benchmark::DoNotOptimize(std::accumulate(sweep.begin(), sweep.end(), 0.0f));
                const auto t0 = clock::now();
                token = 1 + int(session.append(token, percent)[0] > 0);
                times.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
            };
            for (int i = 0; i < steps; ++i) {
                if (i % 2 == 0) { timed_step(false, t_plain); timed_step(true, t_lora); }
                else { timed_step(true, t_lora); timed_step(false, t_plain); }
                diff.push_back(t_lora.back() - t_plain.back());
            }
            const double base = median(t_plain), cost = median(diff);
            const double adapter_bytes = double(F::model(true).adapter_runtime(percent)->bytes());
            std::printf("| %d%% | %.2f ms | %.2f ms | %+.2f ms (%+.1f%%) | %.2f%% |\n", percent, base, median(t_lora), cost,
                        100.0 * cost / base, 100.0 * adapter_bytes / double(decode_weight_bytes<Cfg, percent>(DType::f16)));
            std::fflush(stdout);
        }(), ...);
    }(std::make_index_sequence<kRatios.size()>{});
}

}  // namespace

int main(int argc, char** argv) {
    bool tiny = false;
    int reps = 1;
    benchmark::Initialize(&argc, argv);  // takes its --benchmark_* flags out of argv
    if (const auto status = elastilm::cli::read_flags(argc, argv, {"--smoke"}, [&](const elastilm::cli::Args& args) {
            g_threads = args.threads();
            tiny = args.has("--smoke", "", "stories260K shape instead of TinyLlama-1.1B (CI)");
            reps = args.get_int("--reps", "", 1, "Google Benchmark repetitions");
            args.finish("elastilm_bench_end_to_end [flags] [--benchmark_* flags]");
        }))
        return *status;
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
