// A hook into the forward pass for tools that need activations (the elasticizer's calibration, the
// TLM's features). Serving runs with no observer: the cost is one null check per layer.
#pragma once

namespace elastilm {

struct ForwardObserver {
    virtual ~ForwardObserver() = default;
    // Residual stream entering layer l, n tokens × dim.
    virtual void layer_input(int /*l*/, const float* /*x*/, int /*n*/) {}
    // Attention output before Wo, n tokens × q_dim (query heads in order, head_dim each).
    virtual void attention_heads(int /*l*/, const float* /*att*/, int /*n*/, int /*q_dim*/) {}
    // FFN activation silu(gate) ⊙ up before W_down, n tokens × hidden.
    virtual void ffn_hidden(int /*l*/, const float* /*h*/, int /*n*/, int /*hidden*/) {}
    // Residual stream leaving layer l.
    virtual void layer_output(int /*l*/, const float* /*x*/, int /*n*/) {}
    // Final residual stream (before the final norm) of tokens [pos0, pos0 + n).
    virtual void final_hidden(int /*pos0*/, const float* /*x*/, int /*n*/) {}
};

}  // namespace elastilm
