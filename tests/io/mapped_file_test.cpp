// A model file held mapped or copied into memory on huge pages (io/mapped_file.hpp, the tools' --no-mmap):
// the copy holds the file byte for byte on a 2 MB boundary, a model loaded either way gives the same
// logits (the very same for prefill; for decode to fp32 rounding where the copy's quantized blocks are
// interleaved for the AVX-512 VNNI kernel), and an allocation that cannot be had is an Error naming the file and the size, not a crash.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "elastilm/formats/gguf_export.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "io/gguf_test_files.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

using test::temp_file;

// A file of n pseudo-random bytes.
std::filesystem::path random_file(const std::string& name, std::size_t n) {
    const auto p = temp_file(name);
    std::vector<char> b(n);
    std::mt19937 rng{unsigned(n)};
    for (char& c : b) c = char(rng());
    std::ofstream(p, std::ios::binary).write(b.data(), std::streamsize(n));
    return p;
}

TEST(MappedFile, HugePageCopyHoldsTheFileByteForByte) {
    // Not a multiple of 4 KB nor of 2 MB: the copy's tail past the file is no part of bytes().
    const std::size_t n = (std::size_t(5) << 20) + 4099;
    const auto p = random_file("copy.bin", n);
    const auto mapped = io::MappedFile::open(p);
    const auto copy = io::MappedFile::open(p, io::Residency::huge_page_copy);
    std::filesystem::remove(p);
    EXPECT_EQ(mapped->residency(), io::Residency::mapped);
    EXPECT_FALSE(mapped->huge_pages_advised());
    EXPECT_EQ(copy->residency(), io::Residency::huge_page_copy);
    ASSERT_EQ(copy->bytes().size(), n);
    EXPECT_NE(copy->bytes().data(), mapped->bytes().data());
    EXPECT_EQ(std::memcmp(copy->bytes().data(), mapped->bytes().data(), n), 0);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(copy->bytes().data()) % (std::uintptr_t(1) << 21), 0u)
        << "a 2 MB boundary, so that each whole 2 MB can be one huge page";
    // Where the kernel has transparent huge pages the advice is taken; where it has none, the copy is
    // the same bytes on 4 KB pages (the assertions above), which is the fallback.
    std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
    if (thp && !test::emulated()) {
        EXPECT_TRUE(copy->huge_pages_advised()) << "this kernel has THP; MADV_HUGEPAGE should be accepted";
    }
}

TEST(MappedFile, QuantizedModelCopiedGivesTheMappedLogits) {
    using Cfg = TinyGqa15M;
    const ModelWeights w = synthetic_weights<Cfg>({DType::f16, 3});
    ThreadPool pool(2);
    const std::vector<int> t = {1, 500, 9000, 77};
    for (DType type : {DType::q8_0, DType::q4_0}) {
        const auto p = temp_file("residency.gguf");
        io::GgufExportOptions opt{"r", /*outputs_in_major=*/false, type};
        io::set_ratio_slices<Cfg>(opt);
        io::export_gguf(w, nullptr, p, opt);
        Model<Cfg> mapped(load_model<Cfg>(p));
        Model<Cfg> copied(load_weights(p, io::Residency::huge_page_copy));
        std::filesystem::remove(p);  // the copy no longer needs the file; the mapping keeps its inode alive
        EXPECT_EQ(copied.weights().layers[0].w_up.dtype, type);
        // Where the decode kernel reads interleaved blocks the copy's layers are rearranged for it
        // (simd/quant_interleaved.hpp); the mapping is never written, and the embedding is read by rows.
        const BlockOrder want = interleaved::kInterleavedDecode ? BlockOrder::interleaved : BlockOrder::gguf;
        for (const LayerWeights& L : copied.weights().layers)
            for (const LayerMatrix& m : kLayerMatrices)
                EXPECT_EQ((L.*m.field).order, is_quantized((L.*m.field).dtype) ? want : BlockOrder::gguf) << m.gguf;
        EXPECT_EQ(copied.weights().lm_head.order, want);
        EXPECT_EQ(copied.weights().embedding.order, BlockOrder::gguf);
        EXPECT_EQ(mapped.weights().layers[0].wq.order, BlockOrder::gguf);
        for (int percent : {100, 50}) {
            Session<Cfg> a(mapped, pool, 8), b(copied, pool, 8);
            const auto la = a.append(t, percent);
            const std::vector<float> prefill(la.begin(), la.end());
            const auto lb = b.append(t, percent);
            ASSERT_EQ(prefill.size(), lb.size());
            if (want == BlockOrder::gguf) {  // the same kernels on the same bytes: the very same floats
                EXPECT_EQ(std::memcmp(prefill.data(), lb.data(), lb.size() * sizeof(float)), 0) << to_string(type) << " " << percent << "%";
                continue;
            }
            // Interleaved: the decode kernel sums the same integer block products in another order, to
            // fp32 rounding (quant_kernels_test); through the layers a rounding can flip one activation's
            // quantization step, so the logits agree to a fraction of their range, not to the bit.
            auto expect_close = [&](const std::vector<float>& x, std::span<const float> y, const char* what) {
                float scale = 0, diff = 0;
                for (std::size_t i = 0; i < y.size(); ++i)
                    scale = std::max(scale, std::fabs(x[i])), diff = std::max(diff, std::fabs(x[i] - y[i]));
                EXPECT_LT(diff, 0.02f * scale) << to_string(type) << " " << percent << "% " << what << ": logits differ by " << diff
                                               << " of " << scale;
            };
            expect_close(prefill, lb, "prompt");
            const auto da = a.append(42, percent);
            const std::vector<float> decoded(da.begin(), da.end());
            expect_close(decoded, b.append(42, percent), "next token");
        }
    }
}

TEST(MappedFile, CopyThatCannotBeAllocatedIsAnErrorNamingTheFile) {
    if (test::emulated()) GTEST_SKIP() << "qemu-user reserves the guest's address space up front: an address-space limit would stop qemu itself";
    const auto p = random_file("nomem.bin", std::size_t(64) << 20);
    // An address-space limit barely above what the process maps now: the 64 MB copy's mmap fails.
    std::ifstream statm("/proc/self/statm");
    std::size_t pages = 0;
    statm >> pages;
    ASSERT_GT(pages, 0u);
    rlimit old{};
    ASSERT_EQ(::getrlimit(RLIMIT_AS, &old), 0);
    rlimit low = old;
    low.rlim_cur = pages * std::size_t(::sysconf(_SC_PAGESIZE)) + (std::size_t(16) << 20);
    ASSERT_EQ(::setrlimit(RLIMIT_AS, &low), 0);
    std::string what;
    try {
        io::MappedFile::open(p, io::Residency::huge_page_copy);
    } catch (const Error& e) {
        what = e.what();
    }
    ::setrlimit(RLIMIT_AS, &old);
    std::filesystem::remove(p);
    EXPECT_NE(what.find("nomem.bin"), std::string::npos) << what;
    EXPECT_NE(what.find("cannot allocate 64 MB"), std::string::npos) << what;
    EXPECT_NE(what.find("load it mapped instead"), std::string::npos) << what;
}

TEST(MappedFile, MissingFileIsAnErrorEitherWay) {
    for (auto r : {io::Residency::mapped, io::Residency::huge_page_copy}) {
        std::string what;
        try {
            io::MappedFile::open(temp_file("absent.gguf"), r);
        } catch (const Error& e) {
            what = e.what();
        }
        EXPECT_NE(what.find("cannot open"), std::string::npos) << what;
    }
}

}  // namespace
}  // namespace elastilm
