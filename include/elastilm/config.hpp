// Compile-time model configurations and the width ratios carved out of them.
//
// Every shape the engine uses is derived here, once, as a constexpr: a model config gives the full
// LLaMA shape; Width<Cfg, Percent> gives the shape of the sub-model that keeps Percent% of the attention
// KV-head groups and FFN neurons (ElastiLM §3: permutation-consistent units, sliced as prefixes).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>

namespace elastilm {

// How RoPE pairs the elements of a head. Hugging Face checkpoints rotate the two halves of a head
// (element i with i + head_dim/2); llama2.c and GGUF rotate adjacent pairs (2i, 2i+1). It is a property
// of how the Q/K rows were laid out in the file, so the loader decides it per file.
enum class RopePairing : std::uint8_t { adjacent, halves };

constexpr std::string_view to_string(RopePairing p) { return p == RopePairing::adjacent ? "adjacent" : "halves"; }

// A model config is a type with these constexpr members; head_dim may differ from dim / n_heads.
template <class C>
concept ModelConfig = requires {
    { C::name } -> std::convertible_to<std::string_view>;
    { C::dim } -> std::convertible_to<int>;
    { C::hidden_dim } -> std::convertible_to<int>;
    { C::n_layers } -> std::convertible_to<int>;
    { C::n_heads } -> std::convertible_to<int>;
    { C::n_kv_heads } -> std::convertible_to<int>;
    { C::head_dim } -> std::convertible_to<int>;
    { C::vocab_size } -> std::convertible_to<int>;
    { C::context } -> std::convertible_to<int>;
    { C::rope_theta } -> std::convertible_to<float>;
    { C::norm_eps } -> std::convertible_to<float>;
    { C::rope_pairing } -> std::convertible_to<RopePairing>;
} && C::n_heads % C::n_kv_heads == 0;

// Shapes every config shares, derived from its fields.
template <ModelConfig C>
struct Shape {
    static constexpr int dim = C::dim;
    static constexpr int head_dim = C::head_dim;
    static constexpr int n_heads = C::n_heads;
    static constexpr int n_kv_heads = C::n_kv_heads;
    static constexpr int group_size = C::n_heads / C::n_kv_heads;  // query heads per KV head (GQA)
    static constexpr int q_dim = C::n_heads * C::head_dim;
    static constexpr int kv_dim = C::n_kv_heads * C::head_dim;
    static constexpr int hidden_dim = C::hidden_dim;
};

// ---- The configs -------------------------------------------------------------------------------------

// karpathy/tinyllamas stories260K (../shared/models/stories260K.bin), llama2.c layout.
struct Stories260K {
    static constexpr std::string_view name = "stories260K";
    static constexpr int dim = 64, hidden_dim = 172, n_layers = 5, n_heads = 8, n_kv_heads = 4;
    static constexpr int head_dim = dim / n_heads, vocab_size = 512, context = 512;
    static constexpr float rope_theta = 10000.0f, norm_eps = 1e-5f;
    static constexpr RopePairing rope_pairing = RopePairing::adjacent;
};

// The project's trained model (../shared/models/tiny-gqa-15M), Hugging Face layout.
struct TinyGqa15M {
    static constexpr std::string_view name = "tiny-gqa-15M";
    static constexpr int dim = 288, hidden_dim = 768, n_layers = 6, n_heads = 6, n_kv_heads = 2;
    static constexpr int head_dim = 48, vocab_size = 32000, context = 256;
    static constexpr float rope_theta = 10000.0f, norm_eps = 1e-5f;
    static constexpr RopePairing rope_pairing = RopePairing::halves;
};

// The service's served model (../shared/models/docs-95M), Hugging Face layout. Multi-head attention:
// every KV group is one head, so a ratio slices single heads.
struct Docs95M {
    static constexpr std::string_view name = "docs-95M";
    static constexpr int dim = 768, hidden_dim = 1536, n_layers = 12, n_heads = 12, n_kv_heads = 12;
    static constexpr int head_dim = 64, vocab_size = 32000, context = 1024;
    static constexpr float rope_theta = 10000.0f, norm_eps = 1e-5f;
    static constexpr RopePairing rope_pairing = RopePairing::halves;
};

// docs-95M's TLM trunk (../shared/models/docs-tlm-15M): tiny-gqa-15M's shape with a 1024-token context,
// trained on the same corpus and vocabulary as docs-95M.
struct DocsTlm15M {
    static constexpr std::string_view name = "docs-tlm-15M";
    static constexpr int dim = 288, hidden_dim = 768, n_layers = 6, n_heads = 6, n_kv_heads = 2;
    static constexpr int head_dim = 48, vocab_size = 32000, context = 1024;
    static constexpr float rope_theta = 10000.0f, norm_eps = 1e-5f;
    static constexpr RopePairing rope_pairing = RopePairing::halves;
};

struct TinyLlama1B {
    static constexpr std::string_view name = "TinyLlama-1.1B";
    static constexpr int dim = 2048, hidden_dim = 5632, n_layers = 22, n_heads = 32, n_kv_heads = 4;
    static constexpr int head_dim = 64, vocab_size = 32000, context = 2048;
    static constexpr float rope_theta = 10000.0f, norm_eps = 1e-5f;
    static constexpr RopePairing rope_pairing = RopePairing::adjacent;
};

// orca_mini_3b / OpenLLaMA-3B: the paper's demo model.
struct OpenLlama3B {
    static constexpr std::string_view name = "OpenLLaMA-3B";
    static constexpr int dim = 3200, hidden_dim = 8640, n_layers = 26, n_heads = 32, n_kv_heads = 32;
    static constexpr int head_dim = 100, vocab_size = 32000, context = 2048;
    static constexpr float rope_theta = 10000.0f, norm_eps = 1e-6f;
    static constexpr RopePairing rope_pairing = RopePairing::adjacent;
};

struct Llama2_7B {
    static constexpr std::string_view name = "Llama-2-7B";
    static constexpr int dim = 4096, hidden_dim = 11008, n_layers = 32, n_heads = 32, n_kv_heads = 32;
    static constexpr int head_dim = 128, vocab_size = 32000, context = 4096;
    static constexpr float rope_theta = 10000.0f, norm_eps = 1e-5f;
    static constexpr RopePairing rope_pairing = RopePairing::adjacent;
};

// ---- Width ratios ------------------------------------------------------------------------------------

// The nine compiled ratios, in percent of the full width.
inline constexpr std::array<int, 9> kRatios = {20, 30, 40, 50, 60, 70, 80, 90, 100};

// FFN neuron counts are rounded up to this many so a sliced row block stays a whole number of SIMD
// vectors (16 fp32 lanes = one AVX-512 register, two AVX2 or four NEON registers) and W_down's sliced
// inputs stay whole Q8_0 / Q4_0 blocks of 32 (simd/quant_blocks.hpp): 32 is the smallest multiple that
// lets every ratio of a quantized model read a prefix of whole blocks.
inline constexpr int kFfnUnitMultiple = 32;

constexpr int round_div(int num, int den) { return (num + den / 2) / den; }  // round half up, num >= 0
constexpr int round_up(int x, int multiple) { return (x + multiple - 1) / multiple * multiple; }

// Width<Cfg, Percent>: the sub-model keeping `Percent`% of each sliced layer.
// GQA groups stay whole: it keeps the first kv_heads KV heads and all their query heads (at least one
// group). Hidden size, embeddings, norms and LM head are never sliced.
// Only the sliced sizes live here; the full model's are Shape<C>'s (dim, head_dim and group_size are
// the same at every width), so a name never means the full size in one place and the sliced one in another.
template <ModelConfig C, int Percent>
    requires(Percent > 0 && Percent <= 100)
struct Width {
    static constexpr int percent = Percent;
    static constexpr int kv_heads = std::max(1, round_div(Percent * C::n_kv_heads, 100));
    static constexpr int heads = kv_heads * (C::n_heads / C::n_kv_heads);
    static constexpr int q_dim = heads * C::head_dim;
    static constexpr int kv_dim = kv_heads * C::head_dim;
    static constexpr int hidden = Percent == 100 ? C::hidden_dim
        : std::min(C::hidden_dim, round_up(std::max(1, round_div(Percent * C::hidden_dim, 100)), kFfnUnitMultiple));
};

// Index of a percent in kRatios, or -1.
constexpr int ratio_index(int percent) {
    for (std::size_t i = 0; i < kRatios.size(); ++i)
        if (kRatios[i] == percent) return static_cast<int>(i);
    return -1;
}

}  // namespace elastilm
