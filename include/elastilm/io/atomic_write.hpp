// Writing a file so that it is either the old one or the complete new one, never a torn mix.
//
// Models, adapters, checkpoints and caches are written through a temporary file beside the target,
// flushed to disk, then renamed over it (rename is atomic on POSIX). A crash, a kill or a full disk in the
// middle leaves the previous file intact; `recover --resume` relies on this for its checkpoints.
#pragma once

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <unistd.h>

#include "elastilm/error.hpp"

namespace elastilm::io {

// Calls write(FILE*) on a temporary file and moves it to `path` once everything is on disk.
template <class Write>
void write_atomically(const std::filesystem::path& path, Write&& write) {
    // Unique per process and call, so two writers of one file never share a temporary.
    static std::atomic<unsigned> calls{0};
    std::filesystem::path tmp = path;
    tmp += ".partial" + std::to_string(::getpid()) + "-" + std::to_string(calls.fetch_add(1));
    auto discard = [&] {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
    };
    {
        std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
        require(f != nullptr, path.string(), "cannot open " + tmp.filename().string() + " for writing");
        try {
            write(f.get());
        } catch (...) {
            f.reset();
            discard();
            throw;
        }
        const bool ok = std::fflush(f.get()) == 0 && !std::ferror(f.get()) && ::fsync(::fileno(f.get())) == 0;
        if (!ok) {
            f.reset();
            discard();
            throw Error(path.string(), "write failed (disk full?); the previous file, if any, is unchanged");
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        discard();
        throw Error(path.string(), "cannot replace the file: " + ec.message());
    }
}

// The whole of `text` as the file's contents.
inline void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
    write_atomically(path, [&](std::FILE* f) { std::fwrite(text.data(), 1, text.size(), f); });
}

}  // namespace elastilm::io
