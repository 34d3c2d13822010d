// lockstep: the floor of a TFTP read server with a socket per session, on
// the machine it runs on. An experiment for issue 19 (BENCHMARKS.md, "The
// floor of a socket per session"), not part of tftpgw: one thread, no
// retransmission, no timers, no stats, no logs, no limits, no path checks,
// loopback only. It answers RRQs (octet; options blksize and tsize; an
// OACK only when one was asked for), a missing file with ERROR 1 from a
// socket of its own, and ends a session on the client's ERROR (a size
// probe) or its last ACK. tftpbench's lock-step and small-request
// scenarios and its -boot storm (windowsize is not granted: the NBP goes
// lock-step) run against it.
//
//   lockstep epoll PORT ROOT   one epoll loop, a recv and a send per ACK
//   lockstep uring PORT ROOT   io_uring: one io_uring_enter per batch of
//                              completions, sends without completions
//
// Build: cc -O2 -o lockstep lockstep.c -luring (Debian: liburing-dev).
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXS 4096
struct sess;
int ack(struct sess *, int);
struct sess {
	int fd;
	const uint8_t *file;
	size_t size;
	uint32_t blk, nblocks;
	int bs;
	uint8_t *buf;
	uint8_t rbuf[64];
};
static struct sess *ss[MAXS];
static int rootfd;

static int newsess(const uint8_t *p, int n, struct sockaddr_in *cli) {
	if (n < 4 || p[1] != 1) return -1;
	const char *name = (const char *)p + 2;
	const char *end = (const char *)p + n;
	const char *mode = name + strnlen(name, end - name) + 1;
	if (mode >= end) return -1;
	const char *o = mode + strnlen(mode, end - mode) + 1;
	int bs = 512, tsize = 0, opts = 0, wantbs = 0;
	while (o < end) {
		const char *v = o + strnlen(o, end - o) + 1;
		if (v >= end) break;
		if (!strcasecmp(o, "blksize")) bs = atoi(v), opts = 1, wantbs = 1;
		if (!strcasecmp(o, "tsize")) tsize = 1, opts = 1;
		o = v + strnlen(v, end - v) + 1;
	}
	int ffd = openat(rootfd, name, O_RDONLY);
	if (ffd < 0) {
		// ERROR 1 from a socket of its own, as a transfer's first packet.
		int e = socket(AF_INET, SOCK_DGRAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		bind(e, (void *)&a, sizeof a);
		static const char msg[] = "\0\5\0\1File not found";
		sendto(e, msg, sizeof msg, 0, (void *)cli, sizeof *cli);
		close(e);
		return -1;
	}
	struct stat st;
	fstat(ffd, &st);
	// Small files are read whole (a page fault costs more here than a read).
	void *m;
	if (st.st_size <= 65536) {
		m = malloc(st.st_size ? st.st_size : 1);
		if (pread(ffd, m, st.st_size, 0) != st.st_size) return close(ffd), -1;
	} else
		m = mmap(0, st.st_size, PROT_READ, MAP_SHARED, ffd, 0);
	close(ffd);
	int i;
	for (i = 0; i < MAXS && ss[i]; i++)
		;
	if (i == MAXS) return -1;
	struct sess *s = calloc(1, sizeof *s);
	s->file = m, s->size = st.st_size, s->bs = bs;
	s->buf = malloc(bs + 4);
	s->nblocks = st.st_size / bs + 1;
	s->fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bind(s->fd, (void *)&a, sizeof a);
	connect(s->fd, (void *)cli, sizeof *cli);
	if (opts) {
		char oack[64];
		int ol = 2;
		oack[0] = 0, oack[1] = 6;
		if (wantbs) {
			ol += sprintf(oack + ol, "blksize") + 1;
			ol += sprintf(oack + ol, "%d", bs) + 1;
		}
		if (tsize) {
			ol += sprintf(oack + ol, "tsize") + 1;
			ol += sprintf(oack + ol, "%ld", (long)st.st_size) + 1;
		}
		send(s->fd, oack, ol, 0);
	} else {
		// DATA 1 at once: block 0 is "acknowledged".
		s->rbuf[1] = 4;
		int d = 0;
		d = ack(s, 4);
		send(s->fd, s->buf, d, 0);
	}
	ss[i] = s;
	return i;
}

// ack processes an ACK; returns the length of the DATA to send, 0 for none, -1 when done.
int ack(struct sess *s, int n) {
	if (n >= 2 && s->rbuf[1] == 5) return -1; // the client's ERROR ends it
	if (n < 4 || s->rbuf[1] != 4) return 0;
	uint16_t b = s->rbuf[2] << 8 | s->rbuf[3];
	if (b != (uint16_t)s->blk) return 0;
	if (s->blk == s->nblocks) return -1;
	s->blk++;
	size_t off = (size_t)(s->blk - 1) * s->bs;
	size_t len = s->size - off < (size_t)s->bs ? s->size - off : (size_t)s->bs;
	s->buf[0] = 0, s->buf[1] = 3, s->buf[2] = s->blk >> 8, s->buf[3] = s->blk;
	memcpy(s->buf + 4, s->file + off, len);
	return len + 4;
}

static void endsess(int i) {
	struct sess *s = ss[i];
	close(s->fd);
	if (s->size <= 65536) free((void *)s->file);
	else munmap((void *)s->file, s->size);
	free(s->buf);
	free(s);
	ss[i] = 0;
}

int main(int argc, char **argv) {
	if (argc != 4) return 2;
	rootfd = open(argv[3], O_RDONLY | O_DIRECTORY);
	int l = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(l, (void *)&a, sizeof a)) return perror("bind"), 1;
	uint8_t lbuf[1500];
	struct sockaddr_in cli;
	if (!strcmp(argv[1], "epoll")) {
		int ep = epoll_create1(0);
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ~0ull};
		epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
		struct epoll_event evs[512];
		for (;;) {
			int n = epoll_wait(ep, evs, 512, -1);
			for (int k = 0; k < n; k++) {
				if (evs[k].data.u64 == ~0ull) {
					socklen_t cl = sizeof cli;
					int m = recvfrom(l, lbuf, sizeof lbuf, MSG_DONTWAIT, (void *)&cli, &cl);
					if (m <= 0) continue;
					int i = newsess(lbuf, m, &cli);
					if (i < 0) continue;
					struct epoll_event e = {.events = EPOLLIN, .data.u64 = i};
					epoll_ctl(ep, EPOLL_CTL_ADD, ss[i]->fd, &e);
					continue;
				}
				int i = evs[k].data.u64;
				struct sess *s = ss[i];
				int m = recv(s->fd, s->rbuf, sizeof s->rbuf, MSG_DONTWAIT);
				if (m <= 0) continue;
				int d = ack(s, m);
				if (d < 0) endsess(i);
				else if (d > 0) send(s->fd, s->buf, d, 0);
			}
		}
	}
	struct io_uring ring;
	if (io_uring_queue_init(4096, &ring, 0)) return perror("uring"), 1;
	struct iovec liov = {lbuf, sizeof lbuf};
	struct msghdr lmsg = {.msg_name = &cli, .msg_namelen = sizeof cli, .msg_iov = &liov, .msg_iovlen = 1};
#define LISTEN ~0ull
	struct io_uring_sqe *q = io_uring_get_sqe(&ring);
	io_uring_prep_recvmsg(q, l, &lmsg, 0);
	io_uring_sqe_set_data64(q, LISTEN);
	for (;;) {
		io_uring_submit_and_wait(&ring, 1);
		struct io_uring_cqe *c;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, c) {
			seen++;
			uint64_t u = c->user_data;
			if (u == LISTEN) {
				if (c->res > 0) {
					int i = newsess(lbuf, c->res, &cli);
					if (i >= 0) {
						q = io_uring_get_sqe(&ring);
						io_uring_prep_recv(q, ss[i]->fd, ss[i]->rbuf, sizeof ss[i]->rbuf, 0);
						io_uring_sqe_set_data64(q, i << 1);
					}
				}
				lmsg.msg_namelen = sizeof cli;
				q = io_uring_get_sqe(&ring);
				io_uring_prep_recvmsg(q, l, &lmsg, 0);
				io_uring_sqe_set_data64(q, LISTEN);
				continue;
			}
			if (u & 1) continue; // a failed send
			int i = u >> 1;
			struct sess *s = ss[i];
			int d = c->res > 0 ? ack(s, c->res) : 0;
			if (d < 0) {
				endsess(i);
				continue;
			}
			if (d > 0) {
				q = io_uring_get_sqe(&ring);
				io_uring_prep_send(q, s->fd, s->buf, d, 0);
				io_uring_sqe_set_data64(q, (i << 1) | 1);
				io_uring_sqe_set_flags(q, IOSQE_CQE_SKIP_SUCCESS);
			}
			q = io_uring_get_sqe(&ring);
			io_uring_prep_recv(q, s->fd, s->rbuf, sizeof s->rbuf, 0);
			io_uring_sqe_set_data64(q, i << 1);
		}
		io_uring_cq_advance(&ring, seen);
	}
}
