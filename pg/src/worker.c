/*
 * worker.c: the main of every TypeScript background worker. The backend starts a Node child running
 * dist/inserver/child.js with a socketpair on its fd 3, then waits on its latch, the socket and the
 * postmaster's death, and serves the child's requests: SQL with SPI in real transactions of this backend,
 * log lines, latches, the database connection, dynamic launches and handles. Signals reach the child as
 * frames. The child's exit ends the worker: exit 0 for good, anything else as exit 1 (restarted by its
 * restart time), never as a crash of the server.
 */
#include "bgworker.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "parser/parse_param.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "port/pg_bswap.h"
#include "portability/instr_time.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

/* Signal flags, as SPEC §4's SignalWakeFlags. */
#define FLAG_SIGHUP 1
#define FLAG_SIGTERM 2
#define FLAG_SIGINT 4

static volatile sig_atomic_t got_sighup = false;
static volatile sig_atomic_t got_sigterm = false;
static volatile sig_atomic_t got_sigint = false;
/* The child called attachSignalHandlers(SIGTERM): SIGTERM is its flag, not PostgreSQL's FATAL. */
static volatile sig_atomic_t sigterm_attached = false;
static volatile pid_t child_pid = 0;

static int	child_sock = -1;
static int	static_index = -1;
/* A dynamic worker's definition in the shared table, and the nonce it was registered with. */
static int	dynamic_index = -1;
static uint32 dynamic_nonce = 0;
static StringInfoData inbuf;
static StringInfoData out;
static MemoryContext request_ctx;
/* The CPUs this backend may run on (sched_getaffinity at start): busy polling needs two. */
static int	cpus_allowed = 1;
static bool connected = false;
static bool in_tx = false;
static bool tx_failed = false;

/* ----- signals ----- */

static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (sigterm_attached)
	{
		got_sigterm = true;
		SetLatch(MyLatch);
	}
	else
		die(postgres_signal_arg);	/* FATAL "terminating background worker ... due to administrator command" */
	errno = save_errno;
}

static void
handle_sighup(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sighup = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
handle_sigint(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigint = true;
	StatementCancelHandler(postgres_signal_arg);	/* cancels the running statement: 57014 */
	errno = save_errno;
}

/*
 * Immediate shutdown or a crash elsewhere: PostgreSQL's handler would _exit(2) at once. The child is reaped
 * first: left behind, it would be re-parented, and a postmaster that runs as PID 1 would reap it and take it
 * for a crashed backend.
 */
static void
handle_sigquit(SIGNAL_ARGS)
{
	pid_t		pid = child_pid;

	if (pid > 0)
	{
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	_exit(2);
}

static void
reap_child(int code, Datum arg)
{
	pid_t		pid = child_pid;

	if (pid > 0)
	{
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		child_pid = 0;
	}
}

static void
forget_static_pid(int code, Datum arg)
{
	if (bgw_shared != NULL && static_index >= 0 && static_index < BGW_MAX_STATIC &&
		bgw_shared->static_pids[static_index] == MyProcPid)
		bgw_shared->static_pids[static_index] = 0;
}

/* ----- frames to the child ----- */

static void
send_out(void)
{
	frame_end(&out);
	(void) frame_write_all(child_sock, out.data, out.len);
	if (out.maxlen > 1024 * 1024)
	{
		MemoryContext cxt = MemoryContextSwitchTo(TopMemoryContext);

		pfree(out.data);
		initStringInfo(&out);
		MemoryContextSwitchTo(cxt);
	}
}

static void
send_simple(char type)
{
	frame_begin(&out, type);
	send_out();
}

static void
send_signal(uint8 flag)
{
	frame_begin(&out, 'G');
	frame_put_u8(&out, flag);
	send_out();
}

static const char *
severity_of(int elevel)
{
	switch (elevel)
	{
		case FATAL:
			return "FATAL";
		case PANIC:
			return "PANIC";
		case WARNING:
			return "WARNING";
		default:
			return "ERROR";
	}
}

static void
send_error_data(ErrorData *ed)
{
	frame_begin(&out, 'E');
	frame_put_str(&out, unpack_sql_state(ed->sqlerrcode));
	frame_put_str(&out, severity_of(ed->elevel));
	frame_put_str(&out, ed->message ? ed->message : "");
	frame_put_str(&out, ed->detail);
	frame_put_str(&out, ed->hint);
	frame_put_u32(&out, (uint32) Max(ed->cursorpos, 0));
	frame_put_str(&out, ed->context);
	frame_put_str(&out, ed->schema_name);
	frame_put_str(&out, ed->table_name);
	frame_put_str(&out, ed->column_name);
	frame_put_str(&out, ed->constraint_name);
	send_out();
}

/* An error of this extension's own making (not from PostgreSQL's ereport). */
static void
send_error(const char *sqlstate, const char *message)
{
	frame_begin(&out, 'E');
	frame_put_str(&out, sqlstate);
	frame_put_str(&out, "ERROR");
	frame_put_str(&out, message);
	for (int i = 0; i < 2; i++)
		frame_put_str(&out, NULL);
	frame_put_u32(&out, 0);
	for (int i = 0; i < 5; i++)
		frame_put_str(&out, NULL);
	send_out();
}

/*
 * After an ereport(ERROR) caught while serving a request: log it as the server logs a failed statement,
 * abort the transaction, and send the error to the child. A failed transaction of the child stays failed
 * (25P02) until it rolls back.
 */
static void
recover_from_error(void)
{
	ErrorData  *ed;

	MemoryContextSwitchTo(request_ctx);
	EmitErrorReport();
	ed = CopyErrorData();
	FlushErrorState();
	QueryCancelPending = false;
	AbortCurrentTransaction();
	MemoryContextSwitchTo(request_ctx);
	if (in_tx)
		tx_failed = true;
	pgstat_report_activity(in_tx ? STATE_IDLEINTRANSACTION_ABORTED : STATE_IDLE, NULL);
	send_error_data(ed);
}

/* ----- SQL ----- */

typedef struct ParamState
{
	Oid		   *types;
	int			num;
} ParamState;

/* Parameters typed as the extended query protocol types them: inferred from their use. */
static void
variable_params_setup(struct ParseState *pstate, void *arg)
{
	ParamState *ps = (ParamState *) arg;

	setup_parse_variable_parameters(pstate, &ps->types, &ps->num);
}

static const char *
command_of(int ret)
{
	switch (ret)
	{
		case SPI_OK_SELECT:
		case SPI_OK_SELINTO:
			return "SELECT";
		case SPI_OK_INSERT:
		case SPI_OK_INSERT_RETURNING:
			return "INSERT";
		case SPI_OK_DELETE:
		case SPI_OK_DELETE_RETURNING:
			return "DELETE";
		case SPI_OK_UPDATE:
		case SPI_OK_UPDATE_RETURNING:
			return "UPDATE";
		case SPI_OK_MERGE:
			return "MERGE";
		default:
			return "UTILITY";
	}
}

static void
run_query(const char *sql, int nparams, char **values)
{
	int			ret;

	SetCurrentStatementStartTimestamp();
	pgstat_report_activity(STATE_RUNNING, sql);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (nparams == 0)
		ret = SPI_execute(sql, false, 0);
	else
	{
		ParamState ps;
		SPIPlanPtr	plan;
		ParamListInfo params;
		SPIExecuteOptions options;

		ps.types = palloc0(sizeof(Oid) * nparams);
		ps.num = nparams;
		plan = SPI_prepare_params(sql, variable_params_setup, &ps, 0);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare_params failed: %s", SPI_result_code_string(SPI_result));
		if (ps.num != nparams)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("bind message supplies %d parameters, but prepared statement \"\" requires %d",
							nparams, ps.num)));
		params = makeParamList(nparams);
		for (int i = 0; i < nparams; i++)
		{
			ParamExternData *p = &params->params[i];
			Oid			type = ps.types[i];
			Oid			input;
			Oid			ioparam;

			if (type == InvalidOid || type == UNKNOWNOID)
				ereport(ERROR,
						(errcode(ERRCODE_INDETERMINATE_DATATYPE),
						 errmsg("could not determine data type of parameter $%d", i + 1)));
			p->ptype = type;
			p->pflags = PARAM_FLAG_CONST;
			p->isnull = values[i] == NULL;
			getTypeInputInfo(type, &input, &ioparam);
			p->value = OidInputFunctionCall(input, values[i], ioparam, -1);
		}
		memset(&options, 0, sizeof(options));
		options.params = params;
		options.read_only = false;
		options.tcount = 0;
		ret = SPI_execute_plan_extended(plan, &options);
	}
	if (ret < 0)
		elog(ERROR, "SPI failed: %s", SPI_result_code_string(ret));

	frame_begin(&out, 'T');
	frame_put_str(&out, command_of(ret));
	frame_put_u64(&out, (uint64) SPI_processed);
	if (SPI_tuptable == NULL)
	{
		frame_put_u32(&out, 0);
		frame_put_u32(&out, 0);
	}
	else
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;

		frame_put_u32(&out, desc->natts);
		for (int c = 0; c < desc->natts; c++)
		{
			Form_pg_attribute attr = TupleDescAttr(desc, c);

			frame_put_str(&out, NameStr(attr->attname));
			frame_put_u32(&out, attr->atttypid);
		}
		frame_put_u32(&out, (uint32) SPI_processed);
		for (uint64 row = 0; row < SPI_processed; row++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[row];

			for (int c = 0; c < desc->natts; c++)
			{
				char	   *value = SPI_getvalue(tuple, desc, c + 1);

				frame_put_str(&out, value);
				if (value != NULL)
					pfree(value);
			}
		}
	}
	SPI_finish();
	PopActiveSnapshot();
}

static void
serve_query(FrameReader *r)
{
	char	   *sql = frame_get_str(r);
	int			nparams = (int) frame_get_u32(r);
	char	  **values = NULL;

	if (!r->bad && nparams > 0 && nparams <= 65535)
	{
		values = palloc(sizeof(char *) * nparams);
		for (int i = 0; i < nparams; i++)
			values[i] = frame_get_str(r);
	}
	if (r->bad || sql == NULL || nparams > 65535)
	{
		send_error("08P01", "malformed query frame");
		return;
	}
	if (!connected)
	{
		send_error("08003", "not connected to a database (call BackgroundWorker.connectWorkerToSpi() first)");
		return;
	}
	if (tx_failed)
	{
		send_error("25P02", "current transaction is aborted, commands ignored until end of transaction block");
		return;
	}
	PG_TRY();
	{
		bool		autocommit = !in_tx;

		if (autocommit)
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
		}
		run_query(sql, nparams, values);
		if (autocommit)
		{
			/* what run_query built survives the commit: it is in the out buffer */
			CommitTransactionCommand();
			pgstat_report_stat(false);
		}
		MemoryContextSwitchTo(request_ctx);
		pgstat_report_activity(in_tx ? STATE_IDLEINTRANSACTION : STATE_IDLE, NULL);
		send_out();
	}
	PG_CATCH();
	{
		recover_from_error();
	}
	PG_END_TRY();
}

static void
serve_begin(void)
{
	if (!connected)
	{
		send_error("08003", "not connected to a database (call BackgroundWorker.connectWorkerToSpi() first)");
		return;
	}
	if (in_tx)
	{
		send_error("25001", "there is already a transaction in progress");
		return;
	}
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		in_tx = true;
		tx_failed = false;
		MemoryContextSwitchTo(request_ctx);
		pgstat_report_activity(STATE_IDLEINTRANSACTION, NULL);
		send_simple('Z');
	}
	PG_CATCH();
	{
		recover_from_error();
		in_tx = false;
		tx_failed = false;
	}
	PG_END_TRY();
}

static void
serve_commit(void)
{
	if (!in_tx || tx_failed)
	{
		/* COMMIT of a failed transaction ends it, as ROLLBACK (what PostgreSQL does). */
		in_tx = false;
		tx_failed = false;
		send_simple('Z');
		return;
	}
	PG_TRY();
	{
		CommitTransactionCommand();
		in_tx = false;
		MemoryContextSwitchTo(request_ctx);
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
		send_simple('Z');
	}
	PG_CATCH();
	{
		/* a commit-time error (a deferred constraint): the transaction is rolled back and over */
		in_tx = false;
		recover_from_error();
		tx_failed = false;
	}
	PG_END_TRY();
}

static void
serve_rollback(void)
{
	if (in_tx && !tx_failed)
		AbortCurrentTransaction();
	in_tx = false;
	tx_failed = false;
	MemoryContextSwitchTo(request_ctx);
	pgstat_report_activity(STATE_IDLE, NULL);
	send_simple('Z');
}

static void
serve_connect(FrameReader *r)
{
	char	   *dbname = frame_get_str(r);
	char	   *username = frame_get_str(r);
	char	   *db = dbname != NULL ? pstrdup(dbname) : pstrdup(bgw_database);
	char	   *user = username != NULL ? pstrdup(username) : NULL;

	if (connected)
	{
		send_error("55000", "this background worker is already connected; a worker connects once");
		return;
	}
	if (!(MyBgworkerEntry->bgw_flags & BGWORKER_BACKEND_DATABASE_CONNECTION))
	{
		send_error("55000", "background worker was not registered with database access (enableSpiAccess())");
		return;
	}
	/* A database or role that cannot be used is PostgreSQL's FATAL: the worker ends with exit code 1. */
	MemoryContextSwitchTo(TopMemoryContext);
	BackgroundWorkerInitializeConnection(db, user, 0);
	SetConfigOption("application_name", MyBgworkerEntry->bgw_type, PGC_USERSET, PGC_S_SESSION);
	connected = true;
	MemoryContextSwitchTo(request_ctx);
	frame_begin(&out, 'K');
	frame_put_u32(&out, (uint32) MyProcPid);
	send_out();
}

static void
serve_log(FrameReader *r)
{
	uint8		level = frame_get_u8(r);
	char	   *message = frame_get_str(r);
	char	   *detail = frame_get_str(r);
	static const int levels[] = {DEBUG1, LOG, INFO, NOTICE, WARNING, ERROR, FATAL, FATAL};
	int			elevel = level < lengthof(levels) ? levels[level] : LOG;

	if (message == NULL)
		return;
	if (elevel == FATAL)
		ereport(FATAL, (errmsg_internal("%s", message), detail ? errdetail_internal("%s", detail) : 0));
	if (elevel == ERROR)
	{
		/* logged with PostgreSQL's ERROR severity, without ending the worker: the child decides that */
		MemoryContext cxt = CurrentMemoryContext;

		PG_TRY();
		{
			ereport(ERROR, (errmsg_internal("%s", message), detail ? errdetail_internal("%s", detail) : 0));
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			EmitErrorReport();
			FlushErrorState();
		}
		PG_END_TRY();
		return;
	}
	ereport(elevel, (errmsg_internal("%s", message), detail ? errdetail_internal("%s", detail) : 0));
}

/* ----- latches ----- */

/* This worker's entry in bgw_nodes, or -1. */
static int
own_node_index(void)
{
	int			index;

	if (bgw_nodes == NULL || MyProc == NULL)
		return -1;
	index = (int) (MyProc - ProcGlobal->allProcs);
	return index >= 0 && index < bgw_nnodes ? index : -1;
}

/* Records (or, with 0, forgets) this worker's Node child as the target of setLatch(pid) of this worker. */
static void
publish_node_pid(pid_t node_pid)
{
	int			index = own_node_index();

	if (index < 0)
		return;
	SpinLockAcquire(&bgw_shared->lock);
	bgw_nodes[index].backend_pid = node_pid > 0 ? MyProcPid : 0;
	bgw_nodes[index].node_pid = (int) node_pid;
	SpinLockRelease(&bgw_shared->lock);
}

static void
forget_node_pid(int code, Datum arg)
{
	publish_node_pid(0);
}

/* The Node child of the in-server worker whose backend has this pid, or 0. */
static pid_t
node_pid_of(int pid)
{
	pid_t		node = 0;

	if (bgw_nodes == NULL)
		return 0;
	SpinLockAcquire(&bgw_shared->lock);
	for (int i = 0; i < bgw_nnodes; i++)
	{
		if (bgw_nodes[i].backend_pid == pid)
		{
			node = bgw_nodes[i].node_pid;
			break;
		}
	}
	SpinLockRelease(&bgw_shared->lock);
	return node;
}

/*
 * The PGPROC of any PostgreSQL process with this pid. BackendPidGetProc only knows the processes in the
 * ProcArray, those connected to a database; auxiliary processes are AuxiliaryPidGetProc's (as
 * pg_log_backend_memory_contexts looks for both), and a background worker that has not connected has a
 * PGPROC (its latch) but is in neither: ProcGlobal's array of all PGPROCs has it. Its pid is read without a
 * lock: a PGPROC reused meanwhile gets a spurious wake-up, which latches allow.
 */
static PGPROC *
proc_of_pid(int pid)
{
	PGPROC	   *proc = BackendPidGetProc(pid);

	if (proc == NULL)
		proc = AuxiliaryPidGetProc(pid);
	for (uint32 i = 0; proc == NULL && i < ProcGlobal->allProcCount; i++)
	{
		if (ProcGlobal->allProcs[i].pid == pid)
			proc = &ProcGlobal->allProcs[i];
	}
	return proc;
}

/*
 * setLatch(pid) of the child: no reply (the child does not wait for one). An in-server worker's latch is its
 * Node child's, so the child is signalled directly, as a Node worker's latch is set out-of-server; waking
 * its backend to pass the latch on would cost one more process wake-up. Any other process (or a worker whose
 * function is not entered yet) gets PostgreSQL's SetLatch(). A pid of no PostgreSQL process is a WARNING in
 * the server's log: the child has checked that the process exists.
 */
static void
serve_set_latch(FrameReader *r)
{
	int			pid = (int) frame_get_u32(r);
	pid_t		node;
	PGPROC	   *proc;

	if (r->bad || pid <= 0)
	{
		ereport(WARNING,
				(errmsg("background worker \"%s\": malformed set-latch frame from its Node process",
						MyBgworkerEntry->bgw_name)));
		return;
	}
	node = node_pid_of(pid);
	if (node > 0 && kill(node, SIGURG) == 0)
		return;
	proc = proc_of_pid(pid);
	if (proc == NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("background worker \"%s\": setLatch(%d): PID %d is not a PostgreSQL process",
						MyBgworkerEntry->bgw_name, pid, pid)));
		return;
	}
	SetLatch(&proc->procLatch);
}

static void
serve_launch(FrameReader *r)
{
	char	   *name = frame_get_str(r);
	char	   *type = frame_get_str(r);
	char	   *library = frame_get_str(r);
	char	   *function = frame_get_str(r);
	int32		restart_ms = (int32) frame_get_u32(r);
	uint8		flags = frame_get_u8(r);
	int			notify = (int) frame_get_u32(r);
	char	   *json = frame_get_str(r);
	BackgroundWorkerHandle *handle = NULL;
	int			pg_notify;

	if (r->bad || name == NULL || type == NULL || library == NULL || function == NULL || json == NULL)
	{
		send_error("08P01", "malformed launch frame");
		return;
	}
	if (flags & 2)
	{
		send_error("0A000", "shared memory (SPEC §8) is not available in in-server mode: enableShmemAccess() cannot be used by a worker that PostgreSQL runs");
		return;
	}
	/* The child's own pid is this worker to PostgreSQL: its notifications come to this backend. */
	pg_notify = notify == (int) child_pid ? MyProcPid : notify;
	PG_TRY();
	{
		bool		ok = bgw_register_dynamic(name, type, library, function,
											  restart_ms < 0 ? BGW_NEVER_RESTART : (restart_ms + 999) / 1000,
											  (flags & 1) != 0, pg_notify, json, &handle);

		MemoryContextSwitchTo(request_ctx);
		if (!ok)
			send_error("53400", psprintf("no free background worker slot (max_worker_processes = %d)", max_worker_processes));
		else
		{
			frame_begin(&out, 'h');
			frame_put_str(&out, bgw_handle_string(handle));
			frame_put_u32(&out, (uint32) notify);
			send_out();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(request_ctx);
		{
			ErrorData  *ed = CopyErrorData();

			FlushErrorState();
			send_error_data(ed);
		}
	}
	PG_END_TRY();
}

/* Status numbers of the 's' reply: SPEC §5's BackgroundWorkerStatus. */
#define ST_STARTED 0
#define ST_NOT_YET_STARTED 1
#define ST_STOPPED 2
#define ST_POSTMASTER_DIED 3
#define ST_UNTRACKED 4

static uint8
status_of(BgwHandleStatus s)
{
	switch (s)
	{
		case BGWH_STARTED:
			return ST_STARTED;
		case BGWH_NOT_YET_STARTED:
			return ST_NOT_YET_STARTED;
		case BGWH_STOPPED:
			return ST_STOPPED;
		default:
			return ST_POSTMASTER_DIED;
	}
}

static void
send_status(uint8 status, pid_t pid)
{
	frame_begin(&out, 's');
	frame_put_u8(&out, status);
	frame_put_u32(&out, (uint32) pid);
	send_out();
}

static void
serve_handle(FrameReader *r)
{
	uint8		op = frame_get_u8(r);
	char	   *text = frame_get_str(r);
	BackgroundWorkerHandle *handle;
	bool		ours;
	pid_t		pid = 0;
	BgwHandleStatus status;

	if (r->bad || text == NULL)
	{
		send_error("08P01", "malformed handle frame");
		return;
	}
	PG_TRY();
	{
		handle = bgw_handle_parse(text, &ours);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(request_ctx);
		ed = CopyErrorData();
		FlushErrorState();
		send_error_data(ed);
		return;
	}
	PG_END_TRY();
	if (!ours)
	{
		send_status(ST_STOPPED, 0);
		return;
	}
	switch (op)
	{
		case 0:
			status = bgw_worker_status(handle, &pid);
			send_status(status_of(status), status == BGWH_STARTED ? pid : 0);
			return;
		case 1:
		case 2:
			{
				int			notify = 0;

				/*
				 * Only the notify pid waits (as pgrx). A handle whose definition is gone names a worker that
				 * PostgreSQL has forgotten: it is Stopped whoever asks.
				 */
				if (!bgw_notify_pid_of(handle, &notify))
				{
					status = GetBackgroundWorkerPid(handle, &pid);
					send_status(status == BGWH_STOPPED ? ST_STOPPED : ST_UNTRACKED, 0);
					return;
				}
				if (notify != MyProcPid)
				{
					send_status(ST_UNTRACKED, 0);
					return;
				}
			}
			if (op == 1)
				status = bgw_wait_for_startup(handle, &pid);
			else
				status = WaitForBackgroundWorkerShutdown(handle);
			/* the waits use this backend's latch: a wake-up meant for the child may have been consumed */
			send_status(status_of(status), status == BGWH_STARTED ? pid : 0);
			send_simple('l');
			return;
		case 3:
			bgw_terminate(handle);
			send_status(ST_STOPPED, 0);
			return;
		default:
			send_error("08P01", "unknown handle operation");
	}
}

/*
 * The child is about to call the worker's function: from now on the worker is Started (SPEC §5), for
 * handles, bgworker.launch() and bgworker.workers().
 */
static void
serve_entered(void)
{
	if (bgw_shared == NULL)
		return;
	/* the child listens for SIGURG from now on (its worker exists) */
	publish_node_pid(child_pid);
	if (static_index >= 0)
		bgw_shared->static_pids[static_index] = MyProcPid;
	else if (dynamic_index >= 0)
		bgw_mark_entered(dynamic_index, dynamic_nonce);
}

/* ----- the child ----- */

static void
serve_frame(char type, FrameReader *r)
{
	MemoryContextReset(request_ctx);
	MemoryContextSwitchTo(request_ctx);
	switch (type)
	{
		case 'Q':
			serve_query(r);
			break;
		case 'B':
			serve_begin();
			break;
		case 'M':
			serve_commit();
			break;
		case 'R':
			serve_rollback();
			break;
		case 'C':
			serve_connect(r);
			break;
		case 'L':
			serve_log(r);
			break;
		case 'F':
			{
				char	   *message = frame_get_str(r);
				char	   *detail = frame_get_str(r);

				ereport(FATAL, (errmsg_internal("%s", message ? message : "background worker ended"),
								detail ? errdetail_internal("%s", detail) : 0));
			}
			break;
		case 'A':
			sigterm_attached = (frame_get_u32(r) & FLAG_SIGTERM) != 0;
			break;
		case 'S':
			serve_set_latch(r);
			break;
		case 'D':
			serve_launch(r);
			break;
		case 'H':
			serve_handle(r);
			break;
		case 'N':
			serve_entered();
			break;
		default:
			ereport(LOG, (errmsg("background worker \"%s\": unknown frame type %d from its Node process",
								 MyBgworkerEntry->bgw_name, (int) type)));
	}
	MemoryContextSwitchTo(request_ctx);
}

/* The child closed its socket: it is exiting. Its exit code becomes this worker's (0, or else 1). */
static void
child_ended(void)
{
	int			status = 0;
	pid_t		pid = child_pid;
	int			waited_ms = 0;

	/* before it is reaped: its pid may be reused afterwards */
	publish_node_pid(0);
	close(child_sock);
	child_sock = -1;
	for (;;)
	{
		pid_t		rc = waitpid(pid, &status, WNOHANG);

		if (rc == pid)
			break;
		if (rc < 0 && errno != EINTR)
			break;
		if (waited_ms >= 5000)
		{
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			break;
		}
		pg_usleep(2000L);
		waited_ms += 2;
	}
	child_pid = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
	{
		/* PostgreSQL unregisters a worker that exits with code 0: its definition may go once it has. */
		if (dynamic_index >= 0)
			bgw_mark_done(dynamic_index, dynamic_nonce);
		proc_exit(0);
	}
	if (WIFSIGNALED(status))
		ereport(LOG,
				(errmsg("background worker \"%s\": its Node process (PID %d) was terminated by signal %d: %s",
						MyBgworkerEntry->bgw_name, (int) pid, WTERMSIG(status), pg_strsignal(WTERMSIG(status)))));
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 1)
		ereport(LOG,
				(errmsg("background worker \"%s\": its Node process (PID %d) exited with exit code %d",
						MyBgworkerEntry->bgw_name, (int) pid, WEXITSTATUS(status))));
	proc_exit(1);
}

/*
 * After serving the child, waits awake for its next frame, up to bgworker.busy_poll microseconds, before
 * sleeping on the wait event set. A worker running statements in a row sends the next one within
 * microseconds of its reply, and waking a process asleep on an idle CPU costs more than a short statement
 * (an interprocessor interrupt and the CPU's way out of idle): as Linux's net.core.busy_poll, for the same
 * reason. True when the child's socket is readable (or at its end); false on timeout, or as soon as a signal
 * or the latch wants the main loop.
 */
static bool
busy_poll_child(void)
{
	instr_time	start;
	instr_time	elapsed;
	bool		readable = false;

	/* On one CPU the child cannot send while its backend polls: only a sleep lets it run. */
	if (bgw_busy_poll_us <= 0 || cpus_allowed < 2)
		return false;
	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		char		byte;

		if (recv(child_sock, &byte, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 || (errno != EAGAIN && errno != EINTR))
		{
			readable = true;
			break;
		}
		if (got_sighup || got_sigterm || got_sigint || InterruptPending || MyLatch->is_set)
			break;
		INSTR_TIME_SET_CURRENT(elapsed);
		INSTR_TIME_SUBTRACT(elapsed, start);
		if (INSTR_TIME_GET_MICROSEC(elapsed) >= bgw_busy_poll_us)
			break;
		pg_spin_delay();
	}
	pgstat_report_wait_end();
	return readable;
}

/* Serves every whole frame the child has sent; true when there was one. */
static bool
read_child(void)
{
	int			pos = 0;
	bool		eof = false;

	for (;;)
	{
		ssize_t		n;

		enlargeStringInfo(&inbuf, 65536);
		n = recv(child_sock, inbuf.data + inbuf.len, 65536, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;				/* EAGAIN: all read for now */
		if (n == 0)
		{
			eof = true;
			break;
		}
		inbuf.len += n;
		if (n < 65536)
			break;
	}
	/* Frames sent before the end are served too (the child's last log lines). */
	while (inbuf.len - pos >= 5)
	{
		uint32		len;
		FrameReader r;
		char		type;

		memcpy(&len, inbuf.data + pos, 4);
		len = pg_ntoh32(len);
		if (len < 1 || len > BGW_FRAME_MAX)
			ereport(FATAL, (errmsg("background worker \"%s\": malformed frame from its Node process",
								   MyBgworkerEntry->bgw_name)));
		if (inbuf.len - pos - 4 < (int) len)
			break;
		type = inbuf.data[pos + 4];
		r.data = inbuf.data + pos + 5;
		r.len = len - 1;
		r.pos = 0;
		r.bad = false;
		pos += 4 + len;
		serve_frame(type, &r);
	}
	if (pos > 0)
	{
		memmove(inbuf.data, inbuf.data + pos, inbuf.len - pos);
		inbuf.len -= pos;
	}
	if (eof)
		child_ended();
	return pos > 0;
}

static char *
start_message(const char *definition, int index, uint64 generation)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "{\"definition\":%s,\"slot\":%d,\"generation\":" UINT64_FORMAT, definition, index, generation);
	appendStringInfo(&s, ",\"postmasterId\":\"pg%d\",\"postmasterPid\":%d,\"backendPid\":%d,\"cwd\":",
					 (int) PostmasterPid, (int) PostmasterPid, (int) MyProcPid);
	escape_json(&s, DataDir);
	appendStringInfoString(&s, ",\"database\":");
	escape_json(&s, bgw_database);
	appendStringInfo(&s, ",\"serverVersionNum\":%d}", PG_VERSION_NUM);
	return s.data;
}

void
bgworker_main(Datum arg)
{
	int			index = DatumGetInt32(arg);
	char		kind = MyBgworkerEntry->bgw_extra[0];
	char	   *definition = NULL;
	uint64		generation = 0;
	char	   *script;
	WaitEventSet *set;
	bool		served = false;

	pqsignal(SIGTERM, handle_sigterm);
	pqsignal(SIGHUP, handle_sighup);
	pqsignal(SIGINT, handle_sigint);
	pqsignal(SIGQUIT, handle_sigquit);
	BackgroundWorkerUnblockSignals();

	if (kind == 'S' && index >= 0 && index < bgw_nstatics)
	{
		definition = pstrdup(bgw_statics[index].json);
		static_index = index;
		/* bgworker.workers() shows it Started once its function is entered (serve_entered). */
		before_shmem_exit(forget_static_pid, 0);
	}
	else if (kind == 'D' && bgw_shared != NULL && index >= 0 && index < bgw_shared->ndynamic)
	{
		uint32		nonce;
		BgwDynamic *d = &bgw_shared->dynamic[index];

		memcpy(&nonce, MyBgworkerEntry->bgw_extra + 1, sizeof(nonce));
		SpinLockAcquire(&bgw_shared->lock);
		if (d->in_use && d->nonce == nonce)
		{
			definition = pstrdup(d->json);
			generation = d->handle.generation;
			dynamic_index = index;
			dynamic_nonce = nonce;
		}
		SpinLockRelease(&bgw_shared->lock);
	}
	if (definition == NULL)
	{
		ereport(LOG, (errmsg("background worker \"%s\": its definition is gone", MyBgworkerEntry->bgw_name)));
		proc_exit(0);
	}

	{
		cpu_set_t	cpus;

		if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0)
			cpus_allowed = CPU_COUNT(&cpus);
	}

	request_ctx = AllocSetContextCreate(TopMemoryContext, "bgworker request", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(TopMemoryContext);
	initStringInfo(&inbuf);
	initStringInfo(&out);

	script = bgw_script_path("child.js");
	on_proc_exit(reap_child, 0);
	before_shmem_exit(forget_node_pid, 0);
	child_pid = bgw_spawn_node(script, NULL, &child_sock);
	if (child_pid < 0)
	{
		child_pid = 0;
		ereport(FATAL, (errmsg("background worker \"%s\": cannot start node (%s): %m",
							   MyBgworkerEntry->bgw_name, bgw_node)));
	}

	frame_begin(&out, 'W');
	frame_put_str(&out, start_message(definition, index, generation));
	send_out();

	set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_POSTMASTER_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(set, WL_SOCKET_READABLE, child_sock, NULL, NULL);

	for (;;)
	{
		WaitEvent	events[3];
		int			n = 0;
		bool		latch = false;
		bool		signalled = false;
		bool		readable = false;

		/* A cancel that arrives while no statement runs cancels nothing (as in an idle session). */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
		if (served && busy_poll_child())
			readable = true;
		else
			n = WaitEventSetWait(set, -1, events, lengthof(events), PG_WAIT_EXTENSION);
		for (int i = 0; i < n; i++)
		{
			if (events[i].events & WL_POSTMASTER_DEATH)
				proc_exit(1);
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				latch = true;
			}
		}
		if (got_sighup)
		{
			got_sighup = false;
			signalled = true;
			ProcessConfigFile(PGC_SIGHUP);
			send_signal(FLAG_SIGHUP);
		}
		if (got_sigterm)
		{
			got_sigterm = false;
			signalled = true;
			send_signal(FLAG_SIGTERM);
		}
		if (got_sigint)
		{
			got_sigint = false;
			signalled = true;
			send_signal(FLAG_SIGINT);
		}
		if (latch && !signalled)
			send_simple('l');
		for (int i = 0; i < n; i++)
			if (events[i].events & WL_SOCKET_READABLE)
				readable = true;
		served = readable && read_child();
	}
}
