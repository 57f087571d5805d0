// elastilm::Error — the one exception type of the library.
// Every failure says what failed, where (file, tensor, field, offset) and what was expected, so a user
// holding a bad model file can act on the message alone.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace elastilm {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
    Error(std::string_view where, std::string_view what)
        : std::runtime_error(std::string(where) + ": " + std::string(what)) {}
};

// Throws Error(where, what) unless `ok`. Keeps bounds checks one line each in the parsers.
inline void require(bool ok, std::string_view where, std::string_view what) {
    if (!ok) throw Error(where, what);
}

}  // namespace elastilm
