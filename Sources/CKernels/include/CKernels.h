#ifndef NN_CKERNELS_H
#define NN_CKERNELS_H

// Element-wise kernels over the flat parameter vector: optimizer updates, weighted sums of gradients and models,
// and the finiteness check of every gradient a worker sends. They live in C because Swift on Linux lowers
// squareRoot() to a libm call with errno semantics, which keeps Adam's loop scalar; here the compiler
// vectorises it (and, on x86-64 Linux, also builds AVX2 and AVX-512 versions chosen at load time).
// Contraction into FMA is off, so every version gives the same bits.

// The updates return 1 when every new value (parameters and optimizer state) is finite, else 0; with dry_run set
// they store nothing, so an update that would leave non-finite values can be refused before it changes anything.

/// p ← p − lr·(g + wd·p)
int nn_sgd_update(float *p, const float *g, long n, float lr, float weight_decay, int dry_run);

/// d = g + wd·p; v ← μ·v + d; p ← p − lr·(nesterov ? d + μ·v : v)
int nn_momentum_update(float *p, const float *g, float *v, long n, float lr, float weight_decay, float momentum, int nesterov,
                       int dry_run);

/// d = g + coupled_decay·p; m ← β1·m + (1−β1)·d; v ← β2·v + (1−β2)·d²;
/// p ← p·decay − step_size·m / (√v · inv_root_correction2 + ε). `bounds` gets the largest |m| and the largest v
/// of the new moments (NaN when one is not finite, or a v is negative).
int nn_adam_update(float *p, const float *g, float *m, float *v, long n, float beta1, float beta2, float step_size,
                   float inv_root_correction2, float epsilon, float coupled_decay, float decay, int dry_run, float *bounds);

/// y ← y + a·x
void nn_axpy(float *y, const float *x, long n, float a);

/// y ← a·x
void nn_scale(float *y, const float *x, long n, float a);

/// y ← a·x for bytes x: pixels to floats.
void nn_scale_bytes(float *y, const unsigned char *x, long n, float a);

/// dx ← dy where y > 0, else 0: the ReLU's input gradient from its output.
void nn_relu_backward(float *dx, const float *y, const float *dy, long n);

/// The largest |x[i]|; NaN when a value is NaN or infinite.
float nn_max_magnitude(const float *x, long n);

/// 1 when all n values are finite (no NaN, no infinity), else 0; reads every value as bits, without branching.
int nn_all_finite(const float *x, long n);

/// The widest vectors this CPU and its operating system run: 2 for AVX-512 (F, CD, BW, DQ and VL), 1 for AVX2 with
/// FMA, 0 otherwise or on other architectures.
int nn_cpu_vector_level(void);

#endif
