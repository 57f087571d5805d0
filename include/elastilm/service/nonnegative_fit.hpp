// Least-squares polynomial fits with non-negative coefficients, in relative error.
//
// The latency model fits TTFT(L) = a + b·L + c·L² and TPOT(C) = a + b·C. Every term is a real cost
// (fixed overhead, per-token matmuls, O(L²) attention), so no coefficient may be negative: a negative
// one is noise fitted at the price of absurd extrapolation (a TTFT that falls with length, or goes
// below zero for short prompts). Non-negative coefficients also make every prediction monotone in
// length, which the orchestrator relies on when it searches compression ratios.
//
// Residuals are relative, (p(x) - y) / y: the profile spans 8…context tokens, and an absolute fit would
// let the longest prompts dominate and miss short ones by large factors; the SLO cares about the ratio.
//
// With at most a handful of coefficients the exact NNLS solution is found by trying every subset of
// free coefficients (the others pinned at 0), solving each unconstrained, and keeping the best
// feasible one — 2^(degree+1) tiny solves, no iteration, no tolerance to tune.
#pragma once

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "elastilm/error.hpp"

namespace elastilm {

// coef[i] multiplies x^i.
inline double eval_polynomial(std::span<const double> coef, double x) {
    double y = 0;
    for (std::size_t i = coef.size(); i-- > 0;) y = y * x + coef[i];
    return y;
}

namespace detail {

// Solves the n×n system A·s = b (row-major, n ≤ 8) by Gaussian elimination with partial pivoting.
// Returns false when A is singular to working precision.
inline bool solve_small(std::vector<double> a, std::vector<double> b, int n, std::vector<double>& s) {
    double scale = 0;
    for (double v : a) scale = std::max(scale, std::fabs(v));
    if (scale == 0) return false;
    for (int col = 0; col < n; ++col) {
        int pivot = col;
        for (int r = col + 1; r < n; ++r)
            if (std::fabs(a[r * n + col]) > std::fabs(a[pivot * n + col])) pivot = r;
        if (std::fabs(a[pivot * n + col]) <= 1e-12 * scale) return false;
        if (pivot != col) {
            for (int c = 0; c < n; ++c) std::swap(a[col * n + c], a[pivot * n + c]);
            std::swap(b[col], b[pivot]);
        }
        for (int r = col + 1; r < n; ++r) {
            const double f = a[r * n + col] / a[col * n + col];
            for (int c = col; c < n; ++c) a[r * n + c] -= f * a[col * n + c];
            b[r] -= f * b[col];
        }
    }
    s.assign(n, 0);
    for (int r = n - 1; r >= 0; --r) {
        double v = b[r];
        for (int c = r + 1; c < n; ++c) v -= a[r * n + c] * s[c];
        s[r] = v / a[r * n + r];
    }
    return true;
}

}  // namespace detail

// Σ ((p(x_i) - y_i) / y_i)², the objective the fit minimises.
inline double relative_sse(std::span<const double> coef, std::span<const double> x, std::span<const double> y) {
    double sse = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double r = (eval_polynomial(coef, x[i]) - y[i]) / y[i];
        sse += r * r;
    }
    return sse;
}

// The polynomial of `degree` with all coefficients >= 0 minimising relative_sse. Needs y > 0.
inline std::vector<double> fit_nonnegative_polynomial(std::span<const double> x, std::span<const double> y, int degree) {
    require(degree >= 0 && degree <= 4, "fit_nonnegative_polynomial", "degree must be in [0, 4], got " + std::to_string(degree));
    require(x.size() == y.size() && !x.empty(), "fit_nonnegative_polynomial",
            "needs as many y as x values and at least one point (got " + std::to_string(x.size()) + " x, " +
                std::to_string(y.size()) + " y)");
    double x_max = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        require(std::isfinite(x[i]) && x[i] >= 0, "fit_nonnegative_polynomial", "x values must be finite and >= 0");
        require(std::isfinite(y[i]) && y[i] > 0, "fit_nonnegative_polynomial", "y values must be finite and > 0");
        x_max = std::max(x_max, x[i]);
    }
    // Work in u = x / x_max so the normal equations of L and L² (up to 10^7 for long contexts) stay
    // well conditioned; coefficients are scaled back at the end.
    const double unit = x_max > 0 ? x_max : 1;
    const int terms = degree + 1;
    std::vector<double> best(terms, 0.0);
    double best_sse = std::numeric_limits<double>::infinity();
    for (unsigned mask = 1; mask < (1u << terms); ++mask) {
        std::vector<int> free;
        for (int t = 0; t < terms; ++t)
            if (mask & (1u << t)) free.push_back(t);
        const int n = int(free.size());
        // Weighted normal equations with row weights 1/y_i.
        std::vector<double> ata(std::size_t(n) * n, 0.0), atb(n, 0.0);
        for (std::size_t i = 0; i < x.size(); ++i) {
            const double u = x[i] / unit, w = 1.0 / y[i];
            std::vector<double> row(n);
            for (int j = 0; j < n; ++j) row[j] = std::pow(u, free[j]) * w;
            for (int j = 0; j < n; ++j) {
                atb[j] += row[j] * (y[i] * w);
                for (int k = 0; k < n; ++k) ata[j * n + k] += row[j] * row[k];
            }
        }
        std::vector<double> s;
        if (!detail::solve_small(ata, atb, n, s)) continue;
        bool feasible = true;
        for (double v : s) feasible = feasible && v >= 0 && std::isfinite(v);
        if (!feasible) continue;
        std::vector<double> coef(terms, 0.0);
        for (int j = 0; j < n; ++j) coef[free[j]] = s[j] / std::pow(unit, free[j]);
        const double sse = relative_sse(coef, x, y);
        if (sse < best_sse) { best_sse = sse; best = coef; }
    }
    // A single positive constant is always feasible, so `best` was set.
    return best;
}

}  // namespace elastilm
