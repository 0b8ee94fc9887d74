// libgfshare (Debian: libgfshare-dev): Shamir's secret sharing over GF(2^8). Its random coefficients come from
// libsodium's generator, not from the library's default.
#include <libgfshare.h>
#include <sodium.h>

static void nn_gfshare_random(unsigned char *buffer, unsigned int count) { randombytes_buf(buffer, count); }

static inline void nn_gfshare_use_sodium(void) { gfshare_fill_rand = nn_gfshare_random; }
