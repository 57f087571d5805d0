// Applying a LoRA pair unmerged inside a sub-model's projection: Y += scale · (X·Aᵀ)·Bᵀ.
//
// The base product Y = X·Wᵀ has already run on the shared, memory-mapped prefix of W; the adapter adds a
// rank-r correction through two thin products (r is 4–64, so this is ~r/min(rows, cols) of the base
// work). Nothing is merged into W, so nine ratios keep sharing one weight set.
#pragma once

#include <cstddef>
#include <vector>

#include "elastilm/lora/adapter.hpp"
#include "elastilm/model/linear.hpp"

namespace elastilm {

// One layer's adapter as a block sees it: null `layer` when the running ratio has none.
struct LayerLora {
    const LoraLayer* layer = nullptr;
    float scale = 0;

    explicit operator bool() const { return layer != nullptr; }
};

// Scratch of the adapter products for up to `n` tokens; grows on first use, then never reallocates.
struct LoraScratch {
    std::vector<float> low;  // [n, rank]    X·Aᵀ
    std::vector<float> out;  // [n, rows]    (X·Aᵀ)·Bᵀ
};

// Y[t, :p.rows] += scale · B·(A·X[t, :p.cols]) for t < n.
inline void add_lora(const LoraPair& p, float scale, const float* X, int ldx, float* Y, int ldy, int n, LoraScratch& s,
                     ThreadPool& pool) {
    if (p.empty()) return;
    const MatrixView A{p.a.data(), DType::f32, Layout::out_major, p.rank, p.cols, std::size_t(p.cols)};
    const MatrixView B{p.b.data(), DType::f32, Layout::out_major, p.rows, p.rank, std::size_t(p.rank)};
    if (s.low.size() < std::size_t(n) * p.rank) s.low.resize(std::size_t(n) * p.rank);
    if (s.out.size() < std::size_t(n) * p.rows) s.out.resize(std::size_t(n) * p.rows);
    linear(A, X, ldx, s.low.data(), p.rank, n, pool);
    linear(B, s.low.data(), p.rank, s.out.data(), p.rows, n, pool);
    for (int t = 0; t < n; ++t) {
        float* y = Y + std::size_t(t) * ldy;
        const float* d = s.out.data() + std::size_t(t) * p.rows;
        for (int i = 0; i < p.rows; ++i) y[i] += scale * d[i];
    }
}

}  // namespace elastilm
