/* Shared by normlab's CPU kernels: the parallel loop and a vectorizable exp. */
#ifndef NORMLAB_KERNELS_H
#define NORMLAB_KERNELS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Blocks (rows, groups, samples) split over PyTorch's thread count; one thread runs the loop
   itself, without entering OpenMP. */
#define PARALLEL_FOR(nt) _Pragma("omp parallel for num_threads(nt) if(nt > 1) schedule(static)")

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
