// IEEE binary16 <-> binary32, scalar. Weights are stored as raw 16-bit and widened in the kernels;
// this scalar form is the reference the vector paths are tested against, and the path for tails.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace elastilm {

using f16_bits = std::uint16_t;

constexpr float f16_to_f32(f16_bits h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / nan
    if (exp != 0) return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0) return std::bit_cast<float>(sign);
    // Subnormal half: normalise into a float.
    std::uint32_t e = 113;
    while ((mant & 0x400u) == 0) { mant <<= 1; --e; }
    return std::bit_cast<float>(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

// Round-to-nearest-even, overflow to inf, NaN preserved.
constexpr f16_bits f32_to_f16(float f) {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return f16_bits(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u) return f16_bits(sign | 0x7c00u);  // rounds to >= 65520: inf
    if (absx < 0x38800000u) {                                   // below the smallest normal half
        if (absx < 0x33000000u) return f16_bits(sign);          // below half the smallest subnormal
        const std::uint32_t e = absx >> 23;
        const std::uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        const std::uint32_t shift = 126 - e;                     // 14 + (113 - e) - 1 ... yields subnormal mantissa
        std::uint32_t r = m >> shift;
        const std::uint32_t rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
        return f16_bits(sign | r);
    }
    std::uint32_t r = ((absx >> 13) - (112u << 10));
    const std::uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return f16_bits(sign | r);
}

}  // namespace elastilm
