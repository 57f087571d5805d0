// The on-device latency model the SLO orchestrator plans with (ElastiLM §4: the service picks a
// sub-model and a prompt compression ratio so a request meets its TTFT / TPOT objective, so it must
// predict both before running anything).
//
// Per compiled width ratio it holds two fitted curves:
//   TTFT(L) = a + b·L + c·L²  prefill of an L-token prompt + choosing the first token. b is the
//                             per-token matmul work, c the attention over the growing prefix, a the
//                             fixed cost (LM head, hand-offs).
//   TPOT(C) = a + b·C         one decode step with C tokens already cached: the weight reads are fixed,
//                             attention reads C cached K/V rows.
// All coefficients are >= 0 (see service/nonnegative_fit.hpp), so predictions grow with length.
//
// The times depend on the model, the machine, the thread count and how the session batches prefill,
// so they are measured (profile_latency, a few seconds) and cached on disk under a key naming all of
// those (load_or_profile).
//
// Caveat for the planner: decoding at a ratio wider than the prefill's makes the session re-run the
// cached tokens at the new width first (model/session.hpp); that one-off costs about TTFT(C) of the
// new ratio and is not part of TPOT.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <xsimd/xsimd.hpp>

#include "elastilm/generate/sampler.hpp"
#include "elastilm/io/atomic_write.hpp"
#include "elastilm/io/json.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/service/fingerprint.hpp"
#include "elastilm/service/nonnegative_fit.hpp"

namespace elastilm {

// ---- The fitted table --------------------------------------------------------------------------------

// One measurement the fit used: `tokens` is the prompt length (TTFT) or the cached context (TPOT).
struct LatencySample {
    double tokens = 0;
    double ms = 0;
    bool operator==(const LatencySample&) const = default;
};

struct RatioLatency {
    int percent = 100;
    std::array<double, 3> ttft{};  // ms = ttft[0] + ttft[1]·L + ttft[2]·L²
    std::array<double, 2> tpot{};  // ms = tpot[0] + tpot[1]·C
    std::vector<LatencySample> ttft_samples, tpot_samples;  // medians the curves were fitted to
    bool operator==(const RatioLatency&) const = default;
};

// What the times were measured on. A cached table is reused only when every field matches.
struct LatencyKey {
    std::string config;    // compiled config name
    std::string weights;   // fingerprint of the weights (latency_fingerprint)
    int threads = 0;       // ThreadPool size
    std::string cpu;       // /proc/cpuinfo model name (or the ARM implementer/part), "unknown" elsewhere
    std::string simd;      // xsimd::default_arch::name() the engine was compiled for
    std::string profile;   // the ProfileOptions that shape the timings (profile_signature)
    bool operator==(const LatencyKey&) const = default;
};

inline constexpr std::string_view kLatencyFormat = "elastilm-latency-model/1";

class LatencyModel {
public:
    LatencyModel() = default;
    LatencyModel(LatencyKey key, std::vector<RatioLatency> ratios, std::string source = {})
        : key_(std::move(key)), ratios_(std::move(ratios)), source_(std::move(source)) {
        std::sort(ratios_.begin(), ratios_.end(), [](const auto& a, const auto& b) { return a.percent < b.percent; });
        for (std::size_t i = 0; i < ratios_.size(); ++i) {
            const RatioLatency& r = ratios_[i];
            require(ratio_index(r.percent) >= 0, "LatencyModel", std::to_string(r.percent) + "% is not a compiled width ratio");
            require(i == 0 || ratios_[i - 1].percent != r.percent, "LatencyModel",
                    "ratio " + std::to_string(r.percent) + "% appears twice");
            for (double c : r.ttft) require(std::isfinite(c) && c >= 0, "LatencyModel", "TTFT coefficients must be finite and >= 0");
            for (double c : r.tpot) require(std::isfinite(c) && c >= 0, "LatencyModel", "TPOT coefficients must be finite and >= 0");
        }
    }

    // Predicted time to first token for a prompt of `prompt_tokens` at `percent`% width.
    double ttft_ms(int percent, int prompt_tokens) const {
        // Checked before building a message: the orchestrator calls this in its search loop.
        if (prompt_tokens < 0) throw Error("LatencyModel::ttft_ms", "prompt length must be >= 0, got " + std::to_string(prompt_tokens));
        return eval_polynomial(ratio(percent).ttft, prompt_tokens);
    }
    // Predicted time of one decode step at `percent`% width with `context_tokens` already cached.
    double tpot_ms(int percent, int context_tokens) const {
        if (context_tokens < 0) throw Error("LatencyModel::tpot_ms", "context length must be >= 0, got " + std::to_string(context_tokens));
        return eval_polynomial(ratio(percent).tpot, context_tokens);
    }

    // The curves of one ratio, or an Error listing the profiled ones.
    const RatioLatency& ratio(int percent) const {
        for (const RatioLatency& r : ratios_)
            if (r.percent == percent) return r;
        std::string list;
        for (const RatioLatency& r : ratios_) {
            if (!list.empty()) list += ", ";
            list += std::to_string(r.percent);
        }
        throw Error("LatencyModel", std::to_string(percent) + "% has no latency profile (profiled: " +
                                        (list.empty() ? "none" : list) + ")");
    }
    bool has_ratio(int percent) const {
        return std::any_of(ratios_.begin(), ratios_.end(), [&](const auto& r) { return r.percent == percent; });
    }
    const std::vector<RatioLatency>& ratios() const { return ratios_; }
    const LatencyKey& key() const { return key_; }
    const std::string& source() const { return source_; }  // the weights' path, for messages only

    nlohmann::json to_json() const {
        nlohmann::json j;
        j["format"] = kLatencyFormat;
        j["key"] = {{"config", key_.config}, {"weights", key_.weights}, {"threads", key_.threads},
                    {"cpu", key_.cpu},       {"simd", key_.simd},       {"profile", key_.profile}};
        j["source"] = source_;
        j["ratios"] = nlohmann::json::array();
        auto samples = [](const std::vector<LatencySample>& v) {
            nlohmann::json a = nlohmann::json::array();
            for (const LatencySample& s : v) a.push_back({s.tokens, s.ms});
            return a;
        };
        for (const RatioLatency& r : ratios_)
            j["ratios"].push_back({{"percent", r.percent}, {"ttft_ms", r.ttft}, {"tpot_ms", r.tpot},
                                   {"ttft_samples", samples(r.ttft_samples)}, {"tpot_samples", samples(r.tpot_samples)}});
        return j;
    }

    // Throws Error (naming `where` and the field) for anything but a well-formed table.
    static LatencyModel from_json(const nlohmann::json& j, const std::string& where) {
        try {
            require(j.is_object(), where, "is not a JSON object");
            require(j.value("format", std::string()) == kLatencyFormat, where,
                    "format is not " + std::string(kLatencyFormat));
            const auto& k = j.at("key");
            LatencyKey key{k.at("config").get<std::string>(), k.at("weights").get<std::string>(), k.at("threads").get<int>(),
                           k.at("cpu").get<std::string>(),    k.at("simd").get<std::string>(),    k.at("profile").get<std::string>()};
            std::vector<RatioLatency> ratios;
            auto samples = [](const nlohmann::json& a) {
                std::vector<LatencySample> v;
                for (const auto& s : a) v.push_back({s.at(0).get<double>(), s.at(1).get<double>()});
                return v;
            };
            for (const auto& r : j.at("ratios")) {
                RatioLatency x;
                x.percent = r.at("percent").get<int>();
                x.ttft = r.at("ttft_ms").get<std::array<double, 3>>();
                x.tpot = r.at("tpot_ms").get<std::array<double, 2>>();
                x.ttft_samples = samples(r.at("ttft_samples"));
                x.tpot_samples = samples(r.at("tpot_samples"));
                ratios.push_back(std::move(x));
            }
            return LatencyModel(std::move(key), std::move(ratios), j.value("source", std::string()));
        } catch (const nlohmann::json::exception& e) {
            throw Error(where, std::string("malformed latency table: ") + e.what());
        } catch (const Error& e) {
            throw Error(where, e.what());
        }
    }

    // Written atomically (io/atomic_write.hpp): a crash mid-write never leaves a half file behind.
    void save(const std::filesystem::path& file) const {
        if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
        io::write_text_atomically(file, to_json().dump(1) + "\n");
    }

    static LatencyModel load(const std::filesystem::path& file) {
        std::ifstream in(file, std::ios::binary);
        require(bool(in), file.string(), "cannot open");
        std::stringstream text;
        text << in.rdbuf();
        return from_json(io::parse_json(text.str(), file.string()), file.string());
    }

private:
    LatencyKey key_;
    std::vector<RatioLatency> ratios_;
    std::string source_;
};

// ---- Profiling ---------------------------------------------------------------------------------------

struct ProfileOptions {
    // The time/accuracy knob: timings per grid point, the median kept. 1 is quickest; 3 shrugs off
    // one preempted run on a shared machine.
    int repetitions = 3;
    int grid_points = 6;    // prompt lengths, geometric from min_tokens to max_tokens (more: better curvature)
    int min_tokens = 8;
    int max_tokens = 0;     // 0: the config's context
    int decode_steps = 4;   // decode steps timed after each prefill, at contexts L, L+1, …
    int chunk = 256;        // the session's prefill chunk: must be how the service runs prompts
    std::vector<int> ratios{kRatios.begin(), kRatios.end()};
};

// Progress and warnings, one line each (no newline).
using LatencyLog = std::function<void(const std::string&)>;

// The prompt lengths a profile measures: `points` values from lo to hi, evenly spaced in log L
// (relative accuracy matters as much for short prompts as for long), distinct, ends included.
inline std::vector<int> profile_grid(int lo, int hi, int points) {
    require(lo >= 1 && hi >= lo && points >= 1, "profile_grid",
            "needs 1 <= min_tokens <= max_tokens and at least one point (got " + std::to_string(lo) + ", " +
                std::to_string(hi) + ", " + std::to_string(points) + ")");
    std::vector<int> grid;
    for (int i = 0; i < points; ++i) {
        const double t = points == 1 ? 1.0 : double(i) / (points - 1);
        const int L = int(std::lround(lo * std::pow(double(hi) / lo, t)));
        if (grid.empty() || L > grid.back()) grid.push_back(L);
    }
    return grid;
}

// The options that change what is measured, as a stable string for the cache key.
template <ModelConfig Cfg>
std::string profile_signature(const ProfileOptions& o) {
    const int hi = o.max_tokens > 0 ? o.max_tokens : Cfg::context;
    std::string s = "reps=" + std::to_string(o.repetitions) + " grid=";
    for (int L : profile_grid(o.min_tokens, hi, o.grid_points)) s += std::to_string(L) + ",";
    s += " decode=" + std::to_string(o.decode_steps) + " chunk=" + std::to_string(o.chunk) + " ratios=";
    for (int r : o.ratios) s += std::to_string(r) + ",";
    return s;
}

namespace detail {

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A matrix's layout and dtype, and its first and last 4 KB.
inline void hash_matrix(Fnv1a& f, const MatrixView& m) {
    f.value(int(m.dtype)), f.value(int(m.layout)), f.value(m.rows), f.value(m.cols);
    if (m.order != BlockOrder::gguf) f.value(int(m.order));  // interleaved blocks decode at another speed
    f.matrix_ends(m, 4096);
}

}  // namespace detail

// Identifies a model for the latency cache.
//
// Latency depends on structure, not values: the config, each tensor's dtype, layout (elastic files
// store outputs input-major) and block order (interleaved for the decode kernel in a --no-mmap copy),
// and the anchor layers (they run at full width at every ratio) — all hashed explicitly. To tell one checkpoint from another the hash also takes the first and last 4 KB of
// every weight matrix, read from the mapping we already hold. It does not take the path (a moved or
// copied model keeps its profile) nor the file's mtime (a rewrite with identical bytes is the same
// model), and it does not read whole tensors (gigabytes for a 7B model, at every start-up).
template <ModelConfig Cfg>
std::string latency_fingerprint(const Model<Cfg>& model) {
    const ModelWeights& w = model.weights();
    Fnv1a f;
    f.text(Cfg::name);
    f.text(w.format);
    f.value(int(w.rope_pairing));
    f.value(w.is_elastic);
    for (int l : model.anchors()) f.value(l);
    f.text("|");
    detail::hash_matrix(f, w.embedding);
    for (const LayerWeights& layer : w.layers)
        for (const LayerMatrix& m : kLayerMatrices) detail::hash_matrix(f, layer.*m.field);
    detail::hash_matrix(f, w.lm_head);
    f.value(w.lm_head.data == w.embedding.data);  // tied head
    return f.hex();
}

// The CPU as /proc/cpuinfo names it: "model name" on x86, implementer + part on ARM; "unknown" when
// neither is there.
inline std::string cpu_name() {
    std::ifstream in("/proc/cpuinfo");
    std::string line, implementer, part;
    auto value = [](const std::string& l) {
        std::string v = l.substr(l.find(':') + 1);
        const auto b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t\r");
        return b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
    };
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) return value(line);
        if (line.rfind("CPU implementer", 0) == 0 && implementer.empty()) implementer = value(line);
        if (line.rfind("CPU part", 0) == 0 && part.empty()) part = value(line);
    }
    if (!implementer.empty()) return "arm implementer " + implementer + " part " + part;
    return "unknown";
}

template <ModelConfig Cfg>
LatencyKey latency_key(const Model<Cfg>& model, const ThreadPool& pool, const ProfileOptions& o) {
    return {std::string(Cfg::name), latency_fingerprint(model), pool.size(), cpu_name(), xsimd::default_arch::name(),
            profile_signature<Cfg>(o)};
}

// A deterministic prompt of n valid ids (timing does not depend on which ids).
template <ModelConfig Cfg>
std::vector<int> probe_tokens(int n) {
    std::vector<int> ids(std::max(0, n));
    for (int i = 0; i < n; ++i) ids[i] = 1 + int((std::int64_t(i) * 7919) % (Cfg::vocab_size - 1));
    return ids;
}

// One timed request on a fresh session: TTFT = append(prompt, percent) + argmax, as generate() times
// it, then up to `decode_steps` decode steps (fewer when the context fills), each timed alone and
// recorded with the context it ran at.
struct RequestTiming {
    double ttft_ms = 0;
    std::vector<LatencySample> steps;  // tokens = context before the step
};

template <ModelConfig Cfg>
RequestTiming time_request(Session<Cfg>& session, std::span<const int> prompt, int percent, int decode_steps) {
    using clock = std::chrono::steady_clock;
    auto ms = [](clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    RequestTiming r;
    session.reset();
    const auto t0 = clock::now();
    int next = Sampler::argmax(session.append(prompt, percent));
    r.ttft_ms = ms(clock::now() - t0);
    for (int i = 0; i < decode_steps && session.position() < session.context(); ++i) {
        const int context = session.position();
        const auto t1 = clock::now();
        next = Sampler::argmax(session.append(next, percent));
        r.steps.push_back({double(context), ms(clock::now() - t1)});
    }
    return r;
}

// Median TTFT and TPOT of each (ratio, prompt length) point, measured the way the profile does:
// ttft[r][i] is a prompt of lengths[i] tokens at ratios[r]; tpot[r][i] the decode steps after it,
// at their mean context. Used by profile_latency and by anything checking its predictions.
struct LatencyMeasurements {
    std::vector<std::vector<LatencySample>> ttft, tpot;  // [ratio][length]; tpot may be shorter
};

// Every ratio is warmed up first (pages its weight prefix in, settles the pool's threads). Then
// `repetitions` sweeps, each over all ratios and lengths, so a slow spell on a shared machine spreads
// over every point instead of biasing one ratio's curve. Each point is a fresh session.
// on_sweep(done, total) reports progress.
template <ModelConfig Cfg>
LatencyMeasurements measure_latency(Session<Cfg>& session, std::span<const int> ratios, std::span<const int> lengths,
                                    int repetitions, int decode_steps, const std::function<void(int, int)>& on_sweep = {}) {
    const std::vector<int> prompt = probe_tokens<Cfg>(*std::max_element(lengths.begin(), lengths.end()));
    const std::span<const int> tokens(prompt);
    for (int percent : ratios) time_request(session, tokens.first(lengths[lengths.size() / 2]), percent, decode_steps);
    const std::size_t nr = ratios.size(), nl = lengths.size();
    std::vector<std::vector<std::vector<double>>> ttft(nr, std::vector<std::vector<double>>(nl)), steps = ttft;
    std::vector<std::vector<double>> context_sum(nr, std::vector<double>(nl, 0.0));
    for (int rep = 0; rep < repetitions; ++rep) {
        for (std::size_t r = 0; r < nr; ++r)
            for (std::size_t i = 0; i < nl; ++i) {
                const RequestTiming t = time_request(session, tokens.first(lengths[i]), ratios[r], decode_steps);
                ttft[r][i].push_back(t.ttft_ms);
                for (const LatencySample& s : t.steps) steps[r][i].push_back(s.ms), context_sum[r][i] += s.tokens;
            }
        if (on_sweep) on_sweep(rep + 1, repetitions);
    }
    LatencyMeasurements m;
    m.ttft.resize(nr), m.tpot.resize(nr);
    for (std::size_t r = 0; r < nr; ++r)
        for (std::size_t i = 0; i < nl; ++i) {
            m.ttft[r].push_back({double(lengths[i]), std::max(1e-6, detail::median(ttft[r][i]))});
            if (steps[r][i].empty()) continue;  // a prompt filling the context leaves no room to decode
            m.tpot[r].push_back({context_sum[r][i] / double(steps[r][i].size()), std::max(1e-6, detail::median(steps[r][i]))});
        }
    return m;
}

// Measures TTFT and TPOT of every requested ratio over the grid (measure_latency) and fits the curves.
template <ModelConfig Cfg>
LatencyModel profile_latency(const Model<Cfg>& model, ThreadPool& pool, const ProfileOptions& o = {},
                             const LatencyLog& log = {}) {
    using clock = std::chrono::steady_clock;
    const int hi = o.max_tokens > 0 ? o.max_tokens : Cfg::context;
    require(hi <= Cfg::context, "profile_latency",
            "max_tokens " + std::to_string(hi) + " exceeds the context of " + std::string(Cfg::name) + " (" +
                std::to_string(Cfg::context) + ")");
    require(o.repetitions >= 1, "profile_latency", "repetitions must be >= 1");
    require(o.decode_steps >= 1, "profile_latency", "decode_steps must be >= 1");
    require(o.chunk >= 1, "profile_latency", "chunk must be >= 1");
    require(!o.ratios.empty(), "profile_latency", "no ratios to profile");
    for (int r : o.ratios) (void)variant<Cfg>(r);  // an Error naming the compiled ratios
    const std::vector<int> grid = profile_grid(o.min_tokens, hi, o.grid_points);
    require(grid.size() >= 2, "profile_latency", "needs at least two distinct prompt lengths to fit");

    Session<Cfg> session(model, pool, Cfg::context, std::min(o.chunk, hi));  // room to decode after the longest prompt
    const auto started = clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(clock::now() - started).count(); };
    char line[200];
    const LatencyMeasurements m = measure_latency(session, o.ratios, grid, o.repetitions, o.decode_steps, [&](int done, int total) {
        if (!log) return;
        std::snprintf(line, sizeof line, "latency: sweep %d/%d over %zu ratios x %zu lengths (%.1f s)", done, total,
                      o.ratios.size(), grid.size(), seconds());
        log(line);
    });

    std::vector<RatioLatency> out;
    for (std::size_t ri = 0; ri < o.ratios.size(); ++ri) {
        RatioLatency r;
        r.percent = o.ratios[ri];
        r.ttft_samples = m.ttft[ri];
        r.tpot_samples = m.tpot[ri];
        auto fit = [](const std::vector<LatencySample>& samples, int degree) {
            std::vector<double> x, y;
            for (const LatencySample& s : samples) x.push_back(s.tokens), y.push_back(s.ms);
            return fit_nonnegative_polynomial(x, y, degree);
        };
        const auto a = fit(r.ttft_samples, 2), b = fit(r.tpot_samples, 1);
        std::copy(a.begin(), a.end(), r.ttft.begin());
        std::copy(b.begin(), b.end(), r.tpot.begin());
        if (log) {
            std::snprintf(line, sizeof line, "latency: ratio %3d%%  TTFT(%d) %.2f ms  TPOT(%d) %.3f ms", r.percent, hi,
                          eval_polynomial(r.ttft, hi), hi - 1, eval_polynomial(r.tpot, hi - 1));
            log(line);
        }
        out.push_back(std::move(r));
    }
    return LatencyModel(latency_key(model, pool, o), std::move(out), model.weights().source);
}

// ---- The on-disk cache -------------------------------------------------------------------------------

// $ELASTILM_CACHE, else ~/.cache/elastilm, else <tmp>/elastilm-cache.
inline std::filesystem::path default_cache_dir() {
    if (const char* e = std::getenv("ELASTILM_CACHE"); e && *e) return e;
    if (const char* home = std::getenv("HOME"); home && *home) return std::filesystem::path(home) / ".cache" / "elastilm";
    return std::filesystem::temp_directory_path() / "elastilm-cache";
}

// One file per model (config + weights fingerprint) and profile options (a short hash of the
// signature): tools that profile differently — the demo to 256 tokens, service_eval to 512 — keep a
// table each instead of overwriting each other's. The machine and threads are checked inside, so
// moving to another thread count rewrites the file instead of piling up stale ones.
inline std::filesystem::path latency_cache_file(const std::filesystem::path& dir, const LatencyKey& key) {
    Fnv1a options;
    options.text(key.profile);
    return dir / ("latency-" + key.config + "-" + key.weights + "-" + options.hex().substr(0, 8) + ".json");
}

// The cached table for `key` in `file`, or nothing: absent, written for another key, or unreadable
// (corrupt, truncated — then a one-line warning goes to `log`, or to stderr when there is none).
inline std::optional<LatencyModel> load_cached_latency(const std::filesystem::path& file, const LatencyKey& key,
                                                       const LatencyLog& log = {}) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return std::nullopt;
    try {
        LatencyModel m = LatencyModel::load(file);
        if (m.key() == key) return m;
        if (log) log("latency: " + file.string() + " was profiled for another setup (threads " + std::to_string(m.key().threads) +
                     ", cpu \"" + m.key().cpu + "\", simd " + m.key().simd + "); re-profiling");
    } catch (const std::exception& e) {
        const std::string line = "warning: ignoring the latency cache: " + std::string(e.what()).substr(0, 300);
        if (log) log(line);
        else std::fprintf(stderr, "%s\n", line.c_str());
    }
    return std::nullopt;
}

// The latency table for this model, pool and options: from the cache when its key matches, else
// profiled and written back (a failed write is a warning; the profile is still returned).
template <ModelConfig Cfg>
LatencyModel load_or_profile(const Model<Cfg>& model, ThreadPool& pool, const ProfileOptions& o = {}, const LatencyLog& log = {},
                             const std::filesystem::path& cache_dir = default_cache_dir()) {
    const LatencyKey key = latency_key(model, pool, o);
    const std::filesystem::path file = latency_cache_file(cache_dir, key);
    if (auto cached = load_cached_latency(file, key, log)) {
        if (log) log("latency: using " + file.string());
        return *std::move(cached);
    }
    if (log) log("latency: profiling " + std::string(Cfg::name) + " on " + std::to_string(pool.size()) + " threads");
    LatencyModel m = profile_latency(model, pool, o, log);
    try {
        m.save(file);
        if (log) log("latency: wrote " + file.string());
    } catch (const std::exception& e) {
        const std::string line = "warning: latency profile not cached: " + std::string(e.what());
        if (log) log(line);
        else std::fprintf(stderr, "%s\n", line.c_str());
    }
    return m;
}

}  // namespace elastilm
