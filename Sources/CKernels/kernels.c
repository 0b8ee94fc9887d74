#include "CKernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#define NN_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NN_MULTIVERSION
#endif

NN_MULTIVERSION
void nn_sgd_update(float *restrict p, const float *restrict g, long n, float lr, float weight_decay) {
    for (long i = 0; i < n; i++) p[i] -= lr * (g[i] + weight_decay * p[i]);
}

NN_MULTIVERSION
void nn_momentum_update(float *restrict p, const float *restrict g, float *restrict v, long n, float lr, float weight_decay,
                        float momentum, int nesterov) {
    if (nesterov) {
        for (long i = 0; i < n; i++) {
            float d = g[i] + weight_decay * p[i];
            v[i] = momentum * v[i] + d;
            p[i] -= lr * (d + momentum * v[i]);
        }
    } else {
        for (long i = 0; i < n; i++) {
            float d = g[i] + weight_decay * p[i];
            v[i] = momentum * v[i] + d;
            p[i] -= lr * v[i];
        }
    }
}

NN_MULTIVERSION
void nn_adam_update(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, long n, float beta1,
                    float beta2, float step_size, float inv_root_correction2, float epsilon, float coupled_decay, float decay) {
    for (long i = 0; i < n; i++) {
        float d = g[i] + coupled_decay * p[i];
        float mi = beta1 * m[i] + (1 - beta1) * d;
        float vi = beta2 * v[i] + (1 - beta2) * d * d;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_root_correction2 + epsilon);
    }
}

NN_MULTIVERSION
void nn_axpy(float *restrict y, const float *restrict x, long n, float a) {
    for (long i = 0; i < n; i++) y[i] += a * x[i];
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
    if (m >= 0x7f800000u) return NAN;
    float out;
    memcpy(&out, &m, sizeof out);
    return out;
}

NN_MULTIVERSION
int nn_all_finite(const float *restrict x, long n) {
    const uint32_t *bits = (const uint32_t *)x;
    uint32_t bad = 0;
    for (long i = 0; i < n; i++) bad |= (bits[i] & 0x7f800000u) == 0x7f800000u;
    return bad == 0;
}
