# bgworker.busy_poll: after answering its Node process, a worker's backend waits awake for the next request
# for up to that many microseconds before it sleeps. Statements give the same results with polling off, on
# and at its maximum; a worker idle on its latch sleeps (it shows the Extension wait event and takes no CPU),
# and SIGTERM still ends it at once; PostgreSQL refuses a value out of range.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use BgworkerTest;

my $root = BgworkerTest::package_dir();
my $fixture = "$root/pg/t/fixtures/statements.ts";
my $node = BgworkerTest::new_node('busy_poll', "max_worker_processes = 6\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bgworker;');

is($node->safe_psql('postgres', 'SHOW bgworker.busy_poll;'), '50', 'busy polling is on by default (50 µs)');
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'ALTER SYSTEM SET bgworker.busy_poll = 10001;');
like($stderr, qr/10001 is outside the valid range for parameter "bgworker\.busy_poll" \(0 \.\. 10000\)/,
	'a value out of range is refused');

# The CPU time of a process so far, in clock ticks (utime + stime of /proc/PID/stat).
sub cpu_ticks
{
	my ($pid) = @_;
	my @fields = split ' ', (slurp_file("/proc/$pid/stat") =~ /\) (.*)/)[0];
	return $fields[11] + $fields[12];
}

my $statements = 500;
my $sum = $statements * ($statements + 1) / 2;
for my $poll (0, 50, 10000)
{
	$node->safe_psql('postgres', "ALTER SYSTEM SET bgworker.busy_poll = $poll; SELECT pg_reload_conf();");
	my $offset = -s $node->logfile;
	my $name = "burst at $poll";
	my $pid = $node->safe_psql('postgres',
		qq[SELECT bgworker.launch('$fixture', 'burst', '$name', 'fixture', $statements, true, NULL, true);]);
	ok($node->wait_for_log(qr/\Q$name\E: $statements statements, sum $sum/, $offset),
		"busy_poll = $poll: $statements statements in a row give their results");
	$node->poll_query_until('postgres',
		qq[SELECT wait_event_type = 'Extension' AND state = 'idle' FROM pg_stat_activity WHERE pid = $pid;])
	  or die "the worker of busy_poll = $poll never went idle";
	my $before = cpu_ticks($pid);
	usleep(1_000_000);
	my $spent = cpu_ticks($pid) - $before;
	cmp_ok($spent, '<=', 10, "busy_poll = $poll: its backend sleeps while the worker waits on its latch ($spent ticks in 1 s)");
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid);");
	ok($node->wait_for_log(qr/\Q$name\E: terminated/, $offset), "busy_poll = $poll: SIGTERM reaches the worker");
	$node->poll_query_until('postgres', qq[SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid;])
	  or die "the worker of busy_poll = $poll did not end";
}

$node->stop;
ok(BgworkerTest::no_node_left($node), 'no Node process is left');
done_testing();
