// bfloat16: the top half of an IEEE binary32 (8-bit exponent, 7-bit mantissa), the usual dtype of
// Hugging Face checkpoints. Widening is exact; the loader narrows it to fp16 (more mantissa, less range).
#pragma once

#include <bit>
#include <cstdint>

namespace elastilm {

using bf16_bits = std::uint16_t;

constexpr float bf16_to_f32(bf16_bits b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }

}  // namespace elastilm
