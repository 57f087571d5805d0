// Y = X·Wᵀ for prefill with Q8_0 / Q4_0 weights on x86 with AVX-512 VNNI: packed panels, unsigned activations.
//
//   quantize X per block of 32 as decode does, storing x + 128 as unsigned bytes   (split across threads)
//   for each panel of P = 32 weight rows                                            (split across threads)
//     pack it once: int8 weights as [block][k/4][row][4] (16-row gathers; Q4_0 nibbles widened to
//                   int8 − 8 on the way) and per (block, row) d_w and the correction c·d_w, c = 128·Σ_k w
//     for each MR = 6 tokens: micro-kernel over all blocks, 6 tokens × 32 rows in registers
//
// Why the layout: vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes per int32 lane and adds them up.
// With 4 consecutive k of 16 rows in one vector and the same 4 activation bytes broadcast to every lane,
// lane r accumulates row r's dot product: no horizontal sum, one instruction per 16 rows × 4 k.
// Why +128: vpdpbusd wants one unsigned operand. x + 128 ∈ [1, 255] is unsigned, and
//   Σ_k (x_k + 128)·w_k = Σ_k x_k·w_k + 128·Σ_k w_k = Σ_k x_k·w_k + c,
// so subtracting c — a property of the weights alone, computed once while packing — gives the signed dot
// product without the tiled kernel's sign trick. Per block and token: 8 vpdpbusd per 16 rows into an
// int32 vector, then acc += (float(dot)·d_w − c·d_w) · d_x: 3 vector operations per 8 vpdpbusd.
// |dot| < 2²⁴ (32·255·128), so float(dot) is exact; c·d_w rounds once, like the scale products do.
// The panel is packed once per call and reused for every token: packing costs one pass over W, the
// products n passes.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/arch/quant_gemm_avx512.hpp"
#include "elastilm/simd/quant_dot.hpp"
#include "elastilm/simd/quant_interleaved.hpp"
#include "elastilm/error.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::qgemm_packed {

namespace qa = simd::qgemm_arch;

inline constexpr int P = 2 * qa::kLanes;          // weight rows per panel: two vectors
inline constexpr int MR = 6;                      // tokens per micro-tile: 12 int + 12 float accumulators + 2 weights
inline constexpr int kQuads = kQuantBlock / 4;    // vpdpbusd steps per block
inline constexpr int kBias = 128;                 // added to every activation byte

// A block of activations as vpdpbusd reads them: q = x + 128 (unsigned), same scale.
struct ActBlockU8 {
    float d;
    std::uint8_t q[kQuantBlock];
};

// One block of one panel: P rows × 32 k of int8 weights laid out [k/4][row][4], then per row d_w and c·d_w.
struct alignas(64) PackedBlock {
    std::int8_t w[kQuads][P][4];
    float d[P];
    float cd[P];
};

// Where each block's bytes are in every row of W, in GGUF's order or interleaved (simd/quant_interleaved.hpp),
// worked out once per product rather than per panel: quad(b, v) holds block b's quant bytes 4v..4v+3
// (Q4_0: elements 4v.. and 16+4v.. in its nibbles), scale(b) its fp16 d; offsets from a row's start.
struct BlockPlaces {
    int per_block = 0;  // quant-byte quads per block: 8 (Q8_0), 4 (Q4_0)
    bool interleaved = false;
    std::vector<std::uint32_t> quads, scales;
    std::size_t quad(int b, int v) const { return quads[std::size_t(b) * std::size_t(per_block) + std::size_t(v)]; }
    std::size_t scale(int b) const { return scales[std::size_t(b)]; }
};
inline void find_places(BlockPlaces& at, const MatrixView& W) {
    const int blocks = W.cols / kQuantBlock, row_blocks = int(W.ld / kQuantBlock);
    const std::size_t S = block_bytes(W.dtype);
    at.per_block = interleaved::vectors(W.dtype);
    at.interleaved = W.order == BlockOrder::interleaved;
    at.quads.resize(std::size_t(blocks) * std::size_t(at.per_block));
    at.scales.resize(std::size_t(blocks));
    for (int b = 0; b < blocks; ++b) {
        for (int v = 0; v < at.per_block; ++v)
            at.quads[std::size_t(b) * std::size_t(at.per_block) + std::size_t(v)] = std::uint32_t(
                at.interleaved ? interleaved::spot(W.dtype, row_blocks, b, v).quad : std::size_t(b) * S + 2 + 4 * std::size_t(v));
        at.scales[std::size_t(b)] = std::uint32_t(at.interleaved ? interleaved::spot(W.dtype, row_blocks, b, 0).scale : std::size_t(b) * S);
    }
}

// Quad q (weights 4q … 4q+3) of block b of 16 rows, whose bytes start at row + offsets[lane], as int8.
// Interleaved Q8_0 bytes are stored + 128: flipping the sign bits back gives the int8.
inline qa::I32 quad(const BlockQ8_0*, const BlockPlaces& at, int b, const char* row, qa::I32 offsets, qa::Mask live, int q) {
    const qa::I32 w = qa::gather4(row + at.quad(b, q), offsets, live);
    return at.interleaved ? qa::flip_sign_bits(w) : w;
}
// GGUF's nibble order: elements 0..15 in the low halves of the 16 bytes, 16..31 in the high halves.
inline qa::I32 quad(const BlockQ4_0*, const BlockPlaces& at, int b, const char* row, qa::I32 offsets, qa::Mask live, int q) {
    constexpr int half = kQuads / 2;
    return qa::nibbles_minus8(qa::gather4(row + at.quad(b, q % half), offsets, live), 4 * (q / half));
}

// Packs rows [r0, r0 + P) of W into `out`. Rows past W.rows get d_w = 0 (and c·d_w = 0): they add nothing
// and are never stored.
template <class Block>
void pack_panel(PackedBlock* out, const MatrixView& W, const BlockPlaces& at, int r0) {
    const int blocks = W.cols / kQuantBlock;
    const std::size_t row_blocks = W.ld / kQuantBlock;
    const auto* base = static_cast<const Block*>(W.data);
    const qa::I32 offsets = qa::lane_offsets(int(row_blocks * sizeof(Block)));
    for (int h = 0; h < P / qa::kLanes; ++h) {
        const int first = r0 + h * qa::kLanes, live_rows = W.rows - first;
        if (live_rows <= 0) {
            for (int b = 0; b < blocks; ++b) {
                for (int q = 0; q < kQuads; ++q) qa::store_w(out[b].w[q][h * qa::kLanes], qa::zero_i());
                qa::store(out[b].d + h * qa::kLanes, qa::zero_f());
                qa::store(out[b].cd + h * qa::kLanes, qa::zero_f());
            }
            continue;
        }
        const qa::Mask live = qa::first_lanes(live_rows);
        const char* row = reinterpret_cast<const char*>(base + std::size_t(first) * row_blocks);
        for (int b = 0; b < blocks; ++b) {
            qa::I32 c = qa::zero_i();  // 128·Σ_k w per row
            for (int q = 0; q < kQuads; ++q) {
                const qa::I32 w = quad(static_cast<const Block*>(nullptr), at, b, row, offsets, live, q);
                qa::store_w(out[b].w[q][h * qa::kLanes], w);
                c = qa::add_128_sum(c, w);
            }
            const qa::F32 d = qa::f16_low_to_float(qa::gather4(row + at.scale(b), offsets, live));
            qa::store(out[b].d + h * qa::kLanes, d);
            qa::store(out[b].cd + h * qa::kLanes, qa::mul(qa::to_float(c), d));
        }
    }
}

// Y[m][r] for M (≤ MR) tokens and the panel's first R rows; x[m·stride + b] is token m's block b.
template <int M>
void micro_kernel(float* Y, std::size_t ldy, int R, const PackedBlock* p, int blocks, const ActBlockU8* x, std::size_t stride) {
    qa::F32 acc[M][2];
    for (int m = 0; m < M; ++m) acc[m][0] = acc[m][1] = qa::zero_f();
    for (int b = 0; b < blocks; ++b) {
        const PackedBlock& pb = p[b];
        qa::I32 dot[M][2];
        for (int m = 0; m < M; ++m) dot[m][0] = dot[m][1] = qa::zero_i();
#pragma GCC unroll 8
        for (int q = 0; q < kQuads; ++q) {
            const qa::I32 w0 = qa::load_w(pb.w[q][0]), w1 = qa::load_w(pb.w[q][qa::kLanes]);
            for (int m = 0; m < M; ++m) {
                const qa::I32 xm = qa::broadcast4(x[m * stride + b].q + 4 * q);
                dot[m][0] = qa::dot4(dot[m][0], xm, w0);
                dot[m][1] = qa::dot4(dot[m][1], xm, w1);
            }
        }
        for (int h = 0; h < 2; ++h) {
            const qa::F32 d = qa::load(pb.d + h * qa::kLanes), cd = qa::load(pb.cd + h * qa::kLanes);
            for (int m = 0; m < M; ++m)
                acc[m][h] = qa::fma(qa::fmsub(qa::to_float(dot[m][h]), d, cd), qa::broadcast(x[m * stride + b].d), acc[m][h]);
        }
    }
    for (int m = 0; m < M; ++m) {
        float* y = Y + m * ldy;
        if (R == P) {
            qa::store(y, acc[m][0]);
            qa::store(y + qa::kLanes, acc[m][1]);
        } else if (R > qa::kLanes) {
            qa::store(y, acc[m][0]);
            qa::store_first(y + qa::kLanes, acc[m][1], R - qa::kLanes);
        } else if (R == qa::kLanes) {
            qa::store(y, acc[m][0]);
        } else {
            qa::store_first(y, acc[m][0], R);
        }
    }
}

using MicroKernel = void (*)(float*, std::size_t, int, const PackedBlock*, int, const ActBlockU8*, std::size_t);

// kernels[M - 1] = micro_kernel<M>, for the token tail.
inline constexpr auto kernels = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<MicroKernel, MR>{&micro_kernel<int(I) + 1>...};
}(std::make_index_sequence<MR>{});

template <class Block>
void panels(float* Y, int ldy, const MatrixView& W, const ActBlockU8* x, int n, int panel0, int panel1) {
    const int blocks = W.cols / kQuantBlock;
    thread_local std::vector<PackedBlock> packed;  // one panel: P rows × all blocks, reused for every token
    packed.resize(std::size_t(blocks));
    thread_local BlockPlaces places;
    find_places(places, W);
    for (int panel = panel0; panel < panel1; ++panel) {
        const int r0 = panel * P, R = std::min(P, W.rows - r0);
        pack_panel<Block>(packed.data(), W, places, r0);
        for (int m0 = 0; m0 < n; m0 += MR) {
            const int M = std::min(MR, n - m0);
            kernels[M - 1](Y + std::size_t(m0) * ldy + r0, std::size_t(ldy), R, packed.data(), blocks, x + std::size_t(m0) * blocks,
                           std::size_t(blocks));
        }
    }
}

// x[0..n) into n/32 blocks as quantize_activations does (d = max|x| / 127, q = round(x / d)), stored q + 128.
inline void quantize_activations_u8(ActBlockU8* out, const float* x, int n) {
    for (int b = 0; b < n / kQuantBlock; ++b) {
        const float* v = x + b * kQuantBlock;
        const float d = qa::abs_max32(v) / 127.0f, inv = d > 0 ? 1.0f / d : 0.0f;
        out[b].d = d;
        qa::quantize32_biased(out[b].q, v, inv, kBias);
    }
}

// Y[t, i] for t < n, i < W.rows from activations x[t · W.cols/32 + b] already in ActBlockU8 form.
inline void matmul_u8(float* Y, int ldy, const MatrixView& W, const ActBlockU8* x, int n, ThreadPool* pool) {
    require(W.ld / kQuantBlock * block_bytes(W.dtype) * qa::kLanes < std::size_t(1) << 31, "quantized GEMM",
            "rows of " + std::to_string(W.ld) + " " + std::string(to_string(W.dtype)) + " weights are too long for 32-bit gather offsets");
    const int n_panels = (W.rows + P - 1) / P;
    auto run = [&](int a, int b) {
        if (W.dtype == DType::q8_0) panels<BlockQ8_0>(Y, ldy, W, x, n, a, b);
        else panels<BlockQ4_0>(Y, ldy, W, x, n, a, b);
    };
    if (pool && pool->size() > 1 && n_panels > 1) pool->parallel_for(n_panels, run);
    else run(0, n_panels);
}

// Y[t, i] = Σ_j W(i, j) · X[t, j] for t < n: quantizes X (split across the pool too: it is a pass over
// all of X, and serial it was a sixth of the GEMM's time on 2 threads), then the packed GEMM.
inline void matmul(float* Y, int ldy, const MatrixView& W, const float* X, int ldx, int n, ThreadPool* pool = nullptr) {
    const int blocks = W.cols / kQuantBlock;
    thread_local std::vector<ActBlockU8> xu;
    xu.resize(std::size_t(n) * blocks);
    ActBlockU8* x = xu.data();  // thread_local: the pool's threads must use the caller's copy
    auto quantize = [&](int t0, int t1) {
        for (int t = t0; t < t1; ++t) quantize_activations_u8(x + std::size_t(t) * blocks, X + std::size_t(t) * ldx, W.cols);
    };
    if (pool && pool->size() > 1 && n > 1) pool->parallel_for(n, quantize);
    else quantize(0, n);
    matmul_u8(Y, ldy, W, x, n, pool);
}

// The same from activations already quantized per block (xq[t · W.cols/32 + b]): tests compare it with
// the tiled GEMM on identical inputs.
inline void matmul(float* Y, int ldy, const MatrixView& W, const ActBlock* xq, int n, ThreadPool* pool = nullptr) {
    thread_local std::vector<ActBlockU8> xu;
    xu.resize(std::size_t(n) * (W.cols / kQuantBlock));
    for (std::size_t i = 0; i < xu.size(); ++i) {
        xu[i].d = xq[i].d;
        for (int k = 0; k < kQuantBlock; ++k) xu[i].q[k] = std::uint8_t(xq[i].q[k] + kBias);
    }
    matmul_u8(Y, ldy, W, xu.data(), n, pool);
}

}  // namespace elastilm::qgemm_packed
