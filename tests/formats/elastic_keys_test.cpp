// The elastilm.* keys (formats/elastic_keys.hpp): what write_* puts in a GGUF, read_* gets back; a plain
// file reads as "not elastic, output-major".
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include "elastilm/formats/elastic_keys.hpp"

namespace elastilm {
namespace {

std::filesystem::path temp_gguf(const char* tag) {
    return std::filesystem::temp_directory_path() / (std::string("elastilm_keys_") + tag + "_" + std::to_string(::getpid()) + ".gguf");
}

TEST(ElasticKeys, RoundTrip) {
    ElasticMetadata e;
    e.ratios = {20, 50, 100};
    e.anchors = {0, 3};
    e.importance_measure = std::string(kImportanceMeasure);
    e.calibration_tokens = 8192;
    e.layer_importance = {0.5f, 0.25f};
    e.kv_group_importance = {3, 2, 1, 0.5f};
    e.neuron_importance = {9, 8, 7, 6, 5, 4};
    io::GgufWriter w;
    write_elastic_metadata(w, e);
    write_output_layout(w, Layout::in_major);
    const auto p = temp_gguf("elastic");
    w.write(p);
    const io::GgufFile g = io::GgufFile::open(p);
    const auto back = read_elastic_metadata(g);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->ratios, e.ratios);
    EXPECT_EQ(back->anchors, e.anchors);
    EXPECT_EQ(back->importance_measure, e.importance_measure);
    EXPECT_EQ(back->calibration_tokens, e.calibration_tokens);
    EXPECT_EQ(back->layer_importance, e.layer_importance);
    EXPECT_EQ(back->kv_group_importance, e.kv_group_importance);
    EXPECT_EQ(back->neuron_importance, e.neuron_importance);
    EXPECT_EQ(read_output_layout(g), Layout::in_major);
    std::filesystem::remove(p);
}

TEST(ElasticKeys, PlainFileIsNotElasticAndOutputMajor) {
    io::GgufWriter w;
    w.set_string("general.architecture", "llama");
    write_output_layout(w, Layout::out_major);  // writes nothing: output-major is the default
    const auto p = temp_gguf("plain");
    w.write(p);
    const io::GgufFile g = io::GgufFile::open(p);
    EXPECT_FALSE(read_elastic_metadata(g).has_value());
    EXPECT_EQ(read_output_layout(g), Layout::out_major);
    EXPECT_FALSE(g.has("elastilm.output_layout"));
    std::filesystem::remove(p);
}

}  // namespace
}  // namespace elastilm
