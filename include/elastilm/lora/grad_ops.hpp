// Backward passes of the forward ops (include/elastilm/ops/), for LoRA recovery training.
//
// Only the LoRA pairs learn: base weights, norm weights and embeddings are frozen, so each backward
// returns the gradient of its input (and, for the adapted linear layer, accumulates dA and dB) — never
// a gradient of a frozen weight. Everything works over one sequence of n tokens held token-major
// ([n, width] row-major) unless said otherwise, with the same conventions as the forward ops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "elastilm/config.hpp"
#include "elastilm/model/lora_adapter.hpp"
#include "elastilm/model/linear.hpp"
#include "elastilm/ops/attention.hpp"
#include "elastilm/ops/rope.hpp"
#include "elastilm/ops/softmax.hpp"
#include "elastilm/runtime/thread_pool.hpp"
#include "elastilm/simd/f16_widen.hpp"
#include "elastilm/tensor.hpp"

namespace elastilm {

// Wᵀ as a view: element (i, j) of W is element (j, i) of Wᵀ at the same address, so the transpose is
// the same bytes with rows and cols swapped and the layout flipped (ld unchanged). linear() on it
// computes Wᵀ·y with the existing matvec / GEMM kernels.
constexpr MatrixView transposed(const MatrixView& W) {
    MatrixView t = W;
    t.rows = W.cols;
    t.cols = W.rows;
    t.layout = W.layout == Layout::out_major ? Layout::in_major : Layout::out_major;
    return t;
}

// ---- RMSNorm -----------------------------------------------------------------------------------------

// y = x·r⊙w with r = 1/sqrt(mean(x²) + eps). With g = dy⊙w:  dx = r·g − r³·x·(g·x)/n.
// ADDS the result to dx (the norm sits on a residual branch, whose gradient is already there).
inline void rmsnorm_backward(float* dx, const float* dy, const float* x, const float* weight, int n, float eps) {
    double ss = 0, gx = 0;
    for (int i = 0; i < n; ++i) {
        ss += double(x[i]) * x[i];
        gx += double(dy[i]) * weight[i] * x[i];
    }
    const double r = 1.0 / std::sqrt(ss / n + eps);
    const float a = float(r), b = float(r * r * r * gx / n);
    for (int i = 0; i < n; ++i) dx[i] += a * dy[i] * weight[i] - b * x[i];
}

// ---- RoPE --------------------------------------------------------------------------------------------

// RoPE is a rotation per pair, so its backward is the inverse rotation (by −angle) of the gradient.
// In place on n_heads heads of head_dim floats, same pairing as apply_rope.
inline void rope_backward(float* d, int n_heads, int head_dim, int pos, const RopeTable& table, RopePairing pairing) {
    const float* c = table.cos(pos);
    const float* s = table.sin(pos);
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; ++h) {
        float* x = d + std::size_t(h) * head_dim;
        for (int i = 0; i < half; ++i) {
            const int a = pairing == RopePairing::adjacent ? 2 * i : i;
            const int b = pairing == RopePairing::adjacent ? 2 * i + 1 : i + half;
            const float x0 = x[a], x1 = x[b];
            x[a] = x0 * c[i] + x1 * s[i];
            x[b] = -x0 * s[i] + x1 * c[i];
        }
    }
}

// ---- Causal GQA attention over one sequence --------------------------------------------------------

// Layouts (one sequence of n tokens at positions 0 .. n-1):
//   q, d_out, dq: [n][n_heads·head_dim] token-major;
//   kv.k, kv.v, dk, dv: [kv_head][position][head_dim] (the KV-cache layout attend() reads), head_stride
//     floats between KV heads;
//   probs: [n_heads][n][n], row (h, t) = the softmax attend() left in its scores for token t (entries
//     p ≤ t; the rest is never read).
// Query head h reads KV head h / group_size.

// Forward that keeps the probabilities: attend() per (token, head) with its scores scratch pointing at
// the probs row, so training runs exactly the inference op.
inline void causal_attention(float* out, const float* q, const KvLayerView& kv, float* probs, int n, int n_heads, int group_size,
                             int head_dim, ThreadPool* pool = nullptr) {
    const int q_dim = n_heads * head_dim;
    auto rows = [&](int begin, int end) {
        for (int i = begin; i < end; ++i) {
            const int h = i / n, t = i % n;
            const std::size_t off = std::size_t(t) * q_dim + std::size_t(h) * head_dim;
            KvLayerView head = kv;
            head.k += std::size_t(h / group_size) * kv.head_stride;
            head.v += std::size_t(h / group_size) * kv.head_stride;
            attend(out + off, q + off, 1, 1, head_dim, head, t + 1, probs + (std::size_t(h) * n + t) * n);
        }
    };
    if (pool) pool->parallel_for(n_heads * n, rows);
    else rows(0, n_heads * n);
}

// With S = q·kᵀ/sqrt(head_dim), P = softmax(S) (causal), O = P·v:
//   dv_p = Σ_t P_tp·dO_t,   dP_tp = dO_t·v_p,   dS_tp = P_tp·(dP_tp − Σ_p' P_tp'·dP_tp'),
//   dq_t = Σ_p dS_tp·k_p / sqrt(hd),   dk_p = Σ_t dS_tp·q_t / sqrt(hd),
// with dk, dv summed over the query heads of a group. Writes (overwrites) dq, dk, dv.
// `dscores` is scratch of n_heads·n·n floats.
inline void causal_attention_backward(float* dq, float* dk, float* dv, const float* d_out, const float* q, const KvLayerView& kv,
                                      const float* probs, int n, int n_heads, int group_size, int head_dim, float* dscores,
                                      ThreadPool* pool = nullptr) {
    const int q_dim = n_heads * head_dim;
    const float scale = 1.0f / std::sqrt(float(head_dim));
    auto for_range = [&](int count, auto&& fn) {
        if (pool) pool->parallel_for(count, fn);
        else fn(0, count);
    };
    // Pass 1, per (head, token): dS row and dq_t.
    for_range(n_heads * n, [&](int begin, int end) {
        for (int i = begin; i < end; ++i) {
            const int h = i / n, t = i % n;
            const std::size_t row = (std::size_t(h) * n + t) * n;
            const float* p = probs + row;
            float* ds = dscores + row;
            const float* dot = d_out + std::size_t(t) * q_dim + std::size_t(h) * head_dim;
            const float* vh = kv.v + std::size_t(h / group_size) * kv.head_stride;
            const float* kh = kv.k + std::size_t(h / group_size) * kv.head_stride;
            float weighted = 0;
            for (int s = 0; s <= t; ++s) {
                float d = 0;
                for (int e = 0; e < head_dim; ++e) d += dot[e] * vh[std::size_t(s) * head_dim + e];
                ds[s] = d;
                weighted += p[s] * d;
            }
            float* dqt = dq + std::size_t(t) * q_dim + std::size_t(h) * head_dim;
            std::fill(dqt, dqt + head_dim, 0.0f);
            for (int s = 0; s <= t; ++s) {
                ds[s] = p[s] * (ds[s] - weighted);
                const float w = ds[s] * scale;
                const float* ks = kh + std::size_t(s) * head_dim;
                for (int e = 0; e < head_dim; ++e) dqt[e] += w * ks[e];
            }
        }
    });
    // Pass 2, per (KV head, position): dk_p and dv_p from the columns of P and dS of its query heads.
    const int kv_heads = n_heads / group_size;
    for_range(kv_heads * n, [&](int begin, int end) {
        for (int i = begin; i < end; ++i) {
            const int g = i / n, s = i % n;
            float* dks = dk + std::size_t(g) * kv.head_stride + std::size_t(s) * head_dim;
            float* dvs = dv + std::size_t(g) * kv.head_stride + std::size_t(s) * head_dim;
            std::fill(dks, dks + head_dim, 0.0f);
            std::fill(dvs, dvs + head_dim, 0.0f);
            for (int h = g * group_size; h < (g + 1) * group_size; ++h)
                for (int t = s; t < n; ++t) {
                    const std::size_t at = (std::size_t(h) * n + t) * n + s;
                    const float wp = probs[at], ws = dscores[at] * scale;
                    const std::size_t off = std::size_t(t) * q_dim + std::size_t(h) * head_dim;
                    for (int e = 0; e < head_dim; ++e) {
                        dvs[e] += wp * d_out[off + e];
                        dks[e] += ws * q[off + e];
                    }
                }
        }
    });
}

// ---- SwiGLU ------------------------------------------------------------------------------------------

// h = silu(g)⊙u:  dg = dh⊙u⊙σ(g)·(1 + g·(1 − σ(g))),  du = dh⊙silu(g). `gate`, `up` are the forward's
// inputs (before silu_mul overwrote gate). Writes dgate, dup (either may alias dh).
inline void swiglu_backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, int n) {
    for (int i = 0; i < n; ++i) {
        const float g = gate[i], sig = 1.0f / (1.0f + std::exp(-g)), d = dh[i];
        const float dg = d * up[i] * sig * (1.0f + g * (1.0f - sig));
        dup[i] = d * g * sig;
        dgate[i] = dg;
    }
}

// ---- Frozen linear layer with a LoRA pair ------------------------------------------------------------

namespace detail {
// The pair's A [rank, cols] as a matrix view (fp32, out_major), for linear().
inline MatrixView lora_a_view(const LoraPair& p) { return {p.a.data(), DType::f32, Layout::out_major, p.rank, p.cols, std::size_t(p.cols)}; }

template <class Fn>
void split(ThreadPool& pool, int count, std::size_t work, Fn&& fn) {
    // Below ~32K multiply-adds the hand-off costs more than it saves.
    if (pool.size() > 1 && work >= (1u << 15)) pool.parallel_for(count, fn);
    else fn(0, count);
}
}  // namespace detail

// Y[t] = W·X[t] + scale·B·U[t] with U[t] = A·X[t], for t < n. W is the frozen (sliced) view; an empty
// pair is no adapter. U [n, rank] is kept for the backward (unused when the pair is empty).
inline void lora_linear(float* Y, int ldy, const MatrixView& W, const LoraPair& pair, float scale, const float* X, int ldx,
                        float* U, int n, ThreadPool& pool) {
    linear(Y, ldy, W, X, ldx, n, pool);
    if (pair.empty()) return;
    const int r = pair.rank, rows = pair.rows;
    linear(U, r, detail::lora_a_view(pair), X, ldx, n, pool);
    detail::split(pool, n, std::size_t(n) * rows * r, [&](int t0, int t1) {
        for (int t = t0; t < t1; ++t) {
            const float* u = U + std::size_t(t) * r;
            float* y = Y + std::size_t(t) * ldy;
            for (int i = 0; i < rows; ++i) {
                const float* b = pair.b.data() + std::size_t(i) * r;
                float acc = 0;
                for (int k = 0; k < r; ++k) acc += b[k] * u[k];
                y[i] += scale * acc;
            }
        }
    });
}

// Backward of lora_linear given dY [n, ldy], the forward's X and U:
//   dU = scale·dY·B  [n, rank];  dB += scale·dYᵀ·U;  dA += dUᵀ·X;  dX = Wᵀ·dY + dU·A.
// dX [n, lddx] is overwritten, or skipped when null (nothing upstream needs it). dA and dB ACCUMULATE
// into `grad` (shaped like `pair`). `dU` is scratch of n·rank floats.
inline void lora_linear_backward(float* dX, int lddx, LoraPair& grad, const MatrixView& W, const LoraPair& pair, float scale,
                                 const float* X, int ldx, const float* U, const float* dY, int ldy, float* dU, int n,
                                 ThreadPool& pool) {
    if (dX) linear(dX, lddx, transposed(W), dY, ldy, n, pool);
    if (pair.empty()) return;
    const int r = pair.rank, rows = pair.rows, cols = pair.cols;
    const std::size_t work = std::size_t(n) * r * std::max(rows, cols);
    // dU[t] = scale·Bᵀ·dY[t]
    detail::split(pool, n, work, [&](int t0, int t1) {
        for (int t = t0; t < t1; ++t) {
            float* du = dU + std::size_t(t) * r;
            std::fill(du, du + r, 0.0f);
            const float* dy = dY + std::size_t(t) * ldy;
            for (int i = 0; i < rows; ++i) {
                const float* b = pair.b.data() + std::size_t(i) * r;
                for (int k = 0; k < r; ++k) du[k] += dy[i] * b[k];
            }
            for (int k = 0; k < r; ++k) du[k] *= scale;
        }
    });
    // dB[i] += scale·Σ_t dY[t, i]·U[t]   (rows split: each thread owns its rows of dB)
    detail::split(pool, rows, work, [&](int i0, int i1) {
        for (int t = 0; t < n; ++t) {
            const float* u = U + std::size_t(t) * r;
            const float* dy = dY + std::size_t(t) * ldy;
            for (int i = i0; i < i1; ++i) {
                const float c = scale * dy[i];
                float* db = grad.b.data() + std::size_t(i) * r;
                for (int k = 0; k < r; ++k) db[k] += c * u[k];
            }
        }
    });
    // dA[k] += Σ_t dU[t, k]·X[t]   (columns split)
    detail::split(pool, cols, work, [&](int j0, int j1) {
        for (int t = 0; t < n; ++t) {
            const float* x = X + std::size_t(t) * ldx;
            for (int k = 0; k < r; ++k) {
                const float c = dU[std::size_t(t) * r + k];
                float* da = grad.a.data() + std::size_t(k) * cols;
                for (int j = j0; j < j1; ++j) da[j] += c * x[j];
            }
        }
    });
    if (!dX) return;
    // dX[t] += Aᵀ·dU[t]
    detail::split(pool, n, work, [&](int t0, int t1) {
        for (int t = t0; t < t1; ++t) {
            float* dx = dX + std::size_t(t) * lddx;
            for (int k = 0; k < r; ++k) {
                const float c = dU[std::size_t(t) * r + k];
                const float* a = pair.a.data() + std::size_t(k) * cols;
                for (int j = 0; j < cols; ++j) dx[j] += c * a[j];
            }
        }
    });
}

// ---- Distillation loss -------------------------------------------------------------------------------

// KL(p_teacher ‖ p_student) of one token from the two logit rows, p = softmax(logits). Writes
// dstudent = (p_student − p_teacher)·grad_scale (grad_scale = 1/n_tokens for a mean over tokens).
// dstudent may be `student` itself (each logit is read before its gradient is written).
inline double distill_kl(float* dstudent, const float* student, const float* teacher, int vocab, float grad_scale) {
    using simd::fbatch;
    constexpr int S = simd::lanes;
    const float ls = log_sum_exp(student, vocab), lt = log_sum_exp(teacher, vocab);
    double kl = 0;
    fbatch acc(0.0f);
    int i = 0, blocks = 0;
    for (; i + S <= vocab; i += S) {
        const fbatch log_pt = fbatch::load_unaligned(teacher + i) - fbatch(lt);
        const fbatch log_ps = fbatch::load_unaligned(student + i) - fbatch(ls);
        const fbatch pt = xsimd::exp(log_pt), ps = xsimd::exp(log_ps);
        acc = xsimd::fma(pt, log_pt - log_ps, acc);
        ((ps - pt) * fbatch(grad_scale)).store_unaligned(dstudent + i);
        if (++blocks == detail::kFlushBatches) kl += xsimd::hadd(acc), acc = fbatch(0.0f), blocks = 0;
    }
    kl += xsimd::hadd(acc);
    for (; i < vocab; ++i) {
        const float log_pt = teacher[i] - lt, log_ps = student[i] - ls;
        const float pt = std::exp(log_pt), ps = std::exp(log_ps);
        kl += double(pt) * (double(log_pt) - double(log_ps));
        dstudent[i] = (ps - pt) * grad_scale;
    }
    return kl;
}

}  // namespace elastilm
