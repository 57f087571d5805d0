// libFuzzer: any bytes given to the GGUF parser give a parsed file or an elastilm::Error — including
// tensors of the block formats (Q8_0, Q4_0: whole blocks, finite scales) and BF16.
#include <cstddef>
#include <cstdint>

#include "elastilm/io/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto g = elastilm::io::GgufFile::parse({reinterpret_cast<const std::byte*>(data), size}, "fuzz.gguf");
        // Touch what a loader touches: every tensor's bytes and every value.
        volatile std::uint8_t sink = 0;
        // Block formats (Q8_0, Q4_0): dequantize the first block as a loader's embedding lookup would.
        for (const auto& t : g.tensors()) {
            if (t.nbytes) sink = sink ^ std::uint8_t(t.data[0]) ^ std::uint8_t(t.data[t.nbytes - 1]);
            if (elastilm::is_quantized(t.dtype)) {
                elastilm::io::check_block_scales(t.name, t.dtype, t.data, t.nbytes, "fuzz.gguf");  // as the loader does
                float row[32];
                elastilm::dequantize_row(row, t.dtype, t.data, 32);
                sink = sink ^ std::uint8_t(row[0] != row[0]);
            }
        }
        for (const auto& [k, v] : g.metadata()) sink = sink ^ std::uint8_t(k.size() + v.strings.size() + v.numbers.size());
    } catch (const elastilm::Error&) {
    }
    return 0;
}
