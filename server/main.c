/*
 * main.c — the edgellmd executable: everything happens in srv_main (daemon.c), which returns the
 * exit status.
 */
#include "server.h"

int main(int argc, char **argv, char **envp) {
    return srv_main(argc, argv, envp);
}
