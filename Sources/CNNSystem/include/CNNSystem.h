#ifndef NN_CNNSYSTEM_H
#define NN_CNNSYSTEM_H

/// Asks the kernel to send `signal` to this process when its parent dies (Linux; a no-op elsewhere), so a
/// launcher killed outright leaves no orphans. prctl is variadic, which Swift cannot call directly.
int nn_set_parent_death_signal(int signal);

/// Makes standard output line-buffered whatever it is (a pipe or a file is otherwise block-buffered), so that a
/// log collector sees each line when it is written. `stdout` is a C global Swift cannot touch safely.
void nn_line_buffer_stdout(void);

/// The CPUs this process may run on, in increasing order: writes up to `capacity` of them to `cpus` and returns
/// how many there are, or -1 when the system cannot tell. cpu_set_t's macros are out of Swift's reach.
int nn_allowed_cpus(int *cpus, int capacity);

/// Restricts every thread of this process, and the threads they start afterwards, to `cpus`: 0, or an errno value.
int nn_pin_to_cpus(const int *cpus, int count);

#include <stddef.h>
#include <stdint.h>

/// A one-way channel of ring chunks in memory shared by the processes of one host: a fixed ring of slots that
/// any number of writers fill under a process-shared robust mutex (a writer that dies holding it does not block
/// the others) and its one reader empties. C11 atomics order a slot's bytes before its publication; Swift has
/// no atomics on memory another process maps.
typedef struct nn_ring_slot_header {
    uint64_t generation;
    uint64_t step;
    uint32_t phase;
    uint32_t count;
} nn_ring_slot_header;

/// Bytes a channel of `slots` slots of `capacity` floats takes.
size_t nn_ring_channel_size(uint32_t slots, uint32_t capacity);
/// Lays a new channel out in `memory` (zeroed, `nn_ring_channel_size` bytes); 0, or an errno value.
int nn_ring_channel_init(void *memory, uint32_t slots, uint32_t capacity);
/// 0 when `memory` (`size` bytes) holds a channel laid out by `nn_ring_channel_init` with `capacity`.
int nn_ring_channel_check(const void *memory, size_t size, uint32_t capacity);
/// Copies a chunk into the next free slot and publishes it: 0, 1 when every slot is full, -1 when the chunk is
/// larger than a slot, -2 when the lock cannot be taken (left unrecoverable).
int nn_ring_channel_put(void *memory, const nn_ring_slot_header *header, const float *values);
/// The oldest published slot: its header and values, or NULL when none is waiting. Valid until the next pop.
const float *nn_ring_channel_peek(void *memory, nn_ring_slot_header *header);
/// Frees the slot `nn_ring_channel_peek` returned.
void nn_ring_channel_pop(void *memory);
/// Whether a chunk waits, without a lock or a system call: for a reader that spins before it sleeps.
int nn_ring_channel_waiting(const void *memory);

#endif
