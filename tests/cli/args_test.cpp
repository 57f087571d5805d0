// The tools' flag parsing (examples/cli/args.hpp): declared where read, unknown flags refused with the
// list of known ones, typed values checked, --help generated from the declarations.
#include "cli/args.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace elastilm::cli {
namespace {

// Args over a command line given as strings (argv[0] is the program).
struct CommandLine {
    std::vector<std::string> words;
    std::vector<char*> argv;
    explicit CommandLine(std::vector<std::string> w) : words(std::move(w)) {
        for (auto& s : words) argv.push_back(s.data());
    }
    Args args(std::vector<std::string> booleans = {}) { return Args(int(argv.size()), argv.data(), std::move(booleans)); }
};

std::string error_of(const auto& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Args, ReadsEveryFormOfFlag) {
    CommandLine cl({"/usr/bin/tool", "-m", "model.gguf", "--n-predict=7", "--temp", "0.5", "--flag", "-s", "-3", "pos"});
    const Args a = cl.args({"--flag"});
    EXPECT_EQ(a.program(), "tool");
    EXPECT_EQ(a.get("-m", "--model", ""), "model.gguf");
    EXPECT_EQ(a.get_int("-n", "--n-predict", 64), 7);
    EXPECT_DOUBLE_EQ(a.get_double("--temp", "--temperature", 0), 0.5);
    EXPECT_TRUE(a.has("--flag"));
    EXPECT_EQ(a.get_int("-s", "--seed", 42), -3);  // a negative number is a value, not a flag
    EXPECT_EQ(a.get_int("-r", "--ratio", 100), 100);
    EXPECT_EQ(a.positional(), std::vector<std::string>{"pos"});
    EXPECT_NO_THROW(a.finish());
}

TEST(Args, UnknownFlagIsAnErrorListingTheKnownOnes) {
    CommandLine cl({"generate", "-m", "x.gguf", "--nonsense", "7"});
    const Args a = cl.args();
    a.get("-m", "--model", "");
    a.get_int("-n", "--n-predict", 64);
    a.has("--llama-compatible");
    const std::string e = error_of([&] { a.finish(); });
    EXPECT_NE(e.find("unknown flag --nonsense"), std::string::npos) << e;
    for (const char* known : {"-m/--model", "-n/--n-predict", "--llama-compatible"})
        EXPECT_NE(e.find(known), std::string::npos) << known << " missing from: " << e;
}

TEST(Args, AFlagGivenUnderItsAliasIsKnown) {
    CommandLine cl({"tool", "--model", "x"});
    const Args a = cl.args();
    EXPECT_EQ(a.get("-m", "--model", ""), "x");
    EXPECT_NO_THROW(a.finish());
}

TEST(Args, StrayPositionalArgumentIsAnError) {
    CommandLine cl({"tool", "-m", "x", "extra"});
    const Args a = cl.args();
    a.get("-m", "--model", "");
    EXPECT_NE(error_of([&] { a.finish(); }).find("unexpected argument 'extra'"), std::string::npos);
}

TEST(Args, ThreadsMustBePositive) {
    for (const char* t : {"0", "-1", "-8"}) {
        CommandLine cl({"generate", "-t", t});
        const Args a = cl.args();
        const std::string e = error_of([&] { a.threads(); });
        EXPECT_NE(e.find("-t/--threads must be in 1.."), std::string::npos) << t << ": " << e;
    }
    CommandLine ok({"generate", "--threads=3"});
    EXPECT_EQ(ok.args().threads(), 3);
    CommandLine def({"generate"});
    EXPECT_EQ(def.args().threads(), 2);
}

TEST(Args, TypedParseErrorsNameTheFlagAndValue) {
    CommandLine cl({"tool", "-n", "12x", "--temp", "warm", "--big", "99999999999", "-m"});
    const Args a = cl.args();
    EXPECT_NE(error_of([&] { a.get_int("-n", "--n-predict", 1); }).find("flag -n wants an integer, got '12x'"), std::string::npos);
    EXPECT_NE(error_of([&] { a.get_double("--temp", "", 0); }).find("flag --temp wants a number, got 'warm'"), std::string::npos);
    EXPECT_NE(error_of([&] { a.get_int("--big", "", 1); }).find("wants an integer"), std::string::npos);
    EXPECT_NE(error_of([&] { a.get("-m", "--model", ""); }).find("flag -m wants a value"), std::string::npos);
}

TEST(Args, AValueFlagDoesNotSwallowTheNextFlag) {
    CommandLine cl({"tool", "--adapters", "-t", "3"});
    const Args a = cl.args();
    EXPECT_EQ(a.threads(), 3);
    EXPECT_NE(error_of([&] { a.get("--adapters", "", ""); }).find("wants a value"), std::string::npos);
}

TEST(Args, HelpListsDeclaredFlagsAndExitsZero) {
    CommandLine cl({"tool", "--help"});
    const Args a = cl.args();
    a.get_int("-n", "--n-predict", 64, "tokens to generate");
    testing::internal::CaptureStdout();
    int status = -1;
    try {
        a.finish("tool -m MODEL");
    } catch (const Exit& e) {
        status = e.status;
    }
    const std::string out = testing::internal::GetCapturedStdout();
    EXPECT_EQ(status, 0);
    EXPECT_NE(out.find("usage: tool -m MODEL"), std::string::npos) << out;
    EXPECT_NE(out.find("-n/--n-predict"), std::string::npos) << out;
    EXPECT_NE(out.find("tokens to generate (default 64)"), std::string::npos) << out;
}

TEST(Args, ReadingAnUndeclaredFlagAfterFinishIsAProgrammingError) {
    CommandLine cl({"tool"});
    const Args a = cl.args();
    a.finish();
    EXPECT_THROW(a.get("--late", "", ""), std::logic_error);
}

}  // namespace
}  // namespace elastilm::cli
