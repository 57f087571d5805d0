// safetensors reader: u64 little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// then the data. Offsets are checked to lie inside the file, to match dtype × shape, and not to overlap.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastilm/io/file_tensor.hpp"
#include "elastilm/io/json.hpp"
#include "elastilm/io/mapped_file.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::io {

using SafeTensor = FileTensor;

class SafetensorsFile {
public:
    static SafetensorsFile open(const std::filesystem::path& path, Residency residency = Residency::mapped) {
        auto file = MappedFile::open(path, residency);
        SafetensorsFile s = parse(file->bytes(), file->path());
        s.keepalive_ = file;
        return s;
    }

    static SafetensorsFile parse(std::span<const std::byte> bytes, const std::string& where) {
        SafetensorsFile s;
        s.where_ = where;
        ByteReader r(bytes, where);
        const auto header_len = r.read<std::uint64_t>("header length");
        require(header_len >= 2 && header_len <= r.remaining() && header_len <= (100u << 20), where,
                "header length " + std::to_string(header_len) + " does not fit the file (" + std::to_string(bytes.size()) + " bytes)");
        const std::string_view text = r.read_bytes(std::size_t(header_len), "header");
        const nlohmann::json header = parse_json(text, where, "header");
        require(header.is_object(), where, "header is not a JSON object");
        const std::byte* data = bytes.data() + r.offset();
        const std::size_t data_size = r.remaining();
        std::vector<std::pair<std::size_t, std::size_t>> ranges;
        for (auto it = header.begin(); it != header.end(); ++it) {
            if (it.key() == "__metadata__") continue;
            const std::string& name = it.key();
            const auto& e = it.value();
            require(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"), where,
                    "tensor " + name + " lacks dtype, shape or data_offsets");
            require(e["dtype"].is_string() && e["shape"].is_array() && e["data_offsets"].is_array() && e["data_offsets"].size() == 2,
                    where, "tensor " + name + " has a malformed entry");
            SafeTensor t;
            t.name = name;
            const std::string dtype = e["dtype"].get<std::string>();
            require(dtype == "F16" || dtype == "F32" || dtype == "BF16", where,
                    "tensor " + name + " has dtype " + dtype + ", which elastilm does not load (F32, F16 and BF16 load)");
            t.dtype = dtype == "F16" ? DType::f16 : dtype == "BF16" ? DType::bf16 : DType::f32;
            std::size_t elements = 1;
            for (const auto& d : e["shape"]) {
                require(d.is_number_unsigned(), where, "tensor " + name + " has a non-integer dimension");
                const auto n = d.get<std::uint64_t>();
                require(n < (1ull << 40), where, "tensor " + name + " has dimension " + std::to_string(n));
                elements = checked_mul(elements, std::size_t(n), where, "element count of " + name);
                t.shape.push_back(std::int64_t(n));
            }
            const auto& off = e["data_offsets"];
            require(off[0].is_number_unsigned() && off[1].is_number_unsigned(), where, "tensor " + name + " has non-integer offsets");
            const auto begin = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
            require(begin <= end && end <= data_size, where,
                    "tensor " + name + " data [" + std::to_string(begin) + ", " + std::to_string(end) + ") lies outside the " +
                        std::to_string(data_size) + "-byte data section");
            t.nbytes = checked_mul(elements, dtype_size(t.dtype), where, "byte size of " + name);
            require(end - begin == t.nbytes, where,
                    "tensor " + name + " spans " + std::to_string(end - begin) + " bytes but " + dtype + " × shape needs " +
                        std::to_string(t.nbytes));
            t.data = data + begin;
            ranges.emplace_back(std::size_t(begin), std::size_t(end));
            s.index_[name] = s.tensors_.size();
            s.tensors_.push_back(std::move(t));
        }
        std::sort(ranges.begin(), ranges.end());
        for (std::size_t i = 1; i < ranges.size(); ++i)
            require(ranges[i].first >= ranges[i - 1].second, where, "tensor data ranges overlap");
        return s;
    }

    const std::string& where() const { return where_; }
    const std::vector<SafeTensor>& tensors() const { return tensors_; }
    const SafeTensor* find(const std::string& name) const {
        auto it = index_.find(name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }
    std::shared_ptr<const void> keepalive() const { return keepalive_; }

private:
    std::string where_;
    std::vector<SafeTensor> tensors_;
    std::map<std::string, std::size_t> index_;
    std::shared_ptr<const void> keepalive_;
};

}  // namespace elastilm::io
