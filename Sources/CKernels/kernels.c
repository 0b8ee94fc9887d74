#include "CKernels.h"
#include <math.h>

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

NN_MULTIVERSION
float nn_max_magnitude(const float *restrict x, long n) {
    float m = 0, nan = 0;
    for (long i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m;
        nan += x[i] * 0.0f;  // NaN for NaN or infinity, as in nn_all_finite
    }
    return nan == 0 ? m : nan;
}

NN_MULTIVERSION
int nn_all_finite(const float *restrict x, long n) {
    // x·0 is 0 for every finite x and NaN for NaN or ±infinity; the sum is 0 exactly when all are finite.
    float acc = 0;
    for (long i = 0; i < n; i++) acc += x[i] * 0.0f;
    return acc == 0;
}
