// Ridge regression in closed form, for the TLM's small heads: W = (XᵀX + λI)⁻¹ XᵀY on centred data, so
// the intercept is not shrunk. Feature counts are a model's hidden size plus a few (≤ a few thousand),
// so forming XᵀX and a Cholesky solve in double precision is exact enough and takes milliseconds.
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "elastilm/error.hpp"

namespace elastilm {

// Per-column mean and scale; scale is the standard deviation, or 1 for a constant column (so a feature
// that never varies contributes nothing instead of dividing by zero).
struct Standardizer {
    std::vector<float> mean, scale;

    static Standardizer fit(std::span<const float> x, int rows, int cols) {
        require(rows > 0 && cols > 0 && x.size() == std::size_t(rows) * cols, "Standardizer", "needs a non-empty rows × cols matrix");
        Standardizer s;
        s.mean.assign(cols, 0);
        s.scale.assign(cols, 1);
        for (int j = 0; j < cols; ++j) {
            double sum = 0, sq = 0;
            for (int i = 0; i < rows; ++i) sum += x[std::size_t(i) * cols + j];
            const double mu = sum / rows;
            for (int i = 0; i < rows; ++i) {
                const double d = x[std::size_t(i) * cols + j] - mu;
                sq += d * d;
            }
            const double sd = std::sqrt(sq / rows);
            s.mean[j] = float(mu);
            s.scale[j] = sd > 1e-8 ? float(sd) : 1.0f;
        }
        return s;
    }
    int width() const { return int(mean.size()); }
    void apply(const float* in, float* out) const {
        for (std::size_t j = 0; j < mean.size(); ++j) out[j] = (in[j] - mean[j]) / scale[j];
    }
    std::vector<float> apply_all(std::span<const float> x) const {
        std::vector<float> out(x.size());
        for (std::size_t r = 0; r * mean.size() < x.size(); ++r) apply(x.data() + r * mean.size(), out.data() + r * mean.size());
        return out;
    }
};

// Weights for `targets` outputs: prediction t of row x = bias[t] + Σ_j x[j] · weight[t * cols + j].
struct RidgeSolution {
    int cols = 0, targets = 0;
    std::vector<float> weight;  // targets × cols
    std::vector<float> bias;    // targets

    float predict(const float* x, int t = 0) const {
        double y = bias[t];
        for (int j = 0; j < cols; ++j) y += double(weight[std::size_t(t) * cols + j]) * x[j];
        return float(y);
    }
};

// Solves A z = b in place for a symmetric positive definite A (n × n, row-major), by Cholesky.
inline void cholesky_solve(std::vector<double>& a, int n, std::vector<double>& rhs, int n_rhs) {
    for (int j = 0; j < n; ++j) {
        double d = a[std::size_t(j) * n + j];
        for (int k = 0; k < j; ++k) d -= a[std::size_t(j) * n + k] * a[std::size_t(j) * n + k];
        require(d > 0 && std::isfinite(d), "ridge", "the regularised normal matrix is not positive definite (non-finite features?)");
        const double l = std::sqrt(d);
        a[std::size_t(j) * n + j] = l;
        for (int i = j + 1; i < n; ++i) {
            double s = a[std::size_t(i) * n + j];
            for (int k = 0; k < j; ++k) s -= a[std::size_t(i) * n + k] * a[std::size_t(j) * n + k];
            a[std::size_t(i) * n + j] = s / l;
        }
    }
    for (int r = 0; r < n_rhs; ++r) {  // L y = b, then Lᵀ z = y; rhs is n × n_rhs
        for (int i = 0; i < n; ++i) {
            double s = rhs[std::size_t(i) * n_rhs + r];
            for (int k = 0; k < i; ++k) s -= a[std::size_t(i) * n + k] * rhs[std::size_t(k) * n_rhs + r];
            rhs[std::size_t(i) * n_rhs + r] = s / a[std::size_t(i) * n + i];
        }
        for (int i = n - 1; i >= 0; --i) {
            double s = rhs[std::size_t(i) * n_rhs + r];
            for (int k = i + 1; k < n; ++k) s -= a[std::size_t(k) * n + i] * rhs[std::size_t(k) * n_rhs + r];
            rhs[std::size_t(i) * n_rhs + r] = s / a[std::size_t(i) * n + i];
        }
    }
}

// Fits every target column of y (rows × targets) on x (rows × cols) with penalty λ·‖w‖² per target.
// One factorisation serves all targets: the decision head's 81 pairs share their features.
inline RidgeSolution ridge_fit(std::span<const float> x, std::span<const float> y, int rows, int cols, int targets, double lambda) {
    require(rows > 0 && cols > 0 && targets > 0, "ridge", "needs at least one row, column and target");
    require(x.size() == std::size_t(rows) * cols, "ridge", "x has " + std::to_string(x.size()) + " values, expected rows × cols");
    require(y.size() == std::size_t(rows) * targets, "ridge", "y has " + std::to_string(y.size()) + " values, expected rows × targets");
    require(lambda >= 0 && std::isfinite(lambda), "ridge", "lambda must be finite and >= 0");
    std::vector<double> xm(cols, 0), ym(targets, 0);
    for (int i = 0; i < rows; ++i) {
        for (int j = 0; j < cols; ++j) xm[j] += x[std::size_t(i) * cols + j];
        for (int t = 0; t < targets; ++t) ym[t] += y[std::size_t(i) * targets + t];
    }
    for (auto& v : xm) v /= rows;
    for (auto& v : ym) v /= rows;
    std::vector<double> a(std::size_t(cols) * cols, 0), b(std::size_t(cols) * targets, 0), xc(cols);
    for (int i = 0; i < rows; ++i) {
        for (int j = 0; j < cols; ++j) xc[j] = x[std::size_t(i) * cols + j] - xm[j];
        for (int j = 0; j < cols; ++j) {
            if (xc[j] == 0) continue;
            double* arow = a.data() + std::size_t(j) * cols;
            for (int k = 0; k <= j; ++k) arow[k] += xc[j] * xc[k];
            for (int t = 0; t < targets; ++t) b[std::size_t(j) * targets + t] += xc[j] * (y[std::size_t(i) * targets + t] - ym[t]);
        }
    }
    for (int j = 0; j < cols; ++j) {
        for (int k = 0; k < j; ++k) a[std::size_t(k) * cols + j] = a[std::size_t(j) * cols + k];
        a[std::size_t(j) * cols + j] += lambda + 1e-9;  // a whisker keeps a constant column solvable at λ = 0
    }
    cholesky_solve(a, cols, b, targets);
    RidgeSolution s;
    s.cols = cols;
    s.targets = targets;
    s.weight.resize(std::size_t(targets) * cols);
    s.bias.resize(targets);
    for (int t = 0; t < targets; ++t) {
        double bias = ym[t];
        for (int j = 0; j < cols; ++j) {
            const double w = b[std::size_t(j) * targets + t];
            s.weight[std::size_t(t) * cols + j] = float(w);
            bias -= w * xm[j];
        }
        s.bias[t] = float(bias);
    }
    return s;
}

}  // namespace elastilm
