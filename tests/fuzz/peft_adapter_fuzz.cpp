// libFuzzer: arbitrary bytes as a PEFT adapter (adapter_config.json text + adapter_model.safetensors),
// or, when they start with "GGUF", as an elastilm adapter GGUF, give an adapter or an elastilm::Error.
// Layout of a PEFT input: byte 0 = flags (bit 0: pass the ratio explicitly), bytes 1-2 = config length
// n (little-endian), then n bytes of config text, then the safetensors bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "elastilm/lora/adapter_gguf.hpp"
#include "elastilm/lora/peft.hpp"

namespace {

// Touches every loaded value so the sanitizers see any out-of-bounds read.
void consume(const elastilm::LoraAdapter& ad) {
    volatile float sink = ad.scale();
    for (const auto& l : ad.layers)
        for (const auto& p : l.pairs) {
            for (float v : p.a) sink = sink + v;
            for (float v : p.b) sink = sink + v;
        }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using elastilm::Stories260K;
    try {
        if (size >= 4 && std::memcmp(data, "GGUF", 4) == 0) {
            consume(elastilm::parse_adapter_gguf<Stories260K>({reinterpret_cast<const std::byte*>(data), size}, "fuzz.gguf", {0}));
            return 0;
        }
        if (size < 3) return 0;
        const bool explicit_ratio = data[0] & 1;
        const std::size_t n = std::min<std::size_t>(data[1] | std::size_t(data[2]) << 8, size - 3);
        const std::string_view config(reinterpret_cast<const char*>(data + 3), n);
        const std::span<const std::byte> weights(reinterpret_cast<const std::byte*>(data + 3 + n), size - 3 - n);
        consume(elastilm::parse_peft<Stories260K>(config, weights, {0}, explicit_ratio ? std::optional<int>(100) : std::nullopt, "fuzz"));
    } catch (const elastilm::Error&) {
    }
    return 0;
}
