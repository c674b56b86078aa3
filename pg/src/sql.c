/*
 * sql.c: the SQL functions of CREATE EXTENSION bgworker: bgworker.launch(), bgworker.workers(),
 * bgworker.terminate().
 */
#include "bgworker.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"

PG_FUNCTION_INFO_V1(bgworker_launch);
PG_FUNCTION_INFO_V1(bgworker_workers);
PG_FUNCTION_INFO_V1(bgworker_terminate);

#define MAX_RESTART_MS 86400000

static char *
required_text(FunctionCallInfo fcinfo, int n, const char *field)
{
	char	   *value;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("bgworker.launch: %s must not be NULL", field)));
	value = text_to_cstring(PG_GETARG_TEXT_PP(n));
	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bgworker.launch: %s must not be empty", field)));
	return value;
}

static void
check_length(const char *field, const char *value)
{
	if (strlen(value) >= BGW_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bgworker.launch: %s \"%s\" is %d bytes long; at most %d bytes (BGW_MAXLEN)",
						field, value, (int) strlen(value), BGW_MAXLEN - 1)));
}

Datum
bgworker_launch(PG_FUNCTION_ARGS)
{
	char	   *library = required_text(fcinfo, 0, "library");
	char	   *function = required_text(fcinfo, 1, "function");
	char	   *name = required_text(fcinfo, 2, "name");
	char	   *type = PG_ARGISNULL(3) ? name : text_to_cstring(PG_GETARG_TEXT_PP(3));
	bool		spi = PG_ARGISNULL(5) ? true : PG_GETARG_BOOL(5);
	bool		wait = PG_ARGISNULL(7) ? true : PG_GETARG_BOOL(7);
	int			restart_ms = PG_ARGISNULL(6) ? -1 : PG_GETARG_INT32(6);
	StringInfoData json;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	BgwHandleStatus status;

	if (type[0] == '\0')
		type = name;
	check_length("name", name);
	check_length("type", type);
	check_length("function", function);
	if (!PG_ARGISNULL(6) && (restart_ms < 0 || restart_ms > MAX_RESTART_MS))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bgworker.launch: restart_ms %d must be NULL (never restart) or from 0 to %d", restart_ms, MAX_RESTART_MS)));

	/* The definition the Node child becomes: src/definition.ts's WorkerDefinition. */
	initStringInfo(&json);
	appendStringInfoString(&json, "{\"name\":");
	escape_json(&json, name);
	appendStringInfoString(&json, ",\"type\":");
	escape_json(&json, type);
	appendStringInfoString(&json, ",\"library\":");
	escape_json(&json, library);
	appendStringInfoString(&json, ",\"function\":");
	escape_json(&json, function);
	appendStringInfo(&json, ",\"startTime\":%d", spi ? 2 : 0);
	if (restart_ms < 0)
		appendStringInfoString(&json, ",\"restartTimeMs\":null");
	else
		appendStringInfo(&json, ",\"restartTimeMs\":%d", restart_ms);
	if (PG_ARGISNULL(4))
		appendStringInfoString(&json, ",\"argument\":{\"kind\":\"null\"}");
	else
		appendStringInfo(&json, ",\"argument\":{\"kind\":\"bigint\",\"value\":\"" INT64_FORMAT "\"}", PG_GETARG_INT64(4));
	appendStringInfo(&json, ",\"extra\":\"\",\"spi\":%s,\"shmem\":false,\"notifyPid\":%d}",
					 spi ? "true" : "false", (int) MyProcPid);

	if (!bgw_register_dynamic(name, type, library, function,
							  restart_ms < 0 ? BGW_NEVER_RESTART : (restart_ms + 999) / 1000,
							  spi, MyProcPid, json.data, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not register background process \"%s\": no free background worker slot", name),
				 errhint("You may need to increase max_worker_processes (now %d).", max_worker_processes)));
	if (!wait)
		PG_RETURN_NULL();
	/* Started is SPEC §5's: the worker's function has been entered. One that entered and already ended gives its pid. */
	status = bgw_wait_for_startup(handle, &pid);
	if (status == BGWH_STOPPED && pid > 0)
		PG_RETURN_INT32(pid);
	if (status == BGWH_STOPPED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start background process"),
				 errhint("More details may be available in the server log.")));
	if (status == BGWH_POSTMASTER_DIED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("cannot start background processes without postmaster"),
				 errhint("Kill all remaining database processes and restart the database.")));
	PG_RETURN_INT32(pid);
}

static const char *
status_name(BgwHandleStatus s)
{
	switch (s)
	{
		case BGWH_STARTED:
			return "Started";
		case BGWH_NOT_YET_STARTED:
			return "NotYetStarted";
		case BGWH_STOPPED:
			return "Stopped";
		default:
			return "PostmasterDied";
	}
}

Datum
bgworker_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < bgw_nstatics; i++)
	{
		Datum		values[8];
		bool		nulls[8] = {0};
		int			pid = bgw_shared != NULL ? bgw_shared->static_pids[i] : 0;

		values[0] = CStringGetTextDatum("static");
		values[1] = CStringGetTextDatum(bgw_statics[i].name);
		values[2] = CStringGetTextDatum(bgw_statics[i].type);
		values[3] = CStringGetTextDatum(bgw_statics[i].library);
		values[4] = CStringGetTextDatum(bgw_statics[i].function);
		nulls[5] = true;
		values[6] = CStringGetTextDatum(pid > 0 ? "Started" : "NotRunning");
		values[7] = Int32GetDatum(pid);
		nulls[7] = pid <= 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (bgw_shared == NULL)
		PG_RETURN_VOID();
	for (int i = 0; i < bgw_shared->ndynamic; i++)
	{
		BgwDynamic	copy;
		BgwDynamic *d = &bgw_shared->dynamic[i];
		Datum		values[8];
		bool		nulls[8] = {0};
		pid_t		pid = 0;
		BgwHandleStatus status;

		SpinLockAcquire(&bgw_shared->lock);
		memcpy(&copy, d, sizeof(copy));
		SpinLockRelease(&bgw_shared->lock);
		if (!copy.in_use || !copy.has_handle)
			continue;
		status = bgw_worker_status((BackgroundWorkerHandle *) &copy.handle, &pid);
		/* A stopped worker that waits for its restart time is still registered: shown as Stopped. */
		if (status == BGWH_STOPPED && (copy.never_restart || copy.done))
			continue;
		values[0] = CStringGetTextDatum("dynamic");
		values[1] = CStringGetTextDatum(copy.name);
		values[2] = CStringGetTextDatum(copy.type);
		values[3] = CStringGetTextDatum(copy.library);
		values[4] = CStringGetTextDatum(copy.function);
		values[5] = CStringGetTextDatum(bgw_handle_string((BackgroundWorkerHandle *) &copy.handle));
		values[6] = CStringGetTextDatum(status_name(status));
		values[7] = Int32GetDatum(pid);
		nulls[7] = status != BGWH_STARTED;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

Datum
bgworker_terminate(PG_FUNCTION_ARGS)
{
	char	   *handle_text = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		ours;
	BackgroundWorkerHandle *handle = bgw_handle_parse(handle_text, &ours);

	if (ours)
		bgw_terminate(handle);
	PG_RETURN_VOID();
}
