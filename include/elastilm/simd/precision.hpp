// Which arithmetic prefill's GEMM uses for F16 weights. `reduced` (the default) takes the target's
// reduced-precision GEMM when this build has one (gemm_bf16.hpp: AVX-512 BF16; gemm_bf16_mmla.hpp:
// ARM BFMMLA; gemm_f16.hpp: NEON FP16 or AVX512-FP16; matmul.hpp picks one when a build has both; with
// x86 bf16 only for the matrices that may round, GemmWeights below), else fp32; `fp32` always widens to
// fp32 — the portable path, kept to compare against; `bf16` / `fp16` name one instruction family, for
// benches and tests that compare them side by side (fp32 when the build lacks it).
// A process-wide setting because it is a property of the build and the experiment, not of a call.
#pragma once

#include <atomic>

namespace elastilm {

enum class GemmPrecision { reduced, fp32, bf16, fp16 };

inline std::atomic<GemmPrecision>& gemm_precision_setting() {
    static std::atomic<GemmPrecision> p{GemmPrecision::reduced};
    return p;
}
inline GemmPrecision gemm_precision() { return gemm_precision_setting().load(std::memory_order_relaxed); }
inline void set_gemm_precision(GemmPrecision p) { gemm_precision_setting().store(p, std::memory_order_relaxed); }

// What a reduced GEMM may do to an F16 weight matrix, per call. bf16 cannot hold an F16 weight (8 of its 11
// significant bits): `may_round` lets it round each weight to one bf16 value (one dot per pair of inputs);
// `exact` does not — the bf16 GEMM then splits each weight into two (two dots), and `reduced` on an x86
// bf16 build runs such a matrix through the fp32 GEMM instead (simd/matmul.hpp, gemm_precision_for).
// GEMMs whose format holds F16 exactly (fp32, fp16) ignore it. The caller knows which matrices tolerate
// rounding (model/block.hpp: the FFN's gate and up projections, measured in simd/gemm_bf16.hpp).
enum class GemmWeights { exact, may_round };

// Sets the precision for the lifetime of this object (tests and benches comparing the two paths).
class ScopedGemmPrecision {
public:
    explicit ScopedGemmPrecision(GemmPrecision p) : saved_(gemm_precision()) { set_gemm_precision(p); }
    ~ScopedGemmPrecision() { set_gemm_precision(saved_); }
    ScopedGemmPrecision(const ScopedGemmPrecision&) = delete;
    ScopedGemmPrecision& operator=(const ScopedGemmPrecision&) = delete;

private:
    GemmPrecision saved_;
};

}  // namespace elastilm
