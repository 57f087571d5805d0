// Linked into every test executable: tests compare the engine against fp32 and double-precision
// references, so they run prefill's GEMM in fp32 unless they ask for the reduced-precision path
// (ScopedGemmPrecision; tests/simd/gemm_reduced_test.cpp and tests/model/reduced_precision_test.cpp bound
// that path against the same references). A library user gets the reduced path by default.
#include "elastilm/simd/precision.hpp"

namespace {
const bool fp32_gemm_in_tests = (elastilm::set_gemm_precision(elastilm::GemmPrecision::fp32), true);
}  // namespace
