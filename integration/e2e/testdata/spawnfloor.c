/*
 * spawnfloor is the machine's floor for the bulk benchmark (BenchmarkBulk1000):
 * the least work that runs N `sh -c true` tasks, each in new pid, mount,
 * ipc and uts namespaces, WORKERS at a time, with nothing else around it.
 *
 *   spawnfloor N WORKERS [plain]
 *
 * prints "<seconds>" (wall time for all N) on stdout. With "plain" the
 * tasks get no namespaces (fork/exec + wait).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
static int left;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int child(void *arg) {
	(void)arg;
	execl("/bin/sh", "sh", "-c", "true", (char *)NULL);
	_exit(127);
}

static void *worker(void *arg) {
	(void)arg;
	size_t size = 1 << 16;
	char *stack = malloc(size);
	if (stack == NULL) {
		perror("malloc");
		exit(1);
	}
	for (;;) {
		pthread_mutex_lock(&mu);
		if (left == 0) {
			pthread_mutex_unlock(&mu);
			break;
		}
		left--;
		pthread_mutex_unlock(&mu);
		pid_t pid = clone(child, stack + size, flags | SIGCHLD, NULL);
		if (pid < 0) {
			perror("clone");
			exit(1);
		}
		int status;
		if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "task %d did not exit 0 (status %d)\n", pid, status);
			exit(1);
		}
	}
	free(stack);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: spawnfloor N WORKERS [plain]\n");
		return 2;
	}
	left = atoi(argv[1]);
	int workers = atoi(argv[2]);
	if (argc > 3 && strcmp(argv[3], "plain") == 0)
		flags = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_t th[64];
	if (workers < 1 || workers > 64) {
		fprintf(stderr, "WORKERS must be 1..64\n");
		return 2;
	}
	for (int i = 0; i < workers; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (int i = 0; i < workers; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.6f\n", (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}
