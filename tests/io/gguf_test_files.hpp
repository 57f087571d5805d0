// Helpers the GGUF tests share: a per-process temporary path, reading a file whole, and the error
// message (or "") the GGUF parser gives for a buffer.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>

#include "elastilm/error.hpp"
#include "elastilm/io/gguf.hpp"

namespace elastilm::test {

inline std::filesystem::path temp_file(const std::string& name) {
    return std::filesystem::temp_directory_path() / ("elastilm_test_" + std::to_string(::getpid()) + "_" + name);
}

inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

inline std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

inline std::string error_of(const std::string& bytes) {
    try {
        io::GgufFile::parse(bytes_of(bytes), "test.gguf");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace elastilm::test
