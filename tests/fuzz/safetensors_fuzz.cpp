// libFuzzer: any bytes given to the safetensors parser give a parsed file or an elastilm::Error.
#include <cstddef>
#include <cstdint>

#include "elastilm/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto f = elastilm::io::SafetensorsFile::parse({reinterpret_cast<const std::byte*>(data), size}, "fuzz.safetensors");
        volatile std::uint8_t sink = 0;
        for (const auto& t : f.tensors())
            if (t.nbytes) sink = sink ^ std::uint8_t(t.data[0]) ^ std::uint8_t(t.data[t.nbytes - 1]);
    } catch (const elastilm::Error&) {
    }
    return 0;
}
