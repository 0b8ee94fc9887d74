#ifndef NN_CKERNELS_H
#define NN_CKERNELS_H

// Element-wise kernels over the flat parameter vector: optimizer updates, weighted sums of gradients and models,
// and the finiteness check of every gradient a worker sends. They live in C because Swift on Linux lowers
// squareRoot() to a libm call with errno semantics, which keeps Adam's loop scalar; here the compiler
// vectorises it (and, on x86-64 Linux, also builds AVX2 and AVX-512 versions chosen at load time).
// Contraction into FMA is off, so every version gives the same bits.

/// p ← p − lr·(g + wd·p)
void nn_sgd_update(float *p, const float *g, long n, float lr, float weight_decay);

/// d = g + wd·p; v ← μ·v + d; p ← p − lr·(nesterov ? d + μ·v : v)
void nn_momentum_update(float *p, const float *g, float *v, long n, float lr, float weight_decay, float momentum, int nesterov);

/// d = g + coupled_decay·p; m ← β1·m + (1−β1)·d; v ← β2·v + (1−β2)·d²;
/// p ← p·decay − step_size·m / (√v · inv_root_correction2 + ε)
void nn_adam_update(float *p, const float *g, float *m, float *v, long n, float beta1, float beta2, float step_size,
                    float inv_root_correction2, float epsilon, float coupled_decay, float decay);

/// y ← y + a·x
void nn_axpy(float *y, const float *x, long n, float a);

/// The largest |x[i]|; NaN when a value is NaN or infinite.
float nn_max_magnitude(const float *x, long n);

/// 1 when all n values are finite (no NaN, no infinity), else 0; reads every value as bits, without branching.
int nn_all_finite(const float *x, long n);

#endif
