// Dot products of block-quantized weight rows with activations quantized the same way.
//
// Activations are quantized per block of 32 to int8 with one scale (as llama.cpp quantizes them to
// Q8_0 before a quantized product; we keep the scale in fp32): then a block's contribution is
// d_w · d_x · Σ q_w·q_x, an integer dot product the CPU does 32 or 64 bytes at a time. The integer part
// is in one small header per architecture (simd/arch/quant_dot_*.hpp), behind the names
// load_q8 / load_q4 (a block's weights into registers), madd (acc += scale · Σ w·x) and sum.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "elastilm/simd/f16_widen.hpp"
#include "elastilm/simd/quant_blocks.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include "elastilm/simd/arch/quant_dot_x86.hpp"
#elif defined(__aarch64__)
#include "elastilm/simd/arch/quant_dot_neon.hpp"
#else
#include "elastilm/simd/arch/quant_dot_scalar.hpp"
#endif

namespace elastilm {

// 32 activations as int8 with one fp32 scale: x[k] ≈ q[k] · d.
struct ActBlock {
    float d;
    std::int8_t q[kQuantBlock];
};

// x[0..n) (n a multiple of 32) into n/32 blocks: d = max|x| / 127, q = round(x / d).
inline void quantize_activations(ActBlock* out, const float* x, int n) {
    for (int b = 0; b < n / kQuantBlock; ++b) {
        const float* v = x + b * kQuantBlock;
        float amax = 0;
        for (int k = 0; k < kQuantBlock; ++k) amax = std::max(amax, std::fabs(v[k]));
        const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        out[b].d = d;
        for (int k = 0; k < kQuantBlock; ++k) out[b].q[k] = std::int8_t(std::nearbyint(v[k] * id));
    }
}

namespace simd {

inline qarch::W32 load_block(const BlockQ8_0& b) { return qarch::load_q8(b.q); }
inline qarch::W32 load_block(const BlockQ4_0& b) { return qarch::load_q4(b.qs); }

// Σ_b d_w[b] · d_x[b] · Σ_k w[b][k]·x[b][k] over `blocks` blocks: a row of weights against activations.
// Two accumulators in flight hide the latency of the multiply-add chain.
template <class Block>
float dot_blocks(const Block* w, const ActBlock* x, int blocks) {
    qarch::Acc a0 = qarch::zero(), a1 = qarch::zero();
    int b = 0;
    for (; b + 2 <= blocks; b += 2) {
        a0 = qarch::madd(a0, load_block(w[b]), x[b].q, to_float(w[b].d) * x[b].d);
        a1 = qarch::madd(a1, load_block(w[b + 1]), x[b + 1].q, to_float(w[b + 1].d) * x[b + 1].d);
    }
    if (b < blocks) a0 = qarch::madd(a0, load_block(w[b]), x[b].q, to_float(w[b].d) * x[b].d);
    return qarch::sum(qarch::add(a0, a1));
}

}  // namespace simd
}  // namespace elastilm
