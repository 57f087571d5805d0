// Applying a LoRA adapter unmerged inside a sub-model's projections: Y += scale · (X·Aᵀ)·Bᵀ.
//
// The base product Y = X·Wᵀ has already run on the shared, memory-mapped prefix of W; the adapter adds a
// rank-r correction through two thin products. Nothing is merged into W, so nine ratios keep sharing one
// weight set. Decode is memory-bound and the adapter's bytes are read on every token, so at attach time
// the adapter is converted to its runtime form (LoraRuntime): fp16 like the base weights (half the bytes
// of the fp32 training form), A as rows [rank, cols] and B column by column (an in_major view), so both
// thin products stream contiguous memory.
#pragma once

#include <cstddef>
#include <vector>

#include "elastilm/lora/adapter.hpp"
#include "elastilm/model/linear.hpp"
#include "elastilm/simd/f16.hpp"

namespace elastilm {

// One pair in runtime form. Rank 0: none.
struct LoraRuntimePair {
    int rank = 0, rows = 0, cols = 0;
    std::vector<f16_bits> a;   // A, row-major [rank, cols]
    std::vector<f16_bits> bt;  // B transposed, row-major [rank, rows]: column r of B is contiguous

    bool empty() const { return rank == 0; }
    MatrixView A() const { return {a.data(), DType::f16, Layout::out_major, rank, cols, std::size_t(cols)}; }
    MatrixView B() const { return {bt.data(), DType::f16, Layout::in_major, rows, rank, std::size_t(rows)}; }
};

struct LoraRuntimeLayer {
    std::array<LoraRuntimePair, kLayerMatrixCount> pairs;
};

struct LoraRuntime {
    float scale = 0;
    std::vector<LoraRuntimeLayer> layers;

    static LoraRuntime from(const LoraAdapter& ad) {
        LoraRuntime rt;
        rt.scale = ad.scale();
        rt.layers.resize(ad.layers.size());
        for (std::size_t l = 0; l < ad.layers.size(); ++l)
            for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
                const LoraPair& p = ad.layers[l].pairs[m];
                LoraRuntimePair& r = rt.layers[l].pairs[m];
                if (p.empty()) continue;
                r.rank = p.rank;
                r.rows = p.rows;
                r.cols = p.cols;
                r.a.resize(p.a.size());
                for (std::size_t i = 0; i < p.a.size(); ++i) r.a[i] = f32_to_f16(p.a[i]);
                r.bt.resize(p.b.size());
                for (int i = 0; i < p.rows; ++i)
                    for (int k = 0; k < p.rank; ++k) r.bt[std::size_t(k) * p.rows + i] = f32_to_f16(p.b[std::size_t(i) * p.rank + k]);
            }
        return rt;
    }

    // Bytes read per token when every pair is used.
    std::size_t bytes() const {
        std::size_t n = 0;
        for (const auto& l : layers)
            for (const auto& p : l.pairs) n += (p.a.size() + p.bt.size()) * sizeof(f16_bits);
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
    std::vector<float> low;  // [n, rank]    X·Aᵀ
    std::vector<float> out;  // [n, rows]    (X·Aᵀ)·Bᵀ
};

// Y[t, :p.rows] += scale · B·(A·X[t, :p.cols]) for t < n.
inline void add_lora(const LoraRuntimePair& p, float scale, const float* X, int ldx, float* Y, int ldy, int n, LoraScratch& s,
                     ThreadPool& pool) {
    if (p.empty()) return;
    if (s.low.size() < std::size_t(n) * p.rank) s.low.resize(std::size_t(n) * p.rank);
    if (s.out.size() < std::size_t(n) * p.rows) s.out.resize(std::size_t(n) * p.rows);
    linear(p.A(), X, ldx, s.low.data(), p.rank, n, pool);
    linear(p.B(), s.low.data(), p.rank, s.out.data(), p.rows, n, pool);
    for (int t = 0; t < n; ++t) {
        float* y = Y + std::size_t(t) * ldy;
        const float* d = s.out.data() + std::size_t(t) * p.rows;
        for (int i = 0; i < p.rows; ++i) y[i] += scale * d[i];
    }
}

}  // namespace elastilm
