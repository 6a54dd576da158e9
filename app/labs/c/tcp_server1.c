/* tcp_server1 PORT: the lecture's iterative TCP server, written for the Connection
 * Observatory after the lecture's description (session 4, sockets).
 *
 * socket(), bind() to INADDR_ANY (every address of the machine) with no SO_REUSEADDR,
 * listen() with a backlog of 5, then accept clients one at a time. For each it prints
 *
 *     Client: 127.0.0.1:39846
 *
 * and calls handle_client(), which never returns: it spins in while (1), so ps shows the
 * process at full CPU and a second client is never accepted (its handshake still completes
 * and it waits in the listener's backlog). SIGTERM and SIGKILL end it (default actions).
 *
 * Build: cc -Wall -Wextra -std=c11 -D_DEFAULT_SOURCE -o tcp_server1 tcp_server1.c
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXPENDING 5 /* listen() backlog: clients waiting to be accepted */

static const char *program = "tcp_server1";

/* Say what failed and why, in words, and exit 1. */
static void die(const char *what) {
    fprintf(stderr, "%s: %s: %s\n", program, what, strerror(errno));
    exit(1);
}

/* Serve one client: the lecture's handler does nothing, forever. */
static void handle_client(int sock) {
    (void)sock;
    while (1)
        ; /* busy loop: never returns */
}

static int parse_port(const char *text) {
    char *end;
    long port;

    errno = 0;
    port = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "%s: port must be a number 1-65535, not '%s'\n", program, text);
        exit(1);
    }
    return (int)port;
}

int main(int argc, char *argv[]) {
    struct sockaddr_in echoserver, echoclient;
    socklen_t clientlen;
    int serversock, clientsock, port;
    char what[64];

    if (argc != 2) {
        fprintf(stderr, "Usage: %s <port>\n", argv[0]);
        exit(1);
    }
    port = parse_port(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, also into a pipe */

    serversock = socket(PF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (serversock < 0)
        die("socket");

    memset(&echoserver, 0, sizeof(echoserver));    /* reset memory */
    echoserver.sin_family = AF_INET;                /* Internet/IP */
    echoserver.sin_addr.s_addr = htonl(INADDR_ANY); /* ANY address */
    echoserver.sin_port = htons((unsigned short)port); /* server port */

    if (bind(serversock, (struct sockaddr *)&echoserver, sizeof(echoserver)) < 0) {
        snprintf(what, sizeof(what), "bind 0.0.0.0:%d", port);
        die(what);
    }
    if (listen(serversock, MAXPENDING) < 0)
        die("listen");

    while (1) {
        clientlen = sizeof(echoclient);
        clientsock = accept(serversock, (struct sockaddr *)&echoclient, &clientlen);
        if (clientsock < 0)
            die("accept");
        printf("Client: %s:%d\n", inet_ntoa(echoclient.sin_addr), ntohs(echoclient.sin_port));
        handle_client(clientsock);
    }
}
