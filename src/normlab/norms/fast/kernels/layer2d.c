/* LayerNorm over the channels of (N, C, S) images in NCHW memory, at every position s (ConvNeXt's
   LayerNorm2d; norms/layer2d.py). Each sample's channels are walked in order, so that every
   read is contiguous, with one running sum per position: no transposing copy. gamma and beta
   may be NULL (no affine). */
#include "kernels.h"

/* Per sample: the mean and 1/std over C at each position (two passes, the second from the
   cache), then y = (x - mean) rstd gamma + beta. */
void layer2d_forward(const float *x, float *y, float *mean, float *rstd, const float *gamma, const float *beta,
                     int64_t N, int64_t C, int64_t S, float eps, int nt) {
    PARALLEL_FOR(nt)
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * C * S;
        float *m = mean + n * S, *r = rstd + n * S;
        memset(m, 0, S * sizeof(float));
        memset(r, 0, S * sizeof(float));
        for (int64_t c = 0; c < C; c++) {
#pragma omp simd
            for (int64_t s = 0; s < S; s++) m[s] += xn[c * S + s];
        }
#pragma omp simd
        for (int64_t s = 0; s < S; s++) m[s] /= C;
        for (int64_t c = 0; c < C; c++) {
#pragma omp simd
            for (int64_t s = 0; s < S; s++) {
                float d = xn[c * S + s] - m[s];
                r[s] += d * d;
            }
        }
#pragma omp simd
        for (int64_t s = 0; s < S; s++) r[s] = 1.0f / sqrtf(r[s] / C + eps);
        for (int64_t c = 0; c < C; c++) {
            float g = gamma ? gamma[c] : 1.0f, b = beta ? beta[c] : 0.0f;
            float *yc = y + n * C * S + c * S;
#pragma omp simd
            for (int64_t s = 0; s < S; s++) yc[s] = (xn[c * S + s] - m[s]) * r[s] * g + b;
        }
    }
}

/* Per sample, with xhat = (x - mean) rstd and g = gamma dy: mean_C(g) and mean_C(g xhat) at each
   position (into work, 2 S floats per sample) and sum(dy xhat), sum(dy) per channel; then
   LayerNorm's dx = (g - mean_C(g) - xhat mean_C(g xhat)) rstd. */
void layer2d_backward(const float *dy, const float *x, const float *mean, const float *rstd, const float *gamma,
                      float *dx, float *s_dyxhat, float *s_dy, float *work, int64_t N, int64_t C, int64_t S,
                      int nt) {
    PARALLEL_FOR(nt)
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * C * S, *dn = dy + n * C * S, *m = mean + n * S, *r = rstd + n * S;
        float *mg = work + 2 * n * S, *mgx = mg + S;
        memset(mg, 0, 2 * S * sizeof(float));
        for (int64_t c = 0; c < C; c++) {
            const float *xc = xn + c * S, *dc = dn + c * S;
            float g = gamma ? gamma[c] : 1.0f;
            double a = 0.0, b = 0.0;
            for (int64_t s0 = 0; s0 < S; s0 += CHUNK) {
                int64_t s1 = s0 + CHUNK < S ? s0 + CHUNK : S;
                float fa = 0.0f, fb = 0.0f;
#pragma omp simd reduction(+ : fa, fb)
                for (int64_t s = s0; s < s1; s++) {
                    float xhat = (xc[s] - m[s]) * r[s];
                    mg[s] += g * dc[s];
                    mgx[s] += g * dc[s] * xhat;
                    fa += dc[s] * xhat;
                    fb += dc[s];
                }
                a += fa, b += fb;
            }
            s_dyxhat[n * C + c] = (float)a;
            s_dy[n * C + c] = (float)b;
        }
#pragma omp simd
        for (int64_t s = 0; s < S; s++) {
            mg[s] /= C;
            mgx[s] /= C;
        }
        for (int64_t c = 0; c < C; c++) {
            const float *xc = xn + c * S, *dc = dn + c * S;
            float *o = dx + n * C * S + c * S;
            float g = gamma ? gamma[c] : 1.0f;
#pragma omp simd
            for (int64_t s = 0; s < S; s++) {
                float xhat = (xc[s] - m[s]) * r[s];
                o[s] = (g * dc[s] - mg[s] - xhat * mgx[s]) * r[s];
            }
        }
    }
}
