/*
 * notify.c — systemd service notifications without libsystemd: the sd_notify datagram protocol
 * ("READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1") sent to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or an abstract name starting with '@'). It does nothing when the
 * variable is unset, so the daemon runs the same outside systemd.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void srv_notify(const char *state) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@')) return;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@') sa.sun_path[0] = 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
        srv_log(SRV_LOG_DEBUG, "notify: sendto %s failed", path);
    close(fd);
}

double srv_watchdog_interval(void) {
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!usec) return 0;
    if (pid && atol(pid) != (long)getpid()) return 0;
    double s = strtod(usec, NULL) / 1e6;
    return s > 0 ? s : 0;
}
