/* Shared by normlab's CPU kernels: the parallel loop and a vectorizable exp. */
#ifndef NORMLAB_KERNELS_H
#define NORMLAB_KERNELS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Sums run in float over chunks of this many elements (vector lanes, fast), and the chunks'
   sums are added in double: float alone would lose digits over rows of 50k elements, double
   alone made the sums pass the slowest of a layer (3.1 ms for EvoNorm-B0's five, 32x64x32x32). */
#define CHUNK 1024

/* Blocks (rows, groups, samples) split over PyTorch's thread count; one thread runs the loop
   itself, without entering OpenMP. */
#define PARALLEL_FOR(nt) _Pragma("omp parallel for num_threads(nt) if(nt > 1) schedule(static)")

/* sum(x[i]) and sum((x[i] - m)^2) over n floats, chunked as CHUNK says. */
static inline double sum(const float *x, int64_t n) {
    double total = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        int64_t i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (int64_t i = i0; i < i1; i++) part += x[i];
        total += part;
    }
    return total;
}

static inline double sum_squares(const float *x, float m, int64_t n) {
    double total = 0.0;
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        int64_t i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (int64_t i = i0; i < i1; i++) part += (x[i] - m) * (x[i] - m);
        total += part;
    }
    return total;
}

/* e^t for t <= 0 (Cephes' expf: t = n ln2 + r, e^r by a polynomial, 2^n by the exponent bits),
   within a few ulp of expf. Branch-free, so that loops over it vectorize, which libm's expf
   does not without -ffast-math; below -87 it returns e^-87 instead of a denormal. */
static inline float exp_neg(float t) {
    t = t > -87.0f ? t : -87.0f;
    float n = (t * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(t / ln2) */
    float r = t - n * 0.693359375f + n * 2.12194440e-4f;             /* t - n ln2, in two parts */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return p * two_n;
}

/* sigmoid(z) = 1 / (1 + e^-z) for z >= 0, e^z / (1 + e^z) below: e^-|z| never overflows. */
static inline float sigmoid(float z) {
    float e = exp_neg(-fabsf(z));
    return (z >= 0.0f ? 1.0f : e) / (1.0f + e);
}

#endif
