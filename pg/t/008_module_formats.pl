# Worker libraries in every module format a project may use, in-server: `.ts .mts .cts .js .mjs .cjs`, each
# using the package as its format does (`require("bgworker")` in CommonJS, `import` otherwise, a `.cts`
# compiled to CommonJS), launched dynamically; and a CommonJS extension module in bgworker.modules whose
# _PG_init registers a static worker from the `.cts` library. Each worker runs a statement through SPI.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BgworkerTest;

my $root = BgworkerTest::package_dir();
my $dir = "$root/pg/t/fixtures/formats";
my $node = BgworkerTest::new_node('module_formats', "max_worker_processes = 12\nbgworker.modules = '$dir/extension.cjs'\n");
my $offset = 0;
$node->start;
ok($node->wait_for_log(qr/worked cts as w_static_cts, SELECT 1 gave 1/, $offset),
	'a CommonJS extension module registers a static worker from a .cts library');
$node->safe_psql('postgres', 'CREATE EXTENSION bgworker;');

for my $format (qw(ts mts cts js mjs cjs))
{
	$offset = -s $node->logfile;
	my $pid = $node->safe_psql('postgres',
		qq[SELECT bgworker.launch('$dir/worker.$format', 'work', 'w_$format', 'fixture', NULL, true, NULL, true);]);
	ok($pid > 0, "the .$format worker started");
	ok($node->wait_for_log(qr/worked $format as w_$format, SELECT 1 gave 1/, $offset),
		"a .$format library that uses the package runs, with SPI");
}
unlike(slurp_file($node->logfile), qr/Cannot (?:require|find module)|not yet fully loaded/,
	'no module failed to load');

$node->stop;
ok(BgworkerTest::no_node_left($node), 'no Node process is left');
done_testing();
