// LoRA adapter files: GGUF (llama.cpp convention + elastilm keys) and Hugging Face PEFT folders.
// Round trips are bit exact; every refusal names the key or tensor at fault; damaged bytes give an Error.
#include <gtest/gtest.h>

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "elastilm/io/gguf.hpp"
#include "elastilm/io/gguf_writer.hpp"
#include "elastilm/io/safetensors_writer.hpp"
#include "elastilm/lora/adapter_gguf.hpp"
#include "elastilm/lora/peft.hpp"
#include "elastilm/simd/f16.hpp"

namespace elastilm {
namespace {

namespace fs = std::filesystem;

fs::path temp_path(const std::string& name) {
    return fs::temp_directory_path() / ("elastilm_lora_io_" + std::to_string(::getpid()) + "_" + name);
}

std::vector<std::byte> read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    const std::string t = s.str();
    const auto* b = reinterpret_cast<const std::byte*>(t.data());
    return {b, b + t.size()};
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// Passes when f() throws an Error whose message contains `text`.
template <class F>
::testing::AssertionResult fails_with(F&& f, const std::string& text) {
    const std::string e = error_of(f);
    if (e.find(text) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "error \"" << e << "\" does not contain \"" << text << "\"";
}

// A trained-looking adapter: make_lora's A, a random non-zero B, and one matrix left unadapted.
template <ModelConfig Cfg>
LoraAdapter trained(int percent, const std::vector<int>& anchors, int rank, float alpha, std::uint64_t seed = 7) {
    LoraAdapter ad = make_lora<Cfg>(percent, anchors, rank, alpha, seed);
    std::mt19937 rng{std::uint32_t(seed)};
    std::normal_distribution<float> n(0.0f, 0.02f);
    for (auto& l : ad.layers)
        for (auto& p : l.pairs)
            for (float& v : p.b) v = n(rng);
    ad.layers[1].pairs[lora_slot::k] = LoraPair{};  // no adapter on blk.1.attn_k
    return ad;
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
}

void expect_identical(const LoraAdapter& x, const LoraAdapter& y) {
    EXPECT_EQ(x.percent, y.percent);
    EXPECT_EQ(x.rank, y.rank);
    EXPECT_EQ(std::bit_cast<std::uint32_t>(x.alpha), std::bit_cast<std::uint32_t>(y.alpha));
    EXPECT_EQ(std::bit_cast<std::uint32_t>(x.scale_override), std::bit_cast<std::uint32_t>(y.scale_override));
    EXPECT_EQ(std::bit_cast<std::uint32_t>(x.scale()), std::bit_cast<std::uint32_t>(y.scale()));
    ASSERT_EQ(x.layers.size(), y.layers.size());
    for (std::size_t l = 0; l < x.layers.size(); ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            const LoraPair& p = x.layers[l].pairs[m];
            const LoraPair& q = y.layers[l].pairs[m];
            EXPECT_EQ(p.rank, q.rank) << LoraAdapter::tensor_name(int(l), m);
            EXPECT_EQ(p.rows, q.rows) << LoraAdapter::tensor_name(int(l), m);
            EXPECT_EQ(p.cols, q.cols) << LoraAdapter::tensor_name(int(l), m);
            EXPECT_TRUE(same_bits(p.a, q.a)) << LoraAdapter::tensor_name(int(l), m);
            EXPECT_TRUE(same_bits(p.b, q.b)) << LoraAdapter::tensor_name(int(l), m);
        }
}

const std::vector<int> kAnchors = {0, 5};  // TinyGqa15M: first and last layer at full width

// ---- GGUF --------------------------------------------------------------------------------------------

TEST(AdapterGguf, RoundTripIsBitExactAndFollowsLlamaCppConvention) {
    const auto path = temp_path("rt.gguf");
    LoraAdapter ad = trained<TinyGqa15M>(50, kAnchors, 4, 8.0f);
    write_adapter_gguf(ad, path, lora_identity<TinyGqa15M>(kAnchors));
    const LoraAdapter back = load_adapter_gguf<TinyGqa15M>(path, {5, 0}, 50);  // anchor order does not matter
    expect_identical(ad, back);
    EXPECT_TRUE(back.layers[1].pairs[lora_slot::k].empty());
    EXPECT_EQ(back.source, path.string());

    const io::GgufFile g = io::GgufFile::open(path);
    EXPECT_EQ(g.get_string("general.type"), "adapter");
    EXPECT_EQ(g.get_string("general.architecture"), "llama");
    EXPECT_EQ(g.get_string("adapter.type"), "lora");
    EXPECT_FLOAT_EQ(float(g.get_float("adapter.lora.alpha")), 8.0f);  // llama.cpp: scale = alpha / rank
    EXPECT_EQ(g.get_uint("elastilm.lora.ratio"), 50u);
    // lora_a row-major [rank, in] = GGUF ne [in, rank]; blk.1 is sliced: q rows = 144 at 50%.
    EXPECT_EQ(g.find("blk.1.attn_q.weight.lora_a")->shape, (std::vector<std::int64_t>{4, 288}));
    EXPECT_EQ(g.find("blk.1.attn_q.weight.lora_b")->shape, (std::vector<std::int64_t>{144, 4}));
    EXPECT_EQ(g.find("blk.0.attn_q.weight.lora_b")->shape, (std::vector<std::int64_t>{288, 4}));  // anchor: full
    EXPECT_EQ(g.find("blk.1.attn_k.weight.lora_a"), nullptr);
    EXPECT_EQ(g.tensors().size(), 6u * 7 * 2 - 2);
    fs::remove(path);
}

TEST(AdapterGguf, RsLoraScaleSurvivesAndLlamaCppSeesTheEffectiveAlpha) {
    const auto path = temp_path("rs.gguf");
    LoraAdapter ad = trained<Stories260K>(100, {}, 4, 16.0f);
    ad.scale_override = rslora_scale(16.0f, 4);
    write_adapter_gguf(ad, path, lora_identity<Stories260K>({}));
    const LoraAdapter back = load_adapter_gguf<Stories260K>(path, {});
    expect_identical(ad, back);
    EXPECT_FLOAT_EQ(back.scale(), 8.0f);
    EXPECT_FLOAT_EQ(float(io::GgufFile::open(path).get_float("adapter.lora.alpha")), 32.0f);  // 8 · rank
    fs::remove(path);
}

// The keys write_adapter_gguf writes, for hand-made files; `skip` leaves one out.
void adapter_keys(io::GgufWriter& g, const LoraModelIdentity& id, int percent, int rank, const std::string& skip = "") {
    auto want = [&](const char* k) { return skip != k; };
    if (want("general.type")) g.set_string("general.type", "adapter");
    if (want("adapter.type")) g.set_string("adapter.type", "lora");
    if (want("elastilm.lora.ratio")) g.set_u32("elastilm.lora.ratio", std::uint32_t(percent));
    if (want("elastilm.lora.rank")) g.set_u32("elastilm.lora.rank", std::uint32_t(rank));
    if (want("elastilm.lora.alpha")) g.set_f32("elastilm.lora.alpha", 2.0f * rank);
    if (want("elastilm.lora.model")) g.set_string("elastilm.lora.model", id.config);
    if (want("elastilm.lora.n_layers")) g.set_u32("elastilm.lora.n_layers", std::uint32_t(id.n_layers));
    if (want("elastilm.lora.dim")) g.set_u32("elastilm.lora.dim", std::uint32_t(id.dim));
    if (want("elastilm.lora.vocab")) g.set_u32("elastilm.lora.vocab", std::uint32_t(id.vocab));
    if (want("elastilm.lora.anchors")) g.set_i32_array("elastilm.lora.anchors", {id.anchors.begin(), id.anchors.end()});
}

TEST(AdapterGguf, F16TensorsAreAccepted) {
    const auto path = temp_path("f16.gguf");
    const LoraAdapter ad = trained<Stories260K>(60, {}, 2, 4.0f);
    io::GgufWriter g;
    adapter_keys(g, lora_identity<Stories260K>({}), 60, 2);
    std::vector<std::vector<f16_bits>> keep;
    for (int l = 0; l < Stories260K::n_layers; ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            const LoraPair& p = ad.layers[l].pairs[m];
            if (p.empty()) continue;
            for (bool b : {false, true}) {
                auto& h = keep.emplace_back();
                for (float v : b ? p.b : p.a) h.push_back(f32_to_f16(v));
                g.add_tensor(lora_tensor_name(l, m, b), b ? std::vector<std::int64_t>{p.rows, p.rank} : std::vector<std::int64_t>{p.rank, p.cols},
                             DType::f16, h.data());
            }
        }
    g.write(path);
    const LoraAdapter back = load_adapter_gguf<Stories260K>(path, {}, 60);
    for (int l = 0; l < Stories260K::n_layers; ++l)
        for (std::size_t m = 0; m < kLayerMatrixCount; ++m) {
            const LoraPair& p = ad.layers[l].pairs[m];
            const LoraPair& q = back.layers[l].pairs[m];
            ASSERT_EQ(p.a.size(), q.a.size());
            for (std::size_t i = 0; i < p.a.size(); ++i) EXPECT_EQ(q.a[i], f16_to_f32(f32_to_f16(p.a[i])));
            for (std::size_t i = 0; i < p.b.size(); ++i) EXPECT_EQ(q.b[i], f16_to_f32(f32_to_f16(p.b[i])));
        }
    fs::remove(path);
}

TEST(AdapterGguf, AnotherRatioModelOrAnchorSetIsRefusedClearly) {
    const auto path = temp_path("refuse.gguf");
    write_adapter_gguf(trained<TinyGqa15M>(50, kAnchors, 4, 8.0f), path, lora_identity<TinyGqa15M>(kAnchors));
    EXPECT_TRUE(fails_with([&] { (void)load_adapter_gguf<TinyGqa15M>(path, kAnchors, 70); }, "adapter is for the 50% width ratio, asked for 70%"));
    EXPECT_TRUE(fails_with([&] { (void)load_adapter_gguf<Stories260K>(path, {}); }, "adapter is for model tiny-gqa-15M, this model is stories260K"));
    EXPECT_TRUE(fails_with([&] { (void)load_adapter_gguf<TinyGqa15M>(path, {0}); }, "trained with anchor layers [0, 5], the model has [0]"));

    // Same config name, other dimensions (a Stories260K-sized adapter labelled tiny-gqa-15M).
    LoraModelIdentity liar = lora_identity<Stories260K>({});
    liar.config = std::string(TinyGqa15M::name);
    liar.n_layers = TinyGqa15M::n_layers;
    LoraAdapter small = trained<Stories260K>(100, {}, 2, 4.0f);
    small.layers.resize(TinyGqa15M::n_layers, small.layers[0]);
    write_adapter_gguf(small, path, liar);
    EXPECT_TRUE(fails_with([&] { (void)load_adapter_gguf<TinyGqa15M>(path, {}); }, "elastilm.lora.dim is 64, the model (tiny-gqa-15M) has 288"));

    // Identity right, shapes of another ratio: validate names the first wrong tensor.
    LoraAdapter wrong = trained<TinyGqa15M>(50, kAnchors, 4, 8.0f);
    wrong.percent = 100;
    write_adapter_gguf(wrong, path, lora_identity<TinyGqa15M>(kAnchors));
    EXPECT_TRUE(fails_with([&] { (void)load_adapter_gguf<TinyGqa15M>(path, kAnchors); }, "blk.1.attn_q.weight adapter is 144x288, but at 100% width the matrix is 288x288"));
    fs::remove(path);
}

TEST(AdapterGguf, NanWeightsAreRefusedNamingTheTensor) {
    const auto path = temp_path("nan.gguf");
    LoraAdapter ad = trained<Stories260K>(100, {}, 2, 4.0f);
    ad.layers[2].pairs[lora_slot::up].a[3] = std::numeric_limits<float>::quiet_NaN();
    write_adapter_gguf(ad, path, lora_identity<Stories260K>({}));
    EXPECT_TRUE(fails_with([&] { (void)load_adapter_gguf<Stories260K>(path, {}); }, "blk.2.ffn_up.weight.lora_a holds a NaN"));
    fs::remove(path);
    // The model-typed writer validates first and writes nothing.
    EXPECT_TRUE(fails_with([&] { write_adapter_gguf<Stories260K>(ad, path, {}); }, "blk.2.ffn_up.weight.lora_a holds a NaN"));
    EXPECT_FALSE(fs::exists(path));
    ad.layers[2].pairs[lora_slot::up].a[3] = 0.5f;
    write_adapter_gguf<Stories260K>(ad, path, {});
    expect_identical(ad, load_adapter_gguf<Stories260K>(path, {}));
    fs::remove(path);
}

TEST(AdapterGguf, HandMadeFilesWithWrongPiecesAreRefusedNamingThem) {
    const auto path = temp_path("hand.gguf");
    const auto id = lora_identity<Stories260K>({});
    const int rows = Stories260K::n_heads * Stories260K::head_dim, cols = Stories260K::dim;
    const std::vector<float> a(std::size_t(4) * cols, 0.5f), b(std::size_t(rows) * 4, 0.25f), b3(std::size_t(rows) * 3, 0.25f);
    auto load = [&] { return load_adapter_gguf<Stories260K>(path, {}); };

    for (const char* key : {"elastilm.lora.rank", "elastilm.lora.model", "elastilm.lora.alpha", "elastilm.lora.anchors", "adapter.type"}) {
        io::GgufWriter g;
        adapter_keys(g, id, 100, 4, key);
        g.write(path);
        EXPECT_TRUE(fails_with([&] { (void)load(); }, std::string(key) + " is missing"));
    }
    {
        io::GgufWriter g;
        adapter_keys(g, id, 100, 4, "general.type");
        g.write(path);
        EXPECT_TRUE(fails_with([&] { (void)load(); }, "is not a LoRA adapter (general.type is missing"));
    }
    {
        io::GgufWriter g;
        adapter_keys(g, id, 100, 4, "elastilm.lora.ratio");
        g.write(path);
        EXPECT_TRUE(fails_with([&] { (void)load(); }, "no elastilm.lora.ratio"));
    }
    {  // A and B disagree on the rank.
        io::GgufWriter g;
        adapter_keys(g, id, 100, 4);
        g.add_tensor("blk.3.attn_q.weight.lora_a", {4, cols}, DType::f32, a.data());
        g.add_tensor("blk.3.attn_q.weight.lora_b", {rows, 3}, DType::f32, b3.data());
        g.write(path);
        EXPECT_TRUE(fails_with([&] { (void)load(); }, "rank mismatch: blk.3.attn_q.weight.lora_a has rank 4"));
    }
    {  // Both rank 4, but the adapter says 8.
        io::GgufWriter g;
        adapter_keys(g, id, 100, 8);
        g.add_tensor("blk.3.attn_q.weight.lora_a", {4, cols}, DType::f32, a.data());
        g.add_tensor("blk.3.attn_q.weight.lora_b", {rows, 4}, DType::f32, b.data());
        g.write(path);
        EXPECT_TRUE(fails_with([&] { (void)load(); }, "blk.3.attn_q.weight.lora_a has rank 4, the adapter declares rank 8"));
    }
    {  // lora_a alone.
        io::GgufWriter g;
        adapter_keys(g, id, 100, 4);
        g.add_tensor("blk.3.attn_q.weight.lora_a", {4, cols}, DType::f32, a.data());
        g.write(path);
        EXPECT_TRUE(fails_with([&] { (void)load(); }, "tensor blk.3.attn_q.weight.lora_b is missing"));
    }
    {  // A layer the model does not have, and a tensor that is no adapter.
        for (const char* name : {"blk.5.attn_q.weight.lora_a", "output.weight.lora_a"}) {
            io::GgufWriter g;
            adapter_keys(g, id, 100, 4);
            g.add_tensor(name, {4, cols}, DType::f32, a.data());
            g.write(path);
            EXPECT_TRUE(fails_with([&] { (void)load(); }, std::string("unexpected tensor ") + name));
        }
    }
    {  // Transposed B (the [rank, out] mistake): the shape check names it.
        io::GgufWriter g;
        adapter_keys(g, id, 100, 4);
        g.add_tensor("blk.3.attn_q.weight.lora_a", {4, cols}, DType::f32, a.data());
        g.add_tensor("blk.3.attn_q.weight.lora_b", {4, rows}, DType::f32, b.data());
        g.write(path);
        EXPECT_TRUE(fails_with([&] { (void)load(); }, "blk.3.attn_q.weight.lora_b"));
    }
    fs::remove(path);
}

TEST(AdapterGguf, TruncatedOrCorruptBytesGiveAnErrorNeverACrash) {
    const auto path = temp_path("cut.gguf");
    write_adapter_gguf(trained<Stories260K>(100, {}, 2, 4.0f), path, lora_identity<Stories260K>({}));
    const std::vector<std::byte> bytes = read_bytes(path);
    fs::remove(path);
    auto parse = [&](const std::vector<std::byte>& b) { return parse_adapter_gguf<Stories260K>(b, "t.gguf", {}); };
    ASSERT_NO_THROW(parse(bytes));
    int errors = 0;
    for (std::size_t cut = 0; cut < bytes.size(); cut += bytes.size() / 97 + 1) {
        EXPECT_THROW(parse({bytes.begin(), bytes.begin() + std::ptrdiff_t(cut)}), Error) << cut;
        ++errors;
    }
    EXPECT_GT(errors, 90);
    std::mt19937 rng(3);
    int refused = 0;
    for (int trial = 0; trial < 400; ++trial) {
        std::vector<std::byte> b = bytes;
        for (int k = 0; k < 3; ++k) b[rng() % b.size()] = std::byte(rng());
        try {
            parse(b);
        } catch (const Error&) {
            ++refused;
        }
    }
    EXPECT_GT(refused, 0);
}

// ---- PEFT --------------------------------------------------------------------------------------------

TEST(Peft, RoundTripIsBitExactWithTheRatioInTheConfig) {
    const auto dir = temp_path("peft_rt");
    LoraAdapter ad = trained<TinyGqa15M>(30, kAnchors, 8, 16.0f);
    for (auto& l : ad.layers) l.pairs[lora_slot::gate] = LoraPair{};  // no gate_proj anywhere
    write_peft(ad, dir, "tiny-gqa-15M");
    const LoraAdapter back = load_peft<TinyGqa15M>(dir, kAnchors);
    expect_identical(ad, back);
    EXPECT_EQ(back.source, dir.string());

    const auto config = nlohmann::json::parse(read_text(dir / "adapter_config.json"));
    EXPECT_EQ(config["r"], 8);
    EXPECT_EQ(config["elastilm_ratio"], 30);
    EXPECT_EQ(config["use_rslora"], false);
    EXPECT_EQ(config["target_modules"], nlohmann::json({"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"}));
    const auto st = io::SafetensorsFile::open(dir / "adapter_model.safetensors");
    EXPECT_EQ(st.find("base_model.model.model.layers.2.mlp.down_proj.lora_A.weight")->shape,
              (std::vector<std::int64_t>{8, Width<TinyGqa15M, 30>::hidden}));
    EXPECT_EQ(st.find("base_model.model.model.layers.2.mlp.down_proj.lora_B.weight")->shape, (std::vector<std::int64_t>{288, 8}));
    EXPECT_EQ(load_peft<TinyGqa15M>(dir, kAnchors, 30).percent, 30);
    EXPECT_TRUE(fails_with([&] { (void)load_peft<TinyGqa15M>(dir, kAnchors, 50); }, "adapter is for the 30% width ratio (elastilm_ratio), asked for 50%"));
    fs::remove_all(dir);
}

// A PEFT folder as Hugging Face writes it: q_proj and v_proj only, no elastilm key, extra keys PEFT adds.
struct HandPeft {
    std::string config;
    std::vector<std::byte> weights;
};

HandPeft hand_peft(const std::string& config_extra, int a_rank = 4, int b_rank = 4, bool nan = false) {
    constexpr int dim = Stories260K::dim;
    io::SafetensorsWriter st;
    for (int l = 0; l < Stories260K::n_layers; ++l)
        for (const char* m : {"self_attn.q_proj", "self_attn.v_proj"}) {
            const int rows = std::string(m) == "self_attn.q_proj" ? dim : Stories260K::n_kv_heads * Stories260K::head_dim;
            std::vector<float> a(std::size_t(a_rank) * dim), b(std::size_t(rows) * b_rank);
            for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(l * 1000 + int(i)) * 1e-4f;
            for (std::size_t i = 0; i < b.size(); ++i) b[i] = -float(l * 1000 + int(i)) * 1e-4f;
            if (nan && l == 2) b[5] = std::numeric_limits<float>::quiet_NaN();
            const std::string p = "base_model.model.model.layers." + std::to_string(l) + "." + m;
            st.add_tensor(p + ".lora_A.weight", {a_rank, dim}, DType::f32, a.data());
            st.add_tensor(p + ".lora_B.weight", {rows, b_rank}, DType::f32, b.data());
        }
    std::string config = R"({"alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "stories260K", "bias": "none",
        "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true, "layers_pattern": null,
        "layers_to_transform": null, "lora_alpha": 16, "lora_dropout": 0.05, "modules_to_save": null,
        "peft_type": "LORA", "r": 4, "rank_pattern": {}, "revision": null, "target_modules": ["q_proj", "v_proj"],
        "task_type": "CAUSAL_LM", "use_dora": false, "use_rslora": false)" + config_extra + "}";
    return {config, st.bytes()};
}

LoraAdapter parse_hand(const HandPeft& h, std::optional<int> percent = 100) {
    return parse_peft<Stories260K>(h.config, h.weights, {}, percent, "hand");
}

TEST(Peft, AHuggingFaceFolderLoadsIntoTheRightPairs) {
    const LoraAdapter ad = parse_hand(hand_peft(""));
    EXPECT_EQ(ad.percent, 100);
    EXPECT_EQ(ad.rank, 4);
    EXPECT_FLOAT_EQ(ad.scale(), 4.0f);  // 16 / 4
    const LoraPair& q3 = ad.layers[3].pairs[lora_slot::q];
    EXPECT_EQ(q3.rows, 64);
    EXPECT_EQ(q3.cols, 64);
    EXPECT_FLOAT_EQ(q3.a[1 * 64 + 2], float(3000 + 66) * 1e-4f);  // A[1, 2]: row-major [r, in]
    EXPECT_FLOAT_EQ(q3.b[5 * 4 + 1], -float(3000 + 21) * 1e-4f);  // B[5, 1]: row-major [out, r]
    EXPECT_EQ(ad.layers[3].pairs[lora_slot::v].rows, 32);
    EXPECT_TRUE(ad.layers[3].pairs[lora_slot::k].empty());
    EXPECT_TRUE(ad.layers[3].pairs[lora_slot::down].empty());
    // Without elastilm_ratio the ratio must be given.
    EXPECT_TRUE(fails_with([&] { (void)parse_hand(hand_peft(""), std::nullopt); }, "no width ratio"));
    EXPECT_EQ(parse_hand(hand_peft(R"(, "elastilm_ratio": 100)"), std::nullopt).percent, 100);
    EXPECT_TRUE(fails_with([&] { (void)parse_hand(hand_peft(R"(, "elastilm_ratio": 35)"), std::nullopt); }, "elastilm_ratio is 35, not a compiled width ratio"));
}

TEST(Peft, RsLoraScalesByAlphaOverSqrtRankAndWritesBack) {
    HandPeft h = hand_peft("");
    h.config.replace(h.config.find(R"("use_rslora": false)"), 19, R"("use_rslora": true )");
    const LoraAdapter ad = parse_hand(h);
    EXPECT_FLOAT_EQ(ad.scale(), 8.0f);  // 16 / sqrt(4), not 16 / 4
    EXPECT_FLOAT_EQ(ad.alpha, 16.0f);
    const auto dir = temp_path("peft_rs");
    LoraAdapter with_ratio = ad;
    write_peft(with_ratio, dir);
    const auto config = nlohmann::json::parse(read_text(dir / "adapter_config.json"));
    EXPECT_EQ(config["use_rslora"], true);
    EXPECT_EQ(config["lora_alpha"], 16.0);
    expect_identical(ad, load_peft<Stories260K>(dir, {}));
    // An override that is not rsLoRA's is written as the alpha giving it under alpha / r.
    with_ratio.scale_override = 3.0f;
    write_peft(with_ratio, dir);
    const LoraAdapter back = load_peft<Stories260K>(dir, {});
    EXPECT_FLOAT_EQ(back.scale(), 3.0f);
    EXPECT_FLOAT_EQ(back.alpha, 12.0f);
    fs::remove_all(dir);
}

TEST(Peft, UnsupportedVariantsAndBadConfigsAreRefusedNamingTheKey) {
    // The extra keys repeat keys of the base config: nlohmann::json keeps the last one, as Python's json does.
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"(, "fan_in_fan_out": true)", "fan_in_fan_out is true"},
        {R"(, "use_dora": true)", "use_dora is true"},
        {R"(, "rank_pattern": {"q_proj": 8})", "rank_pattern is set"},
        {R"(, "alpha_pattern": {"v_proj": 2})", "alpha_pattern is set"},
        {R"(, "modules_to_save": ["lm_head"])", "modules_to_save is set"},
        {R"(, "bias": "all")", "bias is \"all\""},
        {R"(, "peft_type": "LOHA")", "peft_type is \"LOHA\""},
        {R"(, "r": "4")", "r is \"4\", expected an integer"},
        {R"(, "r": 0)", "r is 0"},
        {R"(, "r": null)", "missing r"},
        {R"(, "lora_alpha": null)", "missing lora_alpha"},
        {R"(, "lora_alpha": [1])", "lora_alpha is [1]"},
        {R"(, "use_rslora": "yes")", "use_rslora should be true or false"},
        {R"(, "target_modules": null)", "missing target_modules"},
        {R"(, "target_modules": ["q_proj", "lm_head"])", "target_modules names \"lm_head\""},
        {R"(, "target_modules": ["q_proj"])", "adapts v_proj, which target_modules in the config does not list"},
        {R"(, "target_modules": 7)", "target_modules should be a list"},
    };
    for (const auto& c : cases) EXPECT_TRUE(fails_with([&] { (void)parse_hand(hand_peft(c.first)); }, c.second)) << c.first;
    // A regex string leaves the decision to the tensors present.
    EXPECT_NO_THROW(parse_hand(hand_peft(R"(, "target_modules": ".*(q_proj|v_proj)$")")));
    EXPECT_NO_THROW(parse_hand(hand_peft(R"(, "target_modules": ["model.layers.0.self_attn.q_proj", "v_proj"])")));
    EXPECT_TRUE(fails_with([&] { (void)parse_peft<Stories260K>("{\"r\": 4,", {}, {}, 100, "hand"); }, "adapter_config.json: not valid JSON"));
    EXPECT_TRUE(fails_with([&] { (void)parse_peft<Stories260K>("[]", {}, {}, 100, "hand"); }, "not a JSON object"));
}

TEST(Peft, TensorProblemsAreRefusedNamingTheTensor) {
    EXPECT_TRUE(fails_with([&] { (void)parse_hand(hand_peft("", 4, 3)); },
                     "rank mismatch: base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight has rank 4"));
    EXPECT_TRUE(fails_with([&] { (void)parse_hand(hand_peft("", 2, 2)); },
                     "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight has rank 2, the adapter declares rank 4"));
    EXPECT_TRUE(fails_with([&] { (void)parse_hand(hand_peft("", 4, 4, true)); }, "blk.2.attn_q.weight.lora_b holds a NaN"));
    // Another model: Stories260K tensors read as TinyGqa15M.
    const HandPeft h = hand_peft("");
    EXPECT_TRUE(fails_with([&] { (void)parse_peft<TinyGqa15M>(h.config, h.weights, {}, 100, "hand"); },
                     "blk.0.attn_q.weight adapter is 64x64, but at 100% width the matrix is 288x288"));
    // A ratio whose slices differ: q_proj of Stories260K at 50% has 32 rows.
    EXPECT_TRUE(fails_with([&] { (void)parse_hand(h, 50); }, "blk.0.attn_q.weight adapter is 64x64, but at 50% width the matrix is 32x64"));
    // Missing partner and foreign tensors.
    io::SafetensorsWriter st;
    const std::vector<float> a(4 * 64, 0.1f);
    st.add_tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", {4, 64}, DType::f32, a.data());
    EXPECT_TRUE(fails_with([&] { (void)parse_peft<Stories260K>(h.config, st.bytes(), {}, 100, "hand"); },
                     "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight is missing"));
    io::SafetensorsWriter foreign;
    foreign.add_tensor("base_model.model.lm_head.lora_A.weight", {4, 64}, DType::f32, a.data());
    EXPECT_TRUE(fails_with([&] { (void)parse_peft<Stories260K>(h.config, foreign.bytes(), {}, 100, "hand"); },
                     "unexpected tensor base_model.model.lm_head.lora_A.weight"));
    io::SafetensorsWriter deep;
    deep.add_tensor("base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight", {4, 64}, DType::f32, a.data());
    EXPECT_TRUE(fails_with([&] { (void)parse_peft<Stories260K>(h.config, deep.bytes(), {}, 100, "hand"); }, "unexpected tensor base_model.model.model.layers.9"));
}

TEST(Peft, TruncatedOrCorruptFilesGiveAnErrorNeverACrash) {
    const HandPeft h = hand_peft("");
    ASSERT_NO_THROW(parse_hand(h));
    for (std::size_t cut = 0; cut < h.weights.size(); cut += h.weights.size() / 101 + 1)
        EXPECT_THROW(parse_peft<Stories260K>(h.config, {h.weights.data(), cut}, {}, 100, "hand"), Error) << cut;
    for (std::size_t cut = 0; cut < h.config.size(); cut += 7)
        EXPECT_THROW(parse_peft<Stories260K>(h.config.substr(0, cut), h.weights, {}, 100, "hand"), Error) << cut;
    std::mt19937 rng(5);
    int refused = 0;
    for (int trial = 0; trial < 300; ++trial) {
        std::vector<std::byte> w = h.weights;
        std::string c = h.config;
        for (int k = 0; k < 2; ++k) w[8 + rng() % 600] = std::byte(rng());  // inside the JSON header
        c[rng() % c.size()] = char(rng());
        try {
            parse_peft<Stories260K>(trial % 2 ? c : h.config, w, {}, 100, "hand");
        } catch (const Error&) {
            ++refused;
        }
    }
    EXPECT_GT(refused, 150);
    EXPECT_TRUE(fails_with([&] { (void)load_peft<Stories260K>(temp_path("no_such_folder"), {}, 100); }, "is not a folder"));
}

}  // namespace
}  // namespace elastilm
