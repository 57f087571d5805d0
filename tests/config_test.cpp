// The sliced shapes of every width ratio follow the rules of the width-elasticity design.
#include <gtest/gtest.h>

#include "elastilm/model/variant_table.hpp"

namespace elastilm {
namespace {

// GQA groups stay whole and at least one remains; FFN widths are SIMD multiples; 100% is the model.
static_assert(Width<TinyGqa15M, 20>::kv_heads == 1 && Width<TinyGqa15M, 20>::heads == 3);
static_assert(Width<TinyGqa15M, 70>::kv_heads == 1 && Width<TinyGqa15M, 80>::kv_heads == 2);
static_assert(Width<TinyGqa15M, 20>::hidden == 160);  // round(153.6) = 154 -> 160
static_assert(Width<TinyLlama1B, 50>::kv_heads == 2 && Width<TinyLlama1B, 50>::heads == 16);
static_assert(Width<OpenLlama3B, 100>::hidden == 8640 && Width<OpenLlama3B, 90>::hidden % kFfnUnitMultiple == 0);
static_assert(Width<Stories260K, 90>::hidden <= Stories260K::hidden_dim);

template <ModelConfig Cfg>
void check_monotone() {
    const auto& t = width_table<Cfg>;
    for (std::size_t i = 1; i < t.size(); ++i) {
        EXPECT_GE(t[i].kv_heads, t[i - 1].kv_heads) << Cfg::name;
        EXPECT_GE(t[i].hidden, t[i - 1].hidden) << Cfg::name;
        EXPECT_EQ(t[i].heads % (Cfg::n_heads / Cfg::n_kv_heads), 0) << Cfg::name;
    }
    EXPECT_EQ(t.back().heads, Cfg::n_heads);
    EXPECT_EQ(t.back().hidden, Cfg::hidden_dim);
    EXPECT_GE(t.front().kv_heads, 1);
}

TEST(Width, MonotoneAndWholeGroups) {
    check_monotone<Stories260K>();
    check_monotone<TinyGqa15M>();
    check_monotone<TinyLlama1B>();
    check_monotone<OpenLlama3B>();
    check_monotone<Llama2_7B>();
}

TEST(VariantTable, OneDistinctEntryPerRatio) {
    const auto& t = Variants<Stories260K>::table();
    for (std::size_t i = 0; i < t.size(); ++i)
        for (std::size_t j = i + 1; j < t.size(); ++j) EXPECT_NE(t[i], t[j]);
    EXPECT_EQ(variant<Stories260K>(50), t[3]);
}

TEST(VariantTable, UnknownRatioNamesTheCompiledOnes) {
    try {
        variant<Stories260K>(25);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("25% is not a compiled width ratio (compiled: 20, 30"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace elastilm
