// A read-only memory mapping of a model file. Weights are used in place: nothing is copied, and the
// OS pages in only what a width ratio actually reads.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "elastilm/error.hpp"

namespace elastilm::io {

class MappedFile {
public:
    static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path) {
        const std::string where = path.string();
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        require(fd >= 0, where, std::string("cannot open: ") + std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            throw Error(where, "not a regular file");
        }
        if (st.st_size == 0) {
            ::close(fd);
            throw Error(where, "file is empty");
        }
        void* p = ::mmap(nullptr, std::size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
        ::close(fd);
        require(p != MAP_FAILED, where, std::string("mmap failed: ") + std::strerror(errno));
        return std::shared_ptr<const MappedFile>(new MappedFile(where, static_cast<const std::byte*>(p), std::size_t(st.st_size)));
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile() { ::munmap(const_cast<std::byte*>(data_), size_); }

    std::span<const std::byte> bytes() const { return {data_, size_}; }
    const std::string& path() const { return path_; }

private:
    MappedFile(std::string path, const std::byte* d, std::size_t n) : path_(std::move(path)), data_(d), size_(n) {}
    std::string path_;
    const std::byte* data_;
    std::size_t size_;
};

// A bounds-checked little-endian cursor over untrusted bytes. Every read either succeeds or throws an
// Error naming the file, the offset and what was being read.
class ByteReader {
public:
    ByteReader(std::span<const std::byte> bytes, std::string where) : bytes_(bytes), where_(std::move(where)) {}

    std::size_t offset() const { return pos_; }
    std::size_t remaining() const { return bytes_.size() - pos_; }
    const std::string& where() const { return where_; }

    template <class T>
    T read(std::string_view what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string_view read_bytes(std::size_t n, std::string_view what) {
        need(n, what);
        std::string_view s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
        pos_ += n;
        return s;
    }
    void need(std::size_t n, std::string_view what) const {
        if (n > remaining())
            throw Error(where_, "truncated at offset " + std::to_string(pos_) + ": " + std::string(what) + " needs " +
                                    std::to_string(n) + " bytes, " + std::to_string(remaining()) + " remain");
    }
    void seek(std::size_t off, std::string_view what) {
        require(off <= bytes_.size(), where_, std::string(what) + " offset " + std::to_string(off) + " is past the end (" +
                                                  std::to_string(bytes_.size()) + " bytes)");
        pos_ = off;
    }

private:
    std::span<const std::byte> bytes_;
    std::string where_;
    std::size_t pos_ = 0;
};

// a·b, or an Error if it overflows (sizes computed from untrusted shapes).
inline std::size_t checked_mul(std::size_t a, std::size_t b, const std::string& where, std::string_view what) {
    std::size_t r;
    require(!__builtin_mul_overflow(a, b, &r), where, std::string(what) + " overflows");
    return r;
}

}  // namespace elastilm::io
