// model_speed: llama-bench's two numbers for one of our model files — prefill (pp) and decode (tg)
// tok/s — for every requested width ratio. Used by versus-llamacpp.sh; also handy on its own.
//
//   elastilm_bench_model_speed -m MODEL.gguf [-p 512] [-n 128] [-t 2] [-r 1] [--ratios 100,50,20] [--gemm reduced|fp32|bf16|fp16]
//       [--no-mmap [--block-order default|gguf]]   (gguf: a quantized copy's blocks left in GGUF's order
//       where the build's decode kernel would read them interleaved, simd/quant_interleaved.hpp)
//   elastilm_bench_model_speed -m MODEL.gguf --ttft 128,512,1024 [--ratios …] [--attention tiled|per-query|both]
//       (TTFT per prompt length, attention share; `both` times the tiled prefill attention and the per-query
//       one before it alternately in one run)
//   elastilm_bench_model_speed -m MODEL.gguf --trace [-n 128] [-r 3] [--ratios …] [--no-mmap]
//       (decode with the quantized products' rows split statically, dynamically and by stealing, rotating:
//       tok/s, where each decode's time went (bench/pool_trace.hpp), and tok/s with the split switched
//       every token)
//   elastilm_bench_model_speed -m MODEL.gguf --share [-n 128] [-r 1] [--no-mmap] [--prefetch HINT[:BYTES],…|both] [--split stealing|committed|both]
//       (full-width decode GB/s against the streaming read's, each token next to a read of its bytes, and
//       the share of decode in attention; with several --prefetch configurations, e.g.
//       non-temporal:8192,non-temporal, or --split both, they take turns)
//   elastilm_bench_model_speed --smoke   (in-memory stories260K shape, for CI)
//   elastilm_bench_model_speed --write-synthetic tinyllama|openllama3b|tinygqa OUT.gguf [--type f16|q8_0|q4_0]
//   elastilm_bench_model_speed --bandwidth [-t 2]   (the streaming read GB/s alone)
//   elastilm_bench_model_speed --read-loops [-t 2] [-r 9]   (roofline.hpp's read loops, side by side)
//   elastilm_bench_model_speed -m MODEL.gguf --decode-bytes   (bytes of weights a full-width decode step reads)
//   elastilm_bench_model_speed --roofline [-t 2] [--gemm …]   (CSV: read GB/s, fp32 FMA GFLOP/s, reduced-GEMM
//                                                              instruction peak GFLOP/s, that GEMM's name)
//
// Output: one CSV line per (ratio, repetition): ratio,pp_tok_s,tg_tok_s
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <map>
#include <numeric>
#include <tuple>
#include <sstream>
#include <fstream>
#include <string>

#include "cli/tool.hpp"
#include "elastilm/formats/gguf_export.hpp"
#include "elastilm/formats/load.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/model/synthetic.hpp"
#include "elastilm/ops/attention_tiled.hpp"
#include "elastilm/simd/decode_prefetch.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"
#include "pool_trace.hpp"
#include "roofline.hpp"

namespace {

using namespace elastilm;
using clock_type = std::chrono::steady_clock;

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// An empty hand-off to the pool and back, in ns: the median of 15 back to back, so that the workers are
// awake, as they are between a decode's products.
double handoff_ns(ThreadPool& pool) {
    std::vector<double> ns;
    for (int i = 0; i < 15; ++i) {
        const auto t0 = clock_type::now();
        pool.parallel_for(pool.size(), [](int, int) {});
        ns.push_back(std::chrono::duration<double, std::nano>(clock_type::now() - t0).count());
    }
    return median(std::move(ns));
}

// `type` q8_0 / q4_0: the same weights quantized (layer matrices in that format, embedding and LM head
// Q8_0; see formats/gguf_export.hpp). Block formats are output-major in every layout.
template <ModelConfig Cfg>
void write_synthetic(const std::string& out, const std::string& tokenizer, bool in_major, DType type) {
    std::fprintf(stderr, "writing synthetic %s %s weights to %s\n", std::string(to_string(type)).c_str(), std::string(Cfg::name).c_str(),
                 out.c_str());
    const ModelWeights w = synthetic_weights<Cfg>({DType::f16, 1, Layout::out_major});
    const Tokenizer tok = Tokenizer::from_model_file(tokenizer);
    io::GgufExportOptions opt{std::string(Cfg::name) + "-synthetic", in_major, type};
    io::set_ratio_slices<Cfg>(opt);
    io::export_gguf(w, &tok.vocabulary(), out, opt);
}

// TTFT: a fresh prompt of each length at each ratio, and the share of it spent in attention, for each
// prefill attention in `paths` (the tiled kernel, the per-query one before it, or both alternating within
// each repetition so that both see the same machine load).
// Output: one CSV line per (repetition, ratio, length, path): ttft,path,ratio,tokens,ms,attention_share;
// then a markdown table of the medians over repetitions.
template <ModelConfig Cfg>
int measure_ttft(ModelWeights weights, const std::vector<int>& lengths, int threads, int reps, const std::vector<int>& ratios,
                 const std::vector<PrefillAttention>& paths) {
    Model<Cfg> model(std::move(weights));
    ThreadPool pool(threads);
    const int longest = *std::max_element(lengths.begin(), lengths.end());
    require(longest <= Cfg::context, "model_speed", "--ttft length exceeds the context");
    std::vector<int> prompt(longest);
    for (int i = 0; i < longest; ++i) prompt[i] = 1 + (i * 7919) % (Cfg::vocab_size - 1);
    Session<Cfg> s(model, pool, Cfg::context, std::min(longest, 512));
    s.append(std::span<const int>(prompt).first(std::min(longest, 32)), 100);
    auto name = [](PrefillAttention p) { return p == PrefillAttention::tiled ? "tiled" : "per-query"; };
    struct Sample { std::vector<double> ms, share; };
    std::map<std::tuple<int, int, int>, Sample> samples;  // (ratio, length, path) → repetitions
    for (int r = 0; r < reps; ++r)
        for (int ratio : ratios)
            for (int len : lengths)
                for (std::size_t k = 0; k < paths.size(); ++k) {
                    // Alternate which path goes first from one repetition to the next.
                    const PrefillAttention path = paths[r % 2 == 0 ? k : paths.size() - 1 - k];
                    set_prefill_attention(path);
                    s.reset();
                    const double att0 = s.attention_seconds();
                    const auto t0 = clock_type::now();
                    s.append(std::span<const int>(prompt).first(len), ratio);
                    const double sec = std::chrono::duration<double>(clock_type::now() - t0).count();
                    const double share = (s.attention_seconds() - att0) / sec;
                    std::printf("ttft,%s,%d,%d,%.1f,%.3f\n", name(path), ratio, len, 1e3 * sec, share);
                    std::fflush(stdout);
                    Sample& x = samples[{ratio, len, int(path)}];
                    x.ms.push_back(1e3 * sec), x.share.push_back(share);
                }
    set_prefill_attention(PrefillAttention::tiled);
    // One column per length; with both paths a cell reads "per-query → tiled".
    std::string head;
    for (std::size_t k = 0; k < paths.size(); ++k) head += std::string(k ? " → " : " ") + name(paths[k]);
    std::printf("\n| ratio |");
    for (int len : lengths) std::printf(" TTFT %d:%s (attention share) |", len, head.c_str());
    std::printf("\n|---|");
    for (std::size_t i = 0; i < lengths.size(); ++i) std::printf("---|");
    std::printf("\n");
    for (int ratio : ratios) {
        std::printf("| %d%% |", ratio);
        for (int len : lengths)
            for (std::size_t k = 0; k < paths.size(); ++k) {
                const Sample& x = samples[{ratio, len, int(paths[k])}];
                std::printf("%s %.0f ms (%.0f %%)%s", k ? " →" : "", median(x.ms), 100 * median(x.share), k + 1 == paths.size() ? " |" : "");
            }
        std::printf("\n");
    }
    std::printf("(medians of %d repetition%s, %d thread%s)\n", reps, reps == 1 ? "" : "s", threads, threads == 1 ? "" : "s");
    return 0;
}

// Bytes of weights one full-width decode step reads, from the file's own tensors: every layer matrix,
// the LM head, one embedding row (norms are negligible). Quantized files keep the embedding table in a
// block format too; counting all of it (the file size) would overstate what a token reads by ~6–11 %.
std::size_t decode_bytes(const ModelWeights& w) {
    std::size_t n = w.lm_head.bytes() + w.embedding.bytes() / std::size_t(std::max(1, w.embedding.rows));
    for (const LayerWeights& l : w.layers)
        for (const LayerMatrix& m : kLayerMatrices) n += (l.*m.field).bytes();
    return n;
}

template <ModelConfig Cfg>
int measure(ModelWeights weights, int pp, int tg, int threads, int reps, const std::vector<int>& ratios) {
    Model<Cfg> model(std::move(weights));
    ThreadPool pool(threads);
    require(pp + tg <= Cfg::context, "model_speed", "-p + -n exceed the context");
    std::vector<int> prompt(pp);
    for (int i = 0; i < pp; ++i) prompt[i] = 1 + (i * 7919) % (Cfg::vocab_size - 1);
    Session<Cfg> s(model, pool, Cfg::context, std::min(pp, 512));
    // Warm-up, as llama-bench does: the first pass pages the mapped weights in.
    s.append(std::span<const int>(prompt).first(std::min(pp, 32)), 100);
    s.reset();
    for (int r = 0; r < reps; ++r)
        for (int ratio : ratios) {
            // llama-bench's pp: a fresh prompt of pp tokens; tg: tg single-token steps from an empty cache.
            s.reset();
            auto t0 = clock_type::now();
            s.append(prompt, ratio);
            const double pp_s = std::chrono::duration<double>(clock_type::now() - t0).count();
            s.reset();
            int token = 1;
            t0 = clock_type::now();
            for (int i = 0; i < tg; ++i) token = 1 + int(s.append(token, ratio)[0] > 0);
            const double tg_s = std::chrono::duration<double>(clock_type::now() - t0).count();
            std::printf("%d,%.3f,%.3f\n", ratio, pp / pp_s, tg / tg_s);
            std::fflush(stdout);
        }
    return 0;
}

// --trace: decode of -n tokens per ratio with the rows of each quantized product split statically,
// dynamically, by stealing as it was until session 31 (committed) and by stealing (ThreadPool::Split),
// rotating -r times, every decode traced
// (pool_trace.hpp): tok/s and where the time went — all threads streaming, one waiting for another,
// outside the products (norms, RoPE, attention, the F16/F32 matvecs if any). Then as many tokens per
// split again, untraced, switching the split every token. Output: one line per (repetition, ratio,
// split); the token-by-token tok/s per split (the figure to go by); the medians of the traced decodes'.
template <ModelConfig Cfg>
int measure_trace(ModelWeights weights, int tg, int threads, int reps, const std::vector<int>& ratios) {
    Model<Cfg> model(std::move(weights));
    ThreadPool pool(threads);
    Session<Cfg> s(model, pool, Cfg::context, 32);
    const int warm[] = {1, 2, 3};
    s.append(std::span<const int>(warm), 100);
    using Split = ThreadPool::Split;
    // The first: what the others are divided by.
    const Split splits[] = {Split::static_shares, Split::dynamic, Split::stealing_committed, Split::stealing};
    constexpr int n_splits = int(std::size(splits));
    const char* const names[] = {"static shares", "dynamic", "stealing (committed)", "stealing"};
    std::map<std::pair<int, int>, std::vector<double>> tok_s;  // (ratio, split index) → repetitions
    for (int r = 0; r < reps; ++r)
        for (int ratio : ratios)
            for (int k = 0; k < n_splits; ++k) {
                const int way = (k + r) % n_splits;  // rotate which goes first
                set_quant_row_split(splits[way]);
                s.reset();
                ThreadPool::Trace trace;
                pool.set_trace(&trace);
                int token = 1;
                const auto t0 = clock_type::now();
                for (int i = 0; i < tg; ++i) token = 1 + int(s.append(token, ratio)[0] > 0);
                const auto t1 = clock_type::now();
                pool.set_trace(nullptr);
                const double rate = tg / std::chrono::duration<double>(t1 - t0).count();
                tok_s[{ratio, way}].push_back(rate);
                bench::print(bench::summarize(trace, t0, t1), "repetition " + std::to_string(r + 1) + ", " + std::to_string(ratio) + "%, " +
                                                                  names[way] + ", " + std::to_string(rate).substr(0, 5) +
                                                                  " tok/s, decode of " + std::to_string(tg) + " tokens");
                std::fflush(stdout);
            }
    // The same splits switched every token, in rotating order: the memory of a shared host changes speed
    // within seconds (README, "Quantized weights"), so whole decodes per split can compare different
    // phases of it, while tokens side by side see the same one.
    std::map<std::pair<int, int>, double> token_seconds;  // (ratio, split index) → summed time of its tokens
    for (int ratio : ratios) {
        s.reset();
        int token = 1;
        for (int i = 0; i < n_splits * tg * reps; ++i) {
            if (s.position() + 1 >= Cfg::context) s.reset();
            const int way = (i + i / n_splits) % n_splits;
            set_quant_row_split(splits[way]);
            const auto t0 = clock_type::now();
            token = 1 + int(s.append(token, ratio)[0] > 0);
            token_seconds[{ratio, way}] += std::chrono::duration<double>(clock_type::now() - t0).count();
        }
    }
    set_quant_row_split(Split::stealing);
    auto table = [&](const char* what, auto value) {
        std::printf("\n| ratio | %s:", what);
        for (const char* n : names) std::printf(" %s |", n);
        for (int w = 1; w < n_splits; ++w) std::printf(" %s / %s |", names[w], names[0]);
        std::printf(" %s / %s |", names[n_splits - 1], names[n_splits - 2]);  // the split against the one it replaced
        std::printf("\n|---|");
        for (int w = 0; w < 2 * n_splits; ++w) std::printf("---|");
        std::printf("\n");
        for (int ratio : ratios) {
            std::printf("| %d%% |", ratio);
            for (int w = 0; w < n_splits; ++w) std::printf(" %.2f |", value(ratio, w));
            for (int w = 1; w < n_splits; ++w) std::printf(" %.3f |", value(ratio, w) / value(ratio, 0));
            std::printf(" %.3f |", value(ratio, n_splits - 1) / value(ratio, n_splits - 2));
            std::printf("\n");
        }
    };
    table("tg tok/s, the split switched every token", [&](int ratio, int w) { return tg * reps / token_seconds[{ratio, w}]; });
    std::printf("(%d tokens each, positions 1 to %d, %d threads)\n", tg * reps, std::min(n_splits * tg * reps, Cfg::context - 1), threads);
    table(("tg" + std::to_string(tg) + " tok/s, whole decodes").c_str(), [&](int ratio, int w) { return median(tok_s[{ratio, w}]); });
    std::printf("(medians of %d rotating repetitions, %d threads)\n", reps, threads);
    return 0;
}

// --share: decode -n tokens at full width from an empty cache, -r times, each token next to a streaming
// read of as many bytes as a token reads by each of bench/roofline.hpp's read loops, one after the other
// (on the same pool, from a buffer of its own on huge pages), token and reads in alternating order; and
// before each pair, an empty hand-off to the pool and back. The decode's GB/s against the read loop's,
// both summed over the same pairs, of the loop that read fastest over all of them. (Not the fastest of
// the loops in each pair: that picks each pair's luckiest read, and sat ~2.5 % above the fastest loop's
// own median in `--read-loops -r 21` on the Emerald Rapids VM; it is printed too.) The memory of a
// shared host changes speed within seconds, so a read measured before and after a whole decode can see
// another memory than the decode did, while a token and a read side by side see the same one. Then the
// same for the half of the pairs with the shorter hand-offs and the half with the longer ones: on a Zen 5
// VM the memory's fast phases came with the two cores far apart, a hand-off ~5× slower (README,
// "Quantized weights"). (Halves by the hand-off, not by the read's speed: sorting by the read itself
// would put the reads that were slow by chance in one half and call its decode fast.) The medians
// column divides the pairs' median times instead of their sums: one stall of the host, tens of
// milliseconds in a token or a read, moves a sum but not a median.
// `configs`: how the quantized kernels prefetch (simd/decode_prefetch.hpp) and split their rows
// (ThreadPool::Split); with several, they take turns two tokens each, so that each sees both orders of
// decode and read, and each gets its own rows.
struct DecodeConfig {
    PrefetchHint hint;
    std::size_t distance;  // bytes ahead; 0: each thread's own, from its rate
    ThreadPool::Split split;
    std::string name;
};
template <ModelConfig Cfg>
int measure_share(ModelWeights weights, int tg, int threads, int reps, const std::vector<DecodeConfig>& configs) {
    const std::size_t bytes = decode_bytes(weights);
    Model<Cfg> model(std::move(weights));
    ThreadPool pool(threads);
    Session<Cfg> s(model, pool, Cfg::context, 32);
    require(tg < Cfg::context, "model_speed", "-n exceeds the context");
    const bench::HugeBuffer buf = bench::huge_page_buffer(bytes);
    const std::size_t floats = bytes / sizeof(float);
    const double read_bytes = double(bench::read_once_bytes(floats, threads));
    constexpr std::size_t loops = std::size(bench::detail::kReadPrefetches);
    struct Pair {
        double decode_s;
        std::array<double, loops> read_s;  // per read loop
        double handoff_ns, attention_s;
    };
    std::vector<std::vector<Pair>> pairs(configs.size());  // per configuration
    const int warm[] = {1, 2, 3};
    s.append(std::span<const int>(warm), 100);
    bench::read_each_loop_seconds(buf.get(), floats, pool, 0);
    for (int r = 0; r < reps; ++r) {
        s.reset();
        int token = 1;
        for (int i = 0; i < tg; ++i) {
            const std::size_t h = std::size_t(i / 2) % configs.size();
            set_quant_prefetch_hint(configs[h].hint);
            set_quant_prefetch_distance(configs[h].distance);
            set_quant_row_split(configs[h].split);
            Pair p{0, {}, handoff_ns(pool), 0};
            auto decode = [&] {
                const double attention0 = s.attention_seconds();
                const auto t0 = clock_type::now();
                token = 1 + int(s.append(token, 100)[0] > 0);
                p.decode_s = std::chrono::duration<double>(clock_type::now() - t0).count();
                p.attention_s = s.attention_seconds() - attention0;
            };
            if ((i + r) % 2) decode();
            p.read_s = bench::read_each_loop_seconds(buf.get(), floats, pool, std::size_t(i));
            if ((i + r) % 2 == 0) decode();
            pairs[h].push_back(p);
        }
    }
    set_quant_prefetch_hint(default_prefetch_hint());
    set_quant_prefetch_distance(default_prefetch_distance());
    std::printf(
        "| prefetch | pairs of a decoded token and a read of %.0f MB | decode GB/s | read GB/s | decode / read | "
        "decode / read, medians | decode / the fastest read of each pair | pool hand-off, median |\n|---|---|---|---|---|---|---|---|\n",
        double(bytes) / 1e6);
    // Pairs [begin, end) against read loop `loop`, and against the fastest loop of each pair.
    auto row = [&](const std::string& config, const char* what, const std::vector<Pair>& ps, std::size_t begin, std::size_t end,
                   std::size_t loop) {
        double decode_s = 0, read_s = 0, luckiest_s = 0;
        std::vector<double> handoff, decodes, reads;
        for (std::size_t i = begin; i < end; ++i) {
            decode_s += ps[i].decode_s, read_s += ps[i].read_s[loop];
            luckiest_s += *std::min_element(ps[i].read_s.begin(), ps[i].read_s.end());
            handoff.push_back(ps[i].handoff_ns), decodes.push_back(ps[i].decode_s), reads.push_back(ps[i].read_s[loop]);
        }
        const double pairs_n = double(end - begin);
        const double decode_gbs = double(bytes) * pairs_n / decode_s / 1e9, read_gbs = read_bytes * pairs_n / read_s / 1e9,
                     luckiest_gbs = read_bytes * pairs_n / luckiest_s / 1e9;
        const double medians = double(bytes) / median(decodes) / (read_bytes / median(reads));
        std::printf("| %s | %s (%zu) | %.2f | %.2f | **%.1f %%** | %.1f %% | %.1f %% | %.0f ns |\n", config.c_str(), what, end - begin,
                    decode_gbs, read_gbs, 100 * decode_gbs / read_gbs, 100 * medians, 100 * decode_gbs / luckiest_gbs, median(handoff));
    };
    double decode_s = 0, attention_s = 0;
    std::size_t tokens = 0;
    std::string loops_chosen;
    for (std::size_t h = 0; h < configs.size(); ++h) {
        std::vector<Pair>& ps = pairs[h];
        std::size_t loop = 0;  // the loop with the least read time over all of this configuration's pairs
        auto total = [&](std::size_t k) {
            double t = 0;
            for (const Pair& p : ps) t += p.read_s[k];
            return t;
        };
        for (std::size_t k = 1; k < loops; ++k)
            if (total(k) < total(loop)) loop = k;
        loops_chosen += (h ? "; " : "") + configs[h].name + ": " + bench::detail::to_string(bench::detail::kReadPrefetches[loop]);
        std::sort(ps.begin(), ps.end(), [](const Pair& a, const Pair& b) { return a.handoff_ns < b.handoff_ns; });
        row(configs[h].name, "all", ps, 0, ps.size(), loop);
        row(configs[h].name, "the half with the shorter hand-offs", ps, 0, ps.size() / 2, loop);
        row(configs[h].name, "the half with the longer ones", ps, ps.size() / 2, ps.size(), loop);
        for (const Pair& p : ps) decode_s += p.decode_s, attention_s += p.attention_s, ++tokens;
    }
    std::printf("(read GB/s: the read loop fastest over all of a configuration's pairs, %s loads; %s)\n", bench::read_loop_width(),
                loops_chosen.c_str());
    set_quant_row_split(ThreadPool::Split::stealing);
    if (std::any_of(configs.begin(), configs.end(), [](const DecodeConfig& c) { return c.distance == 0; })) {
        std::vector<std::size_t> ahead(std::size_t(threads), 0);  // each thread's adaptive distance at the end
        pool.parallel_for(threads, [&](int begin, int end) {
            for (int t = begin; t < end; ++t) ahead[std::size_t(t)] = thread_prefetch_ahead().bytes_ahead();
        });
        std::printf("(adaptive prefetch distance at the end, per thread:");
        for (std::size_t a : ahead) std::printf(" %zu B", a);
        std::printf(")\n");
    }
    std::printf(
        "(%d threads; %d decodes of %d tokens from an empty cache, %.2f tok/s over all, %.1f %% of it in attention over the cache%s)\n",
        threads, reps, tg, double(tokens) / decode_s, 100 * attention_s / decode_s,
        configs.size() > 1 ? "; the configurations took turns two tokens each" : "");
    return 0;
}

// --read-loops: bench/roofline.hpp's read loops over 1 GiB side by side, rotating which goes first,
// `rounds` times, with the pool's hand-off (which tells the Zen 5 VM's placements apart).
int measure_read_loops(int threads, int rounds) {
    const std::size_t bytes = std::size_t(1) << 30;
    const bench::HugeBuffer buf = bench::huge_page_buffer(bytes);
    ThreadPool pool(threads);
    const std::size_t floats = bytes / sizeof(float);
    const double read_bytes = double(bench::read_once_bytes(floats, threads));
    constexpr std::size_t loops = std::size(bench::detail::kReadPrefetches);
    std::vector<double> gbs[loops], fastest, handoff;
    for (int r = 0; r < rounds; ++r) {
        handoff.push_back(handoff_ns(pool));
        const auto seconds = bench::read_each_loop_seconds(buf.get(), floats, pool, std::size_t(r));
        for (std::size_t k = 0; k < loops; ++k) gbs[k].push_back(read_bytes / seconds[k] / 1e9);
        fastest.push_back(read_bytes / *std::min_element(seconds.begin(), seconds.end()) / 1e9);
    }
    std::printf("| read loop (1 GiB, %d threads, %d rounds, %s loads) | GB/s, median (min–max) |\n|---|---|\n", threads, rounds,
                bench::read_loop_width());
    for (std::size_t k = 0; k < loops; ++k)
        std::printf("| %s | %.2f (%.2f–%.2f) |\n", bench::detail::to_string(bench::detail::kReadPrefetches[k]), median(gbs[k]),
                    *std::min_element(gbs[k].begin(), gbs[k].end()), *std::max_element(gbs[k].begin(), gbs[k].end()));
    std::printf("| the fastest of the three in each round | %.2f (%.2f–%.2f) |\n", median(fastest),
                *std::min_element(fastest.begin(), fastest.end()), *std::max_element(fastest.begin(), fastest.end()));
    std::printf("(the decode kernels' hint here: %s; an empty pool hand-off, median: %.0f ns)\n", to_string(default_prefetch_hint()),
                median(handoff));
    return 0;
}

// --prefetch: a comma-separated list of HINT[:DISTANCE], HINT one of default (the CPU's), cached,
// non-temporal; DISTANCE bytes ahead, adaptive (each thread's own, from its rate) or, when left out,
// the CPU's default (simd/decode_prefetch.hpp: adaptive on AMD, 8 KB on Intel).
// `both` is cached,non-temporal. --split: stealing (the default), committed (Split::stealing_committed)
// or both; every prefetch configuration with every split.
std::vector<DecodeConfig> decode_configs(const std::string& list, const std::string& splits) {
    require(splits == "stealing" || splits == "committed" || splits == "both", "--split",
            "'" + splits + "' is not stealing, committed or both");
    using Split = ThreadPool::Split;
    std::vector<Split> chosen;
    if (splits != "committed") chosen.push_back(Split::stealing);
    if (splits != "stealing") chosen.push_back(Split::stealing_committed);
    std::vector<DecodeConfig> configs;
    std::stringstream items(list == "both" ? std::string("cached,non-temporal") : list);
    for (std::string item; std::getline(items, item, ',');) {
        const std::size_t colon = item.find(':');
        const std::string hint = item.substr(0, colon), distance = colon == std::string::npos ? "" : item.substr(colon + 1);
        DecodeConfig c{default_prefetch_hint(), default_prefetch_distance(), ThreadPool::Split::stealing, ""};
        if (hint == "cached") c.hint = PrefetchHint::cached;
        else if (hint == "non-temporal") c.hint = PrefetchHint::non_temporal;
        else require(hint == "default", "--prefetch", "'" + hint + "' is not default, cached or non-temporal (in '" + list + "')");
        if (distance == "adaptive") {
            c.distance = 0;
        } else if (colon != std::string::npos) {
            char* end = nullptr;
            const long bytes = std::strtol(distance.c_str(), &end, 10);
            require(!distance.empty() && *end == '\0' && bytes >= 64 && bytes <= (1 << 20), "--prefetch",
                    "'" + distance + "' is not adaptive or a number of bytes in [64, 1048576] (in '" + list + "')");
            c.distance = std::size_t(bytes);
        }
        c.name = std::string(to_string(c.hint)) + ", " + (c.distance ? std::to_string(c.distance) + " B ahead" : "adaptive");
        for (Split split : chosen) {  // named when not the default alone
            DecodeConfig d = c;
            d.split = split;
            if (chosen.size() > 1 || split != Split::stealing) d.name += split == Split::stealing ? ", stealing" : ", stealing (committed)";
            configs.push_back(d);
        }
    }
    require(!configs.empty(), "--prefetch", "no configuration in '" + list + "'");
    return configs;
}

int run(const cli::Args& args) {
    const std::string path = args.get("-m", "--model", "", "model file to measure");
    const int prompt = args.get_int("-p", "", 512, "prefill tokens (pp)");
    const int decode = args.get_int("-n", "", 128, "decode tokens (tg)");
    const int threads = args.threads();
    const int reps = args.get_int("-r", "", 1, "repetitions");
    const std::string ratio_list = args.get("--ratios", "", "100", "width ratios, comma-separated");
    const std::string shape = args.get("--write-synthetic", "", "", "write a synthetic model: tinyllama, openllama3b or tinygqa");
    const std::string tok = args.get("--tokenizer", "", (cli::shared_dir() / "models" / "tokenizer.model").string(),
                                     "with --write-synthetic: its vocabulary");
    const bool in_major = args.has("--in-major-outputs", "", "with --write-synthetic: elastilm-only input-major layout");
    const std::string type_name = args.get("--type", "", "f16", "with --write-synthetic: f16, q8_0 or q4_0");
    const bool roofline = args.has("--roofline", "", "print the machine's read GB/s, FMA and reduced-precision GFLOP/s as CSV");
    const std::string gemm = args.get("--gemm", "", "reduced", "prefill GEMM for F16 weights: reduced (the build's), fp32, bf16 or fp16");
    std::vector<int> ttft_lengths;  // --ttft 128,512,1024: TTFT per prompt length with the attention share
    if (args.has("--ttft", "", "prompt lengths: TTFT and attention share per ratio instead of pp/tg")) {
        std::stringstream ls(args.get("--ttft", "", "128,512,1024"));
        for (std::string item; std::getline(ls, item, ',');) {
            char* end = nullptr;
            const long l = std::strtol(item.c_str(), &end, 10);
            require(!item.empty() && end && *end == '\0' && l > 0, "--ttft", "'" + item + "' is not a prompt length");
            ttft_lengths.push_back(int(l));
        }
    }
    const std::string attention = args.get("--attention", "", "tiled", "with --ttft: prefill attention tiled, per-query or both (alternating)");
    const bool smoke = args.has("--smoke", "", "a synthetic stories260K-shaped model in memory, tiny work (CI)");
    const bool no_mmap = args.has("--no-mmap", "", "copy the weights into memory on transparent huge pages instead of mapping the file");
    const std::string block_order = args.get(
        "--block-order", "", "default",
        "with --no-mmap: default (quantized blocks interleaved where the build's decode kernel reads them) or gguf (kept in GGUF's order)");
    require(block_order == "default" || block_order == "gguf", "--block-order", "is default or gguf, not " + block_order);
    interleaved::interleave_on_load_setting() = block_order == "default";
    const bool bandwidth = args.has("--bandwidth", "", "print the machine's streaming read GB/s only");
    const bool read_loops = args.has("--read-loops", "", "the read loops behind every GB/s figure, side by side for -r rounds");
    const bool bytes_only = args.has("--decode-bytes", "", "with -m: print the bytes one full-width decode step reads, and exit");
    const bool traced =
        args.has("--trace", "", "decode with the quantized products' rows split statically, dynamically and by stealing, rotating, traced");
    const bool share =
        args.has("--share", "", "decode at full width, each token next to a read of its bytes: decode GB/s against the read loop's");
    const std::string prefetch =
        args.get("--prefetch", "", "default",
                 "with --share: how the quantized kernels prefetch, HINT[:BYTES] (HINT default, cached or non-temporal; BYTES ahead or "
                 "adaptive, left out: the CPU's default), comma-separated to take turns; both = cached,non-temporal");
    const std::string split = args.get("--split", "", "stealing",
                                       "with --share: how the quantized products' rows are split, stealing, committed (as until session "
                                       "31) or both (taking turns)");
    const std::vector<std::string>& positional = args.positional();
    args.finish("elastilm_bench_model_speed -m MODEL [flags] | --smoke | --roofline | --write-synthetic SHAPE OUT.gguf\n"
                "Prefill and decode tok/s per width ratio, as CSV lines ratio,pp_tok_s,tg_tok_s.");
    if (!shape.empty()) {
        require(positional.size() == 1, "model_speed", "--write-synthetic SHAPE OUT.gguf");
        require(type_name == "f16" || type_name == "q8_0" || type_name == "q4_0", "model_speed", "--type must be f16, q8_0 or q4_0");
        const DType type = type_name == "q8_0" ? DType::q8_0 : type_name == "q4_0" ? DType::q4_0 : DType::f16;
        if (shape == "tinyllama") write_synthetic<TinyLlama1B>(positional[0], tok, in_major, type);
        else if (shape == "openllama3b") write_synthetic<OpenLlama3B>(positional[0], tok, in_major, type);
        else if (shape == "tinygqa") write_synthetic<TinyGqa15M>(positional[0], tok, in_major, type);
        else throw Error("model_speed", "unknown shape " + shape + " (tinyllama, openllama3b, tinygqa)");
        return 0;
    }
    require(positional.empty(), "model_speed", "unexpected argument '" + (positional.empty() ? "" : positional[0]) + "'");
    const GemmPrecision precision = gemm == "fp32" ? GemmPrecision::fp32
                                    : gemm == "bf16" ? GemmPrecision::bf16
                                    : gemm == "fp16" ? GemmPrecision::fp16
                                                     : GemmPrecision::reduced;
    require(gemm == "reduced" || gemm == "fp32" || ((gemm == "bf16" || gemm == "fp16") && !gemm_instruction(precision).empty()), "--gemm",
            "'" + gemm + "': this build has no such GEMM (reduced, fp32" + (gemm_instruction(GemmPrecision::bf16).empty() ? "" : ", bf16") +
                (gemm_instruction(GemmPrecision::fp16).empty() ? "" : ", fp16") + ")");
    set_gemm_precision(precision);
    if (roofline) {  // the machine's ceilings for this run, as CSV: read GB/s, FMA GFLOP/s, GFLOP/s of the
                     // instruction of --gemm's reduced-precision GEMM (0: none), that GEMM's name
        const std::string_view name = gemm_instruction(precision);
        std::printf("%.2f,%.2f,%.2f,%s\n", bench::measure_read_bandwidth_gbs(threads), bench::measure_fma_peak_gflops(threads),
                    bench::measure_reduced_peak_gflops(threads, precision), name.empty() ? "none" : std::string(name).c_str());
        return 0;
    }
    if (read_loops) return measure_read_loops(threads, std::max(reps, 1));
    if (bandwidth) {  // read GB/s alone: versus-llamacpp.sh measures it between repetitions
        std::printf("%.2f\n", bench::measure_read_bandwidth_gbs(threads));
        return 0;
    }
    if (smoke)  // CI: a synthetic stories260K-shaped model in memory, tiny work
        return measure<Stories260K>(synthetic_weights<Stories260K>(), 16, 8, 1, 1, {100, 20});
    if (path.empty()) return cli::usage_error(args, "-m/--model");
    std::vector<int> ratios;
    std::stringstream list(ratio_list);
    for (std::string item; std::getline(list, item, ',');) {
        char* end = nullptr;
        const long r = std::strtol(item.c_str(), &end, 10);
        require(!item.empty() && *end == '\0' && ratio_index(int(r)) >= 0, "--ratios", "'" + item + "' is not a compiled ratio");
        ratios.push_back(int(r));
    }
    require(attention == "tiled" || attention == "per-query" || attention == "both", "--attention",
            "'" + attention + "' is not tiled, per-query or both");
    std::vector<PrefillAttention> paths;
    if (attention != "tiled") paths.push_back(PrefillAttention::per_query);
    if (attention != "per-query") paths.push_back(PrefillAttention::tiled);
    if (bytes_only) {
        std::printf("%zu\n", decode_bytes(load_weights(path)));
        return 0;
    }
    if (share) {  // bad flags before the load, which can take seconds
        require(ratios == std::vector<int>{100}, "--share",
                "measures the full width only (the bytes a token reads are counted at 100%): drop --ratios");
        require(decode >= 2 && reps >= 1, "--share", "needs -n ≥ 2 (two halves of the pairs) and -r ≥ 1");
    }
    require(prefetch == "default" || share, "--prefetch", "only with --share");
    require(split == "stealing" || share, "--split", "only with --share");
    const std::vector<DecodeConfig> configs = decode_configs(prefetch, split);
    require(!share || configs.size() == 1 || decode >= 4 * int(configs.size()), "--share",
            "with several --prefetch or --split configurations, needs -n ≥ 4 per configuration (each in both orders, in both halves)");
    const auto t_load = clock_type::now();
    ModelWeights w = load_weights(path, no_mmap ? io::Residency::huge_page_copy : io::Residency::mapped);
    const bool interleaved_blocks = !w.layers.empty() && w.layers[0].w_up.order == BlockOrder::interleaved;
    std::string huge;  // how much of the copy the kernel holds on 2 MB pages (AnonHugePages: the process's)
    if (no_mmap) {
        std::ifstream rollup("/proc/self/smaps_rollup");
        for (std::string line; std::getline(rollup, line);)
            if (line.rfind("AnonHugePages:", 0) == 0) huge = ", " + std::to_string(std::stol(line.substr(14)) >> 10) + " MB on huge pages";
    }
    std::fprintf(stderr, "model_speed: loaded %s in %.2f s (%s%s%s)\n", path.c_str(),
                 std::chrono::duration<double>(clock_type::now() - t_load).count(), no_mmap ? "copied into memory, --no-mmap" : "mapped",
                 interleaved_blocks ? ", blocks interleaved for the decode kernel" : "", huge.c_str());
    return with_config(w.hparams, w.source, [&]<ModelConfig Cfg>() -> int {
        check_against<Cfg>(w);
        if (!ttft_lengths.empty()) return measure_ttft<Cfg>(std::move(w), ttft_lengths, threads, reps, ratios, paths);
        if (traced) return measure_trace<Cfg>(std::move(w), decode, threads, reps, ratios);
        if (share) return measure_share<Cfg>(std::move(w), decode, threads, reps, configs);
        return measure<Cfg>(std::move(w), prompt, decode, threads, reps, ratios);
    });
}

}  // namespace

int main(int argc, char** argv) {
    return elastilm::cli::run_main(
        argc, argv,
        {"--in-major-outputs", "--smoke", "--roofline", "--no-mmap", "--bandwidth", "--read-loops", "--decode-bytes", "--trace", "--share"},
        run);
}
