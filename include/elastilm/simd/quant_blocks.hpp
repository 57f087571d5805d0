// GGUF's block-quantized weight formats, as ggml defines them. A row of n weights (n a multiple of 32,
// along the input / reduction dimension) is n/32 consecutive blocks; each block is an fp16 scale d and
// 32 quantized values:
//   Q8_0  (34 bytes): int8 q[32];                                    w[k] = q[k] · d
//   Q4_0  (18 bytes): uint8 qs[16], element k < 16 in the low nibble of qs[k], element 16 + k in its
//                     high nibble;                                    w[k] = (nibble − 8) · d
// This header holds the layouts, the scalar quantizers and dequantizers (the reference every kernel is
// tested against) and the check a loader runs on untrusted blocks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "elastilm/simd/f16.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

inline constexpr int kQuantBlock = 32;

struct BlockQ8_0 {
    f16_bits d;
    std::int8_t q[kQuantBlock];
};
struct BlockQ4_0 {
    f16_bits d;
    std::uint8_t qs[kQuantBlock / 2];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18, "GGUF block sizes");
static_assert(sizeof(BlockQ8_0) == block_bytes(DType::q8_0) && sizeof(BlockQ4_0) == block_bytes(DType::q4_0));

// ---- Scalar quantizers: x[0..32) -> one block --------------------------------------------------------
// The scale is rounded to fp16 first and the values quantized against the rounded scale, so what is
// stored is the nearest point of the grid the block actually has.

inline BlockQ8_0 quantize_q8_0(const float* x) {
    float amax = 0;
    for (int k = 0; k < kQuantBlock; ++k) amax = std::max(amax, std::fabs(x[k]));
    BlockQ8_0 b;
    b.d = f32_to_f16(amax / 127.0f);
    const float d = f16_to_f32(b.d), id = d > 0 ? 1.0f / d : 0.0f;
    for (int k = 0; k < kQuantBlock; ++k) b.q[k] = std::int8_t(std::clamp(std::lround(x[k] * id), -127l, 127l));
    return b;
}

// The value of largest magnitude maps to −8 (the grid is −8..7), so the scale carries its sign:
// d = extreme / −8, and every level of the asymmetric grid is used.
inline BlockQ4_0 quantize_q4_0(const float* x) {
    float extreme = 0;
    for (int k = 0; k < kQuantBlock; ++k)
        if (std::fabs(x[k]) > std::fabs(extreme)) extreme = x[k];
    BlockQ4_0 b;
    b.d = f32_to_f16(extreme / -8.0f);
    const float d = f16_to_f32(b.d), id = d != 0 ? 1.0f / d : 0.0f;
    auto level = [&](float v) { return std::uint8_t(std::clamp(std::lround(v * id) + 8, 0l, 15l)); };
    for (int k = 0; k < kQuantBlock / 2; ++k) b.qs[k] = std::uint8_t(level(x[k]) | (level(x[k + 16]) << 4));
    return b;
}

inline void dequantize(float* out, const BlockQ8_0& b) {
    const float d = f16_to_f32(b.d);
    for (int k = 0; k < kQuantBlock; ++k) out[k] = float(b.q[k]) * d;
}
inline void dequantize(float* out, const BlockQ4_0& b) {
    const float d = f16_to_f32(b.d);
    for (int k = 0; k < kQuantBlock / 2; ++k) {
        out[k] = float(int(b.qs[k] & 0x0f) - 8) * d;
        out[k + 16] = float(int(b.qs[k] >> 4) - 8) * d;
    }
}

// x[0..n) (n a multiple of 32) as `dtype` blocks written to `out` (bytes_for(dtype, n) bytes).
inline void quantize_row(std::byte* out, DType dtype, const float* x, int n) {
    for (int b = 0; b < n / kQuantBlock; ++b) {
        if (dtype == DType::q8_0) {
            const BlockQ8_0 q = quantize_q8_0(x + b * kQuantBlock);
            std::memcpy(out + b * sizeof q, &q, sizeof q);
        } else {
            const BlockQ4_0 q = quantize_q4_0(x + b * kQuantBlock);
            std::memcpy(out + b * sizeof q, &q, sizeof q);
        }
    }
}

// Elements [0, n) of a row of `dtype` blocks, widened to fp32 (n a multiple of 32).
inline void dequantize_row(float* out, DType dtype, const std::byte* row, int n) {
    for (int b = 0; b < n / kQuantBlock; ++b) {
        if (dtype == DType::q8_0) {
            BlockQ8_0 q;
            std::memcpy(&q, row + b * sizeof q, sizeof q);
            dequantize(out + b * kQuantBlock, q);
        } else {
            BlockQ4_0 q;
            std::memcpy(&q, row + b * sizeof q, sizeof q);
            dequantize(out + b * kQuantBlock, q);
        }
    }
}

// The first block (its index) whose scale is NaN or infinite, or -1. Every other bit pattern is a valid
// block, so this is all a loader must check in a block-quantized tensor's bytes.
inline long first_bad_scale(DType dtype, std::span<const std::byte> bytes) {
    const std::size_t size = block_bytes(dtype), n = bytes.size() / size;
    for (std::size_t b = 0; b < n; ++b) {
        f16_bits d;
        std::memcpy(&d, bytes.data() + b * size, 2);
        if ((d & 0x7c00u) == 0x7c00u) return long(b);  // exponent all ones: inf or NaN
    }
    return -1;
}

}  // namespace elastilm
