/* tcp_client1 IP MESSAGE PORT: the lecture's TCP client, written for the Connection
 * Observatory after the lecture's description (session 4, sockets).
 *
 * It fills a struct sockaddr_in one field at a time and prints its 16 bytes after each
 * step, as the lecture does:
 *
 *     [0]=0,[1]=0,...,[15]=0,                       after memset
 *     [0]=2,[1]=0,...                               after sin_family = AF_INET
 *     [0]=2,[1]=0,[2]=0,[3]=0,[4]=7F,[5]=0,...      after sin_addr
 *     [0]=2,[1]=0,[2]=3,[3]=E8,[4]=7F,...           after sin_port = htons(1000)
 *
 * then connects (no bind: the OS chooses the client's port), sends MESSAGE, and holds
 * the connection open until it is killed. Errors are said in words, with exit status 1.
 *
 * Build: cc -Wall -Wextra -std=c11 -D_DEFAULT_SOURCE -o tcp_client1 tcp_client1.c
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *program = "tcp_client1";

/* Say what failed and why, in words, and exit 1. */
static void die(const char *what) {
    fprintf(stderr, "%s: %s: %s\n", program, what, strerror(errno));
    exit(1);
}

/* The lecture's dump: every byte of the struct, in memory order, in hex. */
static void dump(const struct sockaddr_in *addr) {
    const unsigned char *pointer = (const unsigned char *)addr;
    size_t cont;

    for (cont = 0; cont < sizeof(*addr); cont++)
        printf("[%d]=%X,", (int)cont, (unsigned)pointer[cont]);
    printf("\n");
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
    struct sockaddr_in echoserver;
    struct in_addr address;
    int sock, port;
    size_t length;
    char what[64];

    if (argc != 4) {
        fprintf(stderr, "Usage: %s <server ip> <message> <port>\n", argv[0]);
        exit(1);
    }
    if (inet_pton(AF_INET, argv[1], &address) != 1) {
        fprintf(stderr, "%s: '%s' is not an IPv4 address (e.g. 127.0.0.1)\n", program, argv[1]);
        exit(1);
    }
    port = parse_port(argv[3]);
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, also into a pipe */

    memset(&echoserver, 0, sizeof(echoserver)); /* reset memory */
    dump(&echoserver);
    echoserver.sin_family = AF_INET; /* Internet/IP */
    dump(&echoserver);
    echoserver.sin_addr = address; /* IP address, network byte order */
    dump(&echoserver);
    echoserver.sin_port = htons((unsigned short)port); /* server port */
    dump(&echoserver);

    sock = socket(PF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (sock < 0)
        die("socket");
    snprintf(what, sizeof(what), "connect to %s:%d", argv[1], port);
    if (connect(sock, (struct sockaddr *)&echoserver, sizeof(echoserver)) < 0)
        die(what);
    length = strlen(argv[2]);
    if (send(sock, argv[2], length, 0) != (ssize_t)length)
        die("send");
    printf("Sent %zu bytes to %s:%d; holding the connection until killed\n", length, argv[1],
           port);
    while (1)
        sleep(60);
}
