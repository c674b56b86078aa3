# SPEC §9's limits of in-server mode and its handles: what is not in-server yet fails with
# ERR_BGWORKER_NOT_IN_SERVER; "Started" is SPEC §5's (the worker's function entered, not its backend forked);
# dynamic workers' definition slots are reused as PostgreSQL reuses its worker slots, through more
# launch/terminate cycles than the table holds, without losing a restartable worker that waits for its restart;
# a worker connects as the bootstrap superuser when it names no role, whatever PGUSER says.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use BgworkerTest;

my $root = BgworkerTest::package_dir();
my $limits = "$root/test/inserver/limits.ts";
my $slow = "$root/test/inserver/slow.ts";
my $basic = "$root/test/inserver/basic.ts";
my $max_workers = 4;
# The extension's table of dynamic definitions: max_worker_processes + 8 entries (pg/src/bgworker.c).
my $table_size = $max_workers + 8;
$ENV{BGW_TEST_SLOW_MS} = 3000;
my $node = BgworkerTest::new_node('limits', "max_worker_processes = $max_workers\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bgworker;');

sub launch
{
	my ($library, $function, $name, $arg, $restart_ms, $wait) = @_;
	$arg //= 'NULL';
	$restart_ms //= 'NULL';
	$wait //= 'true';
	return $node->safe_psql('postgres',
		qq[SELECT bgworker.launch('$library', '$function', '$name', 'fixture', $arg, true, $restart_ms, $wait);]);
}

sub status_of
{
	my ($name) = @_;
	return $node->safe_psql('postgres', qq[SELECT status FROM bgworker.workers() WHERE name = '$name';]);
}

sub gone
{
	my ($name) = @_;
	return $node->poll_query_until('postgres', qq[SELECT count(*) FROM bgworker.workers() WHERE name = '$name';], '0');
}

# ----- not in-server yet: one line each, with the code and what to do instead -----
my $offset = -s $node->logfile;
launch($limits, 'notInServer', 'not in server');
$node->wait_for_log(qr/not in server: done/, $offset);
my $log = slurp_file($node->logfile, $offset);
like($log, qr/not in server: connect\(\): ERR_BGWORKER_NOT_IN_SERVER: connect: the control socket .* is not available in in-server mode in this version: .*bgworker\.launch/,
	'connect() names in-server mode, the control socket and what to use');
like($log, qr/not in server: pgShmemInit\(\): ERR_BGWORKER_NOT_IN_SERVER: pgShmemInit: shared memory \(SPEC §8/, 'pgShmemInit() is refused');
like($log, qr/not in server: PgAtomic: ERR_BGWORKER_NOT_IN_SERVER: PgAtomic "limits hits": shared memory/, 'a PgAtomic is refused');
like($log, qr/not in server: loadDynamic\(\) with enableShmemAccess\(\): ERR_BGWORKER_NOT_IN_SERVER: loadDynamic: background worker "shmem child" has enableShmemAccess\(\)/,
	'loadDynamic() of a worker with enableShmemAccess() is refused');
like($log, qr/not in server: bgworker status: exit 1: bgworker: connect: the control socket .* is not available in in-server mode/,
	'the CLI\'s client commands fail with one line, exit 1');
like($log, qr/not in server: bgworker start --http: exit 1: bgworker: bgworker start --http: the ops HTTP server \(--http\) is not available in in-server mode/,
	'--http fails before anything starts');
like($log, qr/not in server: LISTEN: 0A000: cannot execute LISTEN within a background process/, 'LISTEN is PostgreSQL\'s own refusal');
unlike($log, qr/not in server: .*: no error/, 'nothing of them works by accident');

# ----- "Started": the function has been entered, not only the backend forked -----
my @before = BgworkerTest::node_pids($node);
is(launch($slow, 'slow', 'slow by sql no wait', undef, undef, 'false'), '', 'launch without wait returns NULL');
my $forked = 0;
for (my $waited = 0; $waited < 2000 && !$forked; $waited += 50)
{
	$forked = scalar(BgworkerTest::node_pids($node)) > scalar(@before);
	usleep(50_000) unless $forked;
}
ok($forked, 'its backend has forked and its Node process is loading the module');
is(status_of('slow by sql no wait'), 'NotYetStarted', 'bgworker.workers(): NotYetStarted until the function is entered');
$node->poll_query_until('postgres', q[SELECT status FROM bgworker.workers() WHERE name = 'slow by sql no wait';], 'Started');
pass('then Started');

my $t0 = time;
my $pid = launch($slow, 'slow', 'slow by sql');
my $took = time - $t0;
ok($pid > 0 && $took >= 2.5, sprintf('bgworker.launch(wait) returns once the function is entered (%.1f s for a 3 s module)', $took));
is(status_of('slow by sql'), 'Started', 'and it is Started');
$node->safe_psql('postgres', q[SELECT bgworker.terminate(handle) FROM bgworker.workers() WHERE name LIKE 'slow by sql%';]);
gone('slow by sql');
gone('slow by sql no wait');

$offset = -s $node->logfile;
launch($limits, 'startup', 'startup');
$node->wait_for_log(qr/startup: after terminate/, $offset);
$log = slurp_file($node->logfile, $offset);
like($log, qr/startup: while loading NotYetStarted; waitForStartup after the function was entered; then Started, pid matches/,
	'a handle of loadDynamic(): NotYetStarted while loading, waitForStartup() once entered');
like($log, qr/startup: after terminate Stopped/, 'terminate().waitForShutdown(), then Stopped');

# ----- definition slots: more launch/terminate cycles than the table holds -----
# A restartable worker that exits 1 at once spends most of its time waiting for its restart, when
# PostgreSQL reports it Stopped: its definition must outlive every collection of the table.
launch($basic, 'ending', 'restarter', 1, 1000);
my $cycles = 2 * $table_size + 4;
for my $i (1 .. $cycles)
{
	my $name = "cycle $i";
	if ($i % 3 == 0)
	{
		# runs, then is terminated
		launch($basic, 'idle', $name);
		$node->safe_psql('postgres', qq[SELECT bgworker.terminate(handle) FROM bgworker.workers() WHERE name = '$name';]);
	}
	elsif ($i % 3 == 1)
	{
		# terminated at once, maybe before it starts
		$node->safe_psql('postgres',
			qq[SELECT bgworker.launch('$basic', 'idle', '$name', 'fixture', NULL, true, NULL, false);
			   SELECT bgworker.terminate(handle) FROM bgworker.workers() WHERE name = '$name';]);
	}
	else
	{
		# restartable, and ends by itself with exit code 0: PostgreSQL unregisters it
		launch($basic, 'ending', $name, 0, 1000);
	}
	gone($name);
}
pass("$cycles launch/terminate cycles through a table of $table_size definitions");
$offset = -s $node->logfile;
$node->wait_for_log(qr/ending 1 started/, $offset);
ok(!$node->log_contains(qr/its definition is gone/, 0), 'the restartable worker kept its definition and restarts');
$node->safe_psql('postgres', q[SELECT bgworker.terminate(handle) FROM bgworker.workers() WHERE name = 'restarter';]);
gone('restarter');
ok(launch($basic, 'idle', 'one more') > 0, 'a launch after the cycles works');
$node->safe_psql('postgres', q[SELECT bgworker.terminate(handle) FROM bgworker.workers() WHERE name = 'one more';]);
gone('one more');

# ----- no role given: the bootstrap superuser, not PGUSER -----
$node->safe_psql('postgres', 'CREATE ROLE otherrole SUPERUSER LOGIN;');
my $bootstrap = $node->safe_psql('postgres', 'SELECT rolname FROM pg_roles WHERE oid = 10;');
{
	local $ENV{PGUSER} = 'otherrole';
	$node->restart;
}
$offset = -s $node->logfile;
launch($limits, 'whoami', 'whoami');
$node->wait_for_log(qr/whoami: \S+/, $offset);
my ($who) = slurp_file($node->logfile, $offset) =~ /whoami: (\S+)/;
is($who, $bootstrap, 'with PGUSER=otherrole in the server\'s environment, a worker that names no role is the bootstrap superuser');

# ----- pgShmemInit() in _PG_init stops the server's start with one line -----
$node->stop;
$node->append_conf('postgresql.conf', "bgworker.modules = '$root/test/inserver/shmem-init.ts'\n");
$offset = -s $node->logfile;
ok(!$node->start(fail_ok => 1), 'a module whose _PG_init() requests shared memory stops the start');
like(slurp_file($node->logfile, $offset),
	qr/FATAL:  bgworker: extension module ".*shmem-init\.ts" failed to load: pgShmemInit: shared memory \(SPEC §8.* is not available in in-server mode/,
	'with one line naming the module, in-server mode and shared memory');
ok(BgworkerTest::no_node_left($node), 'no Node process is left');

done_testing();
