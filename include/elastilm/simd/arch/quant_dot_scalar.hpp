// Integer block dot products, portable C++: the fallback for targets without AVX2 or NEON.
#pragma once

#include <cstdint>

namespace elastilm::simd::qarch {

inline constexpr const char* kName = "scalar";

struct Acc {
    float v;
};
struct W32 {
    std::int8_t w[32];
};

inline Acc zero() { return {0.0f}; }
inline Acc add(Acc a, Acc b) { return {a.v + b.v}; }
inline float sum(Acc a) { return a.v; }

inline W32 load_q8(const std::int8_t* q) {
    W32 r;
    for (int k = 0; k < 32; ++k) r.w[k] = q[k];
    return r;
}
inline W32 load_q4(const std::uint8_t* qs) {
    W32 r;
    for (int k = 0; k < 16; ++k) {
        r.w[k] = std::int8_t((qs[k] & 0x0f) - 8);
        r.w[k + 16] = std::int8_t((qs[k] >> 4) - 8);
    }
    return r;
}

inline Acc madd(Acc acc, const W32& w, const std::int8_t* x, float scale) {
    std::int32_t s = 0;
    for (int k = 0; k < 32; ++k) s += std::int32_t(w.w[k]) * x[k];
    return {acc.v + scale * float(s)};
}

}  // namespace elastilm::simd::qarch
