// latency_model: how well the fitted latency model (service/latency_model.hpp) predicts requests it
// was not fitted to. Profiles a model, then takes fresh measurements at prompt lengths and contexts
// between the profile's grid points and prints, per width ratio and overall, the median and maximum
// absolute relative error |predicted − measured| / measured of TTFT and TPOT. Google Benchmark times
// what the orchestrator pays per decision (a prediction) and per start-up (loading the cached table).
//
//   elastilm_bench_latency_model [-m MODEL] [-t 2] [-r 5] [--profile-reps 3] [--grid 6] [--points]
//   elastilm_bench_latency_model --smoke     (in-memory stories260K shape, tiny work, for CI)
//
// Default model: ../shared/models/tiny-gqa-15M when present, else synthetic fp16 weights of its shape.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include <unistd.h>

#include "cli/tool.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/synthetic.hpp"
#include "elastilm/service/latency_model.hpp"

namespace {

using namespace elastilm;

struct BenchOptions {
    ProfileOptions profile;
    int threads = 2;
    int reps = 5;          // fresh measurements per evaluation point, median kept
    bool points = false;   // also print every evaluation point
};

// Prompt lengths between consecutive grid points (geometric midpoints), never on the grid itself.
std::vector<int> off_grid(const std::vector<int>& grid) {
    std::vector<int> out;
    for (std::size_t i = 0; i + 1 < grid.size(); ++i) {
        const int m = int(std::lround(std::sqrt(double(grid[i]) * grid[i + 1])));
        if (m > grid[i] && m < grid[i + 1]) out.push_back(m);
    }
    return out;
}

struct ErrorStats {
    std::vector<double> ttft, tpot;  // absolute relative errors
};

std::string percent_text(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f%%", 100 * v);
    return b;
}

template <ModelConfig Cfg>
int run(ModelWeights weights, const BenchOptions& o) {
    Model<Cfg> model(std::move(weights));
    ThreadPool pool(o.threads);
    const int hi = o.profile.max_tokens > 0 ? o.profile.max_tokens : Cfg::context;
    const std::vector<int> grid = profile_grid(o.profile.min_tokens, hi, o.profile.grid_points);

    const auto t0 = std::chrono::steady_clock::now();
    const LatencyModel lm = profile_latency(model, pool, o.profile, [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); });
    const double profile_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // What the orchestrator pays: one prediction, and loading the cached table at start-up.
    benchmark::RegisterBenchmark(("predict/" + std::string(Cfg::name)).c_str(), [&](benchmark::State& state) {
        int i = 0;
        for (auto _ : state) {
            const int percent = lm.ratios()[i % lm.ratios().size()].percent;
            benchmark::DoNotOptimize(lm.ttft_ms(percent, 17 + i % 200) + lm.tpot_ms(percent, 31 + i % 200));
            ++i;
        }
    });
    const std::filesystem::path file = std::filesystem::temp_directory_path() / ("elastilm-bench-latency-" + std::to_string(::getpid()) + ".json");
    lm.save(file);
    benchmark::RegisterBenchmark(("cache_load/" + std::string(Cfg::name)).c_str(), [&](benchmark::State& state) {
        for (auto _ : state) benchmark::DoNotOptimize(LatencyModel::load(file).ratios().data());
    })->Unit(benchmark::kMicrosecond);
    benchmark::RunSpecifiedBenchmarks();
    std::filesystem::remove(file);

    // Fresh measurements off the grid, taken the way the profile takes its own.
    const std::vector<int> lengths = off_grid(grid);
    Session<Cfg> session(model, pool, Cfg::context, std::min(o.profile.chunk, hi));
    const LatencyMeasurements fresh = measure_latency(session, o.profile.ratios, lengths, o.reps, o.profile.decode_steps);
    std::vector<ErrorStats> per_ratio(o.profile.ratios.size());
    ErrorStats all;
    if (o.points) std::printf("\n| ratio | L | TTFT pred ms | TTFT meas ms | C | TPOT pred ms | TPOT meas ms |\n|---|---|---|---|---|---|---|\n");
    for (std::size_t ri = 0; ri < o.profile.ratios.size(); ++ri) {
        const int percent = o.profile.ratios[ri];
        for (std::size_t i = 0; i < lengths.size(); ++i) {
            const LatencySample& t = fresh.ttft[ri][i];
            const LatencySample& d = fresh.tpot[ri][i];
            const double pred_ttft = lm.ttft_ms(percent, int(t.tokens));
            const double pred_tpot = lm.tpot_ms(percent, int(std::lround(d.tokens)));
            per_ratio[ri].ttft.push_back(std::fabs(pred_ttft - t.ms) / t.ms);
            per_ratio[ri].tpot.push_back(std::fabs(pred_tpot - d.ms) / d.ms);
            if (o.points)
                std::printf("| %d%% | %d | %.3f | %.3f | %.1f | %.4f | %.4f |\n", percent, lengths[i], pred_ttft, t.ms, d.tokens,
                            pred_tpot, d.ms);
        }
        all.ttft.insert(all.ttft.end(), per_ratio[ri].ttft.begin(), per_ratio[ri].ttft.end());
        all.tpot.insert(all.tpot.end(), per_ratio[ri].tpot.begin(), per_ratio[ri].tpot.end());
    }

    auto list = [](const std::vector<int>& v) {
        std::string s;
        for (int x : v) {
            if (!s.empty()) s += ',';
            s += std::to_string(x);
        }
        return s;
    };
    const LatencyKey& key = lm.key();
    std::printf("\nlatency model: %s (%s), %d threads, %s, cpu \"%s\"\n", key.config.c_str(), lm.source().c_str(), key.threads,
                key.simd.c_str(), key.cpu.c_str());
    std::printf("profile: %.2f s for %zu ratios; grid L = %s, %d repetitions, %d decode steps per point\n", profile_s,
                o.profile.ratios.size(), list(grid).c_str(), o.profile.repetitions, o.profile.decode_steps);
    std::printf("fresh points, median of %d: TTFT at L = %s; TPOT after each, at C = L … L+%d\n\n", o.reps, list(lengths).c_str(),
                o.profile.decode_steps - 1);
    std::printf("| ratio | TTFT median err | TTFT max err | TPOT median err | TPOT max err | TTFT(%d) ms | TPOT(%d) ms |\n", hi, hi - 1);
    std::printf("|---|---|---|---|---|---|---|\n");
    auto row = [&](const std::string& name, const ErrorStats& e, const std::string& ttft, const std::string& tpot) {
        std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", name.c_str(), percent_text(detail::median(e.ttft)).c_str(),
                    percent_text(*std::max_element(e.ttft.begin(), e.ttft.end())).c_str(),
                    percent_text(detail::median(e.tpot)).c_str(),
                    percent_text(*std::max_element(e.tpot.begin(), e.tpot.end())).c_str(), ttft.c_str(), tpot.c_str());
    };
    for (std::size_t ri = 0; ri < o.profile.ratios.size(); ++ri) {
        const int percent = o.profile.ratios[ri];
        char a[32], b[32];
        std::snprintf(a, sizeof a, "%.2f", lm.ttft_ms(percent, hi));
        std::snprintf(b, sizeof b, "%.3f", lm.tpot_ms(percent, hi - 1));
        row(std::to_string(percent) + "%", per_ratio[ri], a, b);
    }
    row("all", all, "", "");
    return 0;
}

int run_with(const cli::Args& args) {
    BenchOptions o;
    o.threads = args.threads();
    o.reps = args.get_int("-r", "--reps", 5, "fresh measurements per point (median)");
    o.points = args.has("--points", "", "print every fresh point");
    o.profile.repetitions = args.get_int("--profile-reps", "", o.profile.repetitions, "profile repetitions");
    o.profile.grid_points = args.get_int("--grid", "", o.profile.grid_points, "profile grid points");
    const bool smoke = args.has("--smoke", "", "in-memory stories260K shape, tiny work (CI)");
    std::string path = args.get("-m", "--model", "", "model (default: ../shared/models/tiny-gqa-15M, else synthetic)");
    args.finish("elastilm_bench_latency_model [-m MODEL] [flags] [--benchmark_* flags]\n"
                "How well the fitted latency model predicts fresh requests; Google Benchmark times a prediction.");
    require(o.reps >= 1, "latency_model", "-r must be >= 1");
    if (smoke) {
        o.profile.repetitions = 1, o.profile.grid_points = 3, o.profile.max_tokens = 48, o.profile.decode_steps = 2;
        o.profile.ratios = {20, 100};
        o.reps = 1, o.threads = 1;
        return run<Stories260K>(synthetic_weights<Stories260K>(), o);
    }
    if (path.empty()) {
        const auto shared = cli::shared_dir() / "models" / "tiny-gqa-15M";
        if (!std::filesystem::exists(shared)) {
            std::fprintf(stderr, "%s is absent: using synthetic fp16 weights of its shape\n", shared.c_str());
            return run<TinyGqa15M>(synthetic_weights<TinyGqa15M>(), o);
        }
        path = shared.string();
    }
    ModelWeights w = load_weights(path);
    return with_config(w.hparams, w.source, [&]<ModelConfig Cfg>() -> int {
        check_against<Cfg>(w);
        return run<Cfg>(std::move(w), o);
    });
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);  // takes its --benchmark_* flags out of argv
    return elastilm::cli::run_main(argc, argv, {"--smoke", "--points"}, run_with);
}
