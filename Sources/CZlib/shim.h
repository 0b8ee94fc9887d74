// zlib (Debian: zlib1g-dev); Foundation on Linux cannot inflate gzip, gzopen/gzread can.
#include <zlib.h>
