#include <stdio.h>
#include "CNNSystem.h"
#if defined(__linux__)
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
