// A model file's bytes in memory, read-only. By default a memory mapping: weights are used in place,
// nothing is copied, and the OS pages in only what a width ratio actually reads. Or (Residency::
// huge_page_copy, the tools' --no-mmap) a copy in anonymous memory advised for transparent huge pages.
// Why the copy: decode streams every weight once per token, and a file mapping is made of the page
// cache's pages — 4 KB each unless the cache happens to hold the file in large folios (which depends on
// how it was first read, and MADV_HUGEPAGE / MADV_COLLAPSE on the read-only file mapping do not change:
// Linux 6.18, ext4, collapse fails with EINVAL). On 4 KB pages a 2-core decode streams 5–20 % less
// than on 2 MB ones (bench/quant_kernels.cpp's decode_pass; TinyLlama Q8_0 / Q4_0 decoded ~20 % faster
// from the copy than from the mapping, README issue 13). The price: the load reads the whole file and
// the system holds it twice while the page cache it came through is not reclaimed.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>

#include "elastilm/error.hpp"

namespace elastilm::io {

// How a file's bytes are held: mapped (shared with the page cache, zero-copy) or copied into anonymous
// memory advised for 2 MB transparent huge pages (falling back to 4 KB pages where the kernel has none).
enum class Residency { mapped, huge_page_copy };

// MemAvailable of /proc/meminfo in bytes, or -1 where there is none (not Linux, no /proc).
inline long long available_memory_bytes() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    long long kb = 0;
    while (in >> key >> kb) {
        if (key == "MemAvailable:") return kb * 1024;
        in.ignore(256, '\n');
    }
    return -1;
}

class MappedFile {
public:
    static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path, Residency residency = Residency::mapped) {
        const std::string where = path.string();
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        require(fd >= 0, where, std::string("cannot open: ") + std::strerror(errno));
        struct Closer {
            int fd;
            ~Closer() { ::close(fd); }
        } closer{fd};
        struct stat st {};
        require(::fstat(fd, &st) == 0 && S_ISREG(st.st_mode), where, "not a regular file");
        require(st.st_size > 0, where, "file is empty");
        const std::size_t size = std::size_t(st.st_size);
        if (residency == Residency::huge_page_copy) return copy_to_anonymous(fd, where, size);
        void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        require(p != MAP_FAILED, where, std::string("mmap failed: ") + std::strerror(errno));
        return std::shared_ptr<const MappedFile>(new MappedFile(where, static_cast<const std::byte*>(p), size, size, Residency::mapped, false));
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile() { ::munmap(const_cast<std::byte*>(data_), mapped_); }

    std::span<const std::byte> bytes() const { return {data_, size_}; }
    const std::string& path() const { return path_; }
    Residency residency() const { return residency_; }
    // A huge_page_copy whose memory the kernel accepted MADV_HUGEPAGE for (false: 4 KB pages, or mapped).
    bool huge_pages_advised() const { return huge_; }

    // Lets the loader rearrange the bytes of a huge_page_copy in place (the block order of quantized
    // weights, simd/quant_interleaved.hpp): the whole copy is writable while fn(its first byte) runs, then
    // read-only again. Why the whole copy at once: mprotect on a part of a 2 MB huge page splits it into
    // 4 KB pages, and decode streamed less and less evenly from those (README, "Quantized weights",
    // session 33). A copy is this process's own memory; a mapping is the page cache's, and is never
    // written: false, fn not called.
    template <class Fn>
    bool rewrite(Fn&& fn) const {
        if (residency_ != Residency::huge_page_copy) return false;
        auto* data = const_cast<std::byte*>(data_);
        require(::mprotect(data, mapped_, PROT_READ | PROT_WRITE) == 0, path_, std::string("mprotect: ") + std::strerror(errno));
        fn(data);
        ::mprotect(data, mapped_, PROT_READ);
        return true;
    }

private:
    static constexpr std::size_t kHugePage = std::size_t(1) << 21;

    // A 2 MB-aligned anonymous region (so that every whole 2 MB of it can be one huge page), advised for
    // huge pages before the first touch, filled with pread and then made read-only.
    static std::shared_ptr<const MappedFile> copy_to_anonymous(int fd, const std::string& where, std::size_t size) {
        const std::size_t length = (size + kHugePage - 1) / kHugePage * kHugePage;
        const auto mb = [](std::size_t n) { return std::to_string((n + (1 << 20) - 1) >> 20) + " MB"; };
        // Overcommit would let the mmap succeed and the copy be killed halfway: refuse up front instead.
        const long long available = available_memory_bytes();
        require(available < 0 || std::size_t(available) >= length, where,
                "a copy of the weights in memory (--no-mmap) needs " + mb(length) + ", the system has " +
                    mb(std::size_t(std::max(0LL, available))) + " available; load it mapped instead");
        void* raw = ::mmap(nullptr, length + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        require(raw != MAP_FAILED, where,
                "cannot allocate " + mb(length) + " for a copy of the weights in memory (--no-mmap): " + std::strerror(errno) +
                    "; load it mapped instead");
        // Trim the region to a 2 MB-aligned start.
        auto* base = static_cast<std::byte*>(raw);
        const std::size_t head = (kHugePage - reinterpret_cast<std::uintptr_t>(base) % kHugePage) % kHugePage;
        if (head) ::munmap(base, head);
        if (kHugePage - head) ::munmap(base + head + length, kHugePage - head);
        std::byte* data = base + head;
        bool huge = false;
#if defined(MADV_HUGEPAGE)
        huge = ::madvise(data, length, MADV_HUGEPAGE) == 0;  // EINVAL where THP is not built in: 4 KB pages then
#endif
        std::shared_ptr<const MappedFile> file(new MappedFile(where, data, size, length, Residency::huge_page_copy, huge));
        for (std::size_t done = 0; done < size;) {
            const ssize_t n = ::pread(fd, data + done, std::min<std::size_t>(size - done, std::size_t(64) << 20), off_t(done));
            if (n < 0 && errno == EINTR) continue;
            require(n > 0, where,
                    "reading the weights into memory stopped at byte " + std::to_string(done) + " of " + std::to_string(size) + ": " +
                        (n < 0 ? std::strerror(errno) : "the file became shorter"));
            done += std::size_t(n);
        }
        ::mprotect(data, length, PROT_READ);  // weights are read-only, as in the mapping
        return file;
    }

    MappedFile(std::string path, const std::byte* d, std::size_t n, std::size_t mapped, Residency r, bool huge)
        : path_(std::move(path)), data_(d), size_(n), mapped_(mapped), residency_(r), huge_(huge) {}
    std::string path_;
    const std::byte* data_;
    std::size_t size_, mapped_;  // the file's bytes; the mapping's length (2 MB multiple for a copy)
    Residency residency_;
    bool huge_;
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
