// The forward pass of the sub-model at `Percent`% width: embed, the blocks in order (anchor layers at
// full width; layers the activations mark as skipped are left out), final norm, LM head. The same code serves prefill (a block of tokens, matmul) and decode
// (one token, matvec); it is instantiated once per (config, ratio) and called through the variant table.
#pragma once

#include <algorithm>
#include <span>

#include "elastilm/model/block.hpp"

namespace elastilm {

enum class Logits { none, last, all };

// Runs tokens at positions [pos0, pos0 + tokens.size()) through the model, writing their K/V into
// `cache`. Logits go to `logits`: vocab floats for Logits::last, tokens.size() × vocab for Logits::all.
// Inputs are trusted here (Session validates them): this is the hot path.
template <ModelConfig Cfg, int Percent>
void forward(const Model<Cfg>& m, KvCache<Cfg>& cache, std::span<const int> tokens, int pos0, Activations<Cfg>& a,
             float* logits, Logits which, ThreadPool& pool) {
    constexpr int dim = Cfg::dim;
    const int total = int(tokens.size());
    const LoraRuntime* adapter = m.adapter_runtime(Percent);  // this ratio's recovery adapter, or null
    for (int done = 0; done < total; done += a.capacity) {
        const int n = std::min(a.capacity, total - done);
        for (int t = 0; t < n; ++t) m.embed(tokens[done + t], a.x.data() + std::size_t(t) * dim);
        for (int l = 0; l < Cfg::n_layers; ++l) {
            if (a.skipped_layers >> l & 1) continue;
            if (a.observer) a.observer->layer_input(l, a.x.data(), n);
            const LayerLora lora = adapter ? LayerLora{&adapter->layers[l], adapter->scale} : LayerLora{};
            if (m.is_anchor(l)) Block<Cfg, 100>::run(m, l, cache, pos0 + done, n, a, pool, lora);
            else Block<Cfg, Percent>::run(m, l, cache, pos0 + done, n, a, pool, lora);
            if (a.observer) a.observer->layer_output(l, a.x.data(), n);
        }
        if (a.observer) a.observer->final_hidden(pos0 + done, a.x.data(), n);
        if (which == Logits::none) continue;
        // Logits::last needs only the final token of the final chunk.
        const bool last_chunk = done + n == total;
        if (which == Logits::last && !last_chunk) continue;
        const int first = which == Logits::last ? n - 1 : 0;
        const int rows = n - first;
        const MatrixView& head = m.weights().lm_head;
        for (int t = first; t < n; ++t)
            rmsnorm(a.xb.data() + std::size_t(t - first) * dim, a.x.data() + std::size_t(t) * dim,
                    m.weights().final_norm.data(), dim, Cfg::norm_eps);
        float* out = which == Logits::all ? logits + std::size_t(done) * Cfg::vocab_size : logits;
        linear(out, Cfg::vocab_size, head.prefix(Cfg::vocab_size, dim), a.xb.data(), dim, rows, pool);
    }
}

}  // namespace elastilm
