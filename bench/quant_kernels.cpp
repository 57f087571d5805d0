// Block-format kernels (Q8_0 / Q4_0, simd/quant_*.hpp) at TinyLlama's shapes, against the ceilings
// measured in the same run:
//   matvec (decode):  GB/s of weight blocks streamed, and the streaming read bandwidth beside it (these
//                     matrices fit in the last-level cache: this is the kernel's speed, not memory's);
//   matmul (prefill): GOP/s (2 per multiply-add) for 512 tokens, and the vpdpbusd zmm peak beside it
//                     when the build has the packed AVX-512 VNNI GEMM;
//   layout:           W_down (2048 × 5632) at every ratio, read as the prefix of each row of the full
//                     output-major matrix (the layout we store, GGUF's) and as a compact matrix of the same
//                     blocks (what a layout making every ratio's slice one contiguous range would read);
//   decode pass:      the 7 matvecs of each of TinyLlama's 22 layers (Wq, Wk, Wv, Wo, gate, up, down), one
//                     iteration = all 22 layers in order, 1.05 GB (Q8_0) / 0.59 GB (Q4_0) of blocks: far
//                     more than the caches, so GB/s here is what decode streams from memory. Pages as
//                     the model's mmap gives them (4 KB) and, for comparison, transparent huge pages
//                     (what --no-mmap's copy gets); decode_pass_fused runs the products of one input as
//                     one (Wq, Wk, Wv; gate, up), as the model's decode does.
// Flags besides Google Benchmark's: --smoke (small shapes, for CI).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/simd/matmul.hpp"
#include "elastilm/simd/matvec.hpp"
#include "roofline.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

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

// The build's decode kernel, or (ymm = true, builds with the zmm kernel) the one-block-at-a-time kernel
// it replaced, timed side by side in the same run.
void quant_matvec_as(bool ymm, float* y, const MatrixView& W, const float* x, ThreadPool* pool) {
#if ELASTILM_QMATVEC_VNNI
    if (ymm) return detail::quant_matvec<false>(y, W, x, pool, nullptr, nullptr, std::size_t(1) << 16);
#endif
    (void)ymm;
    matvec(y, W, x, pool);
}

void BM_Matvec(benchmark::State& state, MatrixView W, bool ymm = false) {
    const int threads = int(state.range(0));
    std::vector<float> x(W.cols, 0.5f), y(W.rows);
    ThreadPool pool(threads);
    for (auto _ : state) {
        quant_matvec_as(ymm, y.data(), W, x.data(), &pool);
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

// TinyLlama's 22 layers of blocks in one allocation (each layer a copy of one random quantized layer),
// built on first use so that a filtered run does not pay for it.
struct Layers {
    struct Free {
        void operator()(std::byte* p) const { std::free(p); }
    };
    std::unique_ptr<std::byte, Free> bytes;
    std::vector<MatrixView> views;
    std::size_t total = 0;
    Layers(DType dtype, bool huge_pages) {
        using C = TinyLlama1B;
        const int shapes[7][2] = {{C::n_heads * C::head_dim, C::dim}, {C::n_kv_heads * C::head_dim, C::dim}, {C::n_kv_heads * C::head_dim, C::dim},
                                  {C::dim, C::n_heads * C::head_dim}, {C::hidden_dim, C::dim}, {C::hidden_dim, C::dim}, {C::dim, C::hidden_dim}};
        std::vector<Blocks> layer;
        std::size_t layer_bytes = 0;
        for (const auto& s : shapes) layer_bytes += layer.emplace_back(s[0], s[1], dtype).bytes.size();
        constexpr std::size_t kHuge = std::size_t(1) << 21;
        total = layer_bytes * C::n_layers;
        const std::size_t alloc = (total + kHuge - 1) / kHuge * kHuge;
        bytes.reset(static_cast<std::byte*>(std::aligned_alloc(kHuge, alloc)));
        if (!bytes) throw std::bad_alloc();
#if defined(__linux__)
        ::madvise(bytes.get(), alloc, huge_pages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#endif
        std::byte* p = bytes.get();
        for (int l = 0; l < C::n_layers; ++l)
            for (const Blocks& m : layer) {
                std::memcpy(p, m.bytes.data(), m.bytes.size());
                MatrixView v = m.view;
                v.data = p;
                views.push_back(v);
                p += m.bytes.size();
            }
    }
};

// fused: the products of one input as one (quant_matvecs: Wq, Wk, Wv; gate, up), as model/block.hpp's
// decode runs them; else one matvec per matrix.
void BM_DecodePass(benchmark::State& state, DType dtype, bool huge_pages, bool ymm, bool fused = false) {
    const int threads = int(state.range(0));
    static std::map<std::pair<DType, bool>, std::unique_ptr<Layers>> cache;
    auto& layers = cache[{dtype, huge_pages}];
    if (!layers) layers = std::make_unique<Layers>(dtype, huge_pages);
    std::vector<float> x(TinyLlama1B::hidden_dim, 0.5f), y(3 * TinyLlama1B::hidden_dim);
    ThreadPool pool(threads);
    float* const yqkv[] = {y.data(), y.data() + TinyLlama1B::dim, y.data() + 2 * TinyLlama1B::dim};  // Wq's rows first
    const auto& v = layers->views;
    for (auto _ : state) {
        if (fused)
            for (std::size_t l = 0; l < v.size(); l += 7) {
                quant_matvecs(yqkv, std::span(v).subspan(l, 3), x.data(), &pool);
                quant_matvec(y.data(), v[l + 3], x.data(), &pool);
                float* const ygu[] = {y.data(), y.data() + TinyLlama1B::hidden_dim};
                quant_matvecs(ygu, std::span(v).subspan(l + 4, 2), x.data(), &pool);
                quant_matvec(y.data(), v[l + 6], x.data(), &pool);
            }
        else
            for (const MatrixView& W : v) quant_matvec_as(ymm, y.data(), W, x.data(), &pool);
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["GB/s"] = benchmark::Counter(double(layers->total) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
    state.counters["bw_GB/s"] = g_bandwidth[threads];
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
    // matvec / decode_pass: the build's decode kernel; matvec_ymm / decode_pass_ymm (builds with the zmm
    // kernel only): the one-block-at-a-time kernel of simd/quant_dot.hpp, for comparison.
    const std::vector<bool> kernels = ELASTILM_QMATVEC_VNNI ? std::vector<bool>{false, true} : std::vector<bool>{false};
    const std::vector<Case> cases = smoke ? std::vector<Case>{{256, 288}}
                                          : std::vector<Case>{{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
    const int prefill_tokens = smoke ? 16 : 512;
    static std::vector<Blocks> keep;
    keep.reserve(2 * cases.size() + 40);
    for (DType dtype : {DType::q8_0, DType::q4_0})
        for (const Case& c : cases) {
            const MatrixView W = keep.emplace_back(c.rows, c.cols, dtype).view;
            const std::string shape = std::to_string(c.rows) + "x" + std::to_string(c.cols) + "/" + std::string(to_string(dtype));
            for (bool ymm : kernels) {
                auto* mv = benchmark::RegisterBenchmark(((ymm ? "matvec_ymm/" : "matvec/") + shape).c_str(), [=](benchmark::State& s) { BM_Matvec(s, W, ymm); });
                for (int t : thread_counts) mv->Arg(t)->ArgName("threads")->UseRealTime();
            }
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
    if (!smoke)
        for (DType dtype : {DType::q8_0, DType::q4_0})
            for (bool huge : {false, true})
                for (bool ymm : kernels) {
                    const std::string name = std::string(ymm ? "decode_pass_ymm/" : "decode_pass/") + std::string(to_string(dtype)) +
                                             (huge ? "/huge_pages" : "/4k_pages");
                    auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { BM_DecodePass(s, dtype, huge, ymm); });
                    for (int t : thread_counts) b->Arg(t)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
                }
    if (!smoke)
        for (DType dtype : {DType::q8_0, DType::q4_0})
            for (bool huge : {false, true}) {
                const std::string name = "decode_pass_fused/" + std::string(to_string(dtype)) + (huge ? "/huge_pages" : "/4k_pages");
                auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { BM_DecodePass(s, dtype, huge, false, true); });
                for (int t : thread_counts) b->Arg(t)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
            }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
