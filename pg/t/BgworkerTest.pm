# Helpers of the bgworker extension's TAP tests: a PostgreSQL::Test::Cluster node with the extension preloaded,
# and the Node processes of a node's workers.
package BgworkerTest;

use strict;
use warnings;
use Cwd qw(abs_path);
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

# The bgworker package whose dist/inserver runs the workers: BGWORKER_PACKAGE_DIR, else this repository.
sub package_dir
{
	return $ENV{BGWORKER_PACKAGE_DIR} // abs_path("$FindBin::Bin/../..");
}

sub node_binary
{
	return $ENV{BGWORKER_NODE} if defined $ENV{BGWORKER_NODE};
	for my $dir (split /:/, $ENV{PATH} // '')
	{
		return "$dir/node" if $dir ne '' && -x "$dir/node";
	}
	die "no node on PATH: set BGWORKER_NODE";
}

# A node with bgworker in shared_preload_libraries; extra lines for postgresql.conf may follow.
sub new_node
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $root = package_dir();
	my $binary = node_binary();
	$node->init;
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'bgworker'
bgworker.package = '$root'
bgworker.node = '$binary'
} . ($extra // ''));
	return $node;
}

# The pids of the Node processes of this node's workers: Node programs whose working directory is its data directory.
sub node_pids
{
	my ($node) = @_;
	my $data = abs_path($node->data_dir);
	my @pids;
	opendir(my $proc, '/proc') or return ();
	for my $pid (grep { /^\d+$/ } readdir($proc))
	{
		# A worker's Node process renames itself ("bgworker: NAME"): it is known by its program instead.
		my $exe = readlink("/proc/$pid/exe") // '';
		next unless $exe =~ m{/node[^/]*$};
		my $cwd = readlink("/proc/$pid/cwd") // '';
		push @pids, $pid if $cwd eq $data;
	}
	closedir($proc);
	return @pids;
}

# True once no Node process of the node is left, waiting up to $ms (default 1000) for them to go.
sub no_node_left
{
	my ($node, $ms) = @_;
	$ms //= 1000;
	for (my $waited = 0; $waited <= $ms; $waited += 50)
	{
		return 1 if !node_pids($node);
		usleep(50_000);
	}
	diag('Node processes left: ' . join(' ', node_pids($node)));
	return 0;
}

1;
