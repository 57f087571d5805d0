// libFuzzer: any bytes given to the GGUF parser give a parsed file or an elastilm::Error.
#include <cstddef>
#include <cstdint>

#include "elastilm/io/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto g = elastilm::io::GgufFile::parse({reinterpret_cast<const std::byte*>(data), size}, "fuzz.gguf");
        // Touch what a loader touches: every tensor's bytes and every value.
        volatile std::uint8_t sink = 0;
        for (const auto& t : g.tensors())
            if (t.nbytes) sink = sink ^ std::uint8_t(t.data[0]) ^ std::uint8_t(t.data[t.nbytes - 1]);
        for (const auto& [k, v] : g.metadata()) sink = sink ^ std::uint8_t(k.size() + v.strings.size() + v.numbers.size());
    } catch (const elastilm::Error&) {
    }
    return 0;
}
