// Command-line flags for the tools, llama.cpp style: "-x value", "--name value", "--name=value"; a
// boolean flag alone is "1". A flag is declared where the tool first reads it (name, alias, default and
// a help line in one call); `finish()` then answers --help from those declarations and refuses any flag
// the tool never asked for, listing the ones it knows, so a mistyped option cannot silently run the
// default. Tools read every flag before `finish()`, which they call before any real work.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "elastilm/error.hpp"

namespace elastilm::cli {

// Thrown by finish() after printing --help: the tool exits with `status` and does nothing else.
struct Exit {
    int status = 0;
};

class Args {
public:
    // `boolean_flags` take no value: "--smoke PATH" keeps PATH as a positional argument.
    Args(int argc, char** argv, std::vector<std::string> boolean_flags = {})
        : program_(argc > 0 ? program_name(argv[0]) : "tool"), booleans_(std::move(boolean_flags)) {
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if (!looks_like_flag(a)) {
                positional_.push_back(a);
                continue;
            }
            if (const auto eq = a.find('='); eq != std::string::npos) {
                values_[a.substr(0, eq)] = a.substr(eq + 1);
                continue;
            }
            const bool is_bool = std::find(booleans_.begin(), booleans_.end(), a) != booleans_.end();
            if (is_bool) values_[a] = "1";
            else if (i + 1 < argc && !looks_like_flag(argv[i + 1])) values_[a] = argv[++i];
            else values_[a] = std::nullopt;  // no value after it: an error if the tool reads a value
        }
    }

    const std::string& program() const { return program_; }

    // True when the flag (or its alias) was given. Declares it.
    bool has(const std::string& k, const std::string& alt = "", const std::string& help = "") const {
        declare(k, alt, "", help);
        return given(k, alt) != nullptr;
    }
    std::string get(const std::string& k, const std::string& alt, const std::string& def, const std::string& help = "") const {
        declare(k, alt, def.empty() ? "" : "'" + def + "'", help);
        const auto* v = given(k, alt);
        if (!v) return def;
        require(v->second.has_value(), program_, "flag " + v->first + " wants a value");
        return *v->second;
    }
    int get_int(const std::string& k, const std::string& alt, int def, const std::string& help = "") const {
        declare(k, alt, std::to_string(def), help);
        const auto* v = given(k, alt);
        if (!v) return def;
        return parse_int(*v);
    }
    double get_double(const std::string& k, const std::string& alt, double def, const std::string& help = "") const {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", def);
        declare(k, alt, buf, help);
        const auto* v = given(k, alt);
        if (!v) return def;
        require(v->second.has_value() && !v->second->empty(), program_, "flag " + v->first + " wants a number");
        char* end = nullptr;
        const double x = std::strtod(v->second->c_str(), &end);
        require(end && *end == '\0', program_, "flag " + v->first + " wants a number, got '" + *v->second + "'");
        return x;
    }
    // A number with no default: empty unless given.
    std::optional<double> get_double_if(const std::string& k, const std::string& alt, const std::string& help = "") const {
        declare(k, alt, "", help);
        if (!given(k, alt)) return std::nullopt;
        return get_double(k, alt, 0);
    }
    // -t/--threads: worker threads, at least 1 (a pool of 0 threads would run nothing).
    int threads(int def = 2) const {
        const int t = get_int("-t", "--threads", def, "worker threads");
        require(t >= 1 && t <= kMaxThreads, program_,
                "flag -t/--threads must be in 1.." + std::to_string(kMaxThreads) + ", got " + std::to_string(t));
        return t;
    }
    // Arguments that are not flags. Reading them declares that the tool takes them.
    const std::vector<std::string>& positional() const {
        takes_positional_ = true;
        return positional_;
    }

    // Prints the generated help to `out`: `synopsis`, then one line per declared flag.
    void print_help(std::FILE* out) const {
        std::fprintf(out, "usage: %s\nflags:\n", synopsis_.empty() ? program_.c_str() : synopsis_.c_str());
        for (const Flag& f : flags_) {
            std::string line = "  " + f.names();
            line.resize(std::max<std::size_t>(line.size() + 2, 26), ' ');
            line += f.help;
            if (!f.def.empty()) line += (f.help.empty() ? "(default " : " (default ") + f.def + ")";
            std::fprintf(out, "%s\n", line.c_str());
        }
        std::fprintf(out, "  -h/--help               this help\n");
    }

    // Call once every flag has been read. --help prints the help and exits 0 (throws Exit); a flag the
    // tool never read, or a stray positional argument, is an error naming the flags it knows.
    void finish(const std::string& synopsis = "") const {
        synopsis_ = synopsis;
        finished_ = true;
        if (values_.count("-h") || values_.count("--help")) {
            print_help(stdout);
            throw Exit{0};
        }
        for (const auto& [name, value] : values_)
            require(find(name) != nullptr, program_, "unknown flag " + name + "; " + program_ + " knows " + known() +
                                                         " (--help explains them)");
        require(takes_positional_ || positional_.empty(), program_,
                "unexpected argument '" + (positional_.empty() ? std::string() : positional_[0]) +
                    "' (flags take the form -x VALUE or --name VALUE; --help lists them)");
    }

    // Every flag declared so far, as "-m/--model, -n/--n-predict, …".
    std::string known() const {
        std::string s;
        for (const Flag& f : flags_) s += (s.empty() ? "" : ", ") + f.names();
        return s;
    }

    static constexpr int kMaxThreads = 1024;

private:
    struct Flag {
        std::string name, alt, def, help;
        std::string names() const { return alt.empty() || alt == name ? name : name + "/" + alt; }
    };
    using Value = std::optional<std::string>;

    static std::string program_name(const std::string& argv0) {
        const auto slash = argv0.find_last_of('/');
        return slash == std::string::npos ? argv0 : argv0.substr(slash + 1);
    }
    // "-5" and "-0.5" are values, not flags.
    static bool looks_like_flag(const std::string& a) {
        return a.size() > 1 && a[0] == '-' && !std::isdigit(static_cast<unsigned char>(a[1])) && a[1] != '.';
    }

    const Flag* find(const std::string& name) const {
        for (const Flag& f : flags_)
            if (f.name == name || f.alt == name) return &f;
        return nullptr;
    }
    // The first read of a flag declares it; a later read under the alias adds what it did not know.
    void declare(const std::string& k, const std::string& alt, const std::string& def, const std::string& help) const {
        const std::string a = alt == k ? "" : alt;
        Flag* f = const_cast<Flag*>(find(k));
        if (!f && !a.empty()) f = const_cast<Flag*>(find(a));
        if (f) {
            if (f->alt.empty() && !a.empty() && f->name != a) f->alt = f->name == k ? a : k;
            if (f->def.empty()) f->def = def;
            if (f->help.empty()) f->help = help;
            return;
        }
        // Reading a flag after finish() could never see it given: finish() refused it as unknown.
        if (finished_) throw std::logic_error(program_ + ": flag " + k + " is read after Args::finish(); read it before");
        flags_.push_back({k, a, def, help});
    }
    const std::pair<const std::string, Value>* given(const std::string& k, const std::string& alt) const {
        if (auto it = values_.find(k); it != values_.end()) return &*it;
        if (!alt.empty())
            if (auto it = values_.find(alt); it != values_.end()) return &*it;
        return nullptr;
    }
    int parse_int(const std::pair<const std::string, Value>& v) const {
        require(v.second.has_value() && !v.second->empty(), program_, "flag " + v.first + " wants an integer");
        char* end = nullptr;
        errno = 0;
        const long x = std::strtol(v.second->c_str(), &end, 10);
        require(end && *end == '\0' && errno == 0 && x >= -2147483647L && x <= 2147483647L, program_,
                "flag " + v.first + " wants an integer, got '" + *v.second + "'");
        return int(x);
    }

    std::string program_;
    std::vector<std::string> booleans_;
    std::map<std::string, Value> values_;
    std::vector<std::string> positional_;
    mutable std::vector<Flag> flags_;
    mutable std::string synopsis_;
    mutable bool finished_ = false, takes_positional_ = false;
};

}  // namespace elastilm::cli
