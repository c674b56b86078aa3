# The postmaster as PID 1 (Docker's official image runs it so): it reaps every orphan of its namespace, and
# one it does not know is taken for a crashed backend. No exit of a worker's Node process, nor the server's
# stop, may leave it such an orphan: no crash-restart, and no Node process once the server is gone.
# Runs `postgres` under `unshare --user --map-current-user --pid --fork --mount-proc` (unprivileged user
# namespaces); skipped where they are not allowed.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BgworkerTest;

if (system('unshare --user --map-current-user --pid --fork --mount-proc true >/dev/null 2>&1') != 0)
{
	plan skip_all => 'unshare cannot make a PID namespace here (unprivileged user namespaces are off)';
}

my $root = BgworkerTest::package_dir();
my $fixture = "$root/test/inserver/basic.ts";
my $node = BgworkerTest::new_node('pid1', "max_worker_processes = 12\n");
my $log = $node->logfile;
my $server = IPC::Run::start(
	[ 'unshare', '--user', '--map-current-user', '--pid', '--fork', '--mount-proc', '--kill-child',
	  'postgres', '-D', $node->data_dir ],
	'<', \undef, '>>', $log, '2>>', $log);
END { kill 'KILL', $server->{KIDS}[0]{PID} if $server && $server->pumpable; }
$node->poll_query_until('postgres', 'SELECT 1;', '1');

# The pid of a process of the namespace as this test sees it (pg_stat_activity shows the namespace's pids).
sub host_pid
{
	my ($nspid) = @_;
	opendir(my $proc, '/proc') or return undef;
	for my $pid (grep { /^\d+$/ } readdir($proc))
	{
		open(my $fh, '<', "/proc/$pid/status") or next;
		local $/;
		my $status = <$fh> // '';
		close($fh);
		return $pid if $status =~ /^NSpid:\s+\d+\s+$nspid\s*$/m;
	}
	return undef;
}
is($node->safe_psql('postgres', 'SELECT pid FROM pg_stat_activity WHERE backend_type = \'checkpointer\';') ne '', 1,
	'the server runs');
my $pm = `cat '${\$node->data_dir}/postmaster.pid' | head -1`;
chomp $pm;
is($pm, '1', 'the postmaster is PID 1 of its namespace');

$node->safe_psql('postgres', 'CREATE EXTENSION bgworker;');
my $offset = -s $log;
for my $case ([0, 'returns'], [1, 'exits 1'], [2, 'throws'], [3, 'crashes'])
{
	$node->safe_psql('postgres',
		qq[SELECT bgworker.launch('$fixture', 'ending', 'ending $case->[1]', 'fixture', $case->[0], true, 1000);]);
}
my $pid = $node->safe_psql('postgres',
	qq[SELECT bgworker.launch('$fixture', 'ending', 'ending killed', 'fixture', 4, true, 1000);]);
$node->poll_query_until('postgres', qq[SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND datname IS NOT NULL;], '1');
my $host = host_pid($pid);
my @children = `pgrep -P $host`;
chomp @children;
is(scalar(@children), 1, 'the worker has one Node child');
kill 'KILL', $children[0];
$node->wait_for_log(qr/its Node process \(PID \d+\) was terminated by signal 9/, $offset);
# Each restartable worker comes back after 1 s; wait for a second round of the ones that end.
$node->wait_for_log(qr/ending 3 started(?s:.*)ending 3 started/, $offset);
$node->poll_query_until('postgres', q[SELECT count(*) FROM bgworker.workers() WHERE name = 'ending killed' AND status = 'Started';], '1');
# PostgreSQL takes any child it reaps that died by a signal (an orphan included) for a crashed backend.
ok(!$node->log_contains(qr/terminating any other active server processes/, $offset),
	'no exit of a worker or of its Node process crash-restarts a PID-1 postmaster');

# A fast stop (SIGINT to the postmaster, the child of unshare) leaves no Node process.
my ($postmaster) = `pgrep -P $server->{KIDS}[0]{PID}`;
chomp $postmaster;
kill 'INT', $postmaster;
$server->finish;
ok(BgworkerTest::no_node_left($node, 1000), 'no Node process after a fast stop of a PID-1 postmaster');

done_testing();
