// safetensors writer: the counterpart of io/safetensors.hpp, for small files we produce ourselves
// (LoRA adapters for PEFT users). Tensors are laid out in the order they were added; the JSON header is
// padded with spaces to a multiple of 8 bytes, as the Hugging Face writer does, so the data stays aligned.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastilm/error.hpp"
#include "elastilm/io/atomic_write.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::io {

class SafetensorsWriter {
public:
    // A string entry of the header's "__metadata__" object.
    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

    // `data` holds product(shape) elements of `dtype`; it is copied, so the caller may free it.
    void add_tensor(const std::string& name, const std::vector<std::int64_t>& shape, DType dtype, const void* data) {
        require(name != "__metadata__" && !index_.count(name), "safetensors writer", "tensor name " + name + " is reserved or repeated");
        std::size_t n = dtype_size(dtype);
        for (auto d : shape) {
            require(d >= 0, "safetensors writer", "tensor " + name + " has a negative dimension");
            n *= std::size_t(d);
        }
        index_[name] = tensors_.size();
        const auto* p = static_cast<const std::byte*>(data);
        tensors_.push_back({name, shape, dtype, std::vector<std::byte>(p, p + n)});
    }

    // The whole file: u64 header length, header, data.
    std::vector<std::byte> bytes() const {
        nlohmann::json header = nlohmann::json::object();
        if (!metadata_.empty()) header["__metadata__"] = metadata_;
        std::size_t offset = 0;
        for (const Tensor& t : tensors_) {
            header[t.name] = {{"dtype", std::string(to_string(t.dtype))},
                              {"shape", t.shape},
                              {"data_offsets", {offset, offset + t.data.size()}}};
            offset += t.data.size();
        }
        std::string text = header.dump();
        text.resize((text.size() + 7) / 8 * 8, ' ');
        std::vector<std::byte> out(8 + text.size());
        const std::uint64_t n = text.size();
        std::memcpy(out.data(), &n, 8);
        std::memcpy(out.data() + 8, text.data(), text.size());
        out.reserve(out.size() + offset);
        for (const Tensor& t : tensors_) out.insert(out.end(), t.data.begin(), t.data.end());
        return out;
    }

    // Written atomically (io/atomic_write.hpp).
    void write(const std::filesystem::path& path) const {
        const std::vector<std::byte> b = bytes();
        write_atomically(path, [&](std::FILE* f) { std::fwrite(b.data(), 1, b.size(), f); });
    }

private:
    struct Tensor {
        std::string name;
        std::vector<std::int64_t> shape;
        DType dtype;
        std::vector<std::byte> data;
    };
    std::map<std::string, std::string> metadata_;
    std::vector<Tensor> tensors_;
    std::map<std::string, std::size_t> index_;
};

}  // namespace elastilm::io
