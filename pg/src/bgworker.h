/*
 * bgworker.h: the bgworker extension (in-server mode, SPEC §9): TypeScript background workers that
 * PostgreSQL's own postmaster registers, starts and restarts. Each worker's backend runs the worker's
 * function in a Node child process and serves its requests (SQL through SPI, logs, latch, launches) over a
 * socketpair on the child's fd 3, in the framed protocol of docs/in-server.md.
 */
#ifndef BGWORKER_EXT_H
#define BGWORKER_EXT_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "postmaster/bgworker.h"
#include "storage/spin.h"

/* ----- settings (bgworker.c) ----- */
extern char *bgw_modules;
extern char *bgw_node;
extern char *bgw_package;
extern char *bgw_database;
extern int	bgw_init_timeout_ms;
extern int	bgw_busy_poll_us;

/* ----- frames (frame.c) -----
 * A frame: a 4-byte big-endian length of the body, then the body: one type byte and its fields. A string
 * is a 4-byte length and its bytes (0xFFFFFFFF: NULL); integers are big-endian.
 */
#define BGW_FRAME_MAX (64 * 1024 * 1024)

typedef struct FrameReader
{
	const char *data;
	uint32		len;
	uint32		pos;
	bool		bad;
} FrameReader;

extern void frame_begin(StringInfo buf, char type);
extern void frame_put_u8(StringInfo buf, uint8 v);
extern void frame_put_u32(StringInfo buf, uint32 v);
extern void frame_put_u64(StringInfo buf, uint64 v);
extern void frame_put_str(StringInfo buf, const char *s);
extern void frame_put_strn(StringInfo buf, const char *s, uint32 len);
extern void frame_end(StringInfo buf);

extern uint8 frame_get_u8(FrameReader *r);
extern uint32 frame_get_u32(FrameReader *r);
extern uint64 frame_get_u64(FrameReader *r);
/* A copy, NUL-terminated, palloc'd in the current context; NULL for a NULL string. */
extern char *frame_get_str(FrameReader *r);

/* Writes all of buf to fd (blocking); false when the peer is gone. */
extern bool frame_write_all(int fd, const char *data, size_t len);

/* ----- the Node child (spawn.c) ----- */
/*
 * Forks and execs `node script args...` with one end of a socketpair on the child's fd 3. Signals are
 * blocked around the fork; the child resets every disposition and the mask, asks for SIGKILL when its parent
 * dies, and closes every other descriptor. Returns the pid (or -1 with errno) and the parent's socket end.
 */
extern pid_t bgw_spawn_node(const char *script, char *const extra_args[], int *sock);
extern char *bgw_script_path(const char *entry);

/* ----- shared state (bgworker.c) ----- */
#define BGW_DEF_MAX 8192
#define BGW_MAX_STATIC 128

/* PostgreSQL's BackgroundWorkerHandle, whose fields bgworker.c keeps private: a slot and its generation. */
typedef struct BgwHandleMirror
{
	int			slot;
	uint64		generation;
} BgwHandleMirror;

typedef struct BgwStatic
{
	char		name[BGW_MAXLEN];
	char		type[BGW_MAXLEN];
	char	   *library;
	char	   *function;
	char	   *json;
} BgwStatic;

typedef struct BgwDynamic
{
	bool		in_use;
	bool		has_handle;
	/* BGW_NEVER_RESTART: PostgreSQL forgets the worker at its first exit. */
	bool		never_restart;
	/* Terminated, or exited with code 0: PostgreSQL forgets the worker once it has stopped. */
	bool		done;
	uint32		nonce;
	int			notify_pid;
	/* The backend whose Node child entered the worker's function (SPEC §5's Started); 0 before. */
	int			entered_pid;
	BgwHandleMirror handle;
	char		name[BGW_MAXLEN];
	char		type[BGW_MAXLEN];
	char		library[1024];
	char		function[BGW_MAXLEN];
	char		json[BGW_DEF_MAX];
} BgwDynamic;

/*
 * The Node child of a worker's backend, once the worker's function is entered: setLatch(pid) of that worker
 * signals the child itself (SIGURG, the latch of a Node worker) instead of waking the backend to pass it on.
 */
typedef struct BgwNodePid
{
	int			backend_pid;
	int			node_pid;
} BgwNodePid;

typedef struct BgwShared
{
	slock_t		lock;
	uint32		next_nonce;
	int			static_pids[BGW_MAX_STATIC];
	int			ndynamic;
	BgwDynamic	dynamic[FLEXIBLE_ARRAY_MEMBER];
} BgwShared;

/* Static registrations, made in the postmaster at preload and inherited by every backend it forks. */
extern BgwStatic *bgw_statics;
extern int	bgw_nstatics;
extern BgwShared *bgw_shared;

/* Indexed by a backend's PGPROC number (its place in ProcGlobal->allProcs); bgw_nnodes of them, under bgw_shared->lock. */
extern BgwNodePid *bgw_nodes;
extern int	bgw_nnodes;

extern void bgw_require_shared(const char *what);

/*
 * Registers a dynamic worker whose definition is `json` and returns true with its handle; false when
 * PostgreSQL has no free worker slot. Errors (no free definition slot, not preloaded) are ereport(ERROR).
 */
extern bool bgw_register_dynamic(const char *name, const char *type, const char *library,
								 const char *function, int restart_seconds, bool spi,
								 int notify_pid, const char *json, BackgroundWorkerHandle **handle);
extern char *bgw_handle_string(BackgroundWorkerHandle *handle);
extern BackgroundWorkerHandle *bgw_handle_parse(const char *text, bool *ok);
/* The notify pid of the dynamic worker a handle names; false when no definition of ours holds it. */
extern bool bgw_notify_pid_of(BackgroundWorkerHandle *handle, int *notify_pid);

/*
 * PostgreSQL's GetBackgroundWorkerPid with SPEC §5's Started: the worker's function has been entered, not
 * only its backend forked (that is NotYetStarted). A stopped worker that had entered gives that pid.
 */
extern BgwHandleStatus bgw_worker_status(BackgroundWorkerHandle *handle, pid_t *pid);
/* WaitForBackgroundWorkerStartup with that meaning of Started. */
extern BgwHandleStatus bgw_wait_for_startup(BackgroundWorkerHandle *handle, pid_t *pid);
/* TerminateBackgroundWorker, recording that the worker is done (its definition may go once it stops). */
extern void bgw_terminate(BackgroundWorkerHandle *handle);
/* The worker of definition `index` (registered with `nonce`) has entered its function / ends for good. */
extern void bgw_mark_entered(int index, uint32 nonce);
extern void bgw_mark_done(int index, uint32 nonce);

/* ----- the worker (worker.c) ----- */
extern PGDLLEXPORT void bgworker_main(Datum arg) pg_attribute_noreturn();

#endif
