// recover: train one LoRA adapter per width ratio by self-distillation (ElastiLM §3.2).
//
//   recover -m ELASTIC.gguf -o DIR [--calib TEXT] [--calib-skip 16384] [--calib-tokens 8192] [--window 128]
//           [--ratios 20,30,...,90] [--rank 8] [--alpha 16] [--lr 1e-3] [--epochs 2] [--checkpoint-every 50]
//           [--val-windows N] [--resume] [--peft] [-t 2]
//
// The teacher is the full model itself: its next-token distribution on calibration text is computed once
// (shared by every ratio), and the sub-model at each ratio learns, through its adapter only, to match it —
// loss = mean KL(p_full ‖ p_sub) over the tokens of a window. AdamW with a cosine learning-rate decay
// (after 5% linear warm-up) to the end of the run; the window order is a fixed shuffle
// per epoch, so a run resumed from a checkpoint (DIR/lora-P.ckpt.gguf + its optimizer state) continues
// exactly where it stopped. The last --val-windows calibration windows are not trained on: the mean KL
// there is measured before training and every half epoch, and the adapter with the lowest one is kept —
// at high ratios, where the sub-model is already close to the full one, a few epochs can fit the
// calibration text's noise, and an adapter must never make its sub-model worse.
// Writes DIR/lora-P.gguf per ratio (load with `perplexity --adapters DIR`, `generate --adapters DIR`,
// `demo --adapters DIR` or Model::set_adapter); --peft also writes DIR/peft-P/ for PEFT users.
// Calibration text must not overlap held-out text: by default it starts at token 16384 of valid.txt.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <sstream>

#include "cli/model_file.hpp"
#include "elastilm/lora/adamw.hpp"
#include "elastilm/lora/adapter_folder.hpp"
#include "elastilm/lora/peft.hpp"
#include "elastilm/lora/train_step.hpp"
#include "elastilm/model/perplexity.hpp"

namespace {

using namespace elastilm;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

struct TrainOptions {
    int window = 128, rank = 8, epochs = 2, checkpoint_every = 50, val_windows = 0;
    float alpha = 16, lr = 1e-3f;
    bool resume = false, peft = false;
};

// Learning rate at step s of `total`: linear warm-up over the first 5%, then cosine decay to 0.
float scheduled_lr(float peak, long long s, long long total) {
    const double warm = std::max(1.0, 0.05 * double(total));
    if (double(s) < warm) return float(peak * (double(s) + 1) / warm);
    const double t = (double(s) - warm) / std::max(1.0, double(total) - warm);
    return float(peak * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t)));
}

// The window visited at global step s: epoch e = s / W visits a shuffle of the W windows seeded by e.
int window_at(long long step, int windows) {
    std::vector<int> order(windows);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(0x5eed + std::uint64_t(step / windows));
    std::shuffle(order.begin(), order.end(), rng);
    return order[std::size_t(step % windows)];
}

// Mean KL to the teacher over the validation windows.
template <ModelConfig Cfg>
double validation_kl(DistillStep<Cfg>& step, const LoraAdapter& adapter, std::span<const int> calib, const std::vector<float>& teacher,
                     int first, int count, int window, ThreadPool& pool) {
    double sum = 0;
    for (int w = first; w < first + count; ++w)
        sum += step.loss(adapter, calib.subspan(std::size_t(w) * window, window),
                         std::span<const float>(teacher).subspan(std::size_t(w) * window * Cfg::vocab_size,
                                                                 std::size_t(window) * Cfg::vocab_size),
                         pool);
    return sum / count;
}

template <ModelConfig Cfg>
void train_ratio(const Model<Cfg>& model, int percent, std::span<const int> calib, const std::vector<float>& teacher,
                 const TrainOptions& o, const fs::path& dir, ThreadPool& pool) {
    const int windows = int(calib.size() / o.window) - o.val_windows;  // trained on; the rest validate
    const long long total_steps = (long long)windows * o.epochs;
    const fs::path path = adapter_file(dir, percent);
    const fs::path checkpoint = dir / ("lora-" + std::to_string(percent) + ".ckpt.gguf");
    const LoraModelIdentity identity = lora_identity<Cfg>(model.anchors());

    LoraAdapter adapter;
    std::optional<AdamW> opt;
    if (o.resume && fs::exists(checkpoint) && fs::exists(adamw_state_path(checkpoint))) {
        auto [params, state] = load_checkpoint<Cfg>(checkpoint, model.anchors(), percent);
        adapter = std::move(params);
        opt.emplace(std::move(state));
        std::fprintf(stderr, "%d%%: resuming %s at step %llu/%lld\n", percent, checkpoint.c_str(),
                     (unsigned long long)opt->steps(), total_steps);
    } else {
        adapter = make_lora<Cfg>(percent, model.anchors(), o.rank, o.alpha, std::uint64_t(percent));
        AdamWOptions ao;
        ao.lr = o.lr;
        opt.emplace(adapter, ao);
    }
    LoraAdapter grad = lora_zeros_like(adapter);
    DistillStep<Cfg> step(model, o.window);

    // The best adapter on the validation windows so far: the sub-model itself (B = 0) to begin with.
    LoraAdapter untrained = adapter;
    for (auto& l : untrained.layers)
        for (auto& p : l.pairs) std::fill(p.b.begin(), p.b.end(), 0.0f);
    const double kl_before = validation_kl(step, untrained, calib, teacher, windows, o.val_windows, o.window, pool);
    LoraAdapter best = untrained;
    double best_kl = kl_before;
    if (fs::exists(path)) {  // a finished or resumed earlier run's best
        const LoraAdapter earlier = load_adapter_gguf<Cfg>(path, model.anchors(), percent);
        const double kl = validation_kl(step, earlier, calib, teacher, windows, o.val_windows, o.window, pool);
        if (o.resume && kl < best_kl) { best = earlier; best_kl = kl; }
    }

    const auto t0 = clock_type::now();
    auto t_report = t0;
    double loss_sum = 0;
    int loss_count = 0;
    for (long long s = (long long)opt->steps(); s < total_steps; s = (long long)opt->steps()) {
        const int w = window_at(s, windows);
        set_zero(grad);
        opt->options().lr = scheduled_lr(o.lr, s, total_steps);
        const double loss = step.step(adapter, calib.subspan(std::size_t(w) * o.window, o.window),
                                      std::span<const float>(teacher).subspan(std::size_t(w) * o.window * Cfg::vocab_size,
                                                                              std::size_t(o.window) * Cfg::vocab_size),
                                      grad, pool);
        opt->step(adapter, grad);
        loss_sum += loss;
        ++loss_count;
        const long long done = s + 1;
        const int half_epoch = std::max(1, windows / 2);
        if (done % half_epoch == 0 || done == total_steps) {
            const double val = validation_kl(step, adapter, calib, teacher, windows, o.val_windows, o.window, pool);
            const bool better = val < best_kl;
            if (better) { best = adapter; best_kl = val; }
            std::fprintf(stderr, "\r%d%%: epoch %.1f/%d  train KL %.4f  validation KL %.4f%s  (%.0f tok/s)          \n", percent,
                         double(done) / windows, o.epochs, loss_sum / std::max(1, loss_count), val, better ? " (best)" : "",
                         double(loss_count) * o.window / std::max(1e-9, seconds_since(t_report)));
            t_report = clock_type::now();
            loss_sum = 0;
            loss_count = 0;
        } else {
            std::fprintf(stderr, "\r%d%%: step %lld/%lld  KL %.4f", percent, done, total_steps, loss);
        }
        if (o.checkpoint_every > 0 && done % o.checkpoint_every == 0) save_checkpoint(adapter, *opt, checkpoint, identity);
    }
    save_checkpoint(adapter, *opt, checkpoint, identity);
    write_adapter_gguf(best, path, identity);
    if (o.peft) write_peft(best, dir / ("peft-" + std::to_string(percent)), std::string(Cfg::name));
    std::printf("| %d%% | %d | %.1f KB | %lld | %.4f | %.4f | %.1f s |\n", percent, best.rank, best.bytes() / 1024.0, total_steps,
                kl_before, best_kl, seconds_since(t0));
    std::fflush(stdout);
}

int run(const cli::Args& args) {
    const std::string model_path = args.get("-m", "--model", "", "elastic model (elasticize's output)");
    const std::string out_dir = args.get("-o", "--output", "", "folder for the adapters and checkpoints");
    TrainOptions o;  // val_windows set once the calibration text is known
    o.window = args.get_int("--window", "", 128, "training window in tokens");
    o.rank = args.get_int("--rank", "-r", 8, "LoRA rank");
    o.alpha = float(args.get_double("--alpha", "--lora-alpha", 16, "LoRA alpha"));
    o.lr = float(args.get_double("--lr", "--learning-rate", 1e-3, "AdamW learning rate"));
    o.epochs = args.get_int("--epochs", "", 2, "passes over the calibration windows");
    o.checkpoint_every = args.get_int("--checkpoint-every", "", 50, "steps between checkpoints");
    o.resume = args.has("--resume", "", "continue from the checkpoints in -o");
    o.peft = args.has("--peft", "", "also write each adapter as a PEFT folder");
    o.val_windows = args.get_int("--val-windows", "", -1, "held-out windows (-1: a tenth)");
    const int threads = args.threads();
    const std::string calib_path = args.get("--calib", "--calibration",
                                            (cli::shared_dir() / "models" / "tiny-gqa-15M" / "valid.txt").string(), "calibration text");
    const int calib_skip = args.get_int("--calib-skip", "", 16384, "calibration tokens skipped first");
    const int calib_tokens = args.get_int("--calib-tokens", "", 8192, "calibration tokens");
    const std::vector<int> ratios = cli::ratio_list(args, {20, 30, 40, 50, 60, 70, 80, 90});
    const std::string tokenizer = cli::tokenizer_flag(args);
    args.finish("recover -m ELASTIC.gguf -o DIR [flags]\n"
                "Trains one LoRA adapter per width ratio, distilled from the full model.");
    if (model_path.empty() || out_dir.empty()) return cli::usage_error(args, "-m/--model and -o/--output");
    require(o.epochs >= 1, "--epochs", "must be at least 1");
    require(std::isfinite(o.lr) && o.lr > 0, "--lr", "must be a positive number");

    const cli::ModelFile file = cli::open_model(model_path, tokenizer);
    const Tokenizer& tok = *file.tokenizer;
    const ModelWeights& weights = file.weights;
    return cli::with_model(file, [&]<ModelConfig Cfg>() -> int {
        require(o.window >= 2 && o.window <= Cfg::context, "--window", "must be in 2.." + std::to_string(Cfg::context));
        if (!weights.is_elastic)
            std::fprintf(stderr, "warning: %s is not an elastic model (run elasticize first): sub-models will be poor\n",
                         model_path.c_str());
        const auto stream = paragraph_stream(tok, cli::read_text(calib_path));
        require(stream.size() >= std::size_t(calib_skip) + std::size_t(o.window), calib_path,
                "has " + std::to_string(stream.size()) + " tokens, not enough after --calib-skip " + std::to_string(calib_skip));
        const std::size_t usable = std::min<std::size_t>(std::size_t(calib_tokens), stream.size() - calib_skip) / o.window * o.window;
        const auto calib = std::span<const int>(stream).subspan(calib_skip, usable);
        const int n_windows = int(usable / o.window);
        if (o.val_windows < 0) o.val_windows = std::max(1, n_windows / 10);
        require(o.val_windows >= 1 && o.val_windows < n_windows, "--val-windows",
                "must be in 1.." + std::to_string(n_windows - 1) + " (the calibration text has " + std::to_string(n_windows) + " windows)");
        Model<Cfg> model(weights);
        ThreadPool pool(threads);
        fs::create_directories(out_dir);

        // The teacher: the full model's logits on every calibration window, once for all ratios.
        const auto t0 = clock_type::now();
        std::fprintf(stderr, "teacher: full model over %zu calibration tokens (%zu windows of %d)...\n", calib.size(),
                     calib.size() / o.window, o.window);
        std::vector<float> teacher(calib.size() * std::size_t(Cfg::vocab_size));
        Session<Cfg> session(model, pool, o.window, o.window);
        for (std::size_t w = 0; w < calib.size() / o.window; ++w) {
            session.reset();
            const auto logits = session.append_all_logits(calib.subspan(w * o.window, o.window), 100);
            std::copy(logits.begin(), logits.end(), teacher.begin() + std::ptrdiff_t(w * o.window * Cfg::vocab_size));
        }
        std::fprintf(stderr, "teacher done in %.1f s (%.0f MB of logits)\n", seconds_since(t0), teacher.size() * 4.0 / 1e6);

        std::printf("# %s, %zu calibration tokens from %s (skip %d), window %d, rank %d, alpha %.0f, lr %g, %d epochs, %d threads\n\n",
                    std::string(Cfg::name).c_str(), calib.size(), calib_path.c_str(), calib_skip, o.window, o.rank, o.alpha,
                    double(o.lr), o.epochs, threads);
        std::printf("| ratio | rank | adapter memory | steps | validation KL before | after (best) | training time |\n"
                    "|---|---|---|---|---|---|---|\n");
        for (int r : ratios) train_ratio(model, r, calib, teacher, o, out_dir, pool);
        return 0;
    });
}

}  // namespace

int main(int argc, char** argv) { return elastilm::cli::run_main(argc, argv, {"--resume", "--peft"}, run); }
