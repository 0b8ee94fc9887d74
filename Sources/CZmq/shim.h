// libzmq (Debian: libzmq3-dev). Linked without pkg-config: its .pc file adds an -isystem flag SwiftPM rejects.
#include <zmq.h>
