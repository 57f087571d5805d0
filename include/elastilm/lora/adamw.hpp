// AdamW (Loshchilov & Hutter 2019) over the parameters of a LoraAdapter, and its checkpoint.
//
// Per parameter p with gradient g, at step t (from 1), as torch.optim.AdamW computes it:
//     p ← p − lr·wd·p                               (decoupled weight decay)
//     m ← β1·m + (1−β1)·g,    v ← β2·v + (1−β2)·g²
//     p ← p − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)
// The moments m and v are kept as two LoraAdapters shaped like the parameters, so they are saved with
// the adapter's own tensor names. A checkpoint is the adapter GGUF plus a sibling "<stem>.adamw.gguf"
// with m, v, the step count and the hyper-parameters; every value is stored as the fp32 it is in memory,
// so a resumed run continues bit-identically (the trainer's data order is the trainer's to restore).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "elastilm/error.hpp"
#include "elastilm/io/gguf.hpp"
#include "elastilm/io/gguf_writer.hpp"
#include "elastilm/model/lora_adapter.hpp"
#include "elastilm/lora/adapter_gguf.hpp"
#include "elastilm/lora/pair_from_file.hpp"

namespace elastilm {

struct AdamWOptions {
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float eps = 1e-8f;
    float weight_decay = 0.0f;  // decoupled: p ← p − lr·wd·p
};

class AdamW {
public:
    // Zero moments shaped like `params` (rank-0 pairs stay frozen: they have no parameters).
    explicit AdamW(const LoraAdapter& params, AdamWOptions options = {}) : options_(options) {
        m_ = lora_zeros_like(params);
        v_ = lora_zeros_like(params);
    }

    // One update of `params` with `grads` (same shapes). Checks every gradient is finite before touching
    // anything, so a NaN step leaves parameters and state as they were.
    void step(LoraAdapter& params, const LoraAdapter& grads) {
        check_like(params, m_, "optimizer state");
        check_like(params, grads, "gradient");
        for (std::size_t l = 0; l < grads.layers.size(); ++l)
            for (std::size_t k = 0; k < kLayerMatrixCount; ++k) {
                const LoraPair& g = grads.layers[l].pairs[k];
                for (bool b : {false, true})
                    if (!all_finite(b ? g.b : g.a)) throw Error("adamw", "gradient of " + lora_tensor_name(int(l), k, b) + " is not finite");
            }
        ++step_;
        const float bc1 = float(1.0 - std::pow(double(options_.beta1), double(step_)));
        const float bc2 = float(1.0 - std::pow(double(options_.beta2), double(step_)));
        const float sqrt_bc2 = std::sqrt(bc2);
        const float step_size = options_.lr / bc1;
        const float decay = 1.0f - options_.lr * options_.weight_decay;
        const float b1 = options_.beta1, b2 = options_.beta2, eps = options_.eps;
        auto update = [&](std::vector<float>& p, const std::vector<float>& g, std::vector<float>& m, std::vector<float>& v) {
            for (std::size_t i = 0; i < p.size(); ++i) {
                m[i] = b1 * m[i] + (1.0f - b1) * g[i];
                v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
                p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps);
            }
        };
        for (std::size_t l = 0; l < params.layers.size(); ++l)
            for (std::size_t k = 0; k < kLayerMatrixCount; ++k) {
                LoraPair& p = params.layers[l].pairs[k];
                const LoraPair& g = grads.layers[l].pairs[k];
                LoraPair& m = m_.layers[l].pairs[k];
                LoraPair& v = v_.layers[l].pairs[k];
                update(p.a, g.a, m.a, v.a);
                update(p.b, g.b, m.b, v.b);
            }
    }

    AdamWOptions& options() { return options_; }  // e.g. the trainer's learning-rate schedule sets lr
    const AdamWOptions& options() const { return options_; }
    std::uint64_t steps() const { return step_; }
    const LoraAdapter& first_moment() const { return m_; }
    const LoraAdapter& second_moment() const { return v_; }

    // The state as read back from a checkpoint (load_adamw).
    AdamW(AdamWOptions options, std::uint64_t steps, LoraAdapter m, LoraAdapter v)
        : options_(options), step_(steps), m_(std::move(m)), v_(std::move(v)) {
        check_like(m_, v_, "second moment");
    }

private:
    static bool all_finite(const std::vector<float>& x) {
        return std::all_of(x.begin(), x.end(), [](float v) { return std::isfinite(v); });
    }

    // Same layers, and the same number of elements in every a and b.
    static void check_like(const LoraAdapter& want, const LoraAdapter& got, const std::string& what) {
        require(got.layers.size() == want.layers.size(), "adamw",
                what + " has " + std::to_string(got.layers.size()) + " layers, the parameters " + std::to_string(want.layers.size()));
        for (std::size_t l = 0; l < want.layers.size(); ++l)
            for (std::size_t k = 0; k < kLayerMatrixCount; ++k) {
                const LoraPair& p = want.layers[l].pairs[k];
                const LoraPair& q = got.layers[l].pairs[k];
                if (p.a.size() != q.a.size() || p.b.size() != q.b.size() || p.rows != q.rows || p.cols != q.cols)
                    throw Error("adamw",
                        what + " for " + LoraAdapter::tensor_name(int(l), k) + " is shaped " + std::to_string(q.rows) + "x" +
                            std::to_string(q.cols) + " rank " + std::to_string(q.rank) + ", the parameters " + std::to_string(p.rows) +
                            "x" + std::to_string(p.cols) + " rank " + std::to_string(p.rank));
            }
    }

    AdamWOptions options_;
    std::uint64_t step_ = 0;
    LoraAdapter m_, v_;
};

// "run/adapter-100.gguf" → "run/adapter-100.adamw.gguf".
inline std::filesystem::path adamw_state_path(const std::filesystem::path& adapter_path) {
    std::filesystem::path p = adapter_path;
    return p.replace_extension(".adamw.gguf");
}

inline void save_adamw(const AdamW& opt, const std::filesystem::path& path) {
    const AdamWOptions& o = opt.options();
    io::GgufWriter g;
    g.set_string("general.type", "elastilm.optimizer");
    g.set_string("elastilm.optimizer", "adamw");
    g.set_u64("elastilm.adamw.step", opt.steps());
    g.set_f32("elastilm.adamw.lr", o.lr);
    g.set_f32("elastilm.adamw.beta1", o.beta1);
    g.set_f32("elastilm.adamw.beta2", o.beta2);
    g.set_f32("elastilm.adamw.eps", o.eps);
    g.set_f32("elastilm.adamw.weight_decay", o.weight_decay);
    g.set_u32("elastilm.adamw.n_layers", std::uint32_t(opt.first_moment().layers.size()));
    detail::add_lora_tensors(g, opt.first_moment(), ".adam_m");
    detail::add_lora_tensors(g, opt.second_moment(), ".adam_v");
    g.write(path);
}

// Reads the state saved by save_adamw for `params` (the adapter it was saved with, just loaded):
// every moment tensor must be present and shaped like its parameter.
inline AdamW load_adamw(const std::filesystem::path& path, const LoraAdapter& params) {
    const auto file = io::MappedFile::open(path);
    const io::GgufFile g = io::GgufFile::parse(file->bytes(), file->path());
    const std::string& where = g.where();
    require(g.has("elastilm.optimizer") && g.get_string("elastilm.optimizer") == "adamw", where, "is not an elastilm AdamW state file");
    AdamWOptions o;
    o.lr = float(g.get_float("elastilm.adamw.lr"));
    o.beta1 = float(g.get_float("elastilm.adamw.beta1"));
    o.beta2 = float(g.get_float("elastilm.adamw.beta2"));
    o.eps = float(g.get_float("elastilm.adamw.eps"));
    o.weight_decay = float(g.get_float("elastilm.adamw.weight_decay"));
    const std::uint64_t steps = g.get_uint("elastilm.adamw.step");
    require(g.get_uint("elastilm.adamw.n_layers") == params.layers.size(), where,
            "state is for " + std::to_string(g.get_uint("elastilm.adamw.n_layers")) + " layers, the adapter has " +
                std::to_string(params.layers.size()));
    std::size_t used = 0;
    auto moment = [&](const std::string& suffix) {
        LoraAdapter out;
        out.percent = params.percent;
        out.rank = params.rank;
        out.layers.resize(params.layers.size());
        for (std::size_t l = 0; l < params.layers.size(); ++l)
            for (std::size_t k = 0; k < kLayerMatrixCount; ++k) {
                const LoraPair& p = params.layers[l].pairs[k];
                if (p.empty()) continue;
                const std::string an = lora_tensor_name(int(l), k, false) + suffix, bn = lora_tensor_name(int(l), k, true) + suffix;
                const io::GgufTensor* a = g.find(an);
                const io::GgufTensor* b = g.find(bn);
                require(a && b, where, "tensor " + (a ? bn : an) + " is missing (the adapter has this matrix)");
                LoraPair q = detail::lora_pair_from(*a, *b, p.rank, where);
                require(q.rows == p.rows && q.cols == p.cols, where,
                        "tensor " + an + " is for a " + std::to_string(q.rows) + "x" + std::to_string(q.cols) + " matrix, the adapter's is " +
                            std::to_string(p.rows) + "x" + std::to_string(p.cols));
                const bool second = suffix == ".adam_v";
                for (const auto* x : {&q.a, &q.b})
                    if (!std::all_of(x->begin(), x->end(), [&](float e) { return std::isfinite(e) && (!second || e >= 0); }))
                        throw Error(where, "tensor " + (x == &q.a ? an : bn) + " holds a NaN, an infinity or a negative second moment");
                out.layers[l].pairs[k] = std::move(q);
                used += 2;
            }
        return out;
    };
    LoraAdapter m = moment(".adam_m"), v = moment(".adam_v");
    require(used == g.tensors().size(), where,
            "holds " + std::to_string(g.tensors().size()) + " tensors, the adapter's matrices account for " + std::to_string(used));
    return AdamW(o, steps, std::move(m), std::move(v));
}

// A training checkpoint: the adapter (loadable on its own, load_adapter_gguf) and, beside it, the
// optimizer state. Each file is replaced atomically and both record the step, so a run killed between
// the two writes is detected on resume instead of continuing from a mismatched pair.
inline void save_checkpoint(const LoraAdapter& params, const AdamW& opt, const std::filesystem::path& adapter_path,
                            const LoraModelIdentity& model) {
    save_adamw(opt, adamw_state_path(adapter_path));
    write_adapter_gguf(params, adapter_path, model, opt.steps());
}

template <ModelConfig Cfg>
std::pair<LoraAdapter, AdamW> load_checkpoint(const std::filesystem::path& adapter_path, const std::vector<int>& anchors,
                                              std::optional<int> percent = std::nullopt) {
    // The step first: a file that is not a checkpoint fails before its tensors are read.
    const io::GgufFile g = io::GgufFile::open(adapter_path);
    require(g.has("elastilm.lora.train_step"), g.where(),
            "is not a training checkpoint (no elastilm.lora.train_step; written by an older elastilm?); delete it and its "
            ".adamw.gguf to start over");
    const std::uint64_t step = g.get_uint("elastilm.lora.train_step");
    LoraAdapter params = load_adapter_gguf<Cfg>(adapter_path, anchors, percent);
    AdamW opt = load_adamw(adamw_state_path(adapter_path), params);
    require(step == opt.steps(), g.where(),
            "is at step " + std::to_string(step) + " but its optimizer state " + adamw_state_path(adapter_path).filename().string() +
                " is at step " + std::to_string(opt.steps()) + " (interrupted between the two writes?); delete both to start over");
    return {std::move(params), std::move(opt)};
}

}  // namespace elastilm
