// libFuzzer: any bytes given as tokenizer.model give a vocabulary or an elastilm::Error; a vocabulary
// that builds a Tokenizer encodes and decodes without crashing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "elastilm/tokenizer/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        auto v = elastilm::parse_sentencepiece_model({reinterpret_cast<const char*>(data), size}, "fuzz.model");
        elastilm::Tokenizer t(std::move(v));
        const auto ids = t.encode(std::string_view(reinterpret_cast<const char*>(data), size < 64 ? size : 64), true);
        t.decode(ids);
    } catch (const elastilm::Error&) {
    }
    return 0;
}
