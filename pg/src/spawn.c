/*
 * spawn.c: starts the Node child of a worker (or of the registration helper at preload).
 *
 * Between fork and exec the child only makes async-signal-safe system calls: no ereport, no palloc. Every
 * signal is blocked around the fork, so no handler of the backend runs in the child; the child then resets
 * every disposition (an ignored signal would stay ignored across exec) and its mask, asks the kernel for
 * SIGKILL when its parent dies, moves its socket end to fd 3 and closes every other descriptor above 2.
 */
#include "bgworker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "miscadmin.h"

extern char **environ;

char *
bgw_script_path(const char *entry)
{
	return psprintf("%s/dist/inserver/%s", bgw_package, entry);
}

static void
child_fail(const char *what)
{
	const char *prefix = "bgworker: cannot start node: ";

	if (write(2, prefix, strlen(prefix)) < 0 || write(2, what, strlen(what)) < 0 || write(2, "\n", 1) < 0)
		_exit(127);
	_exit(127);
}

pid_t
bgw_spawn_node(const char *script, char *const extra_args[], int *sock)
{
	int			sv[2];
	sigset_t	all,
				saved;
	pid_t		parent = getpid();
	pid_t		pid;
	char	   *argv[64];
	int			argc = 0;

	argv[argc++] = bgw_node;
	argv[argc++] = (char *) script;
	for (int i = 0; extra_args != NULL && extra_args[i] != NULL && argc < 63; i++)
		argv[argc++] = extra_args[i];
	argv[argc] = NULL;

	if (bgw_node == NULL || bgw_node[0] == '\0')
	{
		errno = ENOENT;
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &saved);
	pid = fork();
	if (pid == 0)
	{
		struct sigaction dfl;
		sigset_t	none;
		int			fd = sv[1];

		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigemptyset(&dfl.sa_mask);
		for (int sig = 1; sig < NSIG; sig++)
			(void) sigaction(sig, &dfl, NULL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
			child_fail("prctl(PR_SET_PDEATHSIG) failed");
		/* The parent may have died before the line above: then nobody would send the signal. */
		if (getppid() != parent)
			_exit(1);
		if (fd == 3)
		{
			if (fcntl(3, F_SETFD, 0) != 0)
				child_fail("fcntl(F_SETFD) failed");
		}
		else if (dup2(fd, 3) != 3)
			child_fail("dup2 failed");
#ifdef SYS_close_range
		if (syscall(SYS_close_range, 4U, ~0U, 0) != 0)
#endif
		{
			for (int other = 4; other < 65536; other++)
				(void) close(other);
		}
		execve(argv[0], argv, environ);
		child_fail(argv[0]);
	}
	{
		int			saved_errno = errno;

		sigprocmask(SIG_SETMASK, &saved, NULL);
		close(sv[1]);
		if (pid < 0)
		{
			close(sv[0]);
			errno = saved_errno;
			return -1;
		}
	}
	*sock = sv[0];
	return pid;
}
