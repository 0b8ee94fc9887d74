// libpng (Debian: libpng-dev): its simplified reader decodes every PNG colour type, bit depth and interlacing.
#include <png.h>
