// libsodium (Debian: libsodium-dev), already a dependency of libzmq's CURVE support.
#include <sodium.h>
