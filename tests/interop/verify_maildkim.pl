#!/usr/bin/perl
# verify_maildkim.pl -- check every DKIM-Signature of many messages with
# Mail::DKIM::Verifier (libmail-dkim-perl), for the dkimpress interop suite.
#
#   perl verify_maildkim.pl --dns-file FILE [--expect N] [--rsa-only]
#        [--list LIST] [MSG...]
#
# FILE holds key records, one per line: SELECTOR._domainkey.DOMAIN, a TAB,
# the TXT record.  Keys never come from the network: Mail::DKIM asks its
# resolver object for TXT records (Mail::DKIM::DNS::resolver(), the
# documented way to give it a custom resolver), and ours answers from FILE
# with real Net::DNS packets: NOERROR + one TXT RR, or NXDOMAIN.
#
# One output line per message:
#   PATH<TAB>pass|fail<TAB>sigs=N pass=P fail=F; d=D s=S a=A: RESULT; ...
# A message passes when every counted signature passes and there are N of
# them (--expect; without it, at least one).  The last line is
# "summary: M messages, P pass, F fail".  Exit 0 if all pass, else 1.
#
# Mail::DKIM 1.20230212 has no ed25519-sha256 (RFC 8463): it reports such a
# signature "invalid".  With --rsa-only (the driver always passes it) those
# signatures are listed as "skipped" and not counted.
#
# Known Mail::DKIM 1.20230212 quirk (run.sh names the corpus cases in its
# QUIRKS table): with simple body canonicalization a body that does not end
# in CRLF is hashed as is; RFC 6376 3.4.3 adds a CRLF first.  Its signer
# does the same.
#
# Delivery: bare LF becomes CRLF (SMTP form) before the message is fed in;
# dkimpress output is CRLF already.  A bare CR is left alone.
use strict;
use warnings;

use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS;

package OfflineResolver;

# Mail::DKIM::DNS::query() calls $res->send($name, $type), reads the
# header's rcode and the answer section, and on no reply asks errorstring.
sub new {
    my ($class, $keys) = @_;
    return bless { keys => $keys, err => 'NOERROR' }, $class;
}

sub send {
    my ($self, $name, $type) = @_;
    my $key = lc $name;
    $key =~ s/\.$//;
    my $pkt = Net::DNS::Packet->new($name, $type, 'IN');
    $pkt->header->qr(1);
    $pkt->header->aa(1);
    my $rec = $self->{keys}{$key};
    if (defined $rec && uc($type) eq 'TXT') {
        # a TXT RR holds strings of at most 255 octets each
        my @chunks = unpack('(a255)*', $rec);
        $pkt->push(answer => Net::DNS::RR->new(
            owner => $name, type => 'TXT', class => 'IN', ttl => 300,
            txtdata => [@chunks]));
        $pkt->header->rcode('NOERROR');
    } else {
        $pkt->header->rcode('NXDOMAIN');
    }
    $self->{err} = 'NOERROR';
    return $pkt;
}

sub errorstring { return $_[0]->{err}; }

package main;

sub usage {
    print STDERR "usage: verify_maildkim.pl --dns-file FILE [--expect N]"
        . " [--rsa-only] [--list LIST] [MSG...]\n";
    exit 2;
}

my ($dnsfile, $listfile, $expect, $rsa_only);
my @paths;
while (@ARGV) {
    my $a = shift @ARGV;
    if ($a eq '--dns-file' && @ARGV) { $dnsfile = shift @ARGV; }
    elsif ($a eq '--expect' && @ARGV) {
        $expect = shift @ARGV;
        usage() unless $expect =~ /^\d+$/;
    }
    elsif ($a eq '--list' && @ARGV) { $listfile = shift @ARGV; }
    elsif ($a eq '--rsa-only') { $rsa_only = 1; }
    elsif ($a eq '--') { push @paths, @ARGV; @ARGV = (); }
    elsif ($a =~ /^-./) { usage(); }
    else { push @paths, $a; }
}
usage() unless defined $dnsfile;

my %keys;
open(my $dfh, '<:raw', $dnsfile) or die "verify_maildkim.pl: $dnsfile: $!\n";
while (my $line = <$dfh>) {
    $line =~ s/\r?\n\z//;
    next if $line =~ /^\s*(#|$)/;
    my ($name, $rec) = split /\t/, $line, 2;
    ($name, $rec) = split ' ', $line, 2 unless defined $rec;
    next unless defined $rec;
    $name =~ s/^\s+|\s+$//g;
    $name =~ s/\.$//;
    $rec =~ s/^\s+|\s+$//g;
    $keys{lc $name} = $rec;
}
close $dfh;

if (defined $listfile) {
    open(my $lfh, '<', $listfile) or die "verify_maildkim.pl: $listfile: $!\n";
    while (my $l = <$lfh>) {
        $l =~ s/\r?\n\z//;
        push @paths, $l if length $l;
    }
    close $lfh;
}

Mail::DKIM::DNS::resolver(OfflineResolver->new(\%keys));

my ($nmsg, $npass, $nfail) = (0, 0, 0);
$| = 1;
foreach my $path (@paths) {
    $nmsg++;
    my $fh;
    unless (open($fh, '<:raw', $path)) {
        print "$path\tfail\tcannot read: $!\n";
        $nfail++;
        next;
    }
    my $msg = do { local $/; <$fh> };
    close $fh;
    $msg =~ s/(?<!\r)\n/\r\n/g;

    my @parts;
    my ($counted, $sp, $sf) = (0, 0, 0);
    my @sigs;
    eval {
        my $v = Mail::DKIM::Verifier->new();
        $v->PRINT($msg);
        $v->CLOSE;
        @sigs = $v->signatures;
        1;
    } or do {
        my $e = $@ || 'unknown error';
        $e =~ s/\s+/ /g;
        push @parts, "verifier died: $e";
    };
    foreach my $sig (@sigs) {
        my $alg = eval { $sig->algorithm } // '?';
        my $dom = eval { $sig->domain } // '?';
        my $sel = eval { $sig->selector } // '?';
        if ($rsa_only && $alg !~ /^rsa-/i) {
            push @parts, "d=$dom s=$sel a=$alg: skipped (not RSA)";
            next;
        }
        $counted++;
        my $r = $sig->result // 'none';
        if ($r eq 'pass') {
            $sp++;
            push @parts, "d=$dom s=$sel a=$alg: pass";
        } else {
            $sf++;
            my $det = $sig->result_detail // $r;
            $det =~ s/[\t\r\n]+/ /g;
            $det = "$r ($det)" unless $det =~ /^\Q$r\E/;
            push @parts, "d=$dom s=$sel a=$alg: $det";
        }
    }
    push @parts, 'no signature found' unless @sigs;
    my $ok = $sf == 0 && (defined $expect ? $counted == $expect : $counted > 0);
    printf "%s\t%s\tsigs=%d pass=%d fail=%d; %s\n", $path,
        $ok ? 'pass' : 'fail', $counted, $sp, $sf, join('; ', @parts);
    if ($ok) { $npass++ } else { $nfail++ }
}
print "summary: $nmsg messages, $npass pass, $nfail fail\n";
exit($nfail == 0 && $nmsg > 0 ? 0 : 1);
