// Block-format kernels (Q8_0 / Q4_0, simd/quant_*.hpp) at TinyLlama's shapes, against the ceilings
// measured in the same run:
//   matvec (decode):  GB/s of weight blocks streamed, and the streaming read bandwidth beside it;
//   matmul (prefill): GOP/s (2 per multiply-add) for 512 tokens, and the vpdpbusd zmm peak beside it
//                     when the build has the packed AVX-512 VNNI GEMM;
//   layout:           W_down (2048 × 5632) at every ratio, read as the prefix of each row of the full
//                     output-major matrix (the layout we store, GGUF's) and as a compact matrix of the same
//                     blocks (what a layout making every ratio's slice one contiguous range would read).
// Flags besides Google Benchmark's: --smoke (small shapes, for CI).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/simd/matmul.hpp"
#include "elastilm/simd/matvec.hpp"
#include "roofline.hpp"

namespace {

using namespace elastilm;

std::map<int, double> g_bandwidth, g_vnni_peak;  // by thread count

struct Blocks {
    std::vector<std::byte> bytes;
    MatrixView view;
    Blocks(int rows, int cols, DType dtype) : bytes(bytes_for(dtype, std::size_t(rows) * cols)) {
        std::mt19937 rng(rows ^ cols);
        std::normal_distribution<float> g(0, 0.02f);
        std::vector<float> row(cols);
        for (int r = 0; r < rows; ++r) {
            for (float& v : row) v = g(rng);
            quantize_row(bytes.data() + bytes_for(dtype, std::size_t(r) * cols), dtype, row.data(), cols);
        }
        view = {bytes.data(), dtype, Layout::out_major, rows, cols, std::size_t(cols)};
    }
};

void BM_Matvec(benchmark::State& state, MatrixView W) {
    const int threads = int(state.range(0));
    std::vector<float> x(W.cols, 0.5f), y(W.rows);
    ThreadPool pool(threads);
    for (auto _ : state) {
        matvec(y.data(), W, x.data(), &pool);
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["GB/s"] = benchmark::Counter(double(W.bytes()) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
    state.counters["bw_GB/s"] = g_bandwidth[threads];
}

void BM_Matmul(benchmark::State& state, MatrixView W) {
    const int threads = int(state.range(0)), n = int(state.range(1));
    std::vector<float> X(std::size_t(n) * W.cols, 0.25f), Y(std::size_t(n) * W.rows);
    ThreadPool pool(threads);
    for (auto _ : state) {
        matmul(Y.data(), W.rows, W, X.data(), W.cols, n, &pool);
        benchmark::DoNotOptimize(Y.data());
    }
    state.counters["GOP/s"] =
        benchmark::Counter(2.0 * n * W.rows * double(W.cols) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
    if (g_vnni_peak[threads] > 0) state.counters["peak_GOP/s"] = g_vnni_peak[threads];
}

struct Case {
    int rows, cols;
};

}  // namespace

int main(int argc, char** argv) {
    bool smoke = false;
    for (int i = 1; i < argc; ++i) smoke |= std::strcmp(argv[i], "--smoke") == 0;
    benchmark::Initialize(&argc, argv);
    const std::vector<int> thread_counts = smoke ? std::vector<int>{1} : std::vector<int>{1, 2};
    for (int t : thread_counts) {
        g_bandwidth[t] = bench::measure_read_bandwidth_gbs(t, smoke ? (std::size_t(64) << 20) : (std::size_t(1) << 30));
        g_vnni_peak[t] = smoke ? 0 : bench::measure_vnni_peak_gops(t);
        std::printf("threads %d: streaming read %.1f GB/s; integer dot products: %s; prefill GEMM: %s, vpdpbusd zmm peak %.0f GOP/s\n", t,
                    g_bandwidth[t], simd::qarch::kName, ELASTILM_QGEMM_PACKED ? "packed" : "tiled", g_vnni_peak[t]);
    }
    const std::vector<Case> cases = smoke ? std::vector<Case>{{256, 288}}
                                          : std::vector<Case>{{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
    const int prefill_tokens = smoke ? 16 : 512;
    static std::vector<Blocks> keep;
    keep.reserve(2 * cases.size() + 40);
    for (DType dtype : {DType::q8_0, DType::q4_0})
        for (const Case& c : cases) {
            const MatrixView W = keep.emplace_back(c.rows, c.cols, dtype).view;
            const std::string shape = std::to_string(c.rows) + "x" + std::to_string(c.cols) + "/" + std::string(to_string(dtype));
            auto* mv = benchmark::RegisterBenchmark(("matvec/" + shape).c_str(), [=](benchmark::State& s) { BM_Matvec(s, W); });
            for (int t : thread_counts) mv->Arg(t)->ArgName("threads")->UseRealTime();
            if (c.rows == 32000) continue;  // the LM head runs once per prompt
            auto* mm = benchmark::RegisterBenchmark(("matmul/" + shape).c_str(), [=](benchmark::State& s) { BM_Matmul(s, W); });
            for (int t : thread_counts) mm->Args({t, prefill_tokens})->ArgNames({"threads", "tokens"})->UseRealTime()->Unit(benchmark::kMillisecond);
        }
    if (!smoke)
        for (DType dtype : {DType::q8_0, DType::q4_0}) {
            const MatrixView full = keep.emplace_back(2048, 5632, dtype).view;
            for (int percent : kRatios) {
                const int hidden = percent == 100 ? 5632 : round_up(round_div(percent * 5632, 100), kFfnUnitMultiple);
                const MatrixView prefix = full.prefix(2048, hidden), compact = keep.emplace_back(2048, hidden, dtype).view;
                const std::string name = "layout/W_down/" + std::string(to_string(dtype)) + "/" + std::to_string(percent) + "%/";
                benchmark::RegisterBenchmark((name + "row_prefix").c_str(), [=](benchmark::State& s) { BM_Matvec(s, prefix); })
                    ->Arg(2)->ArgName("threads")->UseRealTime();
                benchmark::RegisterBenchmark((name + "contiguous").c_str(), [=](benchmark::State& s) { BM_Matvec(s, compact); })
                    ->Arg(2)->ArgName("threads")->UseRealTime();
            }
        }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
