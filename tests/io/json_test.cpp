// io::parse_json: the one JSON parse of the readers (config.json, safetensors headers, PEFT configs,
// the latency cache): errors name the file, the line and the column of the offending byte.
#include <gtest/gtest.h>

#include <string>

#include "elastilm/io/json.hpp"
#include "elastilm/io/safetensors.hpp"

namespace elastilm::io {
namespace {

std::string error_of(std::string_view text, const std::string& what = "") {
    try {
        (void)parse_json(text, "config.json", what);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Json, ParsesValidText) {
    const auto j = parse_json(R"({"dim": 64, "tied": true})", "config.json");
    EXPECT_EQ(j["dim"].get<int>(), 64);
    EXPECT_TRUE(j["tied"].get<bool>());
}

TEST(Json, ErrorNamesFileLineAndColumn) {
    // The stray '}' is on line 3, column 12.
    const std::string e = error_of("{\n  \"dim\": 64,\n  \"heads\": }\n");
    EXPECT_NE(e.find("config.json: not valid JSON at line 3, column 12"), std::string::npos) << e;
}

TEST(Json, TruncatedTextPointsAtItsEnd) {
    const std::string e = error_of("{\"r\": 4,");
    EXPECT_NE(e.find("not valid JSON at line 1, column "), std::string::npos) << e;
    EXPECT_NE(e.find("config.json: "), std::string::npos) << e;
}

TEST(Json, WhatNamesThePartOfTheFile) {
    const std::string e = error_of("[1, 2", "header");
    EXPECT_NE(e.find("config.json: header is not valid JSON at line 1"), std::string::npos) << e;
}

TEST(Json, TextLocationCountsLinesAndColumnsFromOne) {
    EXPECT_EQ(text_location("abc", 0), "line 1, column 1");
    EXPECT_EQ(text_location("ab\ncd", 4), "line 2, column 2");
    EXPECT_EQ(text_location("ab", 99), "line 1, column 3");  // past the end: just after the last byte
}

}  // namespace
}  // namespace elastilm::io
