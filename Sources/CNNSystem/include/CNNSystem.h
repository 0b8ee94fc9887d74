#ifndef NN_CNNSYSTEM_H
#define NN_CNNSYSTEM_H

/// Asks the kernel to send `signal` to this process when its parent dies (Linux; a no-op elsewhere), so a
/// launcher killed outright leaves no orphans. prctl is variadic, which Swift cannot call directly.
int nn_set_parent_death_signal(int signal);

/// Makes standard output line-buffered whatever it is (a pipe or a file is otherwise block-buffered), so that a
/// log collector sees each line when it is written. `stdout` is a C global Swift cannot touch safely.
void nn_line_buffer_stdout(void);

#endif
