/* Statistics, scale and shift of the rows of x: the passes of normlab's BatchNorm-like layers
   (norms/fast/normalize.py), R rows of L contiguous floats, one row (a sample's channel) at a time. */
#include "kernels.h"

/* Mean and biased variance of each row: the mean, then the squares about it from the cache.
   center = 0: mean 0 and the mean of squares (FRN's nu^2), one pass. */
void rows_moments(const float *x, float *mean, float *var, int64_t R, int64_t L, int center, int nt) {
    PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        const float *row = x + r * L;
        float m = center ? (float)(sum(row, L) / L) : 0.0f;
        mean[r] = m;
        var[r] = (float)(sum_squares(row, m, L) / L);
    }
}

/* y = x a + b per row, then max(y, floor) if there is a floor (FRN's TLU); b may be NULL. */
void rows_affine(const float *x, float *y, const float *a, const float *b, const float *floor_, int64_t R,
                 int64_t L, int nt) {
    PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * L;
        float *yr = y + r * L;
        float ar = a[r], br = b ? b[r] : 0.0f;
        if (floor_) {
            float fr = floor_[r];
#pragma omp simd
            for (int64_t i = 0; i < L; i++) {
                float v = xr[i] * ar + br;
                yr[i] = v < fr ? fr : v; /* NaN stays NaN, as torch.clamp_min */
            }
        } else {
#pragma omp simd
            for (int64_t i = 0; i < L; i++) yr[i] = xr[i] * ar + br;
        }
    }
}

/* Per row: sum(g) and sum(g x), where g = dy, or with a floor dy where y > floor (the TLU's
   gradient mask, as ReLU's); then also sum(dy), whose remainder is the floor's gradient. */
void rows_grad_sums(const float *dy, const float *x, const float *y, const float *floor_, float *s_g,
                    float *s_gx, float *s_dy, int64_t R, int64_t L, int nt) {
    PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        const float *d = dy + r * L, *xr = x + r * L;
        double sg = 0.0, sgx = 0.0, sd = 0.0;
        for (int64_t i0 = 0; i0 < L; i0 += CHUNK) {
            int64_t i1 = i0 + CHUNK < L ? i0 + CHUNK : L;
            float fg = 0.0f, fgx = 0.0f, fd = 0.0f;
            if (floor_) {
                const float *yr = y + r * L;
                float fr = floor_[r];
#pragma omp simd reduction(+ : fg, fgx, fd)
                for (int64_t i = i0; i < i1; i++) {
                    float g = yr[i] > fr ? d[i] : 0.0f;
                    fg += g;
                    fgx += g * xr[i];
                    fd += d[i];
                }
            } else {
#pragma omp simd reduction(+ : fg, fgx)
                for (int64_t i = i0; i < i1; i++) {
                    fg += d[i];
                    fgx += d[i] * xr[i];
                }
            }
            sg += fg, sgx += fgx, sd += fd;
        }
        if (floor_) s_dy[r] = (float)sd;
        s_g[r] = (float)sg;
        s_gx[r] = (float)sgx;
    }
}

/* dx = g a + x p + q per row (g as in rows_grad_sums; q may be NULL): the closed form of
   normalize.py, in one pass. */
void rows_dx(const float *dy, const float *x, const float *y, const float *floor_, const float *a, const float *p,
             const float *q, float *dx, int64_t R, int64_t L, int nt) {
    PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        const float *d = dy + r * L, *xr = x + r * L;
        float *o = dx + r * L;
        float ar = a[r], pr = p[r], qr = q ? q[r] : 0.0f;
        if (floor_) {
            const float *yr = y + r * L;
            float fr = floor_[r];
#pragma omp simd
            for (int64_t i = 0; i < L; i++) o[i] = (yr[i] > fr ? d[i] : 0.0f) * ar + xr[i] * pr + qr;
        } else {
#pragma omp simd
            for (int64_t i = 0; i < L; i++) o[i] = d[i] * ar + xr[i] * pr + qr;
        }
    }
}
