// Kernel microbenchmarks at real LLaMA shapes, each row against the ceiling measured in the same run:
//   matvec (decode):  GB/s of weights streamed, and its fraction of the streaming read bandwidth;
//   matmul (prefill): GFLOP/s for 512 tokens, and its fraction of the fp32 FMA peak; with F16 weights also
//   each reduced-precision GEMM of this build (matmul_bf16/…, matmul_fp16/…; matmul_bf16_rounded/…: W rounded
//   to bf16 instead of split), against its instruction's peak;
//   the fp16 and bf16 GEMMs' micro-kernels alone on cache-resident operands (gemm_f16_microkernel,
//   gemm_bf16_microkernel), one thread;
//   decode attention (attention_decode/…): one token's 32 query heads in groups of 8 over an fp16 cache
//   that fits in L2, one thread, GFLOP/s against the fp32 FMA peak; the heads of a KV head together
//   (ops/attention.hpp's attend) and one head at a time, for comparison;
//   a hand-off to the thread pool and back with no work (pool_handoff/…), 2 threads.
// Flags besides Google Benchmark's: --smoke (small shapes, for CI).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "elastilm/ops/attention.hpp"
#include "elastilm/simd/matmul.hpp"
#include "elastilm/simd/matvec.hpp"
#include "cli/tool.hpp"
#include "roofline.hpp"

namespace {

using namespace elastilm;

std::map<int, double> g_bandwidth, g_peak;                   // by thread count
std::map<std::pair<GemmPrecision, int>, double> g_reduced_peak;  // by precision and thread count

struct Weights {
    std::vector<std::byte> bytes;
    MatrixView view;
    Weights(int rows, int cols, DType dtype, Layout layout) : bytes(std::size_t(rows) * cols * dtype_size(dtype)) {
        std::mt19937 rng(rows ^ cols);
        if (dtype == DType::f32)
            for (std::size_t i = 0; i < std::size_t(rows) * cols; ++i) reinterpret_cast<float*>(bytes.data())[i] = float(rng() % 200) / 1e4f;
        else
            for (std::size_t i = 0; i < std::size_t(rows) * cols; ++i)
                reinterpret_cast<f16_bits*>(bytes.data())[i] = f32_to_f16(float(rng() % 200) / 1e4f);
        view = {bytes.data(), dtype, layout, rows, cols, std::size_t(layout == Layout::out_major ? cols : rows)};
    }
};

void BM_Matvec(benchmark::State& state, int rows, int cols, DType dtype, Layout layout) {
    const int threads = int(state.range(0));
    Weights w(rows, cols, dtype, layout);
    std::vector<float> x(cols, 0.5f), y(rows);
    ThreadPool pool(threads);
    for (auto _ : state) {
        matvec(y.data(), w.view, x.data(), &pool);
        benchmark::DoNotOptimize(y.data());
    }
    const double bytes = double(w.view.bytes()) * double(state.iterations());
    state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
    state.counters["bw_GB/s"] = g_bandwidth[threads];
}

void BM_Matmul(benchmark::State& state, int rows, int cols, DType dtype, Layout layout, GemmPrecision precision,
               GemmWeights weights = GemmWeights::exact) {
    const int threads = int(state.range(0)), n = int(state.range(1));
    ScopedGemmPrecision scoped(precision);
    Weights w(rows, cols, dtype, layout);
    std::vector<float> X(std::size_t(n) * cols, 0.25f), Y(std::size_t(n) * rows);
    ThreadPool pool(threads);
    for (auto _ : state) {
        matmul(Y.data(), rows, w.view, X.data(), cols, n, &pool, weights);
        benchmark::DoNotOptimize(Y.data());
    }
    const double flops = 2.0 * n * rows * double(cols) * double(state.iterations());
    state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsRate);
    state.counters["peak_GFLOP/s"] = precision == GemmPrecision::fp32 ? g_peak[threads] : g_reduced_peak[{precision, threads}];
}

#if defined(ELASTILM_GEMM_F16)
// The fp16 GEMM's micro-kernel alone (simd/gemm_f16.hpp), one thread, its operands cache-resident: one
// MR-row block of W (K = 2048) against one packed token tile, over and over. Against the matmul_fp16 rows
// this separates the micro-kernel's own rate (FMAs and run folds) from what the whole GEMM adds around it
// (packing X, moving W, X and Y through the caches, threads).
void BM_F16MicroKernel(benchmark::State& state) {
    using namespace gemm_f16;
    const int K = 2048, steps = K / D;
    std::vector<f16_bits> w(std::size_t(MR) * K), xt(std::size_t(steps) * NT * D);
    std::mt19937 rng(1);
    for (auto& v : w) v = f32_to_f16(float(rng() % 200) / 1e4f);
    for (auto& v : xt) v = f32_to_f16(float(rng() % 200) / 400.0f);
    const f16_bits* rows[MR];
    for (int r = 0; r < MR; ++r) rows[r] = w.data() + std::size_t(r) * K;
    std::vector<float> y(std::size_t(NT) * MR);
    for (auto _ : state) {
        micro_kernel<NV>(y.data(), MR, NT, MR, rows, D, xt.data(), steps);
        benchmark::DoNotOptimize(y.data());
    }
    const double flops = 2.0 * MR * NT * double(K) * double(state.iterations());
    state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsRate);
    state.counters["peak_GFLOP/s"] = g_reduced_peak[{GemmPrecision::fp16, 1}];
}
#endif

#if defined(ELASTILM_GEMM_BF16)
// The bf16 GEMM's micro-kernel alone (simd/gemm_bf16.hpp), one thread, its operands cache-resident: one
// packed panel (KC inputs; hi and lo, or hi alone: `Parts`) against MR tokens' packed pairs, over and
// over. Useful flops (2·MR·NR·KC per call), against `vdpbf16ps`'s peak, which counts issued flops: with W
// split into hi + lo the ceiling is half of it.
template <int Parts>
void BM_Bf16MicroKernel(benchmark::State& state) {
    using namespace gemm_bf16;
    std::vector<pair_bits> panel(std::size_t(KP) * Parts * NR), xp(std::size_t(MR) * KP);
    std::mt19937 rng(1);
    for (auto& v : panel) v = pair_bits(rng()) & 0x3f7f3f7fu;  // bf16 values in [0, 1)
    for (auto& v : xp) v = pair_bits(rng()) & 0x3f7f3f7fu;
    std::vector<float> y(std::size_t(MR) * NR);
    for (auto _ : state) {
        micro_kernel<MR, Parts>(y.data(), NR, NR, xp.data(), KP, panel.data(), KP, false);
        benchmark::DoNotOptimize(y.data());
    }
    const double flops = 2.0 * MR * NR * double(KC) * double(state.iterations());
    state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsRate);
    state.counters["peak_GFLOP/s"] = g_reduced_peak[{GemmPrecision::bf16, 1}];
}
#endif

// One decode token's attention at TinyLlama's shape (32 query heads, 4 KV heads, head_dim 64) over
// `positions` cached positions, the cache warm. `together`: attend() over all heads, which runs each KV
// head's 8 query heads together; otherwise attend() once per head, which scores a block of positions at
// once as well, so the two rows show what taking the group together adds.
void BM_AttentionDecode(benchmark::State& state, bool together) {
    constexpr int heads = 32, group = 8, head_dim = 64;
    const int positions = int(state.range(0));
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1, 1);
    const std::size_t stride = std::size_t(positions) * head_dim;
    std::vector<f16_bits> k(heads / group * stride), v(k.size());
    for (auto& x : k) x = f32_to_f16(u(rng));
    for (auto& x : v) x = f32_to_f16(u(rng));
    std::vector<float> q(heads * head_dim), out(q.size()), scores(std::size_t(group) * positions);
    for (float& x : q) x = u(rng);
    const KvView<f16_bits> kv{k.data(), v.data(), stride};
    for (auto _ : state) {
        if (together) attend(out.data(), q.data(), heads, group, head_dim, kv, positions, scores.data());
        else
            for (int h = 0; h < heads; ++h) {
                const KvView<f16_bits> head{kv.k + h / group * stride, kv.v + h / group * stride, stride};
                attend(out.data() + h * head_dim, q.data() + h * head_dim, 1, 1, head_dim, head, positions, scores.data());
            }
        benchmark::DoNotOptimize(out.data());
    }
    const double flops = 4.0 * heads * positions * double(head_dim) * double(state.iterations());  // q·k and p·v, a multiply-add each
    state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsRate);
    state.counters["peak_GFLOP/s"] = g_peak[1];
}

struct Case {
    const char* model;
    int rows, cols;
    Layout layout;
};

}  // namespace

// One hand-off to the pool and back with no work in it: what each of decode's ~111 pool calls a token
// (a product or attention per call) costs besides its work. parallel_chunks with each split, over a
// product's worth of rows (2560: TinyLlama's Wq, Wk, Wv), and parallel_for over 32 items (attention's heads).
void BM_PoolHandOff(benchmark::State& state, int split) {
    ThreadPool pool(int(state.range(0)));
    int sink = 0;
    for (auto _ : state) {
        if (split < 0) pool.parallel_for(32, [&](int begin, int) { benchmark::DoNotOptimize(sink += begin); });
        else
            pool.parallel_chunks(
                2560, [&](ThreadPool::Range chunk, ThreadPool::Next&) { benchmark::DoNotOptimize(sink += chunk.begin); }, 16,
                ThreadPool::Split(split));
    }
}

int main(int argc, char** argv) {
    bool smoke = false;
    benchmark::Initialize(&argc, argv);  // takes its --benchmark_* flags out of argv
    if (const auto status = elastilm::cli::read_flags(argc, argv, {"--smoke"}, [&](const elastilm::cli::Args& args) {
            smoke = args.has("--smoke", "", "small shapes (CI)");
            args.finish("elastilm_bench_kernels [--smoke] [--benchmark_* flags]");
        }))
        return *status;
    const std::vector<int> thread_counts = smoke ? std::vector<int>{1} : std::vector<int>{1, 2};
    std::vector<GemmPrecision> reduced;  // this build's reduced-precision GEMMs, one row each
    for (GemmPrecision p : {GemmPrecision::bf16, GemmPrecision::fp16})
        if (!gemm_instruction(p).empty()) reduced.push_back(p);
    for (int t : thread_counts) {
        g_bandwidth[t] = bench::measure_read_bandwidth_gbs(t, smoke ? (std::size_t(64) << 20) : (std::size_t(1) << 30));
        g_peak[t] = bench::measure_fma_peak_gflops(t);
        std::printf("threads %d: streaming read %.1f GB/s, fp32 FMA peak %.1f GFLOP/s (%d-lane SIMD)", t, g_bandwidth[t], g_peak[t],
                    simd::lanes);
        for (GemmPrecision p : reduced)
            std::printf(", %s peak %.1f GFLOP/s", std::string(gemm_instruction(p)).c_str(),
                        g_reduced_peak[{p, t}] = bench::measure_reduced_peak_gflops(t, p));
        std::printf("%s\n", reduced.empty() ? ", no reduced-precision GEMM" : "");
    }
    const std::vector<Case> cases = smoke ? std::vector<Case>{{"tiny", 256, 288, Layout::out_major}, {"tiny", 288, 256, Layout::in_major}}
                                          : std::vector<Case>{{"TinyLlama", 2048, 2048, Layout::out_major},
                                                              {"TinyLlama", 256, 2048, Layout::out_major},
                                                              {"TinyLlama", 5632, 2048, Layout::out_major},
                                                              {"TinyLlama", 2048, 5632, Layout::out_major},
                                                              {"TinyLlama", 2048, 5632, Layout::in_major},
                                                              {"OpenLLaMA-3B", 3200, 3200, Layout::out_major},
                                                              {"OpenLLaMA-3B", 8640, 3200, Layout::out_major}};
    const int prefill_tokens = smoke ? 16 : 512;
    for (const Case& c : cases)
        for (DType dtype : {DType::f16, DType::f32}) {
            const std::string shape = std::string(c.model) + "/" + std::to_string(c.rows) + "x" + std::to_string(c.cols) + "/" +
                                      std::string(to_string(dtype)) + (c.layout == Layout::in_major ? "/in_major" : "");
            auto* mv = benchmark::RegisterBenchmark(("matvec/" + shape).c_str(),
                                                    [=](benchmark::State& s) { BM_Matvec(s, c.rows, c.cols, dtype, c.layout); });
            auto* mm = benchmark::RegisterBenchmark(("matmul/" + shape).c_str(), [=](benchmark::State& s) {
                BM_Matmul(s, c.rows, c.cols, dtype, c.layout, GemmPrecision::fp32);
            });
            std::vector<benchmark::internal::Benchmark*> mr;
            for (GemmPrecision p : reduced)
                if (dtype == DType::f16) {
                    mr.push_back(benchmark::RegisterBenchmark(
                        (std::string(p == GemmPrecision::bf16 ? "matmul_bf16/" : "matmul_fp16/") + shape).c_str(),
                        [=](benchmark::State& s) { BM_Matmul(s, c.rows, c.cols, dtype, c.layout, p); }));
                    if (p == GemmPrecision::bf16)  // W rounded to bf16 (GemmWeights::may_round: the gate and up projections)
                        mr.push_back(benchmark::RegisterBenchmark(("matmul_bf16_rounded/" + shape).c_str(), [=](benchmark::State& s) {
                            BM_Matmul(s, c.rows, c.cols, dtype, c.layout, p, GemmWeights::may_round);
                        }));
                }
            for (int t : thread_counts) {
                mv->Arg(t)->ArgName("threads")->UseRealTime();
                mm->Args({t, prefill_tokens})->ArgNames({"threads", "tokens"})->UseRealTime()->Unit(benchmark::kMillisecond);
                for (auto* b : mr) b->Args({t, prefill_tokens})->ArgNames({"threads", "tokens"})->UseRealTime()->Unit(benchmark::kMillisecond);
            }
        }
#if defined(ELASTILM_GEMM_F16)
    benchmark::RegisterBenchmark("gemm_f16_microkernel/K:2048/threads:1", BM_F16MicroKernel)->UseRealTime();
#endif
#if defined(ELASTILM_GEMM_BF16)
    benchmark::RegisterBenchmark("gemm_bf16_microkernel/threads:1", BM_Bf16MicroKernel<2>)->UseRealTime();
    benchmark::RegisterBenchmark("gemm_bf16_microkernel_rounded/threads:1", BM_Bf16MicroKernel<1>)->UseRealTime();
#endif
    for (bool together : {true, false})
        benchmark::RegisterBenchmark(together ? "attention_decode/TinyLlama/heads_of_a_kv_head_together/threads:1"
                                              : "attention_decode/TinyLlama/one_head_at_a_time/threads:1",
                                     [together](benchmark::State& s) { BM_AttentionDecode(s, together); })
            ->ArgName("positions")
            ->Args({smoke ? 20 : 128})
            ->Args({smoke ? 40 : 1024})
            ->UseRealTime();
    for (const auto& [name, split] : {std::pair<const char*, int>{"pool_handoff/parallel_for", -1},
                                      {"pool_handoff/parallel_chunks_stealing", int(ThreadPool::Split::stealing)},
                                      {"pool_handoff/parallel_chunks_stealing_committed", int(ThreadPool::Split::stealing_committed)},
                                      {"pool_handoff/parallel_chunks_dynamic", int(ThreadPool::Split::dynamic)},
                                      {"pool_handoff/parallel_chunks_static", int(ThreadPool::Split::static_shares)}})
        benchmark::RegisterBenchmark(name, [split = split](benchmark::State& s) { BM_PoolHandOff(s, split); })
            ->Arg(2)
            ->ArgName("threads")
            ->UseRealTime();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
