// GGUF reader (versions 2 and 3): metadata, tensor infos, tensor data in place.
// Format: "GGUF", u32 version, u64 tensor count, u64 metadata count, metadata key/values, tensor infos
// (name, n_dims, ne[n_dims] innermost first, ggml type, offset), padding to `general.alignment`, data.
// Every count, length and offset is checked against the bytes that remain: a hostile file gets an Error.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "elastilm/io/file_tensor.hpp"
#include "elastilm/io/mapped_file.hpp"
#include "elastilm/simd/quant_blocks.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm::io {

enum class GgufType : std::uint32_t {
    u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12
};

inline std::string to_string(GgufType t) {
    static const char* names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                  "bool", "string", "array", "uint64", "int64", "float64"};
    const auto i = std::uint32_t(t);
    return i < 13 ? names[i] : "type " + std::to_string(i);
}

// One metadata value. Scalars are widened to the one field that holds their kind; arrays keep numbers
// as doubles (exact for every 32-bit type) and strings as strings.
struct GgufValue {
    GgufType type = GgufType::u8;
    GgufType element_type = GgufType::u8;  // arrays only
    std::int64_t i = 0;
    std::uint64_t u = 0;
    double f = 0;
    bool b = false;
    std::string s;
    std::vector<double> numbers;
    std::vector<std::string> strings;

    bool is_integer() const {
        switch (type) {
            case GgufType::u8: case GgufType::i8: case GgufType::u16: case GgufType::i16: case GgufType::u32:
            case GgufType::i32: case GgufType::u64: case GgufType::i64: return true;
            default: return false;
        }
    }
};

// ggml tensor type ids: the names of all of them (for error messages), and the ones that load.
inline std::string ggml_type_name(std::uint32_t t) {
    static const std::map<std::uint32_t, std::string> names = {
        {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {6, "Q5_0"}, {7, "Q5_1"}, {8, "Q8_0"}, {9, "Q8_1"},
        {10, "Q2_K"}, {11, "Q3_K"}, {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"}, {15, "Q8_K"}, {16, "IQ2_XXS"},
        {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"}, {21, "IQ3_S"}, {22, "IQ2_S"}, {23, "IQ4_XS"},
        {24, "I8"}, {25, "I16"}, {26, "I32"}, {27, "I64"}, {28, "F64"}, {29, "IQ1_M"}, {30, "BF16"}};
    auto it = names.find(t);
    return it == names.end() ? "type " + std::to_string(t) : it->second;
}

inline constexpr DType kGgufLoadable[] = {DType::f32, DType::f16, DType::bf16, DType::q8_0, DType::q4_0};

constexpr std::uint32_t ggml_type(DType t) {
    switch (t) {
        case DType::f32: return 0;
        case DType::f16: return 1;
        case DType::q4_0: return 2;
        case DType::q8_0: return 8;
        case DType::bf16: return 30;
    }
    return 0;
}

inline bool dtype_from_ggml(std::uint32_t type, DType& out) {
    for (DType t : kGgufLoadable)
        if (ggml_type(t) == type) {
            out = t;
            return true;
        }
    return false;
}

// A block-format tensor's scales must be finite: one NaN or infinite scale poisons every product its rows
// enter. Checked by the model loader when it takes a tensor, not by the parser, so that reading a file's
// metadata (a tokenizer from a GGUF) does not page in its weights.
inline void check_block_scales(const std::string& name, DType dtype, const std::byte* data, std::size_t nbytes, const std::string& where) {
    if (!is_quantized(dtype)) return;
    const long bad = first_bad_scale(dtype, {data, nbytes});
    require(bad < 0, where, "tensor " + name + " (" + std::string(to_string(dtype)) + "): block " + std::to_string(bad) + " has a NaN or infinite scale");
}

// shape is outermost first: [rows, cols] for a matrix (GGUF's ne reversed).
struct GgufTensor : FileTensor {
    std::uint64_t offset = 0;  // from the start of the data section
};

class GgufFile {
public:
    static GgufFile open(const std::filesystem::path& path, Residency residency = Residency::mapped) {
        auto file = MappedFile::open(path, residency);
        GgufFile g = parse(file->bytes(), file->path());
        g.keepalive_ = file;
        g.file_ = file.get();
        return g;
    }
    // Parses bytes the caller keeps alive (fuzzing, tests).
    static GgufFile parse(std::span<const std::byte> bytes, const std::string& where) {
        GgufFile g;
        g.where_ = where;
        ByteReader r(bytes, where);
        const auto magic = r.read_bytes(4, "magic");
        require(magic == "GGUF", where, "not a GGUF file (magic is not \"GGUF\")");
        g.version_ = r.read<std::uint32_t>("version");
        require(g.version_ == 2 || g.version_ == 3, where,
                "GGUF version " + std::to_string(g.version_) + " is not supported (2 and 3 are)");
        const auto n_tensors = r.read<std::uint64_t>("tensor count");
        const auto n_kv = r.read<std::uint64_t>("metadata count");
        // Each key/value takes at least 12 bytes, each tensor info at least 24: reject absurd counts early.
        require(n_kv <= r.remaining() / 12, where, "metadata count " + std::to_string(n_kv) + " exceeds the file");
        require(n_tensors <= r.remaining() / 24, where, "tensor count " + std::to_string(n_tensors) + " exceeds the file");
        for (std::uint64_t k = 0; k < n_kv; ++k) {
            std::string key = read_string(r, "metadata key");
            const auto type = GgufType(r.read<std::uint32_t>("metadata type of " + key));
            GgufValue v = read_value(r, type, key, 0);
            require(g.metadata_.emplace(key, std::move(v)).second, where, "duplicate metadata key " + key);
        }
        std::size_t alignment = 32;
        if (auto it = g.metadata_.find("general.alignment"); it != g.metadata_.end()) {
            require(it->second.is_integer() && it->second.u > 0 && it->second.u <= 65536 && (it->second.u & (it->second.u - 1)) == 0,
                    where, "general.alignment must be a power of two up to 65536");
            alignment = std::size_t(it->second.u);
        }
        for (std::uint64_t t = 0; t < n_tensors; ++t) {
            GgufTensor info;
            info.name = read_string(r, "tensor name");
            const auto n_dims = r.read<std::uint32_t>("n_dims of " + info.name);
            require(n_dims >= 1 && n_dims <= 4, where, "tensor " + info.name + " has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
            std::size_t elements = 1, row_length = 0;
            for (std::uint32_t d = 0; d < n_dims; ++d) {
                const auto ne = r.read<std::uint64_t>("dimension of " + info.name);
                if (d == 0) row_length = std::size_t(ne);
                require(ne > 0 && ne < (1ull << 40), where, "tensor " + info.name + " has dimension " + std::to_string(ne));
                elements = checked_mul(elements, std::size_t(ne), where, "element count of " + info.name);
                info.shape.insert(info.shape.begin(), std::int64_t(ne));
            }
            const auto type = r.read<std::uint32_t>("type of " + info.name);
            if (!dtype_from_ggml(type, info.dtype)) {
                std::string loadable;
                for (DType t : kGgufLoadable) loadable += (loadable.empty() ? "" : ", ") + std::string(to_string(t));
                throw Error(where, "tensor " + info.name + " has type " + ggml_type_name(type) + ", which elastilm does not load (" +
                                       loadable + " load; re-quantize to one of those)");
            }
            const std::size_t block = std::size_t(block_elements(info.dtype));
            require(row_length % block == 0, where,
                    "tensor " + info.name + " is " + std::string(to_string(info.dtype)) + " with rows of " + std::to_string(row_length) +
                        " elements, not a whole number of " + std::to_string(block) + "-element blocks");
            info.nbytes = checked_mul(elements / block, block_bytes(info.dtype), where, "byte size of " + info.name);
            info.offset = r.read<std::uint64_t>("offset of " + info.name);
            require(info.offset % alignment == 0, where, "tensor " + info.name + " offset is not aligned to " + std::to_string(alignment));
            g.tensors_.push_back(std::move(info));
        }
        const std::size_t data_start = (r.offset() + alignment - 1) / alignment * alignment;
        require(data_start <= bytes.size(), where, "data section starts past the end of the file");
        const std::size_t data_size = bytes.size() - data_start;
        for (GgufTensor& t : g.tensors_) {
            require(t.offset <= data_size && t.nbytes <= data_size - t.offset, where,
                    "tensor " + t.name + " (" + std::to_string(t.nbytes) + " bytes at data offset " + std::to_string(t.offset) +
                        ") runs past the end of the file");
            t.data = bytes.data() + data_start + t.offset;
        }
        for (std::size_t i = 0; i < g.tensors_.size(); ++i) g.index_[g.tensors_[i].name] = i;
        require(g.index_.size() == g.tensors_.size(), where, "duplicate tensor names");
        return g;
    }

    const std::string& where() const { return where_; }
    std::uint32_t version() const { return version_; }
    const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
    const std::vector<GgufTensor>& tensors() const { return tensors_; }
    std::shared_ptr<const void> keepalive() const { return keepalive_; }
    // The file opened (its bytes held by keepalive()), or null for parse()d bytes the caller owns.
    const MappedFile* file() const { return file_; }

    bool has(const std::string& key) const { return metadata_.count(key) > 0; }
    const GgufValue& value(const std::string& key) const {
        auto it = metadata_.find(key);
        require(it != metadata_.end(), where_, "metadata key " + key + " is missing");
        return it->second;
    }
    std::uint64_t get_uint(const std::string& key) const {
        const GgufValue& v = value(key);
        require(v.is_integer() && v.i >= 0, where_, key + " should be a non-negative integer, it is " + to_string(v.type));
        return v.u;
    }
    double get_float(const std::string& key) const {
        const GgufValue& v = value(key);
        require(v.type == GgufType::f32 || v.type == GgufType::f64, where_, key + " should be a float, it is " + to_string(v.type));
        return v.f;
    }
    bool get_bool(const std::string& key) const {
        const GgufValue& v = value(key);
        require(v.type == GgufType::boolean, where_, key + " should be a bool, it is " + to_string(v.type));
        return v.b;
    }
    const std::string& get_string(const std::string& key) const {
        const GgufValue& v = value(key);
        require(v.type == GgufType::string, where_, key + " should be a string, it is " + to_string(v.type));
        return v.s;
    }
    const std::vector<double>& get_numbers(const std::string& key) const {
        const GgufValue& v = value(key);
        require(v.type == GgufType::array && v.element_type != GgufType::string && v.element_type != GgufType::array, where_,
                key + " should be an array of numbers");
        return v.numbers;
    }
    const std::vector<std::string>& get_strings(const std::string& key) const {
        const GgufValue& v = value(key);
        require(v.type == GgufType::array && v.element_type == GgufType::string, where_, key + " should be an array of strings");
        return v.strings;
    }
    const GgufTensor* find(const std::string& name) const {
        auto it = index_.find(name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }

private:
    static std::string read_string(ByteReader& r, const std::string& what) {
        const auto n = r.read<std::uint64_t>(what + " length");
        r.need(n, what);
        return std::string(r.read_bytes(std::size_t(n), what));
    }

    static GgufValue read_value(ByteReader& r, GgufType type, const std::string& key, int depth) {
        GgufValue v;
        v.type = type;
        auto integer = [&](std::int64_t x) { v.i = x; v.u = std::uint64_t(x); v.f = double(x); };
        switch (type) {
            case GgufType::u8: integer(r.read<std::uint8_t>(key)); break;
            case GgufType::i8: integer(r.read<std::int8_t>(key)); break;
            case GgufType::u16: integer(r.read<std::uint16_t>(key)); break;
            case GgufType::i16: integer(r.read<std::int16_t>(key)); break;
            case GgufType::u32: integer(r.read<std::uint32_t>(key)); break;
            case GgufType::i32: integer(r.read<std::int32_t>(key)); break;
            case GgufType::u64: v.u = r.read<std::uint64_t>(key); v.i = std::int64_t(v.u); v.f = double(v.u); break;
            case GgufType::i64: integer(r.read<std::int64_t>(key)); break;
            case GgufType::f32: v.f = r.read<float>(key); break;
            case GgufType::f64: v.f = r.read<double>(key); break;
            case GgufType::boolean: {
                const auto b = r.read<std::uint8_t>(key);
                require(b <= 1, r.where(), key + " is a bool with value " + std::to_string(b));
                v.b = b == 1;
                break;
            }
            case GgufType::string: v.s = read_string(r, key); break;
            case GgufType::array: {
                require(depth == 0, r.where(), key + ": nested arrays are not supported");
                v.element_type = GgufType(r.read<std::uint32_t>(key + " element type"));
                const auto n = r.read<std::uint64_t>(key + " length");
                require(v.element_type != GgufType::array, r.where(), key + ": arrays of arrays are not supported");
                const std::size_t min_size = element_min_size(v.element_type, r.where(), key);
                require(n <= r.remaining() / min_size, r.where(),
                        key + " claims " + std::to_string(n) + " elements, more than the file holds");
                if (v.element_type == GgufType::string) {
                    v.strings.reserve(std::size_t(n));
                    for (std::uint64_t k = 0; k < n; ++k) v.strings.push_back(read_string(r, key));
                } else {
                    v.numbers.reserve(std::size_t(n));
                    for (std::uint64_t k = 0; k < n; ++k) {
                        const GgufValue e = read_value(r, v.element_type, key, depth + 1);
                        v.numbers.push_back(e.type == GgufType::boolean ? double(e.b) : e.f);
                    }
                }
                break;
            }
            default: throw Error(r.where(), key + " has unknown metadata type " + std::to_string(std::uint32_t(type)));
        }
        return v;
    }

    static std::size_t element_min_size(GgufType t, const std::string& where, const std::string& key) {
        switch (t) {
            case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
            case GgufType::u16: case GgufType::i16: return 2;
            case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
            case GgufType::u64: case GgufType::i64: case GgufType::f64: case GgufType::string: return 8;
            default: throw Error(where, key + " has unknown array element type " + std::to_string(std::uint32_t(t)));
        }
    }

    std::string where_;
    std::uint32_t version_ = 0;
    std::map<std::string, GgufValue> metadata_;
    std::vector<GgufTensor> tensors_;
    std::map<std::string, std::size_t> index_;
    std::shared_ptr<const void> keepalive_;
    const MappedFile* file_ = nullptr;
};

}  // namespace elastilm::io
