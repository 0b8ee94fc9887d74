#include "CKernels.h"
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#define NN_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NN_MULTIVERSION
#endif

// 1 when x is NaN or infinite: its exponent bits are all ones. Integer work, so loops that collect it vectorise.
static inline uint32_t nonfinite(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (bits & 0x7f800000u) == 0x7f800000u;
}

static inline float bits_float(uint32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

// x, or 0 when x is subnormal. A moment decays towards zero while its parameter gets no gradient (a dead unit, a
// pixel that is always 0) and would become subnormal, and arithmetic on subnormals takes a microcode assist on x86:
// Adam on 784-128-10 slowed from 200k to 150k samples/s over 8,000 steps as 16% of its first moments did. A
// subnormal moment moves its parameter by under lr·10⁻³⁰, below half an ulp of any parameter but the tiniest.
static inline float flush(float x) { return fabsf(x) < FLT_MIN ? 0.0f : x; }

// Each update computes every new value, collects whether all are finite, and stores them unless `dry_run`.

NN_MULTIVERSION
int nn_sgd_update(float *restrict p, const float *restrict g, long n, float lr, float weight_decay, int dry_run) {
    uint32_t bad = 0;
    for (long i = 0; i < n; i++) {
        float pi = p[i] - lr * (g[i] + weight_decay * p[i]);
        bad |= nonfinite(pi);
        if (!dry_run) p[i] = pi;
    }
    return bad == 0;
}

NN_MULTIVERSION
int nn_momentum_update(float *restrict p, const float *restrict g, float *restrict v, long n, float lr, float weight_decay,
                       float momentum, int nesterov, int dry_run) {
    uint32_t bad = 0;
    for (long i = 0; i < n; i++) {
        float d = g[i] + weight_decay * p[i];
        float vi = flush(momentum * v[i] + d);
        float pi = p[i] - lr * (nesterov ? d + momentum * vi : vi);
        bad |= nonfinite(vi) | nonfinite(pi);
        if (!dry_run) { v[i] = vi; p[i] = pi; }
    }
    return bad == 0;
}

NN_MULTIVERSION
int nn_adam_update(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, long n, float beta1,
                   float beta2, float step_size, float inv_root_correction2, float epsilon, float coupled_decay, float decay,
                   int dry_run, float *bounds) {
    uint32_t bad = 0, largest_m = 0, largest_v = 0;
    for (long i = 0; i < n; i++) {
        float d = g[i] + coupled_decay * p[i];
        float mi = flush(beta1 * m[i] + (1 - beta1) * d);
        float vi = flush(beta2 * v[i] + (1 - beta2) * d * d);
        float pi = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_root_correction2 + epsilon);
        bad |= nonfinite(mi) | nonfinite(vi) | nonfinite(pi);
        // Bit patterns of non-negative floats order as the floats; a negative v keeps its sign bit and outranks all.
        uint32_t mb, vb;
        memcpy(&mb, &mi, sizeof mb);
        memcpy(&vb, &vi, sizeof vb);
        mb &= 0x7fffffffu;
        largest_m = mb > largest_m ? mb : largest_m;
        largest_v = vb > largest_v ? vb : largest_v;
        if (!dry_run) { m[i] = mi; v[i] = vi; p[i] = pi; }
    }
    bounds[0] = largest_m >= 0x7f800000u ? NAN : bits_float(largest_m);
    bounds[1] = largest_v >= 0x7f800000u ? NAN : bits_float(largest_v);
    return bad == 0;
}

NN_MULTIVERSION
void nn_axpy(float *restrict y, const float *restrict x, long n, float a) {
    for (long i = 0; i < n; i++) y[i] += a * x[i];
}

NN_MULTIVERSION
void nn_scale(float *restrict y, const float *restrict x, long n, float a) {
    for (long i = 0; i < n; i++) y[i] = a * x[i];
}

NN_MULTIVERSION
void nn_scale_bytes(float *restrict y, const unsigned char *restrict x, long n, float a) {
    for (long i = 0; i < n; i++) y[i] = (float)x[i] * a;
}

NN_MULTIVERSION
void nn_relu_backward(float *restrict dx, const float *restrict y, const float *restrict dy, long n) {
    for (long i = 0; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
}

// The two checks below read floats as their bits: a float is NaN or infinite exactly when its exponent bits are all
// ones, and for the rest the order of |x| is the order of the bits without the sign. Integer reductions vectorise;
// a float sum would not, as the order of its additions is fixed.

NN_MULTIVERSION
float nn_max_magnitude(const float *restrict x, long n) {
    const uint32_t *bits = (const uint32_t *)x;
    uint32_t m = 0;
    for (long i = 0; i < n; i++) {
        uint32_t a = bits[i] & 0x7fffffffu;
        m = a > m ? a : m;
    }
    return m >= 0x7f800000u ? NAN : bits_float(m);
}

NN_MULTIVERSION
int nn_all_finite(const float *restrict x, long n) {
    uint32_t bad = 0;
    for (long i = 0; i < n; i++) bad |= nonfinite(x[i]);
    return bad == 0;
}

int nn_cpu_vector_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}
