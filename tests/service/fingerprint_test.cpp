// The one weight hasher (service/fingerprint.hpp) and the two fingerprints built on it. Heads files and
// latency caches store these values, so they must not drift: the TLM's is checked against the
// pre-unification formula written out here, the hasher against FNV-1a's published test vectors.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/fingerprint.hpp"
#include "elastilm/service/latency_model.hpp"
#include "elastilm/service/tlm.hpp"

namespace elastilm {
namespace {

std::uint64_t fnv(const std::string& s) {
    Fnv1a f;
    f.bytes(s.data(), s.size());
    return f.h;
}

TEST(Fingerprint, HasherIsFnv1a64) {
    EXPECT_EQ(fnv(""), 0xcbf29ce484222325ull);
    EXPECT_EQ(fnv("a"), 0xaf63dc4c8601ec8cull);
    EXPECT_EQ(fnv("foobar"), 0x85944171f73967e8ull);
}

// The TLM fingerprint as tlm.hpp computed it before the hasher was shared (heads files hold it).
std::uint64_t old_fnv1a(std::uint64_t h, const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}
std::uint64_t old_hash_ends(std::uint64_t h, const MatrixView& m) {
    const std::size_t major = m.layout == Layout::out_major ? std::size_t(m.rows) : std::size_t(m.cols);
    const std::size_t minor = m.layout == Layout::out_major ? std::size_t(m.cols) : std::size_t(m.rows);
    const std::size_t bytes = ((major - 1) * m.ld + minor) * dtype_size(m.dtype);
    const std::size_t n = std::min<std::size_t>(1024, bytes);
    const auto* base = static_cast<const unsigned char*>(m.data);
    return old_fnv1a(old_fnv1a(h, base, n), base + bytes - n, n);
}
std::uint64_t old_tlm_fingerprint(const ModelWeights& w) {
    std::uint64_t h = 14695981039346656037ull;
    h = old_hash_ends(h, w.embedding);
    h = old_hash_ends(h, w.layers.front().w_gate);
    return old_hash_ends(h, w.layers.back().w_gate);
}

TEST(Fingerprint, TlmValueIsUnchangedSoHeadsFilesStayValid) {
    for (const auto& o : {SyntheticOptions{DType::f32, 1, Layout::out_major}, SyntheticOptions{DType::f16, 7, Layout::in_major}}) {
        const ModelWeights w = synthetic_weights<Stories260K>(o);
        EXPECT_EQ(tlm_fingerprint(w), old_tlm_fingerprint(w));
    }
    const ModelWeights a = synthetic_weights<Stories260K>({DType::f32, 1}), b = synthetic_weights<Stories260K>({DType::f32, 2});
    EXPECT_NE(tlm_fingerprint(a), tlm_fingerprint(b));
}

TEST(Fingerprint, MatrixEndsStayInsideAStridedView) {
    // A 2x2 out_major view with ld 3 spans 5 elements: (1·3 + 1) + 1. Only those may be read.
    const std::vector<float> data = {1, 2, 99, 3, 4};
    const MatrixView m{data.data(), DType::f32, Layout::out_major, 2, 2, 3};
    Fnv1a got;
    got.matrix_ends(m, 4096);
    Fnv1a want;
    want.bytes(data.data(), data.size() * 4);
    want.bytes(data.data(), data.size() * 4);
    EXPECT_EQ(got.h, want.h);
    // The window bounds what is read from each end.
    Fnv1a ends;
    ends.matrix_ends(m, 8);
    Fnv1a want_ends;
    want_ends.bytes(data.data(), 8);
    want_ends.bytes(data.data() + 3, 8);
    EXPECT_EQ(ends.h, want_ends.h);
}

TEST(Fingerprint, LatencyAndTlmFingerprintsAreDistinctFunctions) {
    const ModelWeights w = synthetic_weights<Stories260K>({DType::f32, 3});
    const Model<Stories260K> model(w);
    const std::string latency = latency_fingerprint(model);
    EXPECT_EQ(latency.size(), 16u);
    EXPECT_EQ(latency, latency_fingerprint(Model<Stories260K>(synthetic_weights<Stories260K>({DType::f32, 3}))));
    EXPECT_EQ(tlm_fingerprint(w), tlm_fingerprint(model.weights()));
}

}  // namespace
}  // namespace elastilm
