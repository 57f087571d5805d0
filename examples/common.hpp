// Shared by the example programs: llama.cpp-style flag parsing and model/tokenizer discovery.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <string>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/error.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"

namespace elastilm::cli {

// Flags as "-x value", "--name value" or "--name=value"; bare "--flag" is "1". Positional args kept.
class Args {
public:
    Args(int argc, char** argv, std::vector<std::string> boolean_flags = {}) : program_(argv[0]) {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            if (a.size() > 1 && a[0] == '-' && !(a.size() > 1 && std::isdigit(static_cast<unsigned char>(a[1])))) {
                const auto eq = a.find('=');
                if (eq != std::string::npos) { values_[a.substr(0, eq)] = a.substr(eq + 1); continue; }
                const bool is_bool = std::find(boolean_flags.begin(), boolean_flags.end(), a) != boolean_flags.end();
                if (is_bool || i + 1 >= argc) values_[a] = "1";
                else values_[a] = argv[++i];
            } else {
                positional_.push_back(a);
            }
        }
    }
    bool has(const std::string& k) const { return values_.count(k) > 0; }
    std::string get(const std::string& k, const std::string& alt, const std::string& def) const {
        if (auto it = values_.find(k); it != values_.end()) return it->second;
        if (auto it = values_.find(alt); it != values_.end()) return it->second;
        return def;
    }
    int get_int(const std::string& k, const std::string& alt, int def) const {
        const std::string v = get(k, alt, "");
        if (v.empty()) return def;
        char* end = nullptr;
        const long x = std::strtol(v.c_str(), &end, 10);
        require(end && *end == '\0', program_, "flag " + k + " wants an integer, got '" + v + "'");
        return int(x);
    }
    double get_double(const std::string& k, const std::string& alt, double def) const {
        const std::string v = get(k, alt, "");
        if (v.empty()) return def;
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        require(end && *end == '\0', program_, "flag " + k + " wants a number, got '" + v + "'");
        return x;
    }
    const std::vector<std::string>& positional() const { return positional_; }

private:
    std::string program_;
    std::map<std::string, std::string> values_;
    std::vector<std::string> positional_;
};

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

// The tokenizer a tool uses for `model`: --tokenizer, else tokenizer.model beside it or in ../shared.
// Returns its path too, for messages. Refuses when none is found.
struct FoundTokenizer {
    std::filesystem::path path;
    Tokenizer tokenizer;
};
inline FoundTokenizer load_tokenizer(const std::string& model, const Args& args) {
    auto path = find_tokenizer(model, args.get("--tokenizer", "--tokenizer", ""));
    require(!path.empty(), model, "no tokenizer.model found; pass --tokenizer");
    return {path, Tokenizer::from_model_file(path)};
}

// "--ratios 20,50,100" (or another flag): each must be a compiled width ratio.
inline std::vector<int> ratio_list(const Args& args, std::vector<int> def, const std::string& flag = "--ratios") {
    if (!args.has(flag)) return def;
    std::vector<int> v;
    std::stringstream ss(args.get(flag, flag, ""));
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
template <class Run>
int run_main(int argc, char** argv, std::vector<std::string> boolean_flags, Run&& run) {
    try {
        return run(Args(argc, argv, std::move(boolean_flags)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

}  // namespace elastilm::cli
