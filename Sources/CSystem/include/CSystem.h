#ifndef NN_CSYSTEM_H
#define NN_CSYSTEM_H

/// Asks the kernel to send `signal` to this process when its parent dies (Linux; a no-op elsewhere), so a
/// launcher killed outright leaves no orphans. prctl is variadic, which Swift cannot call directly.
int nn_set_parent_death_signal(int signal);

#endif
