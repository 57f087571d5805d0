// y = W·x for decode with W in a block format (Q8_0 / Q4_0, out_major, blocks along the inputs):
// x is quantized once per call (simd/quant_dot.hpp), then rows are split across the pool as in the fp16
// matvec, each row one sequential stream of whole blocks. A ratio's slice is a prefix of each row's
// blocks (W.cols a multiple of 32), so the same kernel serves every width.
//
// Rows in the interleaved block order (a --no-mmap copy, simd/quant_interleaved.hpp) are read by
// simd/quant_matvec_interleaved.hpp's kernel (AVX-512 VNNI, or AVX2 on x86-64-v3). Rows in GGUF's order
// (a mapped file): with AVX-512 VNNI and BW (-march with both) each row's dot product is
// simd/quant_matvec_vnni.hpp's, several blocks per 512-bit vector from activations laid out for the
// weight type; elsewhere it is simd/quant_dot.hpp's, one block at a time.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <span>
#include <type_traits>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/decode_prefetch.hpp"
#include "elastilm/simd/quant_dot.hpp"
#include "elastilm/simd/quant_interleaved.hpp"
#include "elastilm/simd/quant_matvec_interleaved.hpp"
#include "elastilm/tensor.hpp"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define ELASTILM_QMATVEC_VNNI 1
#include "elastilm/simd/quant_matvec_vnni.hpp"
#else
#define ELASTILM_QMATVEC_VNNI 0
#endif

namespace elastilm {

namespace detail {

// Σ_k e[k]·z[k] for a row of fp16 extra columns (a LoRA adapter's B).
inline float extra_dot(const f16_bits* e, const float* z, int n) {
    constexpr int S = simd::lanes;
    simd::fbatch acc{};
    int k = 0;
    for (; k + S <= n; k += S) acc = xsimd::fma(simd::load(e + k), simd::load(z + k), acc);
    float sum = xsimd::hadd(acc);
    for (; k < n; ++k) sum += simd::to_float(e[k]) * z[k];
    return sum;
}

// Software prefetch: the rows' pieces a thread reads are one stream when a view spans whole rows, but
// a ratio's prefix of a row is a short piece followed by a skip, which the hardware prefetcher does not
// follow. So the kernel prefetches the piece of the row some KB ahead in its own sequence (never the
// skipped bytes), which covers both cases: row_dot(w, blocks, ahead) gets `ahead`, the same blocks that
// many rows later (nullptr near the end of the thread's rows), and prefetches from it as it goes.
// How far ahead and with which hint: simd/decode_prefetch.hpp (by default the distance follows the
// rate each thread reads at, and the hint is non-temporal on AMD).

// Row g of the concatenation of `count` matrices that read one x (same dtype and inputs): W[m]'s
// row g − (rows of W[0..m)). For a single matrix g is its row.
template <class Block>
struct BlockRows {
    const MatrixView* W;
    int count;
    // First block of row g, and the matrix it is in (m, whose first row is `start`), scanning on from
    // the given m / start.
    const Block* row(int g, int& m, int& start) const {
        while (g >= start + W[m].rows) start += W[m++].rows;
        return static_cast<const Block*>(W[m].data) + std::size_t(g - start) * (W[m].ld / kQuantBlock);
    }
};

// y[m][r] for the rows g of `chunk` of the concatenation (g ↦ matrix m, row r): row_dot(first block of
// the row, blocks, blocks the row stores, ahead) + the extra columns' product (E: only with one matrix). `ahead` is the row
// `ahead` places further in this thread's sequence — on in `chunk`, then in `next`, the chunk it runs
// after this one (ThreadPool::parallel_chunks) — so the prefetch runs on from one matrix's rows
// into the next one's and from one chunk into the next, as if they were one stream. `next` is asked
// for only when the prefetch reaches the end of `chunk`, which is when the pool claims it.
template <class Block, class RowDot>
void quant_rows(float* const* y, BlockRows<Block> rows, RowDot row_dot, ThreadPool::Range chunk, ThreadPool::Next& next_chunk,
                const MatrixView* E, const float* z) {
    const int blocks = rows.W[0].cols / kQuantBlock;
    const std::size_t piece = std::size_t(blocks) * sizeof(Block);
    const std::size_t fixed = quant_prefetch_distance();
    PrefetchAhead& adaptive = thread_prefetch_ahead();
    const std::size_t bytes_ahead = fixed ? fixed : adaptive.bytes_ahead();
    const int ahead = int(std::max<std::size_t>(1, (bytes_ahead + piece - 1) / piece));
    const auto t0 = std::chrono::steady_clock::now();
    int m = 0, start = 0, lm = 0, lstart = 0;  // the matrix of row g, and of row g + ahead
    for (int g = chunk.begin; g < chunk.end; ++g) {
        const Block* w = rows.row(g, m, start);
        const bool on = g + ahead < chunk.end;  // the row to prefetch: still in this chunk, or in the next
        const ThreadPool::Range next = on ? chunk : next_chunk.get();
        const int l = on ? g + ahead : next.begin + (g + ahead - chunk.end), l_end = on ? chunk.end : next.end;
        const Block* later = l < l_end ? rows.row(l, lm, lstart) : nullptr;
        float sum = row_dot(w, blocks, int(rows.W[m].ld / kQuantBlock), later);
        if (E) sum += extra_dot(static_cast<const f16_bits*>(E->data) + std::size_t(g) * E->ld, z, E->cols);
        y[m][g - start] = sum;
    }
    if (!fixed)
        adaptive.record(double(chunk.end - chunk.begin) * double(piece),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

// The one-block-at-a-time kernel's prefetch: all of a row's piece at once, into L1 (cached) or
// non-temporally.
template <PrefetchHint H, class Block>
void prefetch_piece(const Block* row, int blocks) {
    if (!row) return;
    const char* p = reinterpret_cast<const char*>(row);
    constexpr int locality = H == PrefetchHint::non_temporal ? 0 : 3;
    for (std::size_t o = 0; o < std::size_t(blocks) * sizeof(Block); o += 64) __builtin_prefetch(p + o, 0, locality);
}

}  // namespace detail

// How a decode product's rows are split across the pool: ThreadPool::Split::stealing (the default), or
// dynamic or static_shares (the splits before it), kept for comparison: bench/quant_kernels.cpp
// --interleaved and bench/model_speed.cpp --trace time them in one run.
inline std::atomic<ThreadPool::Split>& quant_row_split_setting() {
    static std::atomic<ThreadPool::Split> s{ThreadPool::Split::stealing};
    return s;
}
inline ThreadPool::Split quant_row_split() { return quant_row_split_setting().load(std::memory_order_relaxed); }
inline void set_quant_row_split(ThreadPool::Split s) { quant_row_split_setting().store(s, std::memory_order_relaxed); }

namespace detail {

inline void require_quant_view(const MatrixView& W) {
    require(W.layout == Layout::out_major && W.cols % kQuantBlock == 0 && W.ld % kQuantBlock == 0, "quantized product",
            std::string(to_string(W.dtype)) + " weights must be output-major with whole 32-element input blocks (" +
                std::to_string(W.cols) + " inputs); a transposed product (training) needs F16 or F32 weights");
}
// The kernel that reads only GGUF's block order: the one-block decode kernel.
inline void require_gguf_order(const MatrixView& W, const char* kernel) {
    require(W.order == BlockOrder::gguf, "quantized product",
            std::string(kernel) + " reads GGUF's block order; these " + std::string(to_string(W.dtype)) + " weights are interleaved");
}

}  // namespace detail

namespace detail {

// Which kernel a decode product runs: the build's (for interleaved rows the interleaved kernel; for
// GGUF's order the zmm one where AVX-512 VNNI and BW are compiled, else the one-block one), or the
// one-block-at-a-time kernel of simd/quant_dot.hpp (GGUF's order only), which bench/quant_kernels.cpp
// times and the tests check beside the build's.
enum class DecodeKernel { build, one_block };

// y[m] = W[m]·x for `count` matrices of one dtype and one input x, with kernel K. x is quantized once and
// all the matrices' rows are split across the pool as one range.
template <DecodeKernel K>
void quant_matvec(float* const* y, const MatrixView* W, int count, const float* x, ThreadPool* pool, const MatrixView* E, const float* z,
                  std::size_t parallel_from) {
    int total = 0;
    for (int m = 0; m < count; ++m) {
        require_quant_view(W[m]);
        require(W[m].dtype == W[0].dtype && W[m].cols == W[0].cols && W[m].order == W[0].order, "quantized product",
                "matrices sharing an input must have one block format, one block order and one input count");
        total += W[m].rows;
    }
    if (pool && std::size_t(total) * W[0].cols < parallel_from) pool = nullptr;
    // dot8 / dot4: a row's dot product with the quantized x, for Q8_0 / Q4_0 rows.
    auto run = [&](auto dot8, auto dot4) {
        auto rows = [&](ThreadPool::Range chunk, ThreadPool::Next& next) {
            if (W[0].dtype == DType::q8_0) quant_rows(y, BlockRows<BlockQ8_0>{W, count}, dot8, chunk, next, E, z);
            else quant_rows(y, BlockRows<BlockQ4_0>{W, count}, dot4, chunk, next, E, z);
        };
        if (pool && pool->size() > 1) pool->parallel_chunks(total, rows, 16, quant_row_split());
        else {
            ThreadPool::Next none(ThreadPool::Range{total, total});
            rows(ThreadPool::Range{0, total}, none);
        }
    };
    const int cols = W[0].cols;
    // The prefetch hint is chosen once per product (`with_hint` gets it as a type), so that the rows'
    // loop holds no branch on it.
    auto with_hint = [](auto fn) {
        if (quant_prefetch_hint() == PrefetchHint::non_temporal) fn(std::integral_constant<PrefetchHint, PrefetchHint::non_temporal>{});
        else fn(std::integral_constant<PrefetchHint, PrefetchHint::cached>{});
    };
    // The quantized activations are thread_local: the pool's threads read the caller's copy, through the
    // pointers the lambdas capture.
    if constexpr (K == DecodeKernel::build) {
#if ELASTILM_QMATVEC_INTERLEAVED
        if (W[0].order == BlockOrder::interleaved) {
            namespace qi = interleaved_matvec;
            thread_local std::vector<qi::ActHalfQ8> h8;
            thread_local std::vector<qi::ActHalfQ4> h4;
            if (W[0].dtype == DType::q8_0) qi::quantize_activations<BlockQ8_0>(h8, x, cols);
            else qi::quantize_activations<BlockQ4_0>(h4, x, cols);
            const qi::ActHalfQ8* xh8 = h8.data();
            const qi::ActHalfQ4* xh4 = h4.data();
            with_hint([&](auto hint) {
                constexpr PrefetchHint H = decltype(hint)::value;
                run([xh8](const BlockQ8_0* w, int n, int stored,
                          const BlockQ8_0* later) { return qi::dot_row<BlockQ8_0, H>(w, xh8, n, stored, later); },
                    [xh4](const BlockQ4_0* w, int n, int stored, const BlockQ4_0* later) {
                        return qi::dot_row<BlockQ4_0, H>(w, xh4, n, stored, later);
                    });
            });
            return;
        }
#endif
#if ELASTILM_QMATVEC_VNNI
        thread_local std::vector<qvnni_matvec::ActGroupQ8> x8;
        thread_local std::vector<qvnni_matvec::ActGroupQ4> x4;
        if (W[0].dtype == DType::q8_0) qvnni_matvec::quantize_activations<BlockQ8_0>(x8, x, cols);
        else qvnni_matvec::quantize_activations<BlockQ4_0>(x4, x, cols);
        const qvnni_matvec::ActGroupQ8* xb8 = x8.data();
        const qvnni_matvec::ActGroupQ4* xb4 = x4.data();
        with_hint([&](auto hint) {
            constexpr PrefetchHint H = decltype(hint)::value;
            run([xb8](const BlockQ8_0* w, int n, int,
                      const BlockQ8_0* later) { return qvnni_matvec::dot_row<BlockQ8_0, H>(w, xb8, n, later); },
                [xb4](const BlockQ4_0* w, int n, int, const BlockQ4_0* later) {
                    return qvnni_matvec::dot_row<BlockQ4_0, H>(w, xb4, n, later);
                });
        });
        return;
#endif
    }
    require_gguf_order(W[0], "the one-block decode kernel");
    thread_local std::vector<ActBlock> xq;
    xq.resize(std::size_t(cols / kQuantBlock));
    quantize_activations(xq.data(), x, cols);
    const ActBlock* xb = xq.data();
    with_hint([&](auto hint) {
        constexpr PrefetchHint H = decltype(hint)::value;
        run(
            [xb](const BlockQ8_0* w, int n, int, const BlockQ8_0* later) {
                prefetch_piece<H>(later, n);
                return simd::dot_blocks(w, xb, n);
            },
            [xb](const BlockQ4_0* w, int n, int, const BlockQ4_0* later) {
                prefetch_piece<H>(later, n);
                return simd::dot_blocks(w, xb, n);
            });
    });
}

template <DecodeKernel K>
void quant_matvec(float* y, const MatrixView& W, const float* x, ThreadPool* pool, const MatrixView* E, const float* z,
                  std::size_t parallel_from) {
    quant_matvec<K>(&y, &W, 1, x, pool, E, z, parallel_from);
}

}  // namespace detail

// y[i] = Σ_j W(i, j) · x[j] (+ Σ_k E(i, k) · z[k] when E is given: f16, out_major, W's rows).
inline void quant_matvec(float* y, const MatrixView& W, const float* x, ThreadPool* pool = nullptr, const MatrixView* E = nullptr,
                         const float* z = nullptr, std::size_t parallel_from = std::size_t(1) << 16) {
    detail::quant_matvec<detail::DecodeKernel::build>(y, W, x, pool, E, z, parallel_from);
}

// y[m] = W[m]·x for matrices that read the same x (Wq, Wk, Wv; W_gate, W_up), of one block format and
// input count: one quantization of x and one split of all their rows across the pool. Why: each
// matvec's start (x quantized while the other threads wait, the hand-off, rows that begin cold) and end
// (the threads meet) cost time in which nothing streams; one product over the concatenated rows pays
// them once, and a thread's prefetch runs on into the next matrix (bench/quant_kernels.cpp's decode_pass).
inline void quant_matvecs(std::span<float* const> y, std::span<const MatrixView> W, const float* x, ThreadPool* pool = nullptr,
                          std::size_t parallel_from = std::size_t(1) << 16) {
    require(y.size() == W.size() && !W.empty(), "quantized product", "one output per matrix");
    detail::quant_matvec<detail::DecodeKernel::build>(y.data(), W.data(), int(W.size()), x, pool, nullptr, nullptr, parallel_from);
}

}  // namespace elastilm
