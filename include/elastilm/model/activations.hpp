// Scratch buffers of one forward pass over up to `capacity` tokens, sized for the full width so every
// ratio's variant can use them. Allocated once per session, never on the token path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/model/lora_apply.hpp"
#include "elastilm/model/observer.hpp"

namespace elastilm {

template <ModelConfig Cfg>
struct Activations {
    using S = Shape<Cfg>;

    explicit Activations(int capacity)
        : capacity(capacity),
          x(std::size_t(capacity) * S::dim), xb(x.size()), proj(x.size()),
          q(std::size_t(capacity) * S::q_dim), k(std::size_t(capacity) * S::kv_dim), v(k.size()),
          att_out(q.size()),
          gate(std::size_t(capacity) * S::hidden_dim), up(gate.size()) {}

    int capacity;
    std::vector<float> x;        // [n, dim] residual stream
    std::vector<float> xb;       // [n, dim] normalised input of a sub-layer
    std::vector<float> proj;     // [n, dim] output of wo / w_down before the residual add
    std::vector<float> q;        // [n, q_dim]
    std::vector<float> k, v;     // [n, kv_dim]
    std::vector<float> att_out;  // [n, q_dim]
    std::vector<float> gate, up; // [n, hidden]
    LoraScratch lora;            // adapter products (grows on first use)
    ForwardObserver* observer = nullptr;  // calibration / feature hooks; null when serving
    // Bit l set: layer l is skipped, the residual stream passes it unchanged (layer dropping, ShortGPT's
    // baseline to width elasticity). Its K/V are then never written or read.
    std::uint64_t skipped_layers = 0;
    double attention_seconds = 0;         // time in attention over the cache, summed (benches read its share)
};

}  // namespace elastilm
