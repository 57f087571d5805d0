// safetensors: the real model's file parses; damaged headers give errors that say what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "elastilm/formats/hf_config.hpp"
#include "elastilm/io/safetensors.hpp"
#include "shared_models.hpp"

namespace elastilm {
namespace {

std::string make(const std::string& header, std::size_t data_bytes) {
    std::string out(8, '\0');
    const std::uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return out + header + std::string(data_bytes, '\0');
}

std::string error_of(const std::string& bytes) {
    try {
        io::SafetensorsFile::parse(std::as_bytes(std::span(bytes.data(), bytes.size())), "t.safetensors");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Safetensors, ParsesAWellFormedFile) {
    const auto b = make(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", 16);
    const auto f = io::SafetensorsFile::parse(std::as_bytes(std::span(b.data(), b.size())), "ok");
    ASSERT_EQ(f.tensors().size(), 2u);
    EXPECT_EQ(f.find("a")->shape, (std::vector<std::int64_t>{2, 3}));
    EXPECT_EQ(f.find("b")->dtype, DType::f32);
}

TEST(Safetensors, DamageIsNamed) {
    EXPECT_NE(error_of(make(R"({"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}})", 8)).find("outside"), std::string::npos);
    EXPECT_NE(error_of(make(R"({"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,10]}})", 12)).find("needs 12"), std::string::npos);
    EXPECT_NE(error_of(make(R"({"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}})", 2)).find("has dtype I8, which elastilm does not load (F32, F16 and BF16 load)"),
              std::string::npos);
    EXPECT_EQ(error_of(make(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", 4)), "");
    EXPECT_NE(error_of(make(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[2],"data_offsets":[2,6]}})", 6)).find("overlap"),
              std::string::npos);
    EXPECT_NE(error_of(make(R"({"a":)", 0)).find("not valid JSON"), std::string::npos);
    EXPECT_NE(error_of(make(R"([1,2])", 0)).find("not a JSON object"), std::string::npos);
    EXPECT_NE(error_of(make(R"({"a":{"dtype":"F16"}})", 0)).find("lacks"), std::string::npos);
    EXPECT_NE(error_of(make(R"({"a":{"dtype":"F16","shape":[-1],"data_offsets":[0,0]}})", 0)).find("non-integer"), std::string::npos);
    EXPECT_NE(error_of(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10)).find("header length"), std::string::npos);
    EXPECT_NE(error_of("abc").find("truncated"), std::string::npos);
}

TEST(Safetensors, RealModelTruncatedAnywhereInItsHeaderIsAnError) {
    const auto p = test::shared_model("tiny-gqa-15M/model.safetensors");
    ELASTILM_REQUIRE_SHARED(p);
    std::ifstream in(p, std::ios::binary);
    std::string head(64 * 1024, '\0');
    in.read(head.data(), std::streamsize(head.size()));
    std::uint64_t n;
    std::memcpy(&n, head.data(), 8);
    ASSERT_LT(n + 8, head.size());
    for (std::size_t cut = 0; cut < n + 8; cut += 37) EXPECT_FALSE(error_of(head.substr(0, cut)).empty()) << cut;
    const auto f = io::SafetensorsFile::open(p);
    EXPECT_EQ(f.find("model.embed_tokens.weight")->shape, (std::vector<std::int64_t>{32000, 288}));
    const auto cfg = io::read_hf_config(p.parent_path() / "config.json");
    EXPECT_EQ(cfg.hparams.n_kv_heads, 2);
    EXPECT_EQ(cfg.hparams.head_dim, 48);
    EXPECT_FLOAT_EQ(cfg.hparams.rope_theta, 10000.0f);
    EXPECT_TRUE(cfg.tied_embeddings);
}

}  // namespace
}  // namespace elastilm
