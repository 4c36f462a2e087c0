/* EvoNorm-S0 and EvoNorm-B0 (Liu et al., 2020) on (N, C, S) images, S the spatial size: the
   activation inside the norm computed per element in the same pass as the scale. S0 keeps its
   sigmoid for backward (an exp per element costs more than writing and reading it back: 5.4 ms
   against 4.0 for forward + backward of 32x64x32x32, one thread, 2026-12-01); B0 recomputes
   its max, a compare. See norms/evonorm_s0.py and norms/evonorm_b0.py for the formulas.
   gamma and beta may be NULL (no affine). */
#include "kernels.h"

/* S0, forward, one (sample, group) block of cg channels at a time: the group's mean and 1/std
   (two passes from the cache), then s = sigmoid(v x) and y = x s gamma / std + beta. */
void evonorm_s0_forward(const float *x, float *y, float *sig, float *mean, float *rstd, const float *v,
                        const float *gamma, const float *beta, int64_t N, int64_t C, int64_t S, int64_t G, float eps,
                        int nt) {
    int64_t cg = C / G, M = cg * S;
    PARALLEL_FOR(nt)
    for (int64_t blk = 0; blk < N * G; blk++) {
        const float *xb = x + blk * M;
        float m = (float)(sum(xb, M) / M);
        float r = 1.0f / sqrtf((float)(sum_squares(xb, m, M) / M) + eps);
        mean[blk] = m;
        rstd[blk] = r;
        int64_t c0 = (blk % G) * cg;
        for (int64_t j = 0; j < cg; j++) {
            int64_t c = c0 + j;
            const float *xr = xb + j * S;
            float *yr = y + blk * M + j * S, *sr = sig + blk * M + j * S;
            float vc = v[c], k = r * (gamma ? gamma[c] : 1.0f), b = beta ? beta[c] : 0.0f;
#pragma omp simd
            for (int64_t i = 0; i < S; i++) {
                float s = sigmoid(vc * xr[i]);
                sr[i] = s;
                yr[i] = xr[i] * s * k + b;
            }
        }
    }
}

/* S0, backward, per block: with s = sigmoid(v x) from forward and f = x s, first the
   per-(sample, channel) sums sum(dy f), sum(dy), sum(dy x^2 s (1 - s)) (for gamma, beta, v and
   the std's gradient), then dx = gamma rstd dy (s + v x s (1 - s)) + dvar 2 (x - mean) / M. */
void evonorm_s0_backward(const float *dy, const float *x, const float *sig, const float *mean, const float *rstd,
                         const float *v, const float *gamma, float *dx, float *s_dyf, float *s_dy, float *s_dv,
                         int64_t N, int64_t C, int64_t S, int64_t G, int nt) {
    int64_t cg = C / G, M = cg * S;
    PARALLEL_FOR(nt)
    for (int64_t blk = 0; blk < N * G; blk++) {
        int64_t n = blk / G, c0 = (blk % G) * cg;
        const float *xb = x + blk * M, *db = dy + blk * M;
        float r = rstd[blk], m = mean[blk];
        double g_rstd = 0.0;
        for (int64_t j = 0; j < cg; j++) {
            int64_t c = c0 + j;
            const float *xr = xb + j * S, *dr = db + j * S, *sr = sig + blk * M + j * S;
            double a = 0.0, b = 0.0, d = 0.0;
            for (int64_t i0 = 0; i0 < S; i0 += CHUNK) {
                int64_t i1 = i0 + CHUNK < S ? i0 + CHUNK : S;
                float fa = 0.0f, fb = 0.0f, fd = 0.0f;
#pragma omp simd reduction(+ : fa, fb, fd)
                for (int64_t i = i0; i < i1; i++) {
                    float xi = xr[i], s = sr[i], f = xi * s;
                    fa += dr[i] * f;
                    fb += dr[i];
                    fd += dr[i] * xi * f * (1.0f - s);
                }
                a += fa, b += fb, d += fd;
            }
            s_dyf[n * C + c] = (float)a;
            s_dy[n * C + c] = (float)b;
            s_dv[n * C + c] = (float)d;
            g_rstd += (gamma ? gamma[c] : 1.0f) * a;
        }
        /* d rstd / d var = -rstd^3 / 2, and d var / dx = 2 (x - mean) / M */
        float p = (float)(g_rstd * -0.5 * r * r * r * 2.0 / M);
        for (int64_t j = 0; j < cg; j++) {
            int64_t c = c0 + j;
            const float *xr = xb + j * S, *dr = db + j * S, *sr = sig + blk * M + j * S;
            float *o = dx + blk * M + j * S;
            float vc = v[c], k = r * (gamma ? gamma[c] : 1.0f);
#pragma omp simd
            for (int64_t i = 0; i < S; i++) {
                float xi = xr[i], s = sr[i];
                o[i] = k * dr[i] * (s + vc * xi * s * (1.0f - s)) + p * (xi - m);
            }
        }
    }
}

/* B0, forward, per row (sample and channel) r of channel c = r % C:
   y = x / max(s_b[c], v x + s_i[r]) gamma + beta. */
void evonorm_b0_forward(const float *x, float *y, const float *v, const float *s_i, const float *s_b,
                        const float *gamma, const float *beta, int64_t R, int64_t C, int64_t S, int nt) {
    PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        int64_t c = r % C;
        const float *xr = x + r * S;
        float *yr = y + r * S;
        float vc = v[c], si = s_i[r], sb = s_b[c], g = gamma ? gamma[c] : 1.0f, b = beta ? beta[c] : 0.0f;
#pragma omp simd
        for (int64_t i = 0; i < S; i++) {
            float t = vc * xr[i] + si;
            yr[i] = xr[i] / (t > sb ? t : sb) * g + b;
        }
    }
}

/* B0, backward: with den as forward, u = x / den, A = gamma dy / den, B = A u (= -dL/d den) and
   Bm = B where the instance term is the larger: per row sum(dy u), sum(dy), sum(Bm), sum(Bm x)
   and sum(B) (the gradients of gamma, beta, s_i, v and s_b). */
void evonorm_b0_backward_sums(const float *dy, const float *x, const float *v, const float *s_i, const float *s_b,
                              const float *gamma, float *s_dyu, float *s_dy, float *s_bm, float *s_bmx, float *s_bb,
                              int64_t R, int64_t C, int64_t S, int nt) {
    PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        int64_t c = r % C;
        const float *xr = x + r * S, *dr = dy + r * S;
        float vc = v[c], si = s_i[r], sb = s_b[c], g = gamma ? gamma[c] : 1.0f;
        double a = 0.0, b = 0.0, bm = 0.0, bmx = 0.0, bb = 0.0;
        for (int64_t i0 = 0; i0 < S; i0 += CHUNK) {
            int64_t i1 = i0 + CHUNK < S ? i0 + CHUNK : S;
            float fa = 0.0f, fb = 0.0f, fbm = 0.0f, fbmx = 0.0f, fbb = 0.0f;
#pragma omp simd reduction(+ : fa, fb, fbm, fbmx, fbb)
            for (int64_t i = i0; i < i1; i++) {
                float xi = xr[i], t = vc * xi + si, inv = 1.0f / (t > sb ? t : sb), u = xi * inv;
                float B = g * dr[i] * inv * u, Bm = t > sb ? B : 0.0f;
                fa += dr[i] * u;
                fb += dr[i];
                fbm += Bm;
                fbmx += Bm * xi;
                fbb += B;
            }
            a += fa, b += fb, bm += fbm, bmx += fbmx, bb += fbb;
        }
        s_dyu[r] = (float)a;
        s_dy[r] = (float)b;
        s_bm[r] = (float)bm;
        s_bmx[r] = (float)bmx;
        s_bb[r] = (float)bb;
    }
}

/* B0, dx = A - v Bm + x p + q per row, p and q the variances' and means' share. */
void evonorm_b0_dx(const float *dy, const float *x, const float *v, const float *s_i, const float *s_b,
                   const float *gamma, const float *p, const float *q, float *dx, int64_t R, int64_t C, int64_t S,
                   int nt) {
    PARALLEL_FOR(nt)
    for (int64_t r = 0; r < R; r++) {
        int64_t c = r % C;
        const float *xr = x + r * S, *dr = dy + r * S;
        float *o = dx + r * S;
        float vc = v[c], si = s_i[r], sb = s_b[c], g = gamma ? gamma[c] : 1.0f, pr = p[r], qr = q[r];
#pragma omp simd
        for (int64_t i = 0; i < S; i++) {
            float xi = xr[i], t = vc * xi + si, inv = 1.0f / (t > sb ? t : sb);
            float A = g * dr[i] * inv, Bm = t > sb ? A * xi * inv : 0.0f;
            o[i] = A - vc * Bm + xi * pr + qr;
        }
    }
}
