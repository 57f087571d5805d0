// What every tool shares besides its flags: reading text, finding ../shared and a tokenizer, ratio lists,
// and a main() that turns errors into "error: …" and exit status 1.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "cli/args.hpp"

namespace elastilm::cli {

inline std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    require(bool(in), path, "cannot open");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

inline std::filesystem::path shared_dir() {
    if (const char* env = std::getenv("ELASTILM_SHARED"); env && *env) return env;
    return ELASTILM_SHARED_DIR;
}

// The tokenizer for a model: tokenizer.model beside it, else ../shared/models/tokenizer.model.
inline std::filesystem::path find_tokenizer(const std::filesystem::path& model, const std::string& explicit_path) {
    if (!explicit_path.empty()) return explicit_path;
    const auto dir = std::filesystem::is_directory(model) ? model : model.parent_path();
    for (const auto& p : {dir / "tokenizer.model", dir.parent_path() / "tokenizer.model", shared_dir() / "models" / "tokenizer.model"})
        if (std::filesystem::exists(p)) return p;
    return {};
}

// --tokenizer: read by every tool that tokenizes, before Args::finish().
inline std::string tokenizer_flag(const Args& args) {
    return args.get("--tokenizer", "", "", "tokenizer.model (default: beside the model, else ../shared/models)");
}

// Prints the help to stderr and returns the exit status for a missing required flag.
inline int usage_error(const Args& args, const std::string& missing) {
    std::fprintf(stderr, "%s: %s is required\n", args.program().c_str(), missing.c_str());
    args.print_help(stderr);
    return 2;
}

// "--ratios 20,50,100" (or another flag): each must be a compiled width ratio.
inline std::vector<int> ratio_list(const Args& args, std::vector<int> def, const std::string& flag = "--ratios",
                                   const std::string& help = "width ratios, comma-separated (20,30,...,100)") {
    std::string list;
    for (int r : def) list += (list.empty() ? "" : ",") + std::to_string(r);
    const std::string given = args.get(flag, "", list, help);
    if (given == list) return def;
    std::vector<int> v;
    std::stringstream ss(given);
    for (std::string item; std::getline(ss, item, ',');) {
        char* end = nullptr;
        const long r = std::strtol(item.c_str(), &end, 10);
        require(!item.empty() && end && *end == '\0' && ratio_index(int(r)) >= 0, flag,
                "'" + item + "' is not a compiled ratio (20, 30, …, 100)");
        v.push_back(int(r));
    }
    require(!v.empty(), flag, "is empty");
    return v;
}

// Refuses a tokenizer whose vocabulary is not the model's, naming both sizes.
inline void require_same_vocabulary(int tokenizer_size, int model_size, const std::string& tokenizer_path) {
    require(tokenizer_size == model_size, tokenizer_path,
            "has " + std::to_string(tokenizer_size) + " tokens but the model's vocabulary is " + std::to_string(model_size));
}

// A tool's main: runs `run(args)`, turning any error into "error: …" on stderr and exit status 1.
// `boolean_flags` take no value (see Args).
template <class Run>
int run_main(int argc, char** argv, std::vector<std::string> boolean_flags, Run&& run) {
    try {
        return run(Args(argc, argv, std::move(boolean_flags)));
    } catch (const Exit& e) {
        return e.status;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

// For mains that keep their own shape (Google Benchmark programs): `read(args)` reads the flags and calls
// finish(). Returns the exit status when the program should stop now (--help: 0, a bad flag: 1).
template <class Read>
std::optional<int> read_flags(int argc, char** argv, std::vector<std::string> boolean_flags, Read&& read) {
    try {
        read(Args(argc, argv, std::move(boolean_flags)));
        return std::nullopt;
    } catch (const Exit& e) {
        return e.status;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

}  // namespace elastilm::cli
