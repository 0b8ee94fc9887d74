#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "CNNSystem.h"
#if defined(__linux__)
#include <dirent.h>
#include <sched.h>
#include <sys/prctl.h>
#endif

int nn_set_parent_death_signal(int signal) {
#if defined(__linux__)
    return prctl(PR_SET_PDEATHSIG, signal);
#else
    (void)signal;
    return 0;
#endif
}

void nn_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

int nn_allowed_cpus(int *cpus, int capacity) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int found = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        if (found < capacity) cpus[found] = cpu;
        found++;
    }
    return found;
#else
    (void)cpus; (void)capacity;
    return -1;
#endif
}

int nn_pin_to_cpus(const int *cpus, int count) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return EINVAL;
        CPU_SET(cpus[i], &set);
    }
    /* Every thread of the process (the runtime's too), as affinity is per thread; threads started later inherit it. */
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks) return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
    int error = 0;
    struct dirent *entry;
    while ((entry = readdir(tasks))) {
        if (entry->d_name[0] == '.') continue;
        if (sched_setaffinity((pid_t)atoi(entry->d_name), sizeof set, &set) != 0 && errno != ESRCH) error = errno;
    }
    closedir(tasks);
    return error;
#else
    (void)cpus; (void)count;
    return ENOSYS;
#endif
}

#define NN_RING_MAGIC 0x6e6e2d72696e6731ULL /* "nn-ring1" */

typedef struct nn_ring_channel {
    uint64_t magic;
    uint32_t slots;
    uint32_t capacity;
    pthread_mutex_t lock;
    _Alignas(64) _Atomic uint64_t written;
    _Alignas(64) _Atomic uint64_t read;
} nn_ring_channel;

static size_t nn_ring_slot_size(uint32_t capacity) {
    return (sizeof(nn_ring_slot_header) + (size_t)capacity * sizeof(float) + 63) & ~(size_t)63;
}

static size_t nn_ring_head_size(void) { return (sizeof(nn_ring_channel) + 63) & ~(size_t)63; }

static char *nn_ring_slot(nn_ring_channel *c, uint64_t index) {
    return (char *)c + nn_ring_head_size() + (size_t)(index % c->slots) * nn_ring_slot_size(c->capacity);
}

size_t nn_ring_channel_size(uint32_t slots, uint32_t capacity) { return nn_ring_head_size() + (size_t)slots * nn_ring_slot_size(capacity); }

int nn_ring_channel_init(void *memory, uint32_t slots, uint32_t capacity) {
    nn_ring_channel *c = memory;
    pthread_mutexattr_t attributes;
    int error = pthread_mutexattr_init(&attributes);
    if (error) return error;
    if (!(error = pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED))
        && !(error = pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST))) {
        error = pthread_mutex_init(&c->lock, &attributes);
    }
    pthread_mutexattr_destroy(&attributes);
    if (error) return error;
    c->slots = slots;
    c->capacity = capacity;
    atomic_store(&c->written, 0);
    atomic_store(&c->read, 0);
    atomic_store_explicit((_Atomic uint64_t *)&c->magic, NN_RING_MAGIC, memory_order_release);
    return 0;
}

int nn_ring_channel_check(const void *memory, size_t size, uint32_t capacity) {
    const nn_ring_channel *c = memory;
    if (size < sizeof(nn_ring_channel)) return -1;
    if (atomic_load_explicit((_Atomic uint64_t *)&c->magic, memory_order_acquire) != NN_RING_MAGIC) return -1;
    if (c->capacity != capacity || c->slots == 0 || nn_ring_channel_size(c->slots, c->capacity) != size) return -1;
    return 0;
}

int nn_ring_channel_put(void *memory, const nn_ring_slot_header *header, const float *values) {
    nn_ring_channel *c = memory;
    if (header->count > c->capacity) return -1;
    int locked = pthread_mutex_lock(&c->lock);
    if (locked == EOWNERDEAD) {
        /* A writer died holding the lock; it had not published its slot, so the channel is consistent. */
        pthread_mutex_consistent(&c->lock);
    } else if (locked) {
        return -2;
    }
    uint64_t written = atomic_load_explicit(&c->written, memory_order_relaxed);
    if (written - atomic_load_explicit(&c->read, memory_order_acquire) >= c->slots) {
        pthread_mutex_unlock(&c->lock);
        return 1;
    }
    char *slot = nn_ring_slot(c, written);
    memcpy(slot, header, sizeof *header);
    memcpy(slot + sizeof *header, values, (size_t)header->count * sizeof(float));
    atomic_store_explicit(&c->written, written + 1, memory_order_release);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

const float *nn_ring_channel_peek(void *memory, nn_ring_slot_header *header) {
    nn_ring_channel *c = memory;
    uint64_t read = atomic_load_explicit(&c->read, memory_order_relaxed);
    if (read == atomic_load_explicit(&c->written, memory_order_acquire)) return NULL;
    const char *slot = nn_ring_slot(c, read);
    memcpy(header, slot, sizeof *header);
    if (header->count > c->capacity) header->count = c->capacity;
    return (const float *)(slot + sizeof *header);
}

int nn_ring_channel_waiting(const void *memory) {
    nn_ring_channel *c = (nn_ring_channel *)memory;
    return atomic_load_explicit(&c->read, memory_order_relaxed) != atomic_load_explicit(&c->written, memory_order_acquire);
}

void nn_ring_channel_pop(void *memory) {
    nn_ring_channel *c = memory;
    atomic_fetch_add_explicit(&c->read, 1, memory_order_release);
}
