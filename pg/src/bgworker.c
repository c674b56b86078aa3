/*
 * bgworker.c: the extension's settings, the static registrations made at preload (each module's _PG_init
 * runs in a helper Node process), and the shared table of dynamic workers' definitions.
 */
#include "bgworker.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "portability/instr_time.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

PG_MODULE_MAGIC;

#ifndef BGWORKER_NODE
#define BGWORKER_NODE "/usr/bin/node"
#endif
#ifndef BGWORKER_PACKAGE_DIR
#define BGWORKER_PACKAGE_DIR "/usr/lib/node_modules/bgworker"
#endif

char	   *bgw_modules = NULL;
char	   *bgw_node = NULL;
char	   *bgw_package = NULL;
char	   *bgw_database = NULL;
int			bgw_init_timeout_ms = 30000;
int			bgw_busy_poll_us = 50;

BgwStatic  *bgw_statics = NULL;
int			bgw_nstatics = 0;
BgwShared  *bgw_shared = NULL;
BgwNodePid *bgw_nodes = NULL;
int			bgw_nnodes = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static int
dynamic_entries(void)
{
	return max_worker_processes + 8;
}

/* One entry per PGPROC that a background worker can have: they are all among the first MaxBackends. */
static Size
nodes_size(void)
{
	return mul_size(MaxBackends, sizeof(BgwNodePid));
}

static Size
shared_size(void)
{
	return add_size(offsetof(BgwShared, dynamic), mul_size(dynamic_entries(), sizeof(BgwDynamic)));
}

static void
bgw_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(shared_size(), nodes_size()));
}

static void
bgw_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	bgw_shared = ShmemInitStruct("bgworker", shared_size(), &found);
	if (!found)
	{
		memset(bgw_shared, 0, shared_size());
		SpinLockInit(&bgw_shared->lock);
		bgw_shared->next_nonce = 1;
		bgw_shared->ndynamic = dynamic_entries();
	}
	bgw_nodes = ShmemInitStruct("bgworker node pids", nodes_size(), &found);
	if (!found)
		memset(bgw_nodes, 0, nodes_size());
	bgw_nnodes = MaxBackends;
	LWLockRelease(AddinShmemInitLock);
}

void
bgw_require_shared(const char *what)
{
	if (bgw_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs bgworker in shared_preload_libraries", what),
				 errhint("Add 'bgworker' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* ----- handles ----- */

StaticAssertDecl(sizeof(BgwHandleMirror) == 16, "BackgroundWorkerHandle is an int and a uint64");

char *
bgw_handle_string(BackgroundWorkerHandle *handle)
{
	BgwHandleMirror *h = (BgwHandleMirror *) handle;

	return psprintf("bgw1:pg%d:%d:" UINT64_FORMAT, (int) PostmasterPid, h->slot, h->generation);
}

BackgroundWorkerHandle *
bgw_handle_parse(const char *text, bool *ours)
{
	BgwHandleMirror *h = palloc0(sizeof(BgwHandleMirror));
	int			pm = 0;
	int			slot = -1;
	uint64		generation = 0;
	int			consumed = 0;
	char		tail;

	*ours = false;
	if (sscanf(text, "bgw1:pg%d:%d:" UINT64_FORMAT "%n%c", &pm, &slot, &generation, &consumed, &tail) != 3 ||
		consumed != (int) strlen(text) || slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("handle \"%s\" is not a background worker handle of this server (expected \"bgw1:pgPID:SLOT:GENERATION\")", text)));
	if (pm == (int) PostmasterPid && slot < max_worker_processes)
		*ours = true;
	h->slot = slot;
	h->generation = generation;
	return (BackgroundWorkerHandle *) h;
}

/* The index of the live definition whose handle is `h`, or -1. Call with the spinlock held. */
static int
find_entry(const BgwHandleMirror *h)
{
	for (int i = 0; i < bgw_shared->ndynamic; i++)
	{
		BgwDynamic *d = &bgw_shared->dynamic[i];

		if (d->in_use && d->has_handle && d->handle.slot == h->slot && d->handle.generation == h->generation)
			return i;
	}
	return -1;
}

bool
bgw_notify_pid_of(BackgroundWorkerHandle *handle, int *notify_pid)
{
	int			index;

	*notify_pid = 0;
	if (bgw_shared == NULL)
		return false;
	SpinLockAcquire(&bgw_shared->lock);
	index = find_entry((BgwHandleMirror *) handle);
	if (index >= 0)
		*notify_pid = bgw_shared->dynamic[index].notify_pid;
	SpinLockRelease(&bgw_shared->lock);
	return index >= 0;
}

BgwHandleStatus
bgw_worker_status(BackgroundWorkerHandle *handle, pid_t *pidp)
{
	pid_t		pid = 0;
	BgwHandleStatus status = GetBackgroundWorkerPid(handle, &pid);
	int			entered = -1;	/* -1: no definition of ours (a worker of another extension) */

	*pidp = 0;
	if (bgw_shared != NULL)
	{
		int			index;

		SpinLockAcquire(&bgw_shared->lock);
		index = find_entry((BgwHandleMirror *) handle);
		if (index >= 0)
			entered = bgw_shared->dynamic[index].entered_pid;
		SpinLockRelease(&bgw_shared->lock);
	}
	if (status == BGWH_STARTED)
	{
		/* Forked but not yet in its function (or a restart whose new run has not entered yet). */
		if (entered >= 0 && entered != (int) pid)
			return BGWH_NOT_YET_STARTED;
		*pidp = pid;
		return BGWH_STARTED;
	}
	if (status == BGWH_STOPPED && entered > 0)
		*pidp = entered;
	return status;
}

BgwHandleStatus
bgw_wait_for_startup(BackgroundWorkerHandle *handle, pid_t *pidp)
{
	/*
	 * As WaitForBackgroundWorkerStartup: the postmaster sets this backend's latch (SIGUSR1 to the notify pid)
	 * when the worker starts or stops, and the worker's backend does when its function is entered.
	 */
	for (;;)
	{
		BgwHandleStatus status = bgw_worker_status(handle, pidp);
		int			rc;

		if (status != BGWH_NOT_YET_STARTED)
			return status;
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_POSTMASTER_DEATH, 0, WAIT_EVENT_BGWORKER_STARTUP);
		if (rc & WL_POSTMASTER_DEATH)
			return BGWH_POSTMASTER_DIED;
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

void
bgw_terminate(BackgroundWorkerHandle *handle)
{
	if (bgw_shared != NULL)
	{
		int			index;

		SpinLockAcquire(&bgw_shared->lock);
		index = find_entry((BgwHandleMirror *) handle);
		if (index >= 0)
			bgw_shared->dynamic[index].done = true;
		SpinLockRelease(&bgw_shared->lock);
	}
	TerminateBackgroundWorker(handle);
}

void
bgw_mark_entered(int index, uint32 nonce)
{
	int			notify = 0;
	BgwDynamic *d = &bgw_shared->dynamic[index];

	SpinLockAcquire(&bgw_shared->lock);
	if (d->in_use && d->nonce == nonce)
	{
		d->entered_pid = MyProcPid;
		notify = d->notify_pid;
	}
	SpinLockRelease(&bgw_shared->lock);
	/* What the postmaster does when a worker starts or stops: the notify pid's SIGUSR1 sets its latch. */
	if (notify > 0)
		kill(notify, SIGUSR1);
}

void
bgw_mark_done(int index, uint32 nonce)
{
	BgwDynamic *d = &bgw_shared->dynamic[index];

	SpinLockAcquire(&bgw_shared->lock);
	if (d->in_use && d->nonce == nonce)
		d->done = true;
	SpinLockRelease(&bgw_shared->lock);
}

/* ----- dynamic workers ----- */

/*
 * Frees the definitions of dynamic workers that PostgreSQL has forgotten. GetBackgroundWorkerPid says
 * Stopped both for those and for a worker that waits for its restart time (PostgreSQL keeps its slot), so
 * Stopped frees a definition only when the worker cannot run again: it never restarts, it was terminated or
 * exited with code 0, or PostgreSQL has given its slot to a newer worker.
 */
static void
collect_stopped(void)
{
	for (int i = 0; i < bgw_shared->ndynamic; i++)
	{
		BgwDynamic *d = &bgw_shared->dynamic[i];
		BgwHandleMirror h;
		uint32		nonce;
		bool		candidate;
		bool		forgotten;
		pid_t		pid;

		SpinLockAcquire(&bgw_shared->lock);
		candidate = d->in_use && d->has_handle;
		h = d->handle;
		nonce = d->nonce;
		forgotten = d->never_restart || d->done;
		for (int j = 0; candidate && !forgotten && j < bgw_shared->ndynamic; j++)
		{
			BgwDynamic *other = &bgw_shared->dynamic[j];

			if (other->in_use && other->has_handle && other->handle.slot == h.slot && other->handle.generation > h.generation)
				forgotten = true;
		}
		SpinLockRelease(&bgw_shared->lock);
		if (!candidate || !forgotten)
			continue;
		if (GetBackgroundWorkerPid((BackgroundWorkerHandle *) &h, &pid) == BGWH_STOPPED)
		{
			SpinLockAcquire(&bgw_shared->lock);
			if (d->in_use && d->nonce == nonce)
				d->in_use = false;
			SpinLockRelease(&bgw_shared->lock);
		}
	}
}

static int
take_entry(uint32 *nonce)
{
	for (int attempt = 0; attempt < 2; attempt++)
	{
		SpinLockAcquire(&bgw_shared->lock);
		for (int i = 0; i < bgw_shared->ndynamic; i++)
		{
			BgwDynamic *d = &bgw_shared->dynamic[i];

			if (!d->in_use)
			{
				d->in_use = true;
				d->has_handle = false;
				d->never_restart = false;
				d->done = false;
				d->entered_pid = 0;
				d->nonce = bgw_shared->next_nonce++;
				if (bgw_shared->next_nonce == 0)
					bgw_shared->next_nonce = 1;
				*nonce = d->nonce;
				SpinLockRelease(&bgw_shared->lock);
				return i;
			}
		}
		SpinLockRelease(&bgw_shared->lock);
		collect_stopped();
	}
	return -1;
}

static void
release_entry(int index)
{
	SpinLockAcquire(&bgw_shared->lock);
	bgw_shared->dynamic[index].in_use = false;
	SpinLockRelease(&bgw_shared->lock);
}

bool
bgw_register_dynamic(const char *name, const char *type, const char *library, const char *function,
					 int restart_seconds, bool spi, int notify_pid, const char *json,
					 BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	BgwDynamic *d;
	uint32		nonce = 0;
	int			index;
	volatile bool registered = false;

	bgw_require_shared("launching a dynamic TypeScript worker");
	if (strlen(json) >= BGW_DEF_MAX || strlen(library) >= sizeof(d->library))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("definition of background worker \"%s\" is too long (library path at most %d bytes)",
						name, (int) sizeof(d->library) - 1)));
	index = take_entry(&nonce);
	if (index < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("no free slot for the definition of background worker \"%s\"", name),
				 errhint("Every one of the %d slots holds a dynamic worker that PostgreSQL still knows.",
						 bgw_shared->ndynamic)));
	d = &bgw_shared->dynamic[index];
	d->notify_pid = notify_pid;
	d->never_restart = restart_seconds == BGW_NEVER_RESTART;
	strlcpy(d->name, name, sizeof(d->name));
	strlcpy(d->type, type, sizeof(d->type));
	strlcpy(d->library, library, sizeof(d->library));
	strlcpy(d->function, function, sizeof(d->function));
	strlcpy(d->json, json, sizeof(d->json));

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | (spi ? BGWORKER_BACKEND_DATABASE_CONNECTION : 0);
	worker.bgw_start_time = spi ? BgWorkerStart_RecoveryFinished : BgWorkerStart_PostmasterStart;
	worker.bgw_restart_time = restart_seconds;
	strlcpy(worker.bgw_library_name, "bgworker", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "bgworker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, type, BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(index);
	worker.bgw_extra[0] = 'D';
	memcpy(worker.bgw_extra + 1, &nonce, sizeof(nonce));
	worker.bgw_notify_pid = notify_pid;

	/* PostgreSQL's own checks may raise an ERROR: the definition slot is given back then too. */
	PG_TRY();
	{
		registered = RegisterDynamicBackgroundWorker(&worker, handle);
	}
	PG_CATCH();
	{
		release_entry(index);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!registered)
	{
		release_entry(index);
		return false;
	}
	SpinLockAcquire(&bgw_shared->lock);
	d->handle = *(BgwHandleMirror *) *handle;
	d->has_handle = true;
	SpinLockRelease(&bgw_shared->lock);
	return true;
}

/* ----- static workers: each module's _PG_init, run by a helper Node process ----- */

static void
add_static(FrameReader *r)
{
	char	   *name = frame_get_str(r);
	char	   *type = frame_get_str(r);
	char	   *library = frame_get_str(r);
	char	   *function = frame_get_str(r);
	uint8		start = frame_get_u8(r);
	int32		restart_ms = (int32) frame_get_u32(r);
	uint8		flags = frame_get_u8(r);
	char	   *json = frame_get_str(r);
	BackgroundWorker worker;
	BgwStatic  *s;

	if (r->bad || name == NULL || type == NULL || json == NULL)
		ereport(FATAL, (errmsg("bgworker: the registration helper sent a malformed registration")));
	if (bgw_nstatics >= BGW_MAX_STATIC)
		ereport(FATAL, (errmsg("bgworker: more than %d static workers", BGW_MAX_STATIC)));
	if (bgw_statics == NULL)
		bgw_statics = MemoryContextAllocZero(TopMemoryContext, sizeof(BgwStatic) * BGW_MAX_STATIC);
	s = &bgw_statics[bgw_nstatics];
	strlcpy(s->name, name, BGW_MAXLEN);
	strlcpy(s->type, type, BGW_MAXLEN);
	s->library = MemoryContextStrdup(TopMemoryContext, library ? library : "");
	s->function = MemoryContextStrdup(TopMemoryContext, function ? function : "");
	s->json = MemoryContextStrdup(TopMemoryContext, json);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | ((flags & 1) ? BGWORKER_BACKEND_DATABASE_CONNECTION : 0);
	worker.bgw_start_time = start == 0 ? BgWorkerStart_PostmasterStart :
		start == 1 ? BgWorkerStart_ConsistentState : BgWorkerStart_RecoveryFinished;
	/* PostgreSQL counts restart times in whole seconds: rounded up, so a worker never restarts sooner. */
	worker.bgw_restart_time = restart_ms < 0 ? BGW_NEVER_RESTART : (restart_ms + 999) / 1000;
	strlcpy(worker.bgw_library_name, "bgworker", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "bgworker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, type, BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(bgw_nstatics);
	worker.bgw_extra[0] = 'S';
	worker.bgw_notify_pid = 0;
	bgw_nstatics++;
	RegisterBackgroundWorker(&worker);
}

static void
load_modules(void)
{
	char	   *args[2];
	char	   *script = bgw_script_path("register.js");
	int			sock;
	pid_t		pid;
	StringInfoData in;
	instr_time	start,
				now;
	int			status = 0;
	bool		timed_out = false;
	bool		done = false;

	args[0] = bgw_modules;
	args[1] = NULL;
	if (access(script, R_OK) != 0)
		ereport(FATAL,
				(errmsg("bgworker: cannot load bgworker.modules: %s is not readable (%m); set bgworker.package to the bgworker package's directory",
						script)));
	pid = bgw_spawn_node(script, args, &sock);
	if (pid < 0)
		ereport(FATAL, (errmsg("bgworker: cannot start node (%s) to load bgworker.modules: %m", bgw_node)));

	initStringInfo(&in);
	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		struct pollfd pfd = {.fd = sock,.events = POLLIN};
		long		elapsed;
		int			rc;

		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		elapsed = (long) INSTR_TIME_GET_MILLISEC(now);
		if (elapsed >= bgw_init_timeout_ms)
		{
			timed_out = true;
			break;
		}
		rc = poll(&pfd, 1, (int) (bgw_init_timeout_ms - elapsed));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			break;
		if (rc == 0)
			continue;
		enlargeStringInfo(&in, 65536);
		rc = read(sock, in.data + in.len, 65536);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			break;
		in.len += rc;
		in.data[in.len] = '\0';
	}
	close(sock);
	if (timed_out)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (timed_out)
		ereport(FATAL,
				(errmsg("bgworker: bgworker.modules did not finish _PG_init within %d ms (bgworker.init_timeout)",
						bgw_init_timeout_ms)));

	for (int pos = 0; pos + 5 <= in.len;)
	{
		FrameReader r;
		uint32		len;
		char		type;

		memcpy(&len, in.data + pos, 4);
		len = pg_ntoh32(len);
		if (len < 1 || pos + 4 + (int) len > in.len)
			break;
		type = in.data[pos + 4];
		r.data = in.data + pos + 5;
		r.len = len - 1;
		r.pos = 0;
		r.bad = false;
		pos += 4 + len;
		if (type == 'R')
			add_static(&r);
		else if (type == 'F')
		{
			char	   *module = frame_get_str(&r);
			char	   *reason = frame_get_str(&r);

			ereport(FATAL,
					(errmsg("bgworker: extension module \"%s\" failed to load: %s",
							module ? module : "?", reason ? reason : "?")));
		}
		else if (type == 'Z')
			done = true;
	}
	if (!done)
	{
		if (WIFSIGNALED(status))
			ereport(FATAL,
					(errmsg("bgworker: the Node process loading bgworker.modules was terminated by signal %d",
							WTERMSIG(status))));
		ereport(FATAL,
				(errmsg("bgworker: the Node process loading bgworker.modules (%s %s) exited with code %d before it finished",
						bgw_node, script, WIFEXITED(status) ? WEXITSTATUS(status) : -1)));
	}
	ereport(LOG, (errmsg("bgworker: %d static worker(s) registered from bgworker.modules", bgw_nstatics)));
}

void
_PG_init(void)
{
	DefineCustomStringVariable("bgworker.modules",
							   "Extension modules (.ts or .js) whose _PG_init registers static workers, comma-separated.",
							   NULL, &bgw_modules, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("bgworker.node",
							   "The Node.js binary that runs the workers.",
							   NULL, &bgw_node, BGWORKER_NODE, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("bgworker.database",
							   "Database of connectWorkerToSpi() called without a database name.",
							   NULL, &bgw_database, "postgres", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("bgworker.package",
							   "Directory of the bgworker npm package whose dist/inserver runs the workers.",
							   NULL, &bgw_package, BGWORKER_PACKAGE_DIR, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("bgworker.init_timeout",
							"How long the modules' _PG_init may take at server start.",
							NULL, &bgw_init_timeout_ms, 30000, 100, 600000, PGC_POSTMASTER, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("bgworker.busy_poll",
							"How long a worker's backend polls for its Node process's next request before it sleeps, in microseconds.",
							"0 turns polling off: the backend sleeps as soon as it has answered.",
							&bgw_busy_poll_us, 50, 0, 10000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("bgworker");

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = bgw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = bgw_shmem_startup;

	if (bgw_modules != NULL && bgw_modules[0] != '\0')
		load_modules();
}
