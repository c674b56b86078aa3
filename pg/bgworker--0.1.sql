/* bgworker--0.1.sql: dynamic TypeScript background workers (in-server mode, SPEC §9) */
\echo Use "CREATE EXTENSION bgworker" to load this file. \quit

-- Registers a dynamic background worker running FUNCTION of the module LIBRARY (a .ts or .js file) in a
-- Node child process of a real PostgreSQL background worker. Returns its pid once it has started (wait), or
-- NULL (no wait). The notify pid is the calling backend.
CREATE FUNCTION bgworker.launch(
  library text,
  function text,
  name text,
  type text DEFAULT NULL,
  arg bigint DEFAULT NULL,
  spi boolean DEFAULT true,
  restart_ms integer DEFAULT NULL,
  wait boolean DEFAULT true)
RETURNS integer
AS 'MODULE_PATHNAME', 'bgworker_launch'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

REVOKE EXECUTE ON FUNCTION bgworker.launch(text, text, text, text, bigint, boolean, integer, boolean) FROM PUBLIC;

-- The TypeScript workers this server knows: the static ones of bgworker.modules and the dynamic ones that
-- PostgreSQL may still start, with the state of each (Started once its function has been entered).
CREATE FUNCTION bgworker.workers(
  OUT kind text,
  OUT name text,
  OUT type text,
  OUT library text,
  OUT function text,
  OUT handle text,
  OUT status text,
  OUT pid integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'bgworker_workers'
LANGUAGE C STRICT VOLATILE;

-- Terminates a dynamic worker by its handle (as bgworker.workers() shows it): SIGTERM if it runs,
-- unregistered if it has not started; never restarted after.
CREATE FUNCTION bgworker.terminate(handle text)
RETURNS void
AS 'MODULE_PATHNAME', 'bgworker_terminate'
LANGUAGE C STRICT VOLATILE;

REVOKE EXECUTE ON FUNCTION bgworker.terminate(text) FROM PUBLIC;

-- Anyone may see the workers; only those granted EXECUTE may launch or terminate them.
GRANT USAGE ON SCHEMA bgworker TO PUBLIC;
