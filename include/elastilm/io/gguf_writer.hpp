// GGUF v3 writer: metadata of any type and F32/F16/BF16/Q8_0/Q4_0 tensors, data aligned to `general.alignment`.
// Tensor bytes are streamed to disk from the caller's buffers at write() time, so a 2 GB model is never
// held twice. Files it writes with the llama.* and tokenizer.ggml.* keys load in llama.cpp.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/io/atomic_write.hpp"
#include "elastilm/io/gguf.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::io {

class GgufWriter {
public:
    explicit GgufWriter(std::size_t alignment = 32) : alignment_(alignment) {
        if (alignment != 32) set_u32("general.alignment", std::uint32_t(alignment));
    }

    void set_u32(const std::string& k, std::uint32_t v) { scalar(k, GgufType::u32, &v, 4); }
    void set_i32(const std::string& k, std::int32_t v) { scalar(k, GgufType::i32, &v, 4); }
    void set_u64(const std::string& k, std::uint64_t v) { scalar(k, GgufType::u64, &v, 8); }
    void set_f32(const std::string& k, float v) { scalar(k, GgufType::f32, &v, 4); }
    void set_bool(const std::string& k, bool v) { const std::uint8_t b = v; scalar(k, GgufType::boolean, &b, 1); }
    void set_string(const std::string& k, const std::string& v) {
        key(k, GgufType::string);
        str(v);
        ++n_kv_;
    }
    void set_i32_array(const std::string& k, const std::vector<std::int32_t>& v) { array(k, GgufType::i32, v.data(), v.size(), 4); }
    void set_f32_array(const std::string& k, const std::vector<float>& v) { array(k, GgufType::f32, v.data(), v.size(), 4); }
    void set_string_array(const std::string& k, const std::vector<std::string>& v) {
        key(k, GgufType::array);
        put(GgufType::string);
        put(std::uint64_t(v.size()));
        for (const auto& s : v) str(s);
        ++n_kv_;
    }

    // A tensor of `shape` (outermost first, e.g. [rows, cols]) whose bytes `fill` writes to the file
    // when write() runs; `fill` must write exactly the bytes of product(shape) elements of `dtype`
    // (for a block format, the innermost dimension is a multiple of 32).
    using Filler = std::function<void(std::FILE*)>;
    void add_tensor(const std::string& name, std::vector<std::int64_t> shape, DType dtype, Filler fill) {
        const std::size_t n = tensor_bytes(name, shape, dtype);
        tensors_.push_back({name, std::move(shape), dtype, n, std::move(fill)});
    }
    // A tensor whose bytes are at `data` (kept alive by the caller until write()).
    void add_tensor(const std::string& name, std::vector<std::int64_t> shape, DType dtype, const void* data) {
        const std::size_t n = tensor_bytes(name, shape, dtype);
        add_tensor(name, std::move(shape), dtype, [data, n](std::FILE* f) { std::fwrite(data, 1, n, f); });
    }

    // Written atomically (io/atomic_write.hpp): the file at `path` is the old one until this one is whole.
    void write(const std::filesystem::path& path) const {
        write_atomically(path, [&](std::FILE* f) { write_to(f, path); });
    }

private:
    void write_to(std::FILE* f, const std::filesystem::path& path) const {
        std::vector<std::byte> head;
        auto raw = [&](const void* p, std::size_t n) {
            head.insert(head.end(), static_cast<const std::byte*>(p), static_cast<const std::byte*>(p) + n);
        };
        raw("GGUF", 4);
        const std::uint32_t version = 3;
        const std::uint64_t n_tensors = tensors_.size();
        raw(&version, 4);
        raw(&n_tensors, 8);
        raw(&n_kv_, 8);
        raw(kv_.data(), kv_.size());
        std::uint64_t offset = 0;
        std::vector<std::uint64_t> offsets;
        for (const Tensor& t : tensors_) {
            const std::uint64_t len = t.name.size();
            raw(&len, 8);
            raw(t.name.data(), len);
            const std::uint32_t n_dims = std::uint32_t(t.shape.size());
            raw(&n_dims, 4);
            for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) {  // ne[0] is the innermost
                const std::uint64_t ne = std::uint64_t(*it);
                raw(&ne, 8);
            }
            const std::uint32_t type = ggml_type(t.dtype);
            raw(&type, 4);
            raw(&offset, 8);
            offsets.push_back(offset);
            offset += pad(t.nbytes);
        }
        head.resize(pad(head.size()), std::byte{0});
        std::fwrite(head.data(), 1, head.size(), f);
        const std::vector<char> zeros(alignment_, 0);
        for (const Tensor& t : tensors_) {
            const long before = std::ftell(f);
            t.fill(f);
            require(std::size_t(std::ftell(f) - before) == t.nbytes, path.string(),
                    "tensor " + t.name + ": filler wrote the wrong number of bytes");
            std::fwrite(zeros.data(), 1, pad(t.nbytes) - t.nbytes, f);
        }
    }

    struct Tensor {
        std::string name;
        std::vector<std::int64_t> shape;
        DType dtype;
        std::size_t nbytes;
        Filler fill;
    };

    static std::size_t tensor_bytes(const std::string& name, const std::vector<std::int64_t>& shape, DType dtype) {
        std::size_t n = 1;
        for (auto d : shape) n *= std::size_t(d);
        require(!shape.empty() && std::size_t(shape.back()) % std::size_t(block_elements(dtype)) == 0, name,
                std::string(to_string(dtype)) + " rows must be whole 32-element blocks");
        return bytes_for(dtype, n);
    }
    std::size_t pad(std::size_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }
    template <class T>
    void put(const T& v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        kv_.insert(kv_.end(), p, p + sizeof(T));
    }
    void str(const std::string& s) {
        put(std::uint64_t(s.size()));
        kv_.insert(kv_.end(), reinterpret_cast<const std::byte*>(s.data()), reinterpret_cast<const std::byte*>(s.data()) + s.size());
    }
    void key(const std::string& k, GgufType t) {
        str(k);
        put(t);
    }
    void scalar(const std::string& k, GgufType t, const void* v, std::size_t n) {
        key(k, t);
        kv_.insert(kv_.end(), static_cast<const std::byte*>(v), static_cast<const std::byte*>(v) + n);
        ++n_kv_;
    }
    void array(const std::string& k, GgufType t, const void* v, std::size_t count, std::size_t size) {
        key(k, GgufType::array);
        put(t);
        put(std::uint64_t(count));
        kv_.insert(kv_.end(), static_cast<const std::byte*>(v), static_cast<const std::byte*>(v) + count * size);
        ++n_kv_;
    }

    std::size_t alignment_;
    std::vector<std::byte> kv_;
    std::uint64_t n_kv_ = 0;
    std::vector<Tensor> tensors_;
};

}  // namespace elastilm::io
