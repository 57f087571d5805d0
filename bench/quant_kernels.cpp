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
//   decode_pass_two_products: every matrix with dim inputs as one product and every W_down as another —
//                     the kernel's streaming rate with (almost) no product boundaries.
// The rows that time the build's decode kernel (matvec/, layout/, decode_pass*/, --interleaved, --trace)
// give it its blocks in the order a --no-mmap model's decode reads them (kDecodeOrder): interleaved where
// the build has the interleaved kernel (AVX-512 VNNI or AVX2), else GGUF's. The *_one_block rows (the
// one-block-at-a-time kernel, what a mapped model decodes with on builds without the zmm kernel) and the
// prefill GEMM (matmul/) read GGUF's order, as a mapped model gives it.
// Flags besides Google Benchmark's: --smoke (small shapes, for CI); instead of the benchmarks,
//   --interleaved R   R rounds alternating the read loop and fused / two-product decode passes with the
//                     rows split statically and dynamically (ThreadPool::Split): medians, shares of the
//                     read loop, all from one run;
//   --orders R        R rounds alternating the read loop and fused decode passes with the blocks in
//                     GGUF's order and interleaved (simd/quant_interleaved.hpp, the order the loader
//                     gives a --no-mmap copy where the build has the AVX-512 VNNI kernel);
//   --gemm-orders R   R rounds alternating the prefill GEMM on GGUF's order and on interleaved blocks
//                     (what a --no-mmap copy's prefill pays for its decode's order);
//   --trace R         R fused decode passes per format and split, each traced (bench/pool_trace.hpp);
//   --arithmetic R    (builds with the interleaved AVX-512 VNNI kernel) R rounds alternating the read loop
//                     and passes over the same interleaved rows that load everything and do none, half
//                     or all of the dot products, or run the whole kernel: what the arithmetic per byte
//                     costs the stream.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <thread>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <map>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/simd/matmul.hpp"
#include "elastilm/simd/matvec.hpp"
#include "pool_trace.hpp"
#include "roofline.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace {

using namespace elastilm;

std::map<int, double> g_bandwidth, g_vnni_peak;  // by thread count

// The block order the build's decode kernel reads in a --no-mmap model (formats/load.hpp).
constexpr BlockOrder kDecodeOrder = interleaved::kInterleavedDecode ? BlockOrder::interleaved : BlockOrder::gguf;

struct Blocks {
    std::vector<std::byte> bytes;
    MatrixView view;
    Blocks(int rows, int cols, DType dtype, BlockOrder order = BlockOrder::gguf) : bytes(bytes_for(dtype, std::size_t(rows) * cols)) {
        std::mt19937 rng(rows ^ cols);
        std::normal_distribution<float> g(0, 0.02f);
        std::vector<float> row(cols);
        for (int r = 0; r < rows; ++r) {
            for (float& v : row) v = g(rng);
            quantize_row(bytes.data() + bytes_for(dtype, std::size_t(r) * cols), dtype, row.data(), cols);
        }
        view = {bytes.data(), dtype, Layout::out_major, rows, cols, std::size_t(cols)};
        if (order == BlockOrder::interleaved) interleaved::interleave_rows(bytes.data(), dtype, std::size_t(rows), cols / kQuantBlock);
        view.order = order;
    }
};

// The build's decode kernel, or (one_block = true) the one-block-at-a-time kernel, timed side by side in
// the same run.
void quant_matvec_as(bool one_block, float* y, const MatrixView& W, const float* x, ThreadPool* pool) {
    if (one_block) return detail::quant_matvec<detail::DecodeKernel::one_block>(y, W, x, pool, nullptr, nullptr, std::size_t(1) << 16);
    matvec(y, W, x, pool);
}

void BM_Matvec(benchmark::State& state, MatrixView W, bool one_block = false) {
    const int threads = int(state.range(0));
    std::vector<float> x(W.cols, 0.5f), y(W.rows);
    ThreadPool pool(threads);
    for (auto _ : state) {
        quant_matvec_as(one_block, y.data(), W, x.data(), &pool);
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
    Layers(DType dtype, bool huge_pages, BlockOrder order = BlockOrder::gguf) {
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
                if (order == BlockOrder::interleaved) interleaved::interleave_rows(p, dtype, std::size_t(v.rows), v.cols / kQuantBlock);
                v.order = order;
                views.push_back(v);
                p += m.bytes.size();
            }
    }
};

// How a decode pass groups the products: one matvec per matrix; the products of one input as one
// (quant_matvecs: Wq, Wk, Wv; gate, up), as model/block.hpp's decode runs them; or every matrix with
// dim inputs (Wq, Wk, Wv, Wo, gate, up of all layers) as one product and every W_down as another — the
// kernel's streaming rate with (almost) no product boundaries, which the other two are judged against.
enum class Grouping { separate, fused, two_products };

// One decode pass of `layers`, grouped as `grouping` says (two_products: `wide` / `down` and their outputs).
struct Pass {
    const Layers* layers;
    Grouping grouping;
    std::vector<MatrixView> wide, down;
    std::vector<float> y, ywide, ydown;
    std::vector<float*> pwide, pdown;
    std::vector<float> x = std::vector<float>(TinyLlama1B::hidden_dim, 0.5f);
    Pass(const Layers& l, Grouping g) : layers(&l), grouping(g), y(3 * TinyLlama1B::hidden_dim) {
        const auto& v = l.views;
        for (std::size_t i = 0; i < v.size(); ++i) (i % 7 == 6 ? down : wide).push_back(v[i]);
        for (auto [ws, ys, ps] : {std::tuple{&wide, &ywide, &pwide}, std::tuple{&down, &ydown, &pdown}}) {
            std::size_t rows = 0;
            for (const MatrixView& W : *ws) rows += std::size_t(W.rows);
            ys->resize(rows);
            rows = 0;
            for (const MatrixView& W : *ws) ps->push_back(ys->data() + rows), rows += std::size_t(W.rows);
        }
    }
    void run(ThreadPool& pool) {
        const auto& v = layers->views;
        if (grouping == Grouping::two_products) {
            quant_matvecs(pwide, wide, x.data(), &pool);
            quant_matvecs(pdown, down, x.data(), &pool);
            return;
        }
        float* const yqkv[] = {y.data(), y.data() + TinyLlama1B::dim, y.data() + 2 * TinyLlama1B::dim};  // Wq's rows first
        float* const ygu[] = {y.data(), y.data() + TinyLlama1B::hidden_dim};
        for (std::size_t l = 0; l < v.size(); l += 7) {
            if (grouping == Grouping::fused) {
                quant_matvecs(yqkv, std::span(v).subspan(l, 3), x.data(), &pool);
                quant_matvec(y.data(), v[l + 3], x.data(), &pool);
                quant_matvecs(ygu, std::span(v).subspan(l + 4, 2), x.data(), &pool);
                quant_matvec(y.data(), v[l + 6], x.data(), &pool);
            } else {
                for (std::size_t i = l; i < l + 7; ++i) quant_matvec(y.data(), v[i], x.data(), &pool);
            }
        }
    }
};

const char* split_name(ThreadPool::Split s) {
    switch (s) {
        case ThreadPool::Split::stealing: return "stealing";
        case ThreadPool::Split::stealing_committed: return "stealing (committed)";
        case ThreadPool::Split::dynamic: return "dynamic";
        case ThreadPool::Split::static_shares: return "static shares";
    }
    return "?";
}

struct Variant {
    static constexpr std::size_t kFastestRead = std::size_t(-1);
    std::string name;
    std::function<double()> gbs;  // one timing: GB/s (or GOP/s)
    std::size_t ref = kFastestRead;  // the variant its share is of; by default the fastest read loop
    bool read_loop = false;
};

// The streaming reads every share below is of: bench/roofline.hpp's read loops over a 1 GiB buffer on
// huge pages, one variant each, so that each round times each loop once. Shares are of the loop whose
// median is highest, not of the fastest loop in each round: that picks each round's luckiest read, which
// sat ~2.5 % above the fastest loop's median in `elastilm_bench_model_speed --read-loops -r 21` (session 37).
constexpr std::size_t kReadLoopBytes = std::size_t(1) << 30;
std::vector<Variant> read_loops(const bench::HugeBuffer& buf, ThreadPool& pool) {
    std::vector<Variant> loops;
    for (bench::detail::ReadPrefetch p : bench::detail::kReadPrefetches)
        loops.push_back({std::string("streaming read: ") + bench::detail::to_string(p),
                         [&buf, &pool, p] {
                             const std::size_t n = kReadLoopBytes / sizeof(float);
                             return double(bench::read_once_bytes(n, pool.size())) / bench::read_once_seconds(buf.get(), n, pool, p) / 1e9;
                         },
                         Variant::kFastestRead, true});
    return loops;
}

// R rounds, each timing every variant once in a rotating order, so that all of them see the same
// machine; then each one's median GB/s (`unit`) and its share of its reference's median (by default the
// fastest read loop's).
int print_rotating(const std::vector<Variant>& variants, int rounds, int threads, const char* unit = "GB/s",
                   const char* share = "of the fastest read loop") {
    std::vector<std::vector<double>> gbs(variants.size());
    for (int r = 0; r < rounds; ++r)
        for (std::size_t k = 0; k < variants.size(); ++k) {
            const std::size_t i = (k + std::size_t(r)) % variants.size();
            gbs[i].push_back(variants[i].gbs());
        }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    };
    double fastest_read = 0;
    for (std::size_t i = 0; i < variants.size(); ++i)
        if (variants[i].read_loop) fastest_read = std::max(fastest_read, median(gbs[i]));
    std::printf("| %d threads, %d rounds | %s median (min–max) | %s |\n|---|---|---|\n", threads, rounds, unit, share);
    for (std::size_t i = 0; i < variants.size(); ++i) {
        const std::size_t ref = variants[i].ref;
        const double of = ref == Variant::kFastestRead ? fastest_read : median(gbs[ref]);
        std::printf("| %s | %.2f (%.2f–%.2f) | %.1f %% |\n", variants[i].name.c_str(), median(gbs[i]),
                    *std::min_element(gbs[i].begin(), gbs[i].end()), *std::max_element(gbs[i].begin(), gbs[i].end()),
                    100 * median(gbs[i]) / of);
    }
    return 0;
}

// --gemm-orders R (builds whose decode reads interleaved blocks): R rounds alternating the prefill GEMM
// (512 tokens, 2 threads) on W_down and Wo of TinyLlama's shape, with the blocks in GGUF's order (a
// mapped model) and interleaved (a --no-mmap copy): GOP/s medians, each interleaved one as a share of
// its GGUF sibling. What reading interleaved rows costs the build's prefill GEMM.
int gemm_orders(int rounds, int threads) {
    if (kDecodeOrder == BlockOrder::gguf) {
        std::fprintf(stderr, "--gemm-orders: this build's decode reads GGUF's order, so no copy is interleaved\n");
        return 2;
    }
    ThreadPool pool(threads);
    constexpr int tokens = 512;
    std::vector<Variant> variants;
    std::vector<std::unique_ptr<Blocks>> keep;
    for (DType dtype : {DType::q8_0, DType::q4_0})
        for (auto [rows, cols] : {std::pair{TinyLlama1B::dim, TinyLlama1B::hidden_dim}, std::pair{TinyLlama1B::dim, TinyLlama1B::dim}}) {
            const std::size_t ref = variants.size();
            for (BlockOrder order : {BlockOrder::gguf, BlockOrder::interleaved}) {
                const MatrixView W = keep.emplace_back(std::make_unique<Blocks>(rows, cols, dtype, order))->view;
                auto X = std::make_shared<std::vector<float>>(std::size_t(tokens) * cols, 0.25f);
                auto Y = std::make_shared<std::vector<float>>(std::size_t(tokens) * rows);
                variants.push_back({std::string(to_string(dtype)) + " " + std::to_string(rows) + "x" + std::to_string(cols) + ", " +
                                        (order == BlockOrder::gguf ? "GGUF's block order" : "interleaved blocks"),
                                    [W, X, Y, &pool] {
                                        const auto t0 = std::chrono::steady_clock::now();
                                        matmul(Y->data(), W.rows, W, X->data(), W.cols, tokens, &pool);
                                        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                                        return 2.0 * tokens * W.rows * double(W.cols) / s / 1e9;
                                    },
                                    ref});
            }
        }
    return print_rotating(variants, rounds, threads, "GOP/s", "of GGUF's order");
}

// GB/s of one decode pass.
std::function<double()> timed_pass(Pass* p, ThreadPool& pool, std::size_t total) {
    return [p, &pool, total] {
        const auto t0 = std::chrono::steady_clock::now();
        p->run(pool);
        return double(total) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 1e9;
    };
}

// --interleaved R: R rounds, each timing every variant once — the streaming read loop (1 GiB, huge pages)
// and a decode pass (huge pages, 2 threads) per block format, product grouping and row split — in a
// rotating order, so that all of them see the same machine; then each variant's median GB/s and its
// share of the read loop's median. Only these ratios, measured side by side, say anything here.
int side_by_side(int rounds, int threads) {
    const bench::HugeBuffer buf = bench::huge_page_buffer(kReadLoopBytes);
    ThreadPool pool(threads);
    std::vector<Variant> variants = read_loops(buf, pool);
    std::vector<std::unique_ptr<Layers>> layers;
    std::vector<std::unique_ptr<Pass>> passes;
    for (DType dtype : {DType::q8_0, DType::q4_0}) {
        const Layers& L = *layers.emplace_back(std::make_unique<Layers>(dtype, true, kDecodeOrder));
        for (Grouping g : {Grouping::fused, Grouping::two_products})
            for (ThreadPool::Split split : {ThreadPool::Split::static_shares, ThreadPool::Split::dynamic,
                                            ThreadPool::Split::stealing_committed, ThreadPool::Split::stealing}) {
                Pass* p = passes.emplace_back(std::make_unique<Pass>(L, g)).get();
                const std::string name = std::string(to_string(dtype)) + (g == Grouping::fused ? " decode pass, fused products" : " decode pass, two products") +
                                         ", " + split_name(split);
                variants.push_back({name, [split, pass = timed_pass(p, pool, L.total)] {
                                        set_quant_row_split(split);
                                        return pass();
                                    }});
            }
    }
    print_rotating(variants, rounds, threads);
    set_quant_row_split(ThreadPool::Split::stealing);
    return 0;
}

// --orders R: R rounds, each timing the streaming read loop and decode passes (huge pages, 2 threads,
// the default split; fused products, and two products) per block format in GGUF's block order and
// interleaved (simd/quant_interleaved.hpp, where the build has its kernel), in a rotating order;
// medians and shares of the read loop, as --interleaved prints them.
int block_orders(int rounds, int threads) {
    const bench::HugeBuffer buf = bench::huge_page_buffer(kReadLoopBytes);
    ThreadPool pool(threads);
    std::vector<Variant> variants = read_loops(buf, pool);
    std::vector<std::unique_ptr<Layers>> layers;
    std::vector<std::unique_ptr<Pass>> passes;
    const std::vector<BlockOrder> orders = interleaved::kInterleavedDecode
                                               ? std::vector<BlockOrder>{BlockOrder::gguf, BlockOrder::interleaved}
                                               : std::vector<BlockOrder>{BlockOrder::gguf};
    for (DType dtype : {DType::q8_0, DType::q4_0})
        for (BlockOrder order : orders) {
            const Layers& L = *layers.emplace_back(std::make_unique<Layers>(dtype, true, order));
            for (Grouping g : {Grouping::fused, Grouping::two_products})
                variants.push_back({std::string(to_string(dtype)) + (g == Grouping::fused ? " fused decode pass, " : " two products, ") +
                                        (order == BlockOrder::gguf ? "GGUF's block order" : "interleaved blocks"),
                                    timed_pass(passes.emplace_back(std::make_unique<Pass>(L, g)).get(), pool, L.total)});
        }
    return print_rotating(variants, rounds, threads);
}

// --trace R: R fused decode passes per block format and row split, alternating the splits, each traced
// (bench/pool_trace.hpp); prints every pass's summary.
int trace(int rounds, int threads) {
    ThreadPool pool(threads);
    for (DType dtype : {DType::q8_0, DType::q4_0}) {
        const Layers L(dtype, true, kDecodeOrder);
        Pass pass(L, Grouping::fused);
        for (int r = 0; r < rounds; ++r)
            for (ThreadPool::Split split : {ThreadPool::Split::static_shares, ThreadPool::Split::dynamic,
                                            ThreadPool::Split::stealing_committed, ThreadPool::Split::stealing}) {
                set_quant_row_split(split);
                ThreadPool::Trace t;
                pool.set_trace(&t);
                const auto begin = std::chrono::steady_clock::now();
                pass.run(pool);
                const auto end = std::chrono::steady_clock::now();
                pool.set_trace(nullptr);
                const bench::TraceSummary s = bench::summarize(t, begin, end);
                bench::print(s, std::string(to_string(dtype)) + " fused decode pass, " + split_name(split) + ", " +
                                    std::to_string(int(double(L.total) / s.total_ms / 1e6 * 100) / 100.0).substr(0, 5) + " GB/s");
            }
    }
    set_quant_row_split(ThreadPool::Split::stealing);
    return 0;
}

#if ELASTILM_QMATVEC_VNNI
// --arithmetic R: does the decode kernel's arithmetic cost it memory bandwidth, and how much? Four row
// functions read the same interleaved rows (every matrix with dim inputs of TinyLlama's 22 layers, huge
// pages, 2 threads, each a static half of each matrix's rows) with the same prefetches (prefetcht1, 8 KB
// ahead), and differ only in what they do with the bytes:
//   loads: each 64-byte vector and the scales folded into an accumulator with one xor — no arithmetic;
//   half:  half of the dot products (Q4_0: the low nibbles; Q8_0: the even vectors), the rest only loaded;
//   dots:  all of the dot products (Q4_0: both nibbles, an AND each), in the same loop as half;
//   all:   the decode kernel itself (simd/quant_matvec_interleaved.hpp's dot_row), the only one of the
//          four that also converts each group's sums to fp32 and scales them.
// `dots` against `all` tells the dot products' cost from the rest of the kernel's.
// Why: Q4_0 does twice Q8_0's vpdpbusd per byte, and read less of the read loop than Q8_0 in every
// measurement; if `loads` reaches the read loop and `all` does not, the arithmetic is what holds it back.
namespace arithmetic {

namespace qi = interleaved_matvec;
namespace qa = simd::qvnni;

enum class Work { loads, half, dots, all };
constexpr const char* to_string(Work k) {
    switch (k) {
        case Work::loads: return "loads only";
        case Work::half: return "half the arithmetic";
        case Work::dots: return "all the dot products, no scaling";
        case Work::all: return "the decode kernel";
    }
    return "?";
}

inline qa::I32 fold(qa::I32 acc, qa::Bytes v) { return _mm512_xor_si512(acc, v); }

// One row of `blocks` (whole groups only), prefetching `later`'s bytes as the kernel does.
template <class Block, Work K>
float row(const Block* w, const qi::ActHalf<Block>* a, int blocks, const Block* later) {
    if constexpr (K == Work::all) {
        return qi::dot_row<Block>(w, a, blocks, blocks, later);
    } else {
        constexpr int V = qi::kVectors<Block>;
        constexpr std::size_t group_bytes = qi::kGroupBlocks * sizeof(Block);
        const auto* q = reinterpret_cast<const std::byte*>(w);
        const auto* ahead = reinterpret_cast<const std::byte*>(later);
        qa::I32 acc[2][2] = {{qa::zero_i32(), qa::zero_i32()},
                             {qa::zero_i32(), qa::zero_i32()}};  // [half][v % 2]: four chains, as the kernel
        for (int g = 0; g < blocks / qi::kGroupBlocks; ++g, q += group_bytes, a += 2) {
            qa::prefetch<false>(ahead + g * group_bytes, int(group_bytes));
#pragma GCC unroll 16
            for (int hv = 0; hv < 2 * V; ++hv) {
                const int h = hv / V, v = hv % V;
                const qa::Bytes n = qa::load_bytes(q + 64 * hv);
                qa::I32& c = acc[h][v % 2];
                if constexpr (K == Work::loads) {
                    c = fold(c, n);
                } else if constexpr (std::is_same_v<Block, BlockQ4_0>) {
                    c = qa::dot(c, qa::low_nibbles(n), qa::load_bytes(a[h].lo[v]));
                    if constexpr (K == Work::dots)
                        acc[h][1 - v % 2] = qa::dot(acc[h][1 - v % 2], qa::high_nibbles_times16(n), qa::load_bytes(a[h].hi[v]));
                } else {
                    c = K == Work::dots || v % 2 == 0 ? qa::dot(c, n, qa::load_bytes(a[h].x[v])) : fold(c, n);
                }
            }
            acc[0][0] = fold(acc[0][0], qa::load_bytes(q + 2 * V * 64));  // the group's scales
        }
        return float(_mm512_reduce_add_epi32(fold(fold(acc[0][0], acc[0][1]), fold(acc[1][0], acc[1][1]))));
    }
}

// GB/s of one pass of row<Block, K> over `wide`.
template <class Block, Work K>
std::function<double()> pass(const std::vector<MatrixView>& wide, std::size_t bytes, ThreadPool& pool) {
    auto acts = std::make_shared<std::vector<qi::ActHalf<Block>>>();
    std::vector<float> x(std::size_t(wide.front().cols));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * float(i));
    qi::quantize_activations<Block>(*acts, x.data(), int(x.size()));
    auto y = std::make_shared<std::vector<float>>(std::size_t(TinyLlama1B::hidden_dim));
    return [&wide, bytes, &pool, acts, y] {
        const auto t0 = std::chrono::steady_clock::now();
        for (const MatrixView& W : wide) {
            const int blocks = W.cols / kQuantBlock;
            const std::size_t stride = W.ld / kQuantBlock;  // blocks from one row to the next
            const auto* w = static_cast<const Block*>(W.data);
            const int ahead = std::max(1, int(kIntelPrefetchBytes / (stride * sizeof(Block))));
            pool.parallel_for(pool.size(), [&](int first, int last) {
                for (int t = first; t < last; ++t)
                    for (int r = W.rows * t / pool.size(), end = W.rows * (t + 1) / pool.size(); r < end; ++r)
                        (*y)[std::size_t(r)] = row<Block, K>(w + std::size_t(r) * stride, acts->data(), blocks,
                                                             w + std::size_t(std::min(r + ahead, W.rows - 1)) * stride);
            });
        }
        benchmark::DoNotOptimize(y->data());
        return double(bytes) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 1e9;
    };
}

}  // namespace arithmetic

int arithmetic_cost(int rounds, int threads) {
    using arithmetic::Work;
    const bench::HugeBuffer buf = bench::huge_page_buffer(kReadLoopBytes);
    ThreadPool pool(threads);
    std::vector<Variant> variants = read_loops(buf, pool);
    std::vector<std::unique_ptr<Layers>> layers;
    std::vector<std::vector<MatrixView>> wides;
    wides.reserve(2);
    for (DType dtype : {DType::q8_0, DType::q4_0}) {
        const Layers& L = *layers.emplace_back(std::make_unique<Layers>(dtype, true, BlockOrder::interleaved));
        std::vector<MatrixView>& wide = wides.emplace_back();
        std::size_t wide_bytes = 0;
        for (const MatrixView& W : L.views)
            if (W.cols == TinyLlama1B::dim) wide.push_back(W), wide_bytes += std::size_t(W.rows) * W.ld / kQuantBlock * block_bytes(dtype);
        auto add = [&]<class Block, Work K>() {
            variants.push_back(
                {std::string(to_string(dtype)) + ", " + arithmetic::to_string(K), arithmetic::pass<Block, K>(wide, wide_bytes, pool)});
        };
        auto add_all = [&]<class Block>() {
            add.template operator()<Block, Work::loads>();
            add.template operator()<Block, Work::half>();
            add.template operator()<Block, Work::dots>();
            add.template operator()<Block, Work::all>();
        };
        if (dtype == DType::q8_0) add_all.template operator()<BlockQ8_0>();
        else add_all.template operator()<BlockQ4_0>();
    }
    return print_rotating(variants, rounds, threads);
}
#endif

void BM_DecodePass(benchmark::State& state, DType dtype, bool huge_pages, bool one_block, Grouping grouping = Grouping::separate) {
    const int threads = int(state.range(0));
    const BlockOrder order = one_block ? BlockOrder::gguf : kDecodeOrder;  // the one-block kernel reads GGUF's order only
    static std::map<std::tuple<DType, bool, BlockOrder>, std::unique_ptr<Layers>> cache;
    auto& layers = cache[{dtype, huge_pages, order}];
    if (!layers) layers = std::make_unique<Layers>(dtype, huge_pages, order);
    ThreadPool pool(threads);
    Pass pass(*layers, grouping);
    for (auto _ : state) {
        if (one_block)
            for (const MatrixView& W : layers->views) quant_matvec_as(true, pass.y.data(), W, pass.x.data(), &pool);
        else
            pass.run(pool);
        benchmark::DoNotOptimize(pass.y.data());
    }
    state.counters["GB/s"] = benchmark::Counter(double(layers->total) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
    state.counters["bw_GB/s"] = g_bandwidth[threads];
}

struct Case {
    int rows, cols;
};

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], "--interleaved") == 0) return side_by_side(std::atoi(argv[i + 1]), 2);
        if (std::strcmp(argv[i], "--orders") == 0) return block_orders(std::atoi(argv[i + 1]), 2);
        if (std::strcmp(argv[i], "--gemm-orders") == 0) return gemm_orders(std::atoi(argv[i + 1]), 2);
        if (std::strcmp(argv[i], "--trace") == 0) return trace(std::atoi(argv[i + 1]), 2);
        if (std::strcmp(argv[i], "--arithmetic") == 0) {
#if ELASTILM_QMATVEC_VNNI
            return arithmetic_cost(std::atoi(argv[i + 1]), 2);
#else
            std::fprintf(stderr,
                         "--arithmetic: this build has no interleaved AVX-512 VNNI decode kernel (build with -DELASTILM_ARCH=native on a "
                         "CPU with AVX-512 VNNI)\n");
            return 2;
#endif
        }
    }
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
    // matvec / decode_pass: the build's decode kernel; matvec_one_block / decode_pass_one_block (builds
    // whose decode kernel is another: the zmm or the interleaved one): the one-block-at-a-time kernel of
    // simd/quant_dot.hpp, for comparison.
    const bool one_block_is_another = ELASTILM_QMATVEC_VNNI || ELASTILM_QMATVEC_INTERLEAVED;
    const std::vector<bool> kernels = one_block_is_another ? std::vector<bool>{false, true} : std::vector<bool>{false};
#if ELASTILM_QMATVEC_INTERLEAVED
    std::printf("decode kernel of interleaved rows (a --no-mmap copy): %s\n", interleaved_matvec::kName);
#endif
    const std::vector<Case> cases = smoke ? std::vector<Case>{{256, 288}}
                                          : std::vector<Case>{{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
    const int prefill_tokens = smoke ? 16 : 512;
    static std::vector<Blocks> keep;
    keep.reserve(4 * cases.size() + 80);
    for (DType dtype : {DType::q8_0, DType::q4_0})
        for (const Case& c : cases) {
            const MatrixView W = keep.emplace_back(c.rows, c.cols, dtype).view;
            const MatrixView decode_W = kDecodeOrder == BlockOrder::gguf ? W : keep.emplace_back(c.rows, c.cols, dtype, kDecodeOrder).view;
            const std::string shape = std::to_string(c.rows) + "x" + std::to_string(c.cols) + "/" + std::string(to_string(dtype));
            for (bool one_block : kernels) {
                const MatrixView V = one_block ? W : decode_W;
                auto* mv = benchmark::RegisterBenchmark(((one_block ? "matvec_one_block/" : "matvec/") + shape).c_str(),
                                                        [=](benchmark::State& s) { BM_Matvec(s, V, one_block); });
                for (int t : thread_counts) mv->Arg(t)->ArgName("threads")->UseRealTime();
            }
            if (c.rows == 32000) continue;  // the LM head runs once per prompt
            // matmul/…/interleaved: the same GEMM reading the rows a --no-mmap copy gives it where the build
            // decodes interleaved blocks (the tiled GEMM moves each tile's rows back to GGUF's order).
            for (bool inter : {false, true}) {
                if (inter && kDecodeOrder == BlockOrder::gguf) continue;
                const MatrixView V = inter ? decode_W : W;
                auto* mm = benchmark::RegisterBenchmark(("matmul/" + shape + (inter ? "/interleaved" : "")).c_str(),
                                                        [=](benchmark::State& s) { BM_Matmul(s, V); });
                for (int t : thread_counts)
                    mm->Args({t, prefill_tokens})->ArgNames({"threads", "tokens"})->UseRealTime()->Unit(benchmark::kMillisecond);
            }
        }
    if (!smoke)
        for (DType dtype : {DType::q8_0, DType::q4_0}) {
            const MatrixView full = keep.emplace_back(2048, 5632, dtype, kDecodeOrder).view;
            for (int percent : kRatios) {
                const int hidden = percent == 100 ? 5632 : round_up(round_div(percent * 5632, 100), kFfnUnitMultiple);
                const MatrixView prefix = full.prefix(2048, hidden), compact = keep.emplace_back(2048, hidden, dtype, kDecodeOrder).view;
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
                for (bool one_block : kernels) {
                    const std::string name = std::string(one_block ? "decode_pass_one_block/" : "decode_pass/") +
                                             std::string(to_string(dtype)) + (huge ? "/huge_pages" : "/4k_pages");
                    auto* b =
                        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { BM_DecodePass(s, dtype, huge, one_block); });
                    for (int t : thread_counts) b->Arg(t)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
                }
    if (!smoke)
        for (DType dtype : {DType::q8_0, DType::q4_0})
            for (bool huge : {false, true}) {
                const std::string name = "decode_pass_fused/" + std::string(to_string(dtype)) + (huge ? "/huge_pages" : "/4k_pages");
                auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { BM_DecodePass(s, dtype, huge, false, Grouping::fused); });
                for (int t : thread_counts) b->Arg(t)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
                const std::string two = "decode_pass_two_products/" + std::string(to_string(dtype)) + (huge ? "/huge_pages" : "/4k_pages");
                auto* b2 = benchmark::RegisterBenchmark(two.c_str(), [=](benchmark::State& s) { BM_DecodePass(s, dtype, huge, false, Grouping::two_products); });
                for (int t : thread_counts) b2->Arg(t)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
            }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
