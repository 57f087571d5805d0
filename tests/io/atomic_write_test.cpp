// Files are replaced whole or not at all: a writer that fails part-way leaves the previous file as it
// was and no temporary behind (checkpoints, adapters, models and caches are all written this way).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "elastilm/io/atomic_write.hpp"
#include "elastilm/io/gguf.hpp"
#include "elastilm/io/gguf_writer.hpp"

namespace elastilm {
namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A fresh empty directory per test.
fs::path scratch_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("elastilm_atomic_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::size_t entries(const fs::path& dir) { return std::size_t(std::distance(fs::directory_iterator(dir), fs::directory_iterator())); }

TEST(AtomicWrite, ReplacesTheFileWhole) {
    const fs::path dir = scratch_dir("replace"), file = dir / "f.txt";
    io::write_text_atomically(file, "first");
    EXPECT_EQ(read_all(file), "first");
    io::write_text_atomically(file, "second, longer");
    EXPECT_EQ(read_all(file), "second, longer");
    EXPECT_EQ(entries(dir), 1u);
    fs::remove_all(dir);
}

TEST(AtomicWrite, AFailedWriteLeavesThePreviousFileAndNoTemporary) {
    const fs::path dir = scratch_dir("fail"), file = dir / "f.gguf";
    io::write_text_atomically(file, "previous");
    EXPECT_THROW(io::write_atomically(file, [](std::FILE* f) {
                     std::fputs("half of a new fi", f);
                     throw Error("test", "the writer failed part-way");
                 }),
                 Error);
    EXPECT_EQ(read_all(file), "previous");
    EXPECT_EQ(entries(dir), 1u);

    // The same through the GGUF writer: a tensor filler that writes the wrong size is refused.
    io::GgufWriter g;
    g.set_string("general.architecture", "llama");
    g.add_tensor("t", {4}, DType::f32, [](std::FILE* f) { std::fputs("ab", f); });
    EXPECT_THROW(g.write(file), Error);
    EXPECT_EQ(read_all(file), "previous");
    EXPECT_EQ(entries(dir), 1u);
    fs::remove_all(dir);
}

TEST(AtomicWrite, UnwritableDirectoryIsAClearError) {
    const fs::path file = fs::path("/nonexistent-elastilm-dir") / "f.txt";
    try {
        io::write_text_atomically(file, "x");
        ADD_FAILURE() << "wrote into a missing directory";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot open"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace elastilm
