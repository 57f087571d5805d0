// Parsing JSON text from a file (config.json, a safetensors header, adapter_config.json, the latency
// cache) with one kind of error: the file, the line and column, and what the parser expected there.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "elastilm/error.hpp"

namespace elastilm::io {

// Line and column (both from 1) of byte `offset` in `text`.
inline std::string text_location(std::string_view text, std::size_t offset) {
    offset = std::min(offset, text.size());
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < offset; ++i) {
        if (text[i] == '\n') ++line, column = 1;
        else ++column;
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// `what` names the text in messages ("header" for a safetensors header); `where` is the file.
inline nlohmann::json parse_json(std::string_view text, const std::string& where, const std::string& what = "") {
    const std::string prefix = what.empty() ? "" : what + " is ";
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        // nlohmann counts the byte after the offending one (1-based); point at the offending byte itself.
        const std::size_t at = e.byte > 0 ? std::size_t(e.byte) - 1 : 0;
        std::string reason = e.what();
        if (const auto colon = reason.rfind(": "); colon != std::string::npos) reason = reason.substr(colon + 2);
        throw Error(where, prefix + "not valid JSON at " + text_location(text, at) + ": " + reason);
    } catch (const nlohmann::json::exception& e) {
        throw Error(where, prefix + "not valid JSON: " + e.what());
    }
}

}  // namespace elastilm::io
