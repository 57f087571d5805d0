// Applying a LoRA adapter unmerged inside a sub-model's projections: Y = X·Wᵀ + scale · (X·Aᵀ)·Bᵀ.
//
// Nothing is merged into W, so nine ratios keep sharing one memory-mapped weight set. Decode is
// memory-bound and the adapter's bytes are read on every token, so what matters is reading them at the
// same bandwidth as the base weights, not in a dozen short single-threaded products of their own:
//  - projections that read the same input (q, k, v; gate, up) keep their A stacked in one block, so one
//    pass over the input forms every low-rank input of the group: Z = scale · A_group · x;
//  - B is stored in the layout of its base matrix, so that W·x + B·z is one product over [W | B]·[x ; z]:
//    each thread adds its rows (or columns) of B right after its part of W (simd/matvec.hpp).
// Prefill is compute-bound and takes the two thin products after the base one. At attach time the
// adapter is converted to this runtime form (LoraRuntime), fp16 like the base weights.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include "elastilm/model/lora_adapter.hpp"
#include "elastilm/model/linear.hpp"
#include "elastilm/model/weights.hpp"
#include "elastilm/simd/f16.hpp"

namespace elastilm {

// The groups of projections that read the same input, and the group of each slot (kLayerMatrices order).
namespace lora_group {
inline constexpr std::size_t qkv = 0, o = 1, gate_up = 2, down = 3, count = 4;
inline constexpr std::array<std::size_t, kLayerMatrixCount> of = {qkv, qkv, qkv, o, gate_up, gate_up, down};
}  // namespace lora_group

// One group's A matrices, stacked: rows [a_row, a_row + rank) of `a` belong to one pair.
struct LoraRuntimeStack {
    int rank = 0, cols = 0;    // rank: the group's total
    std::vector<f16_bits> a;  // row-major [rank, cols]

    MatrixView A() const { return {a.data(), DType::f16, Layout::out_major, rank, cols, std::size_t(cols)}; }
};

// One pair's B in runtime form. Rank 0: none.
struct LoraRuntimePair {
    int rank = 0, rows = 0, cols = 0;
    int a_row = 0;  // its first row in the group's stack, and so its first column of the group's inputs Z
    Layout layout = Layout::out_major;  // that of the base matrix
    std::vector<f16_bits> b;            // out_major: row-major [rows, rank]; in_major: column by column

    bool empty() const { return rank == 0; }
    MatrixView B() const {
        return {b.data(), DType::f16, layout, rows, rank, std::size_t(layout == Layout::out_major ? rank : rows)};
    }
};

struct LoraRuntimeLayer {
    std::array<LoraRuntimePair, kLayerMatrixCount> pairs;
    std::array<LoraRuntimeStack, lora_group::count> stacks;
};

struct LoraRuntime {
    float scale = 0;
    std::vector<LoraRuntimeLayer> layers;

    // `base`: the weights the adapter will run on, whose layouts its B matrices take.
    static LoraRuntime from(const LoraAdapter& ad, const ModelWeights& base) {
        LoraRuntime rt;
        rt.scale = ad.scale();
        rt.layers.resize(ad.layers.size());
        for (std::size_t l = 0; l < ad.layers.size(); ++l)
            for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
                const LoraPair& p = ad.layers[l].pairs[m];
                if (p.empty()) continue;
                LoraRuntimeStack& stack = rt.layers[l].stacks[lora_group::of[m]];
                LoraRuntimePair& r = rt.layers[l].pairs[m];
                r.rank = p.rank;
                r.rows = p.rows;
                r.cols = p.cols;
                r.a_row = stack.rank;
                r.layout = (base.layers[l].*kLayerMatrices[m].field).layout;
                stack.rank += p.rank;
                stack.cols = p.cols;  // the same for every pair of a group: they read one input
                for (float v : p.a) stack.a.push_back(f32_to_f16(v));
                r.b.resize(p.b.size());
                const MatrixView B = r.B();
                for (int i = 0; i < p.rows; ++i)
                    for (int k = 0; k < p.rank; ++k) r.b[B.offset(i, k)] = f32_to_f16(p.b[std::size_t(i) * p.rank + k]);
            }
        return rt;
    }

    // Bytes read per token when every pair is used.
    std::size_t bytes() const {
        std::size_t n = 0;
        for (const auto& l : layers) {
            for (const auto& s : l.stacks) n += s.a.size() * sizeof(f16_bits);
            for (const auto& p : l.pairs) n += p.b.size() * sizeof(f16_bits);
        }
        return n;
    }
};

// One layer's adapter as a block sees it: null `layer` when the running ratio has none.
struct LayerLora {
    const LoraRuntimeLayer* layer = nullptr;
    float scale = 0;

    explicit operator bool() const { return layer != nullptr; }
};

// Scratch of the adapter products for up to `n` tokens; grows on first use, then never reallocates.
struct LoraScratch {
    std::vector<float> z;    // [n, ldz]   scale · X·A_groupᵀ, the current group's low-rank inputs
    int ldz = 0;
    std::vector<float> out;  // [n, rows]  Z·Bᵀ (prefill)
};

// Z = scale · X·A_groupᵀ for tokens t < n: the low-rank inputs of every pair of `group`, one pass over X.
inline void lora_inputs(LoraScratch& s, const LoraRuntimeLayer& layer, std::size_t group, float scale, const float* X, int ldx,
                        int n, ThreadPool& pool) {
    const LoraRuntimeStack& stack = layer.stacks[group];
    s.ldz = stack.rank;
    if (stack.rank == 0) return;
    const std::size_t size = std::size_t(n) * stack.rank;
    if (s.z.size() < size) s.z.resize(size);
    // In decode the stack is always cold: gigabytes of base weights stream through the caches between
    // two uses. Two threads read it faster from ~16K weights on (measured: bench/end_to_end's adapter
    // cost), well below the threshold for products that may sit in cache.
    if (n == 1) matvec(s.z.data(), stack.A(), X, &pool, nullptr, std::size_t(1) << 14);
    else linear(s.z.data(), stack.rank, stack.A(), X, ldx, n, pool);
    for (std::size_t i = 0; i < size; ++i) s.z[i] *= scale;
}

// Y = X·Wᵀ + Z_p·Bᵀ for t < n, with Z_p the pair's columns of the inputs lora_inputs made for its group.
inline void linear_with_lora(float* Y, int ldy, const MatrixView& W, const LoraRuntimePair& p, const float* X, int ldx, int n,
                             LoraScratch& s, ThreadPool& pool, GemmWeights weights = GemmWeights::exact) {
    if (p.empty()) return linear(Y, ldy, W, X, ldx, n, pool, weights);
    const float* z = s.z.data() + p.a_row;
    if (n == 1) {
        const ExtraColumns b{p.B(), z};
        return matvec(Y, W, X, &pool, &b);
    }
    linear(Y, ldy, W, X, ldx, n, pool, weights);
    if (s.out.size() < std::size_t(n) * p.rows) s.out.resize(std::size_t(n) * p.rows);
    linear(s.out.data(), p.rows, p.B(), z, s.ldz, n, pool);
    for (int t = 0; t < n; ++t) {
        float* y = Y + std::size_t(t) * ldy;
        const float* d = s.out.data() + std::size_t(t) * p.rows;
        for (int i = 0; i < p.rows; ++i) y[i] += d[i];
    }
}

}  // namespace elastilm
